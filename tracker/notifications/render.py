"""Rendering mail: text + HTML pairs from templates/email/, in the recipient's language.

Each kind has ``email/<kind>.txt`` and ``email/<kind>.html``, each rendered once per message. The
text template sets the subject at its top with ``{% set subject = _('…') %}``; both get the same
context plus ``recipient``, ``link(endpoint, **values)`` for absolute URLs, ``action_url(id)`` for
an action's page and ``base_url``.

Links are built from TRACKER_BASE_URL once per process (:class:`Links`): an action's link is a
prefix and its id, not a URL-map lookup per line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import current_app
from flask_babel import force_locale, get_translations
from jinja2 import Environment
from jinja2.ext import InternationalizationExtension

from tracker import formats
from tracker.models import User
from tracker.notifications.outbox import Email

#: Stands for an id while the action link's prefix is built (any number the route accepts).
_PLACEHOLDER = 918273645
#: The bytes above 127 (for counting them with bytes.translate, in C).
_HIGH_BYTES = bytes(range(128, 256))
#: The language of the mail being rendered (a key of the dates written once per language).
_LOCALE: ContextVar[str] = ContextVar("mail_locale", default="")
#: The catalogue of the mail being rendered, looked up once per mail.
_CATALOGUE: ContextVar[Any] = ContextVar("mail_catalogue")
#: The recipient while a mail is rendered: moments are written in their zone, not in UTC (outside
#: a request Flask-Babel knows no reader). Looked up only when a template writes a moment.
_RECIPIENT: ContextVar[User | None] = ContextVar("mail_recipient", default=None)
#: Dates kept written per process, at most (then forgotten and written again).
_DATES_KEPT = 10_000
#: The most bytes a mail that lists items may take as sent, whatever the backlog and the data.
MAIL_BYTES = 200_000
#: What its text and HTML parts may take, leaving room for headers and MIME boundaries.
BODY_BYTES = MAIL_BYTES - 10_000


def recipient_locale(user: User) -> str:
    """The language to write to a user in: theirs, else their office's, else the default."""
    languages = current_app.config["TRACKER_LANGUAGES"]
    for candidate in (user.language, user.office.language if user.office else None):
        if candidate in languages:
            return candidate
    return current_app.config["BABEL_DEFAULT_LOCALE"]


class Links:
    """Absolute links into the site from one base URL, usable outside requests."""

    def __init__(self, base_url: str) -> None:
        base = urlsplit(base_url)
        self._adapter = current_app.url_map.bind(
            base.netloc, script_name=base.path or "/", url_scheme=base.scheme
        )
        self._action = self.url("actions.detail", action_id=_PLACEHOLDER).split(str(_PLACEHOLDER))

    def url(self, endpoint: str, **values: Any) -> str:
        """The absolute URL of an endpoint."""
        return self._adapter.build(endpoint, values, force_external=True)

    def action(self, action_id: int) -> str:
        """The absolute URL of an action's page: the prefix built once, and the id."""
        return f"{self._action[0]}{int(action_id)}{self._action[1]}"

    def actions_list(self, **filters: str) -> str:
        """The Actions list with filters (the query-string names ``actions.queries.action_filters`` reads)."""
        url = self.url("actions.home")
        return f"{url}?{urlencode(filters)}" if filters else url


def links() -> Links:
    """The app's :class:`Links` for its current TRACKER_BASE_URL, made once per process."""
    base = current_app.config["TRACKER_BASE_URL"]
    cache: dict[str, Links] = current_app.extensions.setdefault("tracker_mail_links", {})
    if base not in cache:
        cache[base] = Links(base)
    return cache[base]


def absolute_url(endpoint: str, **values: Any) -> str:
    """An absolute link into the site, built from TRACKER_BASE_URL (works outside requests)."""
    return links().url(endpoint, **values)


def mail_environment() -> Environment:
    """The app's Jinja environment with two changes for mail, made once per process.

    A reminder run renders tens of thousands of lines. Flask-Babel's ``gettext`` finds the request
    or app context, the locale and its catalogue at every call (a third of the rendering): here
    the catalogue is looked up once per mail (:func:`render_email`) and the template's ``_()`` and
    ``ngettext()`` read it. And each date is written once per language: most deadlines are the same
    few dates, and Babel's ``format_date`` took a quarter of the rendering (dates only: how a
    datetime is written also depends on the reader's time zone). An overlay of the app's
    environment: same loader, globals and filters otherwise.
    """
    env = current_app.extensions.get("tracker_mail_environment")
    if env is None:
        env = current_app.jinja_env.overlay()
        env.globals = dict(env.globals)  # the overlay's own, so the app's gettext stays as it is
        # The overlay's own copy of the extension (installing through env.install_… would reach
        # the app's environment, whose method the overlay shares).
        i18n = env.extensions[InternationalizationExtension.identifier]
        i18n._install_callables(
            gettext=lambda s: _CATALOGUE.get().ugettext(s),
            ngettext=lambda s, p, n: _CATALOGUE.get().ungettext(s, p, n),
            newstyle=True,
            pgettext=lambda c, s: _CATALOGUE.get().upgettext(c, s),
            npgettext=lambda c, s, p, n: _CATALOGUE.get().unpgettext(c, s, p, n),
        )
        write = current_app.jinja_env.filters["dateformat"]
        written: dict[tuple[date, str, str], str] = {}

        def dateformat(value: Any, format: str = "medium") -> str:
            if not isinstance(value, date) or isinstance(value, datetime):
                return write(value, format)
            key = (value, format, _LOCALE.get())
            text = written.get(key)
            if text is None:
                if len(written) >= _DATES_KEPT:
                    written.clear()
                text = written[key] = write(value, format)
            return text

        def datetimeformat(value: Any, format: str = "medium") -> str:
            recipient = _RECIPIENT.get()
            if recipient is None or not isinstance(value, datetime):
                return formats.format_datetime(value, format)
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return formats.format_datetime(moment.astimezone(recipient.zone), format, rebase=False)

        env.filters = {**env.filters, "dateformat": dateformat, "datetimeformat": datetimeformat}
        current_app.extensions["tracker_mail_environment"] = env
    return env


def render_email(kind: str, recipient: User, **context: Any) -> Email:
    """Render the subject, text and HTML of one message for one recipient."""
    env = mail_environment()
    site = links()
    variables = {
        **context,
        "recipient": recipient,
        "link": site.url,
        "action_url": site.action,
        "actions_list": site.actions_list,
        "base_url": current_app.config["TRACKER_BASE_URL"],
    }
    locale = recipient_locale(recipient)
    with force_locale(locale):
        tokens = _LOCALE.set(locale), _CATALOGUE.set(get_translations())
        recipient_token = _RECIPIENT.set(recipient)
        try:
            text_module = env.get_template(f"email/{kind}.txt").make_module(variables)
            html = env.get_template(f"email/{kind}.html").render(variables)
            subject = str(getattr(text_module, "subject", "")).strip()
            text = str(text_module).strip() + "\n"
        finally:
            _RECIPIENT.reset(recipient_token)
            _LOCALE.reset(tokens[0])
            _CATALOGUE.reset(tokens[1])
    if not subject:
        raise ValueError(f"email/{kind}.txt sets no subject")
    return Email(subject=subject, text=text, html=html)


def encoded_size(email: Email) -> int:
    """An upper bound of the bytes the text and HTML parts take in the message as sent.

    The dispatcher's ``set_content`` sends a part as it is when it is ASCII in short lines, else
    in quoted-printable or base64, chosen from its first ten lines only: a part that starts in ASCII
    and goes on in Thai is quoted-printable, three bytes for each byte above 127. The bound takes
    the larger of the two encodings, counted in C (no encoding is done here).
    """
    total = 0
    for part in (email.text, email.html):
        raw = part.encode("utf-8")
        escaped = len(raw) - len(raw.translate(None, _HIGH_BYTES)) + raw.count(b"=")
        quoted = len(raw) + 2 * escaped + 3 * math.ceil(len(raw) / 72)  # soft line breaks
        base64 = math.ceil(len(raw) / 57) * 78  # 76 characters and CRLF a line
        total += max(quoted, base64)
    return total


def render_fitting(render: Callable[[int], Email], count: int) -> tuple[Email, int]:
    """The mail ``render(n)`` that lists the first ``n`` of ``count`` lines: all of them, or as many
    as keep its parts within :data:`BODY_BYTES` as sent (at least one); with that ``n``.

    Fifty lines of the longest titles and names, in a script of three bytes a character, would
    pass :data:`MAIL_BYTES`: such a mail is rendered again with fewer lines, cut in proportion.
    """
    listed = count
    while True:
        email = render(listed)
        measured = encoded_size(email)
        if measured <= BODY_BYTES or listed <= 1:
            return email, listed
        listed = max(1, min(listed - 1, listed * BODY_BYTES // measured))
