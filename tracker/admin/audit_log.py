"""Reading the audit log: the filters of the admin page, one page of events, and the CSV rows.

Events are written by :func:`tracker.auth.audit.record`; this module only reads them. The page and
the CSV share one filter object and one WHERE clause, so the download holds exactly what the page
lists. Actor and subject emails come by join in the same statement, never one query per row.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import aliased, joinedload

from tracker.auth.audit import EVENTS
from tracker.extensions import db
from tracker.models import AuditEvent, User, normalise_email
from tracker.params import paginate

#: The query-string names of the filters, in the order of the form.
FILTER_NAMES = ("kind", "person", "from", "to", "address")

#: Rows fetched per round trip while a CSV streams (memory stays flat whatever the total).
CSV_BATCH = 500

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL_MAX = 254
_ADDRESS_MAX = 64


@dataclass(frozen=True)
class AuditFilters:
    """What the audit page asks for; None means "do not filter on it"."""

    kind: str | None = None
    #: A normalised email: the actor's, the subject's, or the one given at a failed sign-in.
    person: str | None = None
    #: UTC bounds: ``since`` inclusive (start of the first day), ``until`` exclusive (after the last).
    since: datetime | None = None
    until: datetime | None = None
    address: str | None = None


def kind_label(kind: str) -> str:
    """The label of an event kind in the current language (the code itself for a retired kind)."""
    label = EVENTS.get(kind)
    return str(label) if label is not None else kind


def kind_choices() -> list[tuple[str, str]]:
    """(code, label) of every kind of event, by label, for the filter's select."""
    return sorted(((kind, str(label)) for kind, label in EVENTS.items()), key=lambda c: c[1].casefold())


def read_filters(args: Mapping[str, str], zone: ZoneInfo) -> tuple[AuditFilters, dict[str, str]]:
    """The filters of a query string, dates read as days in ``zone``; with a message per bad field."""
    errors: dict[str, str] = {}

    def text(name: str, limit: int) -> str | None:
        value = (args.get(name) or "").strip()
        if len(value) > limit or _CONTROL.search(value):
            errors[name] = _("This value is too long or holds control characters.")
            return None
        return value or None

    kind = text("kind", 40)
    if kind is not None and kind not in EVENTS:
        errors["kind"] = _("Unknown kind of event; choose one from the list.")
        kind = None
    person = text("person", _EMAIL_MAX)
    address = text("address", _ADDRESS_MAX)
    if address is not None:
        try:
            address = str(ipaddress.ip_address(address))  # the form request.remote_addr takes
        except ValueError:
            errors["address"] = _("Not an IP address; write one such as 192.0.2.7 or 2001:db8::7.")
            address = None
    first, last = _day(args, "from", errors), _day(args, "to", errors)
    if first and last and last < first:
        errors["to"] = _("The last day is before the first day.")
    since = _bound(first, zone, "from", errors)
    until = _bound(last, zone, "to", errors, next_day=True)
    filters = AuditFilters(
        kind=kind,
        person=normalise_email(person) if person else None,
        since=since,
        until=until,
        address=address,
    )
    return filters, errors


def _day(args: Mapping[str, str], name: str, errors: dict[str, str]) -> date | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = _("Not a date; write it as YYYY-MM-DD, e.g. 2026-11-24.")
        return None


def _bound(
    day: date | None, zone: ZoneInfo, name: str, errors: dict[str, str], *, next_day: bool = False
) -> datetime | None:
    """Midnight at the start of ``day`` (or of the day after) in ``zone``, in UTC; None without a day."""
    if day is None or name in errors:
        return None
    try:
        if next_day:
            day += timedelta(days=1)
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    except (OverflowError, ValueError):  # the first or last representable days, shifted by the zone
        errors[name] = _("This date is out of range.")
        return None


def _where(filters: AuditFilters) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if filters.kind:
        clauses.append(AuditEvent.kind == filters.kind)
    if filters.person:
        # The account with this email (at most one: emails are unique), as actor or subject; or the
        # email typed at a failed sign-in when no account has it.
        account = sa.select(User.id).where(User.email == filters.person).scalar_subquery()
        clauses.append(
            sa.or_(
                AuditEvent.actor_id == account,
                AuditEvent.subject_id == account,
                AuditEvent.email == filters.person,
            )
        )
    if filters.since is not None:
        clauses.append(AuditEvent.at >= filters.since)
    if filters.until is not None:
        clauses.append(AuditEvent.at < filters.until)
    if filters.address:
        clauses.append(AuditEvent.address == filters.address)
    return clauses


def _newest_first() -> tuple[Any, ...]:
    return (AuditEvent.at.desc(), AuditEvent.id.desc())


def events_page(filters: AuditFilters, *, page: int, per_page: int) -> Pagination:
    """One page of events, newest first; actor and subject come in the same statement."""
    query = (
        sa.select(AuditEvent)
        .options(joinedload(AuditEvent.actor), joinedload(AuditEvent.subject))
        .where(*_where(filters))
        .order_by(*_newest_first())
    )
    return paginate(query, page=page, per_page=per_page)


def csv_header() -> list[str]:
    """The CSV's column names, in the current language."""
    return [
        _("Time (UTC)"),
        _("Kind"),
        _("Event"),
        _("Done by"),
        _("Account"),
        _("Address"),
        _("Detail"),
    ]


def csv_rows(filters: AuditFilters) -> Iterator[list[Any]]:
    """The filtered events as CSV rows, newest first, read in batches (yield_per) of CSV_BATCH.

    One SELECT with two outer joins for the emails, however many rows; "Account" is the subject's
    email, else the email typed at a failed sign-in.
    """
    actor, subject = aliased(User), aliased(User)
    query = (
        sa.select(
            AuditEvent.at,
            AuditEvent.kind,
            actor.email,
            subject.email,
            AuditEvent.email,
            AuditEvent.address,
            AuditEvent.detail,
        )
        .outerjoin(actor, AuditEvent.actor_id == actor.id)
        .outerjoin(subject, AuditEvent.subject_id == subject.id)
        .where(*_where(filters))
        .order_by(*_newest_first())
        .execution_options(yield_per=CSV_BATCH)
    )
    for at, kind, actor_email, subject_email, given_email, address, detail in db.session.execute(query):
        yield [
            at.astimezone(UTC).isoformat(timespec="seconds"),
            kind,
            kind_label(kind),
            actor_email,
            subject_email or given_email,
            address,
            detail,
        ]
