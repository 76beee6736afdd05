from pathlib import Path

import pytest

from handoff_worker.errors import SettingsError
from handoff_worker.settings import RateLimit, Settings, mask_url, redis_url_origin


def load(**env: str) -> Settings:
    return Settings.from_env(env, dotenv_path=None)


def test_defaults_are_the_documented_ones() -> None:
    s = load()
    assert s.hubspot_base_url == "https://api.hubapi.com"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.handoff_config == Path("config/nurture.yaml")
    assert s.rate_limit == RateLimit(100, 10.0)
    assert s.search_rate_limit == RateLimit(5, 1.0)
    assert s.signature_versions == ("v3",)
    assert s.dry_run is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/10s", RateLimit(100, 10)),
        ("190 / 10s", RateLimit(190, 10)),
        ("5/1s", RateLimit(5, 1)),
        ("5/s", RateLimit(5, 1)),
        ("500/500ms", RateLimit(500, 0.5)),
        ("600/1m", RateLimit(600, 60)),
    ],
)
def test_rate_limits_parse(text: str, expected: RateLimit) -> None:
    assert load(HUBSPOT_RATE_LIMIT=text).rate_limit == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HUBSPOT_RATE_LIMIT": "fast"}, "HUBSPOT_RATE_LIMIT"),
        ({"HUBSPOT_RATE_LIMIT": "0/10s"}, "HUBSPOT_RATE_LIMIT"),
        ({"HUBSPOT_SEARCH_RATE_LIMIT": "5"}, "HUBSPOT_SEARCH_RATE_LIMIT"),
        ({"HANDOFF_DRY_RUN": "maybe"}, "HANDOFF_DRY_RUN"),
        ({"HUBSPOT_BASE_URL": "api.hubapi.com"}, "HUBSPOT_BASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"HUBSPOT_APP_ID": "my-app"}, "HUBSPOT_APP_ID"),
        ({"HUBSPOT_SIGNATURE_VERSIONS": "v4"}, "HUBSPOT_SIGNATURE_VERSIONS"),
        ({"WEBHOOK_PUBLIC_URL": "handoff.example.com"}, "WEBHOOK_PUBLIC_URL"),
        ({"HUBSPOT_TIMEOUT_SECONDS": "ten"}, "HUBSPOT_TIMEOUT_SECONDS"),
    ],
)
def test_malformed_values_name_the_variable_and_show_an_example(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(**env)
    assert named in str(err.value)
    assert "e.g." in str(err.value)


def test_required_variables_are_named() -> None:
    with pytest.raises(SettingsError, match="HUBSPOT_ACCESS_TOKEN is not set"):
        Settings.from_env({}, dotenv_path=None, require=("HUBSPOT_ACCESS_TOKEN",))


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("HUBSPOT_RATE_LIMIT=190/10s\nHUBSPOT_APP_ID=42\n")
    s = Settings.from_env({"HUBSPOT_APP_ID": "7"}, dotenv_path=dotenv)
    assert s.rate_limit == RateLimit(190, 10)
    assert s.hubspot_app_id == "7"


def test_secrets_never_appear_in_repr_or_redacted() -> None:
    s = load(
        HUBSPOT_ACCESS_TOKEN="pat-secret-token",
        HUBSPOT_CLIENT_SECRET="old-secret, new-secret",
        REDIS_URL="redis://:hunter2@localhost:6379/0",
    )
    assert s.hubspot_client_secrets == ("old-secret", "new-secret")
    shown = repr(s) + str(s.redacted())
    for secret in ("pat-secret-token", "old-secret", "new-secret", "hunter2"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@localhost:6379/0", "redis://***@localhost:6379/0"),
        ("redis://:hun@ter2@localhost:6379/0", "redis://***@localhost:6379/0"),
        ("redis://user:hun/ter2@localhost:6379/0", "redis://***@localhost:6379/0"),
        ("rediss://user:hunter2@redis.example.com:6380/2", "rediss://***@redis.example.com:6380/2"),
        ("redis://localhost:6379/0?password=hunter2&db=1", "redis://localhost:6379/0?password=***&db=1"),
        ("unix:///run/redis.sock?db=0&password=hunter2", "unix:///run/redis.sock?db=0&password=***"),
        ("redis//:hunter2@localhost:6379/0", "redis//***@localhost:6379/0"),
        (":hunter2@localhost:6379", "***@localhost:6379"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ],
)
def test_a_url_is_masked_however_it_is_written(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_a_password_with_at_signs_is_masked_where_settings_are_shown() -> None:
    s = load(REDIS_URL="redis://:p@ss@w0rd@localhost:6379/0")
    assert s.redacted()["redis_url"] == "redis://***@localhost:6379/0"


@pytest.mark.parametrize(
    "url",
    [
        "redis//:hunter2@localhost:6379/0",
        "redis://:hun/ter2@localhost:6379/0",
        "redis://:hunter2@localhost:port/0",
        "redis://:hunter2@localhost:6379/db",
        "http://:hunter2@localhost:6379/0",
    ],
)
def test_a_malformed_redis_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(REDIS_URL=url)
    assert "REDIS_URL=" in str(err.value) and "e.g." in str(err.value)
    assert "hun" not in str(err.value) and "ter2" not in str(err.value)


def test_redis_url_origin_names_the_env_file_or_the_default(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    assert redis_url_origin({"REDIS_URL": "redis://h:6379/0"}, dotenv_path=dotenv) is None
    assert redis_url_origin({}, dotenv_path=dotenv) == (
        f"REDIS_URL is not set and there is no .env in {tmp_path}: the default"
    )
    dotenv.write_text("LOG_LEVEL=DEBUG\n")
    assert "the default" in (redis_url_origin({}, dotenv_path=dotenv) or "")
    dotenv.write_text("REDIS_URL=redis://h:6379/0\n")
    assert redis_url_origin({}, dotenv_path=dotenv) == f"REDIS_URL from {dotenv}"


@pytest.mark.parametrize("name", ["LOG_LEVEL", "LOG_FORMAT"])
def test_a_misspelt_log_setting_is_named_with_the_values_it_takes(name: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(**{name: "verbose"})
    assert f"{name}='verbose'" in str(err.value) and f"e.g. {name}=" in str(err.value)


def test_log_settings_read_as_the_logging_module_needs_them() -> None:
    settings = load(LOG_LEVEL="warn", LOG_FORMAT="TEXT")
    assert (settings.log_level, settings.log_format) == ("WARNING", "text")
    assert load().log_format == ""  # each process's own default
