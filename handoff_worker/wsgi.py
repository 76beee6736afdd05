"""The web process: `gunicorn handoff_worker.wsgi:app -c handoff_worker/gunicorn_conf.py`.

Start-up fails, with the loader's message, when HANDOFF_CONFIG is invalid: a web process that
cannot tell which properties matter must not acknowledge webhooks.
"""

from __future__ import annotations

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.intake.app import create_app
from handoff_worker.intake.logs import configure_json_logging
from handoff_worker.settings import Settings, get_settings


def _load_rules(settings: Settings) -> NurtureRules | None:
    try:
        from handoff_worker.nurture_config import load_rules
    except ImportError:
        return None  # no loader installed: create_app falls back to the default rules
    return load_rules(settings.handoff_config)


settings = get_settings()
configure_json_logging(settings.log_level)
app = create_app(settings, rules=_load_rules(settings))
