"""Pure domain code: no Flask, Celery, Redis, YAML or SDK here."""
