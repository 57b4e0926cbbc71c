"""Mail about a person's own account and work: invitations, password resets, workflow events.

Everything goes through the outbox in the caller's transaction; the dispatcher sends it after
the commit. Links that set a password carry the user's session token, which the password
change rotates, so each link works once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects.postgresql import ARRAY

from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ExtensionRequest,
    ExtensionState,
    NotificationKind,
    Office,
    Recommendation,
    User,
    normalise_email,
)
from tracker.notifications import candidates, tokens
from tracker.notifications.digest import LIST_LIMIT
from tracker.notifications.outbox import Email, enqueue
from tracker.notifications.render import absolute_url, links, render_email, render_fitting
from tracker.permissions import Perm, can, office_scope_clause

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


def notify_assignment(
    items: Sequence[ActionItem], user: User, role: str, now: datetime, *, ids: Sequence[int] = ()
) -> bool:
    """Tell a new owner or deputy (``role``) of their new actions in one mail, if they want it.

    ``items`` are actions at hand; ``ids`` those written without being loaded (an import's new
    actions). The mail counts every one the person may see and lists at most
    :data:`LIST_LIMIT`, the earliest deadlines first, then "… and N more" with a link to a list
    that shows them (see :class:`Assigned`).
    """
    if not user.active or not user.notify_assignment or not (items or ids):
        return False
    assigned = Assigned.gather(items, user, ids)
    if not assigned.total:
        return False
    email = assigned.render(role)
    key = f"assignment:user{user.id}:{role}:{assigned.fingerprint}"
    return enqueue(NotificationKind.ASSIGNMENT, user, key, email, now)


@dataclass
class Assigned:
    """What an assignment mail reports: how many actions, of which offices, and the ones it lists.

    Built in a bounded number of statements whatever the number of actions: the actions at hand
    are judged in memory (``can``), those given by id in the database with the list clause of
    ``permissions`` (their ids sent as one parameter): one count by office, the first
    :data:`LIST_LIMIT` by deadline, and what the mail shows of those. Only the listed ones are
    rendered, each link a prefix and an id (``render.Links``).
    """

    user: User
    total: int
    #: The office codes of every action reported, sorted.
    offices: list[str]
    #: Those listed, the earliest deadline first (ActionItem or ``candidates.Listed``).
    listed: list[Any]
    #: Identifies the set of assignments (for the idempotency key).
    fingerprint: str

    @classmethod
    def gather(cls, items: Sequence[ActionItem], user: User, ids: Sequence[int]) -> Assigned:
        """The assignments of ``items`` and ``ids`` that ``user`` may see (see the class)."""
        at_hand = [item for item in items if can(user, Perm.VIEW_ACTION, item)]
        offices = {item.office_id for item in at_hand}
        total = len(at_hand)
        by_deadline = sorted(at_hand, key=lambda item: (item.deadline, item.id))[:LIST_LIMIT]
        loaded = {item.id for item in items}
        unloaded = [item_id for item_id in dict.fromkeys(ids) if item_id not in loaded]
        firsts: list[tuple[date, int]] = []
        if unloaded:
            terms = (_one_of(ActionItem.id, unloaded), office_scope_clause(user, ActionItem.office_id))
            counted = (
                sa.select(ActionItem.office_id, sa.func.count()).where(*terms).group_by(ActionItem.office_id)
            )
            for office_id, number in db.session.execute(counted):
                offices.add(office_id)
                total += number
            first = sa.select(ActionItem.deadline, ActionItem.id).where(*terms)
            firsts = [tuple(row) for row in db.session.execute(first.order_by(*_ORDER).limit(LIST_LIMIT))]
        # The earliest of both kinds; those given by id are then read for what the mail shows.
        chosen = sorted([*((i.deadline, i.id, i) for i in by_deadline), *((d, i, None) for d, i in firsts)])
        chosen = chosen[:LIST_LIMIT]
        office_rows = {office_id: db.session.get(Office, office_id) for office_id in offices}
        shown = candidates.details({i for _d, i, item in chosen if item is None}, set(), office_rows)
        listed = [item if item is not None else shown[i].item for _d, i, item in chosen]
        # New ids are never used again; an action at hand may come back to the same person (its version).
        keys = ",".join([*(f"{i.id}.{i.version}" for i in at_hand), *map(str, unloaded)])
        return cls(
            user=user,
            total=total,
            offices=sorted(office.code for office in office_rows.values()),
            listed=listed,
            fingerprint=hashlib.sha256(keys.encode()).hexdigest()[:24],
        )

    def more_url(self, role: str) -> str:
        """The list that shows what the mail counts beyond the ones it lists, from TRACKER_BASE_URL.

        An owner's: the Actions list of their actions (of the one office, when all are of one);
        a deputy's (the list has no deputy filter): My work, which shows what they deputise.
        """
        site = links()
        if role != "owner":
            return site.url("actions.my_work")
        filters = {"office": self.offices[0]} if len(self.offices) == 1 else {}
        return site.actions_list(**filters, owner=self.user.email)

    def render(self, role: str) -> Email:
        """The mail, listing as many as fit within ``render.MAIL_BYTES`` (at most LIST_LIMIT)."""

        def render(count: int) -> Email:
            more = self.total - count
            return render_email(
                "assignment",
                self.user,
                items=self.listed[:count],
                role=role,
                total=self.total,
                offices=", ".join(self.offices),
                more=more,
                more_url=self.more_url(role) if more else None,
            )

        return render_fitting(render, len(self.listed))[0]


#: The order an assignment mail lists actions in: the earliest deadline first.
_ORDER = (ActionItem.deadline, ActionItem.id)


def _one_of(column: sa.ColumnElement[int], values: Sequence[int]) -> sa.ColumnElement[bool]:
    """``column IN values`` with the values bound as one parameter (a PostgreSQL array, a JSON text
    on SQLite): one statement whatever their number, under any database's parameter limit."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam("one_of", list(values), type_=ARRAY(sa.Integer)))
    listed = sa.func.json_each(sa.bindparam("one_of", json.dumps(list(values)), type_=sa.Text)).table_valued(
        "value"
    )
    return column.in_(sa.select(listed.c.value))


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


def notify_proposal_decision(
    item: ActionItem, proposer: User, accepted: bool, note: str | None, now: datetime
) -> bool:
    """Tell the person who proposed an action whether a reviewer accepted or declined it (cannot be
    switched off, like an extension's decision)."""
    if not proposer.active or not can(proposer, Perm.VIEW_ACTION, item):
        return False
    email = render_email("proposal_decided", proposer, item=item, accepted=accepted, note=note)
    key = f"proposal_decided:user{proposer.id}:item{item.id}"
    return enqueue(NotificationKind.PROPOSAL_DECIDED, proposer, key, email, now)


def notify_response_request(
    person: User,
    recommendation: Recommendation,
    office: Office,
    item: ActionItem | None,
    sender: User,
    now: datetime,
) -> bool:
    """Ask a focal point for their office's response to a recommendation, with a link to give it
    (and the first action drafted for the office, if any). Cannot be switched off: it asks for work."""
    if not person.active or not can(person, Perm.RESPOND, office):
        return False
    email = render_email(
        "response_request", person, recommendation=recommendation, office=office, item=item, sender=sender
    )
    key = f"response_request:user{person.id}:recommendation{recommendation.id}:office{office.id}"
    return enqueue(NotificationKind.RESPONSE_REQUEST, person, key, email, now)
