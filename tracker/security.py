"""What every response carries for the browser's protection, and ids in URLs kept to the database's range.

:func:`register_security` installs, on one application:

- one ``after_request`` hook that sets the security headers on every response: pages, redirects,
  error pages (404, 405, 500), static files and the API. Personal answers (a signed-in user, the
  sign-in pages, the API with a token) are never stored by a cache; static files keep caching.
- an ``int`` URL converter that matches 0 … 2**31 − 1 only (the Integer primary keys on
  PostgreSQL), so ``/actions/99999999999999999999`` is a 404 instead of an overflow in the database.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request
from flask_login import current_user
from werkzeug.routing import IntegerConverter
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Response

from tracker.params import MAX_INT

#: No inline script or style anywhere (templates/email/ is mail, never served as a page).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: Set on every response.
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    # A name without a version: nothing to look up in a list of known holes.
    "Server": "tracker",
}
#: Unless the view chose a stricter one (the calendar feed, whose URL is a secret: no-referrer).
REFERRER_POLICY = "same-origin"
STRICTER_REFERRER_POLICIES = frozenset({"no-referrer", "same-origin"})

#: Endpoints whose successful answers carry a policy of their own instead. The HTML of a message,
#: shown in the sandboxed frame of its outbox page: mail is styled inline, and may be framed by
#: this site only; it runs nothing and loads nothing (images only as data: URLs).
OWN_POLICIES = {
    "outbox.mail_html": {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"
        ),
        "X-Frame-Options": "SAMEORIGIN",
    },
}

#: With TRACKER_HSTS (production), on requests that came over HTTPS.
HSTS = "max-age=31536000; includeSubDomains"

#: Blueprints whose every answer is personal (passwords, tokens, sessions).
PRIVATE_BLUEPRINTS = frozenset({"auth"})


def digits_up_to(limit: int) -> str:
    """A regular expression for the whole numbers from 0 to ``limit`` (zeros before them allowed)."""
    text = str(limit)
    if len(text) == 1:
        return f"0*[0-{limit}]"
    options = [f"[0-9]{{1,{len(text) - 1}}}"]  # fewer digits
    for i, digit in enumerate(text):  # same first i digits, a smaller next one, then any digits
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(text) - i - 1
            options.append(f"{text[:i]}[{low}-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    options.append(text)
    return "0*(?:" + "|".join(options) + ")"


class BoundedIntConverter(IntegerConverter):
    """Flask's ``int`` converter limited to the range of an Integer column: a larger id matches no route.

    The limit is in the regular expression, not only in :meth:`to_python`: Werkzeug does not try the
    other rules once a converter refuses a value (a PATCH would then be a 405 naming GET), while a
    path its expression does not match goes on to the next rule (the API's catch-all answers 404).
    """

    regex = digits_up_to(MAX_INT)

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_INT)
        super().__init__(url_map, *args, **kwargs)


def register_security(app: Flask) -> None:
    """Install the ``int`` converter (before any route is added) and the security headers."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.after_request(security_headers)
    _quiet_development_server()


def security_headers(response: Response) -> Response:
    """Set the security headers, HSTS in production over HTTPS, and what caches may keep.

    A view may ask for no referrer at all; any other Referrer-Policy becomes same-origin.
    Static files keep their caching. Personal answers (:func:`_personal`) get ``no-store`` whatever
    the view said (unless it said no-store already); so does any other answer that did not choose
    its own caching (anonymous forms carry a CSRF token; error pages and redirects are not worth
    keeping). An anonymous answer that chose (the calendar feed, the API document) keeps its choice.
    """
    response.headers.update(HEADERS)
    if response.headers.get("Referrer-Policy") not in STRICTER_REFERRER_POLICIES:
        response.headers["Referrer-Policy"] = REFERRER_POLICY
    if request.endpoint in OWN_POLICIES and response.status_code == 200:
        response.headers.update(OWN_POLICIES[request.endpoint])
    if current_app.config.get("TRACKER_HSTS") and request.is_secure:
        response.headers["Strict-Transport-Security"] = HSTS
    if request.endpoint == "static" or response.cache_control.no_store:
        return response
    if "Cache-Control" not in response.headers or _personal():
        response.headers["Cache-Control"] = "no-store"
    return response


def _personal() -> bool:
    """True if the answer depends on who asks: a signed-in user, an API token, or a sign-in page."""
    return (
        request.blueprint in PRIVATE_BLUEPRINTS
        or "Authorization" in request.headers  # an API token, whether or not a route matched
        or current_user.is_authenticated
    )


def _send_response_without_server(self: WSGIRequestHandler, code: int, message: str | None = None) -> None:
    # http.server's send_response() without its "Server: Werkzeug/x Python/y" line.
    self.log_request(code)
    self.send_response_only(code, message)
    self.send_header("Date", self.date_time_string())


def _quiet_development_server() -> None:
    """`flask run`: the development server leaves the Server header to the application.

    Werkzeug's server (http.server underneath) writes its own ``Server: Werkzeug/… Python/…`` line
    before the application's headers, whatever the application sets. gunicorn 23 drops the
    application's Server header (it counts it as hop-by-hop) and writes ``Server: gunicorn``, without
    a version; nginx in front replaces either with its own.
    """
    WSGIRequestHandler.send_response = _send_response_without_server  # type: ignore[method-assign]
