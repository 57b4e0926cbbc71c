"""The reminder rules: one small function per kind, in one table (:data:`RULES`); compose.py runs them.

Each rule reads the :class:`Context` (the candidate items with what is known about them, the
people, their calendars and absences) and yields :class:`Tell`\\ s: "tell this person this line in
today's mail of this kind", with what to record once that mail is queued (a per-item notice, an
escalation rung). The rules never write; compose.py groups the tells into one mail per recipient
and kind, queues the new ones, and records what they carried.

The rules read each candidate as an :class:`Item` (the few columns they judge by, not the ORM
object): a backlog of tens of thousands of items is judged in well under a second, and only the
items a mail lists are loaded in full, by compose.py, to be rendered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from tracker.models import ActionItem, ExtensionRequest, NotificationKind, Office, Role, Status, User
from tracker.permissions import Perm, can
from tracker.profile.absences import Away

if TYPE_CHECKING:
    from tracker.notifications.candidates import Listed
    from tracker.notifications.compose import Settings

#: The audiences a rung of TRACKER_ESCALATION_LADDER may name.
OFFICE_MANAGERS = "office_managers"
PROGRAMME_MANAGERS = "programme_managers"
REVIEWERS = "reviewers"
ADMINS = "admins"
AUDIENCES = (OFFICE_MANAGERS, PROGRAMME_MANAGERS, REVIEWERS, ADMINS)
#: ItemNotice kinds.
NOTICE_OVERDUE = "overdue"
NOTICE_STALE = "stale"


@dataclass(frozen=True)
class Rung:
    """One rung of the escalation ladder: overdue more than ``days`` → tell ``audience``."""

    days: int
    audience: str


class Item(NamedTuple):
    """An open action as the rules judge it: its id, office and the columns the rules read.

    A named tuple: tens of thousands are made per run, and a tuple is made fastest.
    """

    id: int
    office: Office
    #: The office's id and time zone, read once per office (not per item from the ORM object).
    office_id: int
    zone: ZoneInfo
    owner_id: int | None
    deputy_id: int | None
    deadline: date
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class Facts:
    """What compose read about a candidate item besides its columns."""

    #: The first overdue notice against the current deadline has been given.
    overdue_noticed: bool = False
    #: First day of the latest idle period nudged (ItemNotice "stale"), if any.
    stale_period: date | None = None
    #: Extension requests approved (read for the items an escalation mail lists).
    extensions: int = 0
    #: Rungs of the ladder already reported (Escalation.level).
    escalated: frozenset[int] = frozenset()
    #: The latest history entry: when, and its note (read for the items an escalation mail lists).
    last_update_at: datetime | None = None
    last_note: str | None = None


@dataclass(slots=True)
class Line:
    """One item in a mail, with the number of days that put it there.

    The rules make lines of :class:`Item`\\ s; compose.py swaps in the item with what the templates
    read (``candidates.Listed``) for the lines a mail lists.
    """

    item: Item | Listed | ActionItem
    #: Days left (due soon), overdue (overdue, escalation), without update (stale), waiting (review).
    days: int
    #: The date of the last update (stale, escalation), of the completion report or the request (review).
    on: date | None = None
    #: A stand-in's mail: the absent person this line is sent for, and their last day away.
    covers: User | None = None
    until: date | None = None
    #: Escalation: the rung (1-based), its days, whether its own audience had nobody to tell.
    level: int | None = None
    rung_days: int | None = None
    fell_through: bool = False
    facts: Facts | None = None
    #: Review list: the pending extension request this line is about (None: a completion).
    extension: ExtensionRequest | None = None
    #: Review list: an action its office proposed, awaiting acceptance (not a completion).
    proposed: bool = False


@dataclass(slots=True)
class Tell:
    """A line for one person's mail of one kind on their date, and what to record once it is queued."""

    kind: NotificationKind
    recipient: User
    day: date
    line: Line
    #: ItemNotice (kind, period) to write for the line's item.
    notice: tuple[str, date] | None = None
    #: Escalation rung to write for the line's item.
    escalation: int | None = None


def morning(day: date, zone: ZoneInfo, hour: int) -> datetime:
    """The moment of ``hour`` o'clock on ``day`` in ``zone``."""
    return datetime.combine(day, time(hour), tzinfo=zone)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The date it is in ``zone`` at ``moment``."""
    return moment.astimezone(zone).date()


class Calendar:
    """Each recipient's local date and morning, computed once per run."""

    def __init__(self, now: datetime, today: date | None, hour: int) -> None:
        self.now, self.today, self.hour = now, today, hour
        self._days: dict[int, tuple[date, datetime] | None] = {}
        self._office_days: dict[int, date | None] = {}

    def day_of(self, user: User) -> tuple[date, datetime] | None:
        """(their date, its morning) if their morning has come (always with a forced ``today``)."""
        if user.id not in self._days:
            zone = user.zone
            day = self.today or local_date(self.now, zone)
            moment = morning(day, zone, self.hour)
            self._days[user.id] = (day, moment) if self.today or self.now >= moment else None
        return self._days[user.id]

    def date_of(self, user: User) -> date:
        """Their local date now (or the forced ``today``), morning or not."""
        return self.today or local_date(self.now, user.zone)

    def office_day(self, office: Office) -> date | None:
        """The office's date if its morning has come (the moment escalations are judged)."""
        if office.id not in self._office_days:
            zone = ZoneInfo(office.timezone)
            day = self.today or local_date(self.now, zone)
            come = self.today or self.now >= morning(day, zone, self.hour)
            self._office_days[office.id] = day if come else None
        return self._office_days[office.id]

    def span(self) -> tuple[date, date]:
        """Every date anyone can be on during this run (for reading absences in one query)."""
        if self.today is not None:
            return self.today, self.today
        return self.now.date() - timedelta(days=1), self.now.date() + timedelta(days=1)

    def absences_span(self) -> tuple[date, date]:
        """The span of absences to read: today's, and a year ahead to tell until when one lasts."""
        first, last = self.span()
        return first, last + timedelta(days=366)


class Absences(Away):
    """:class:`Away`, also answering until when an absence lasts (absences that touch count as one)."""

    def until(self, user_id: int, day: date) -> date:
        """The last day of the absence covering ``day`` (``day`` itself if none)."""
        last = day
        for starts_on, ends_on in sorted(self._spans.get(user_id, ())):
            if starts_on <= last + timedelta(days=1) and ends_on > last:
                last = ends_on
        return last


@dataclass
class Context:
    """Everything the rules read: settings, calendars, people, absences and the candidate items."""

    settings: Settings
    calendar: Calendar
    users: dict[int, User]
    away: Absences
    items: list[tuple[Item, Facts]]
    #: Loaders for the review list, called only when some reviewer's morning has come.
    load_completions: Callable[[], list[tuple[Item, datetime | None]]]
    load_extensions: Callable[[], list[ExtensionRequest]]
    #: Every office by id.
    offices: dict[int, Office] = field(default_factory=dict)
    _by_office_role: dict[tuple[int | None, str], list[User]] = field(default_factory=dict)
    #: Answers asked once per run: permissions per (person, permission, office), each item's
    #: recipients with their mornings, each (office, rung)'s audience.
    _allowed: dict[tuple[int, Perm, int], bool] = field(default_factory=dict)
    _mornings: dict[tuple[int, int | None, int | None], list[tuple[User, User | None, date, date]]] = field(
        default_factory=dict
    )
    _audiences: dict[tuple[int, int], tuple[list[User], bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[tuple[int | None, str], list[User]] = defaultdict(list)
        for user in self.users.values():
            index[(user.office_id, user.role)].append(user)
        self._by_office_role = dict(index)

    def people(self, office_id: int | None, role: Role) -> list[User]:
        """Active users of a role in an office (``None``: programme-wide)."""
        return self._by_office_role.get((office_id, role.value), [])

    def role(self, role: Role) -> list[User]:
        """Active users of a role, wherever they are."""
        return [u for (_office, r), users in self._by_office_role.items() if r == role.value for u in users]

    def may(self, person: User, perm: Perm, item: Item | ActionItem) -> bool:
        """``can(person, perm, item)``, asked once per person, permission and office.

        What a person may do to an action depends on its office alone (``permissions.office_of``),
        so the item's office answers for it; a backlog has thousands of items per office.
        """
        key = (person.id, perm, item.office_id)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = self._allowed[key] = can(person, perm, item.office)
        return allowed

    def is_away(self, user: User) -> bool:
        """Is the person away on their own date today?"""
        return self.away.is_away(user.id, self.calendar.date_of(user))

    def responsible(self, item: Item) -> list[User]:
        """Who is reminded about ``item``: owner, else deputy, else the office's managers (if allowed)."""
        for person_id in (item.owner_id, item.deputy_id):
            person = self.users.get(person_id) if person_id else None
            if person is not None and self.may(person, Perm.VIEW_ACTION, item):
                return [person]
        return [m for m in self.people(item.office_id, Role.MANAGER) if self.may(m, Perm.VIEW_ACTION, item)]

    def stand_ins(self, item: Item, absent: User) -> list[User]:
        """Who covers ``absent`` for ``item``: the deputy if here, else the office's other focal points."""
        deputy = self.users.get(item.deputy_id) if item.deputy_id else None
        if deputy is not None and deputy.id != absent.id and self._can_cover(deputy, item):
            return [deputy]
        return [
            p
            for p in self.people(item.office_id, Role.FOCAL_POINT)
            if p.id not in (absent.id, item.owner_id) and self._can_cover(p, item)
        ]

    def _can_cover(self, person: User, item: Item) -> bool:
        return self.may(person, Perm.VIEW_ACTION, item) and not self.is_away(person)

    def route(self, item: Item) -> list[tuple[User, User | None]]:
        """(recipient, the absent person they cover or None) for the reminders about ``item``.

        An absent recipient's reminders go to their stand-ins; with nobody to stand in, to them.
        """
        routed: dict[int, tuple[User, User | None]] = {}
        for person in self.responsible(item):
            covering = self.stand_ins(item, person) if self.is_away(person) else []
            for one in covering or [person]:
                routed.setdefault(one.id, (one, person if covering else None))
        return list(routed.values())

    def mornings(self, item: Item) -> list[tuple[User, User | None, date, date]]:
        """(recipient, covered, their date, the office's date at their morning) once their morning came.

        Worked out once per office, owner and deputy (all the route depends on): three rules ask it
        of every candidate, and a backlog has thousands of items per owner.
        """
        key = (item.office_id, item.owner_id, item.deputy_id)
        found = self._mornings.get(key)
        if found is None:
            found = self._mornings[key] = []
            for person, covers in self.route(item):
                if (when := self.calendar.day_of(person)) is not None:
                    day, moment = when
                    found.append((person, covers, day, local_date(moment, item.zone)))
        return found

    def line(self, item: Item, days: int, covers: User | None, **extra: Any) -> Line:
        """A line, saying whom it covers for a stand-in."""
        until = self.away.until(covers.id, self.calendar.date_of(covers)) if covers else None
        return Line(item, days, covers=covers, until=until, **extra)

    def audience(self, name: str, item: Item) -> list[User]:
        """The people of one escalation audience who may see ``item`` and are not away."""
        if name == OFFICE_MANAGERS:
            people = self.people(item.office_id, Role.MANAGER)
        elif name == PROGRAMME_MANAGERS:
            people = self.people(None, Role.MANAGER)
        elif name == REVIEWERS:
            people = self.role(Role.REVIEWER)
        else:
            people = self.role(Role.ADMIN)
        return [p for p in people if self.may(p, Perm.VIEW_ACTION, item) and not self.is_away(p)]

    def escalation_audience(self, item: Item, level: int) -> tuple[list[User], bool]:
        """Who hears of rung ``level``: its audience, else the next rungs', else the admins; fell through?

        The same for every item of an office (asked once per office and rung).
        """
        key = (item.office_id, level)
        if key not in self._audiences:
            self._audiences[key] = self._escalation_audience(item, level)
        return self._audiences[key]

    def _escalation_audience(self, item: Item, level: int) -> tuple[list[User], bool]:
        ladder = self.settings.escalation_ladder
        for name in [rung.audience for rung in ladder[level - 1 :]] + [ADMINS]:
            people = self.audience(name, item)
            if people:
                return people, name != ladder[level - 1].audience
        return [], False


# --- the rules -----------------------------------------------------------------------------------------


def due_soon(ctx: Context) -> Iterator[Tell]:
    """An open item whose deadline is n days ahead, n in TRACKER_DUE_SOON_DAYS."""
    for item, _facts in ctx.items:
        for person, covers, day, office_day in ctx.mornings(item):
            left = (item.deadline - office_day).days
            if left in ctx.settings.due_soon_days and person.notify_due_soon:
                yield Tell(NotificationKind.DUE_SOON, person, day, ctx.line(item, left, covers))


def overdue(ctx: Context) -> Iterator[Tell]:
    """n days overdue: the first notice on the first run after the deadline, then on n = 1 + k × repeat."""
    repeat = ctx.settings.overdue_repeat_days
    for item, facts in ctx.items:
        for person, covers, day, office_day in ctx.mornings(item):
            days = (office_day - item.deadline).days
            if days < 1:
                continue
            first = not facts.overdue_noticed and days <= repeat  # later, the repeats catch it
            if first or (days - 1) % repeat == 0:
                line = ctx.line(item, days, covers)
                yield Tell(
                    NotificationKind.OVERDUE, person, day, line, notice=(NOTICE_OVERDUE, item.deadline)
                )


def stale(ctx: Context) -> Iterator[Tell]:
    """No update for TRACKER_STALE_DAYS days, then each TRACKER_STALE_REPEAT_DAYS: one nudge per period."""
    first, repeat = ctx.settings.stale_days, ctx.settings.stale_repeat_days
    for item, facts in ctx.items:
        updated_on = local_date(item.updated_at, item.zone)
        for person, covers, day, office_day in ctx.mornings(item):
            age = (office_day - updated_on).days
            if age < first or not person.notify_stale:
                continue
            period = updated_on + timedelta(days=first + (age - first) // repeat * repeat)
            if facts.stale_period is None or facts.stale_period < period:
                line = ctx.line(item, age, covers, on=updated_on)
                yield Tell(NotificationKind.STALE, person, day, line, notice=(NOTICE_STALE, period))


def escalation(ctx: Context) -> Iterator[Tell]:
    """Overdue more than a rung's days and not yet reported at that rung: its audience (or the next)."""
    for item, facts in ctx.items:
        office_day = ctx.calendar.office_day(item.office)
        if office_day is None:
            continue  # judged at the office's morning
        days = (office_day - item.deadline).days
        for level, rung in enumerate(ctx.settings.escalation_ladder, start=1):
            if days <= rung.days or level in facts.escalated:
                continue
            people, fell_through = ctx.escalation_audience(item, level)
            # The last update (``on``) and the extensions are read for the lines a mail lists.
            line = Line(item, days, level=level, rung_days=rung.days, fell_through=fell_through, facts=facts)
            for person in people:
                yield Tell(
                    NotificationKind.ESCALATION, person, ctx.calendar.date_of(person), line, escalation=level
                )


def review_queue(ctx: Context) -> Iterator[Tell]:
    """Each reviewer here today: completions awaiting verification, actions proposed by offices and
    pending extension requests."""
    reviewers = [
        (user, found)
        for user in ctx.role(Role.REVIEWER)
        if user.notify_review_queue and (found := ctx.calendar.day_of(user)) and not ctx.is_away(user)
    ]
    if not reviewers:
        return
    completions, extensions = ctx.load_completions(), ctx.load_extensions()
    for reviewer, (day, _moment) in reviewers:
        zone = reviewer.zone
        for item, reported_at in completions:
            proposed = item.status == Status.PROPOSED
            if ctx.may(reviewer, Perm.DECIDE_PROPOSAL if proposed else Perm.VERIFY_ACTION, item):
                on = local_date(reported_at or item.updated_at, zone)
                line = Line(item, (day - on).days, on, proposed=proposed)
                yield Tell(NotificationKind.REVIEW_QUEUE, reviewer, day, line)
        for request in extensions:
            if can(reviewer, Perm.DECIDE_EXTENSION, request):
                on = local_date(request.requested_at, zone)
                line = Line(request.action_item, (day - on).days, on, extension=request)
                yield Tell(NotificationKind.REVIEW_QUEUE, reviewer, day, line)


@dataclass(frozen=True)
class Rule:
    """A reminder kind: the function that finds its tells, and the order of a mail's lines."""

    kind: NotificationKind
    find: Callable[[Context], Iterator[Tell]]
    order: Callable[[Line], tuple[Any, ...]]


def _by_deadline(line: Line) -> tuple[Any, ...]:
    return (line.item.deadline, line.item.office.code, line.item.id)


def _longest_first(line: Line) -> tuple[Any, ...]:
    return (line.extension is not None, line.proposed, -line.days, line.item.office.code, line.item.id)


#: Every daily reminder kind, in the order compose runs them.
RULES: tuple[Rule, ...] = (
    Rule(NotificationKind.DUE_SOON, due_soon, _by_deadline),
    Rule(NotificationKind.OVERDUE, overdue, _by_deadline),
    Rule(NotificationKind.ESCALATION, escalation, _by_deadline),
    Rule(NotificationKind.STALE, stale, _longest_first),
    Rule(NotificationKind.REVIEW_QUEUE, review_queue, _longest_first),
)
