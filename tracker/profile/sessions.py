"""Where you are signed in: a person's open sessions as the profile page lists them, and ending them.

The sessions themselves live in :mod:`tracker.auth.sessions`; this module describes them for
people (which browser on which system, from where, since when) and ends them on the person's
request, recording each ending in the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _

from tracker.auth import audit, sessions
from tracker.models import User, UserSession

#: Browsers, most specific first: several name others in their user agent (Edge says Chrome and
#: Safari too, Chrome says Safari). Each: the name shown, the token that carries its version.
_BROWSERS = (
    ("Edge", r"Edg(?:e|A|iOS)?/(\d+)"),
    ("Opera", r"(?:OPR|Opera)/(\d+)"),
    ("Samsung Internet", r"SamsungBrowser/(\d+)"),
    ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"),
    ("Chrome", r"(?:Chrome|CriOS)/(\d+)"),
    ("Safari", r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"),
    ("Internet Explorer", r"(?:MSIE |Trident/.*rv:)(\d+)"),
)
#: Operating systems, most specific first (Android and ChromeOS say Linux, iOS says "like Mac OS X").
_SYSTEMS = (
    ("iPhone", r"iPhone"),
    ("iPad", r"iPad"),
    ("Android", r"Android"),
    ("ChromeOS", r"CrOS"),
    ("Windows", r"Windows"),
    ("macOS", r"Macintosh|Mac OS X"),
    ("Linux", r"Linux|X11"),
)
#: A program that names itself first (curl/8.5, python-requests/2.31): its name and major version.
_PRODUCT = re.compile(r"([A-Za-z][\w.+-]{0,40})/(\d+)")


def browser_summary(user_agent: str | None) -> str:
    """A readable name for the browser a session was opened with: "Firefox 128 on Windows"."""
    agent = (user_agent or "").strip()
    if not agent:
        return _("Unknown browser")
    browser = None
    for name, pattern in _BROWSERS:
        found = re.search(pattern, agent)
        if found:
            browser = f"{name} {found.group(1)}"
            break
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, agent)), None)
    if browser is None:
        product = _PRODUCT.match(agent)
        if product is None:
            return _("Unknown browser")
        browser = f"{product.group(1)} {product.group(2)}"
    if system is None:
        return browser
    return _("%(browser)s on %(system)s", browser=browser, system=system)


@dataclass(frozen=True)
class SignedIn:
    """One open session as the profile lists it."""

    id: int
    browser: str
    address: str | None
    created_at: datetime
    last_seen_at: datetime
    remember: bool
    method: str
    #: The session of the request that shows the list.
    current: bool


def listing(user: User, now: datetime) -> list[SignedIn]:
    """The person's open sessions, this one first, then the most recently used (one query)."""
    current = sessions.current_id()
    rows = [
        SignedIn(
            id=row.id,
            browser=browser_summary(row.user_agent),
            address=row.address,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            remember=row.remember,
            method=row.method,
            current=row.id == current,
        )
        for row in sessions.open_sessions(user, now)
    ]
    return sorted(rows, key=lambda row: not row.current)  # stable: the rest keep their order


def get_own(user: User, session_id: int, now: datetime) -> UserSession | None:
    """One of ``user``'s sessions that can still be used; None if missing, ended, lapsed or another's."""
    row = sessions.get_open(user, session_id)
    if row is None or sessions.lapse_reason(row, now) is not None:
        return None
    return row


def end_session(actor: User, row: UserSession, now: datetime) -> None:
    """End one of the actor's own sessions (its cookie opens nothing afterwards); audit-logged."""
    if row.user_id != actor.id:  # the view asks get_own first; this guard keeps the rule here too
        raise ValueError("a person ends only their own sessions")
    sessions.end(row, "ended_by_user", now)
    audit.record(
        "session_ended",
        now,
        actor=actor,
        subject=actor,
        detail=f"ended by the person: session #{row.id} from {row.address or 'an unknown address'}",
    )


def end_other_sessions(actor: User, now: datetime) -> int:
    """End every open session of the actor except the one of this request; returns how many ended."""
    keep = sessions.current_id()
    if keep is None:  # outside a signed-in session "the others" would be all of them
        raise RuntimeError("end_other_sessions needs a request made in a session")
    count = sessions.end_all(actor, "ended_by_user", now, keep=keep)
    if count:
        audit.record(
            "session_ended",
            now,
            actor=actor,
            subject=actor,
            detail=f"ended by the person: all {count} other sessions (kept #{keep})",
        )
    return count
