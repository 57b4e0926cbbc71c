"""Signed links for mail: one-click unsubscribe, invitations and password resets.

Tokens are signed with SECRET_KEY (itsdangerous), carry a purpose ("salt") so one kind can never
be used as another, and password tokens also carry the user's current session token so that a
link stops working once it has been used (the password change rotates it).
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

#: Kinds a user may switch off, and the preference column of each.
OPTIONAL_KINDS = {
    "due_soon": "notify_due_soon",
    "stale": "notify_stale",
    "digest": "notify_digest",
    "assignment": "notify_assignment",
    "verified": "notify_verified",
    "review_queue": "notify_review_queue",
    "indicators_due": "notify_indicators_due",
}


class InvalidToken(ValueError):  # noqa: N818 - reads better at the call sites
    """The link is tampered with, for another purpose, or expired."""


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"tracker-{purpose}")


def make(purpose: str, payload: Any) -> str:
    """Sign ``payload`` for ``purpose``."""
    return _serializer(purpose).dumps(payload)


def read(purpose: str, token: str, max_age: int | None = None) -> Any:
    """The payload of a token made for ``purpose``; raises InvalidToken otherwise."""
    try:
        return _serializer(purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise InvalidToken("expired") from None
    except BadSignature:
        raise InvalidToken("invalid") from None
