"""The web process: `gunicorn handoff_worker.wsgi:app -c handoff_worker/gunicorn_conf.py`.

Start-up fails, with the loader's message, when HANDOFF_CONFIG is invalid and no earlier valid
version is kept in Redis: a web process that cannot tell which properties matter must not
acknowledge webhooks. Afterwards the rules are re-read as the workers re-read them; an invalid
edit keeps the last good ones.
"""

from __future__ import annotations

from handoff_worker.intake.app import create_app
from handoff_worker.intake.logs import configure_json_logging
from handoff_worker.nurture_config.store import RedisLastGood, RulesStore
from handoff_worker.settings import get_settings
from handoff_worker.state import redis_client

settings = get_settings()
configure_json_logging(settings.log_level, settings.log_format or "json")
_last_good = RedisLastGood(redis_client(settings), settings.handoff_config)
app = create_app(settings, rules=RulesStore(settings.handoff_config, last_good=_last_good).current)
