"""The calendar feed: a secret URL per user serving the deadlines they own or oversee as iCalendar.

The secret is ``secrets.token_urlsafe(32)``; only its SHA-256 is stored (``User.calendar_token_hash``),
so the URL is shown once, when made, and regenerating it makes the old one stop working. The feed
lists one all-day event per open action (on its deadline) that the user owns or deputises, or for
a manager every open action of their scope: the same choice as the "My work" page.

The feed declares ``METHOD:PUBLISH``, so RFC 5545 (3.8.7.2) makes every event's DTSTAMP the time the
feed was made; LAST-MODIFIED carries the action's own change time. The ETag leaves the stamps out
(:func:`feed_etag`), so a feed whose events did not change still answers 304.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from tracker.actions.queries import assigned_filters, filtered_actions
from tracker.api.auth import hash_secret
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import ActionItem, User
from tracker.notifications.render import absolute_url, recipient_locale

#: No secret we issue is longer; longer input is refused without a query.
_SECRET_MAX = 200
#: How often calendar clients should fetch the feed again (REFRESH-INTERVAL, X-PUBLISHED-TTL).
REFRESH = timedelta(hours=1)


def create_secret(user: User) -> str:
    """Give the user a new calendar secret (the old URL stops working); returns it, shown once."""
    secret = secrets.token_urlsafe(32)
    user.calendar_token_hash = hash_secret(secret)
    db.session.flush()
    return secret


def remove_secret(user: User) -> None:
    """Turn the user's calendar URL off."""
    user.calendar_token_hash = None
    db.session.flush()


def user_for_secret(secret: str) -> User | None:
    """The active user whose calendar URL carries ``secret``; None for anything else."""
    if not secret or len(secret) > _SECRET_MAX:
        return None
    return db.session.scalar(
        sa.select(User)
        .where(User.calendar_token_hash == hash_secret(secret), User.active.is_(True))
        .options(joinedload(User.office))
    )


def feed_items(user: User, now: datetime) -> list[ActionItem]:
    """Open items the user owns or deputises (a manager: every open item of their scope), by deadline."""
    return list(db.session.scalars(filtered_actions(user, now, assigned_filters(user))))


def feed_url(secret: str) -> str:
    """The absolute URL of the feed with this secret."""
    return absolute_url("profile.calendar_feed", token=secret)


def build_feed(user: User, items: list[ActionItem], now: datetime) -> bytes:
    """The iCalendar text: one all-day VEVENT per item on its deadline, in the user's language.

    ``now`` is the feed's generation time: every event's DTSTAMP (whole seconds, in UTC).
    """
    # Imported here: icalendar takes ~0.2 s to import, which every flask command would pay.
    from icalendar import Calendar, Event, vDuration

    host = urlsplit(current_app.config["TRACKER_BASE_URL"]).hostname or "tracker"
    stamp = now.astimezone(UTC).replace(microsecond=0)
    calendar = Calendar()
    calendar.add("prodid", "-//tracker//deadlines//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    with force_locale(recipient_locale(user)):
        calendar.add("x-wr-calname", _("Deadlines of %(name)s (tracker)", name=user.name))
        calendar.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
        calendar.add("x-published-ttl", vDuration(REFRESH))  # an X- property: typed by hand
        for item in items:
            link = absolute_url("actions.detail", action_id=item.id)
            event = Event()
            # Stable per item, so that clients update the event when the deadline moves.
            event.add("uid", f"action-{item.id}@{host}")
            event.add("dtstamp", stamp)
            event.add("last-modified", item.updated_at.astimezone(UTC).replace(microsecond=0))
            event.add("sequence", item.version - 1)
            event.add("dtstart", item.deadline)
            event.add("dtend", item.deadline + timedelta(days=1))
            event.add("transp", "TRANSPARENT")  # a deadline does not make anyone busy
            event.add("summary", f"{item.office.code}: {item.title}")
            lines = [
                _(
                    "Recommendation %(code)s: %(title)s",
                    code=item.recommendation.code,
                    title=item.recommendation.title,
                ),
                _(
                    "Status: %(status)s, %(progress)d%% done",
                    status=status_label(item.status),
                    progress=item.progress,
                ),
            ]
            if item.is_overdue(now):
                lines.append(_("Overdue."))
            lines.append(link)
            event.add("description", "\n".join(lines))
            event.add("url", link)
            calendar.add_component(event)
    return calendar.to_ical()


#: The DTSTAMP lines: the only part of a feed that changes at every request.
_STAMP_LINES = re.compile(rb"^DTSTAMP:[^\r\n]*\r\n", re.MULTILINE)


def feed_etag(body: bytes) -> str:
    """A strong tag of the feed's content without its generation stamps: unchanged events, same tag."""
    return hashlib.sha256(_STAMP_LINES.sub(b"", body)).hexdigest()[:32]
