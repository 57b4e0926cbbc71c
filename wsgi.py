"""The web entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

from config import ConfigError
from tracker import create_app

try:
    app = create_app()
except ConfigError as exc:  # one line naming the setting, not a traceback
    raise SystemExit(f"tracker: configuration error: {exc}") from None
