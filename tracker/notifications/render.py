"""Rendering mail: text + HTML pairs from templates/email/, in the recipient's language.

Each kind has ``email/<kind>.txt`` and ``email/<kind>.html``. The text template sets the
subject at its top with ``{% set subject = _('…') %}``; both get the same context plus
``recipient``, ``link(endpoint, **values)`` for absolute URLs and ``base_url``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import force_locale

from tracker.models import User
from tracker.notifications.outbox import Email


def recipient_locale(user: User) -> str:
    """The language to write to a user in: theirs, else their office's, else the default."""
    languages = current_app.config["TRACKER_LANGUAGES"]
    for candidate in (user.language, user.office.language if user.office else None):
        if candidate in languages:
            return candidate
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def absolute_url(endpoint: str, **values: Any) -> str:
    """An absolute link into the site, built from TRACKER_BASE_URL (works outside requests)."""
    base = urlsplit(current_app.config["TRACKER_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)


def render_email(kind: str, recipient: User, **context: Any) -> Email:
    """Render the subject, text and HTML of one message for one recipient."""
    env = current_app.jinja_env
    variables = {
        **context,
        "recipient": recipient,
        "link": absolute_url,
        "base_url": current_app.config["TRACKER_BASE_URL"],
    }
    with force_locale(recipient_locale(recipient)):
        text_module = env.get_template(f"email/{kind}.txt").make_module(variables)
        html = env.get_template(f"email/{kind}.html").render(variables)
        subject = str(getattr(text_module, "subject", "")).strip()
        text = str(text_module).strip() + "\n"
    if not subject:
        raise ValueError(f"email/{kind}.txt sets no subject")
    return Email(subject=subject, text=text, html=html)
