"""Mail about a person's own account and work: invitations, password resets, workflow events.

Everything goes through the outbox in the caller's transaction; the dispatcher sends it after
the commit. Links that set a password carry the user's session token, which the password
change rotates, so each link works once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ExtensionRequest,
    ExtensionState,
    NotificationKind,
    User,
    normalise_email,
)
from tracker.notifications import tokens
from tracker.notifications.outbox import enqueue
from tracker.notifications.render import absolute_url, render_email
from tracker.permissions import Perm, can

INVITATION_DAYS = 7
RESET_HOURS = 2


def _link_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


#: purpose → (endpoint of the page that takes the token, config key of its lifetime, default seconds)
PURPOSES = {
    "invite": ("notifications.welcome", "TRACKER_INVITATION_DAYS", INVITATION_DAYS * 86400),
    "reset": ("notifications.reset_password", "TRACKER_RESET_HOURS", RESET_HOURS * 3600),
}


def password_token(user: User, purpose: str) -> str:
    """A signed token that lets ``user`` set a password until they do (or it expires)."""
    return tokens.make(purpose, {"u": user.id, "s": user.session_token})


def max_age(purpose: str) -> int:
    """Seconds a link of this purpose stays valid."""
    _endpoint, key, default = PURPOSES[purpose]
    unit = 86400 if key.endswith("DAYS") else 3600
    configured = current_app.config.get(key)
    return int(configured) * unit if configured else default


def user_for_password_token(token: str, purpose: str) -> User:
    """The active user a set-password token was made for; raises tokens.InvalidToken."""
    payload = tokens.read(purpose, token, max_age=max_age(purpose))
    user = db.session.get(User, payload.get("u")) if isinstance(payload, dict) else None
    if user is None or not user.active or user.session_token != payload.get("s"):
        raise tokens.InvalidToken("used or unknown")
    return user


def send_invitation(user: User, invited_by: User, now: datetime) -> bool:
    """Queue the invitation that lets a new user choose their password."""
    token = password_token(user, "invite")
    url = absolute_url(PURPOSES["invite"][0], token=token)
    email = render_email("invitation", user, url=url, invited_by=invited_by, days=max_age("invite") // 86400)
    key = f"invitation:user{user.id}:{_link_key(token)}"
    return enqueue(NotificationKind.INVITATION, user, key, email, now)


def request_password_reset(email_address: str, now: datetime) -> bool:
    """Queue a reset link if the address belongs to an active user; says nothing either way."""
    user = db.session.scalar(sa.select(User).where(User.email == normalise_email(email_address)))
    if user is None or not user.active:
        return False
    token = password_token(user, "reset")
    url = absolute_url(PURPOSES["reset"][0], token=token)
    email = render_email("password_reset", user, url=url, hours=max_age("reset") // 3600)
    return enqueue(
        NotificationKind.PASSWORD_RESET, user, f"password_reset:user{user.id}:{_link_key(token)}", email, now
    )


def notify_assignment(items: list[ActionItem], user: User, role: str, now: datetime) -> bool:
    """Tell a new owner or deputy (``role``) of their new actions in one mail, if they want it."""
    items = [item for item in items if can(user, Perm.VIEW_ACTION, item)]
    if not items or not user.active or not user.notify_assignment:
        return False
    email = render_email("assignment", user, items=items, role=role)
    ids = ",".join(f"{item.id}.{item.version}" for item in items)
    key = f"assignment:user{user.id}:{role}:{hashlib.sha256(ids.encode()).hexdigest()[:24]}"
    return enqueue(NotificationKind.ASSIGNMENT, user, key, email, now)


def notify_review_outcome(item: ActionItem, kind: NotificationKind, note: str | None, now: datetime) -> int:
    """Tell the owner (and deputy) that a reviewer verified the item, sent it back or reopened it.

    "Sent back" and "reopened" cannot be switched off: the owner must act on them. "Verified"
    follows the recipient's preference.
    """
    sent = 0
    for person in {u for u in (item.owner, item.deputy) if u is not None}:
        if not person.active or not can(person, Perm.VIEW_ACTION, item):
            continue
        if kind == NotificationKind.VERIFIED and not person.notify_verified:
            continue
        email = render_email(kind.value, person, item=item, note=note)
        key = f"{kind.value}:user{person.id}:item{item.id}:v{item.version}"
        sent += enqueue(kind, person, key, email, now)
    return sent


def notify_extension_decision(extension: ExtensionRequest, now: datetime) -> bool:
    """Tell the person who asked for an extension what the reviewer decided (cannot be switched off)."""
    person, item = extension.requested_by, extension.action_item
    if person is None or not person.active or not can(person, Perm.VIEW_ACTION, item):
        return False
    approved = extension.state == ExtensionState.APPROVED
    email = render_email("extension_decided", person, item=item, extension=extension, approved=approved)
    key = f"extension_decided:user{person.id}:extension{extension.id}"
    return enqueue(NotificationKind.EXTENSION_DECIDED, person, key, email, now)
