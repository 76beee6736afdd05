"""The web process: `gunicorn handoff_worker.wsgi:app -c handoff_worker/gunicorn_conf.py`.

Start-up fails, with the loader's message, when HANDOFF_CONFIG is invalid: a web process that
cannot tell which properties matter must not acknowledge webhooks. Afterwards the rules are
re-read as the workers re-read them; an invalid edit keeps the last good ones.
"""

from __future__ import annotations

from handoff_worker.intake.app import create_app
from handoff_worker.intake.logs import configure_json_logging
from handoff_worker.nurture_config import RulesStore
from handoff_worker.settings import get_settings

settings = get_settings()
configure_json_logging(settings.log_level)
app = create_app(settings, rules=RulesStore(settings.handoff_config).current)
