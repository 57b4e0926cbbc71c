"""Planning an import: what each row creates, updates or leaves alone, and every problem; writes nothing.

An import goes through three steps, each usable alone (the web preview, the confirmation, the CLI):

1. :func:`tracker.transfer.read.open_table` checks the file's real type (by its first bytes, not its
   name), its size and its number of rows, decodes it and returns its rows keyed by column name;
2. :func:`plan_import` validates every row against the database and decides, for each
   recommendation and each action, whether it is created, updated or left alone, listing every
   problem with its row and column; it writes nothing;
3. :func:`tracker.transfer.apply.rehearse` runs the rows through the action commands and the
   recommendation service inside a savepoint that it rolls back, adding what they refuse to the
   problems (the preview); :func:`tracker.transfer.apply.apply_import` runs them the same way and
   keeps the writes only if none is refused; the caller commits once, so that all rows are
   written or none.

Decisions (see also the README of the feature in the report templates, and the docstrings of
:mod:`tracker.transfer.columns`, :mod:`tracker.transfer.read` and :mod:`tracker.transfer.apply`):

- Recommendations are keyed by code; their source must already exist (matched by its exact title,
  else case-insensitively): an unknown source is a problem, not a new source, because sources carry
  dates and places that an import cannot give.
- Actions are keyed by ``action_id`` when it is given (it must belong to that office and
  recommendation), else by (recommendation, office, action title).
- An empty cell, or a column that is absent, leaves the value as it is: a file may carry only the
  columns it changes, and a template filled in part clears nothing. Clearing a description or a
  deputy is done on the action's page, not by import.
- The agreed deadline (the plan's baseline) is set when an action is created (default: its
  deadline) and never changes by import: a different one on an existing action is a problem. A
  different current deadline is a reviewer's deadline change, applied through the commands.
- This module checks the file's form and what the rows refer to. Whether a change is allowed
  (workflow moves, owners, deadlines, permissions) is decided by the commands themselves:
  :func:`tracker.transfer.apply.rehearse` runs them for the preview and lists their refusals.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from babel import Locale
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from tracker.batches import chunks, size
from tracker.extensions import db
from tracker.labels import priority_label, status_label
from tracker.models import ActionItem, Office, Priority, Recommendation, Source, Status, User
from tracker.offices.services import may_be_assigned
from tracker.transfer.cells import _Parsed, _RowParser
from tracker.transfer.columns import COLUMNS
from tracker.transfer.read import Table

CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"
#: What a row keeps of its cells once they are typed: nothing (a large file's rows are many).
_NO_CELLS: dict[str, Any] = {}
KINDS = (CREATE, UPDATE, UNCHANGED)
#: Changes the command line lists one by one (the counts cover them all): a file of 100,000 new
#: actions is summed up, not printed.
DESCRIBED = 200


@dataclass(frozen=True)
class Problem:
    """Why a row cannot be imported: its row number (None for the whole file), column and message."""

    row: int | None
    column: str | None
    message: str


@dataclass
class RecommendationChange:
    """What the import does to one recommendation (defined by one or more rows)."""

    row: int
    code: str
    kind: str
    title: str
    recommendation: Recommendation | None = None
    #: Attribute → new value: every attribute for a creation, the changed ones for an update.
    values: dict[str, Any] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    #: The numbers of the rows that define or mention it.
    rows: list[int] = field(default_factory=list)


@dataclass(slots=True)
class ActionChange:
    """What the import does to one action (one row)."""

    row: int
    code: str
    office: Office
    kind: str
    title: str
    item: ActionItem | None = None
    values: dict[str, Any] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    #: The existing action's id (kept apart from ``item``, which a rehearsal leaves expired).
    item_id: int | None = None


@dataclass
class ImportPlan:
    """Everything an import would do, and every problem that stops it."""

    filename: str
    rows: int
    recommendations: list[RecommendationChange] = field(default_factory=list)
    actions: list[ActionChange] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, what: str, kind: str) -> int:
        """How many recommendations or actions (``what``) are created, updated or unchanged."""
        return sum(1 for c in getattr(self, what) if c.kind == kind)

    def sample(self, what: str, kind: str, limit: int) -> list[Any]:
        """The first ``limit`` recommendations or actions of one kind, for the preview."""
        return [c for c in getattr(self, what) if c.kind == kind][:limit]

    @property
    def problem_count(self) -> int:
        """How many problems there are (a background preview keeps only the first ones)."""
        return len(self.problems)

    @property
    def changes_anything(self) -> bool:
        """True if applying the plan would write something."""
        return any(c.kind != UNCHANGED for c in [*self.recommendations, *self.actions])


def ordered(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in the order the preview lists them: by row, then by column as the file has them."""
    order = {c: i for i, c in enumerate(COLUMNS)}
    return sorted(problems, key=lambda p: (p.row or 0, order.get(p.column or "", -1), p.message))


def plan_import(table: Table, date_locale: Locale | str | None = None) -> ImportPlan:
    """Validate every row and decide what to create, update or leave alone; writes nothing.

    ``date_locale`` (the importing person's, see cells.reader_locale) says how 04/05/2027 reads.
    """
    with no_cycle_collection():
        return _Planner(table, date_locale).plan()


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector: with the hundreds of thousands of rows of a large file held,
    each of its passes walks them all again, and they hold no cyclic garbage (it costs a third of
    the time). Memory is still freed by reference counting."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_recommendations(codes: Iterable[str]) -> list[Recommendation]:
    """The recommendations with these codes, with their sources (a few statements at most)."""
    found: list[Recommendation] = []
    for chunk in _chunks(sorted(codes)):
        found.extend(
            db.session.scalars(
                sa.select(Recommendation)
                .where(Recommendation.code.in_(chunk))
                .options(joinedload(Recommendation.source))
            )
        )
    return found


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    """IN lists of a bounded size (tracker.batches): the file's size does not make a statement grow."""
    return chunks(values, size())


def _norm(value: Any) -> Any:
    """Text compared the way an import writes it: line breaks unified, outer spaces trimmed."""
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n").strip()
    return value


def _person(user: User | None) -> str:
    return user.name if user is not None else _("nobody")


class _Planner(_RowParser):
    """Validates rows and plans the changes; holds the lookups loaded for the file."""

    def __init__(self, table: Table, date_locale: Locale | str | None = None) -> None:
        self.table = table
        self.problems: list[Problem] = []
        super().__init__(date_locale)

    def problem(self, parsed: _Parsed | None, column: str | None, message: str) -> None:
        """Record a problem at a row and column."""
        self.problems.append(Problem(parsed.row.number if parsed else None, column, message))
        if parsed is not None and column:
            parsed.bad.add(column)

    def plan(self) -> ImportPlan:
        """Parse every row, load what they refer to in a few statements, and decide."""
        parsed = []
        for row in self.table.rows:  # read from the file as they come; only the typed values stay
            parsed.append(self._parse(row))
            row.cells = _NO_CELLS
        self._load(parsed)
        plan = ImportPlan(filename=self.table.filename, rows=len(parsed), warnings=list(self.table.warnings))
        plan.recommendations = self._plan_recommendations(parsed)
        plan.actions = self._plan_actions(parsed)
        plan.problems = ordered(self.problems)
        return plan

    # -- looking things up --

    def _load(self, parsed: list[_Parsed]) -> None:
        """Load the offices, sources, recommendations, people and actions the rows refer to."""
        self.offices = {o.code: o for o in db.session.scalars(sa.select(Office))}
        self.sources = list(db.session.scalars(sa.select(Source)))
        self.recommendations = {r.code: r for r in _load_recommendations({p.code for p in parsed if p.code})}
        emails = sorted(
            {
                p.values[c]
                for p in parsed
                if p.is_action
                for c in ("owner_email", "deputy_email")
                if p.values[c]
            }
        )
        self.users: dict[str, User] = {}
        for chunk in _chunks(emails):
            self.users.update(
                (u.email, u) for u in db.session.scalars(sa.select(User).where(User.email.in_(chunk)))
            )
        # Every action of the file's recommendations by (recommendation, office, title), as ids: rows
        # without an action_id are matched so; only the actions the rows name are read whole.
        self.by_key: dict[tuple[int, int, str], list[int]] = {}
        rec_ids = sorted(r.id for r in self.recommendations.values())
        for chunk in _chunks(rec_ids):
            for item_id, rec_id, office_id, title in db.session.execute(
                sa.select(
                    ActionItem.id, ActionItem.recommendation_id, ActionItem.office_id, ActionItem.title
                ).where(ActionItem.recommendation_id.in_(chunk))
            ):
                self.by_key.setdefault((rec_id, office_id, _norm(title)), []).append(item_id)
        for found in self.by_key.values():
            found.sort()
        wanted = {p.values["action_id"] for p in parsed if p.is_action and p.values["action_id"]}
        for p in parsed:
            if p.is_action and not p.values["action_id"] and p.values["title"]:
                recommendation = self.recommendations.get(p.code or "")
                office = self.offices.get(p.values["office_code"] or "")
                if recommendation is not None and office is not None:
                    key = (recommendation.id, office.id, _norm(p.values["title"]))
                    wanted.update(self.by_key.get(key, ()))
        self.items: dict[int, ActionItem] = {}
        for chunk in _chunks(sorted(wanted)):
            for item in db.session.scalars(
                sa.select(ActionItem)
                .where(ActionItem.id.in_(chunk))
                .options(
                    joinedload(ActionItem.owner),
                    joinedload(ActionItem.deputy),
                    joinedload(ActionItem.recommendation),
                )
            ):
                self.items[item.id] = item

    def _source(self, p: _Parsed, title: str) -> Source | None:
        exact = [s for s in self.sources if s.title == title]
        close = exact or [s for s in self.sources if s.title.casefold() == title.casefold()]
        if len(close) == 1:
            return close[0]
        self.problem(
            p, "source", _("Unknown source %(title)s: add it on the sources page first.", title=title)
        )
        return None

    # -- recommendations --

    def _plan_recommendations(self, parsed: list[_Parsed]) -> list[RecommendationChange]:
        groups: dict[str, list[_Parsed]] = {}
        for p in parsed:
            if p.code:
                groups.setdefault(p.code, []).append(p)
        changes = []
        for code, group in groups.items():
            merged: dict[str, Any] = {}
            origin: dict[str, int] = {}
            defined_in: int | None = None
            for p in group:
                if not p.is_action:
                    if defined_in is not None:
                        self.problem(
                            p,
                            "recommendation_code",
                            _(
                                "Duplicate: recommendation %(code)s is already defined in row %(row)d.",
                                code=code,
                                row=defined_in,
                            ),
                        )
                    else:
                        defined_in = p.row.number
                if "source" in p.rec:
                    source = self._source(p, p.rec.pop("source"))
                    if source is not None:
                        p.rec["source"] = source
                for column, value in p.rec.items():
                    if column not in merged:
                        merged[column], origin[column] = value, p.row.number
                    elif _norm(merged[column]) != _norm(value):
                        self.problem(
                            p,
                            column,
                            _(
                                "Differs from row %(row)d for the same recommendation %(code)s.",
                                row=origin[column],
                                code=code,
                            ),
                        )
            change = self._recommendation_change(code, group, merged)
            change.rows = [p.row.number for p in group]
            changes.append(change)
        return changes

    def _recommendation_change(
        self, code: str, group: list[_Parsed], merged: dict[str, Any]
    ) -> RecommendationChange:
        first = group[0]
        existing = self.recommendations.get(code)
        attributes = {
            "recommendation_title": "title",
            "recommendation_text": "text",
            "theme": "theme",
            "priority": "priority",
            "source": "source",
        }
        if existing is None:
            for column in ("recommendation_title", "recommendation_text", "theme", "source"):
                if column not in merged and not any(column in p.bad for p in group):
                    self.problem(first, column, _("Required for a new recommendation (%(code)s).", code=code))
            values = {attributes[c]: v for c, v in merged.items()}
            values.setdefault("priority", Priority.MEDIUM.value)
            return RecommendationChange(
                first.row.number, code, CREATE, merged.get("recommendation_title", ""), None, values
            )
        values: dict[str, Any] = {}
        changes: list[str] = []
        for column, value in merged.items():
            attribute = attributes[column]
            if column == "source":
                if value.id != existing.source_id:
                    values["source"] = value
                    changes.append(_("Source: %(old)s → %(new)s", old=existing.source.title, new=value.title))
                continue
            current = getattr(existing, attribute)
            if _norm(current) == _norm(value):
                continue
            values[attribute] = value
            if column == "priority":
                changes.append(
                    _("Priority: %(old)s → %(new)s", old=priority_label(current), new=priority_label(value))
                )
            elif column == "theme":
                changes.append(_("Theme: %(old)s → %(new)s", old=current, new=value))
            elif column == "recommendation_title":
                changes.append(_("Title: %(old)s → %(new)s", old=current, new=value))
            else:
                changes.append(_("Text changed"))
        kind = UPDATE if values else UNCHANGED
        return RecommendationChange(first.row.number, code, kind, existing.title, existing, values, changes)

    # -- actions --

    def _plan_actions(self, parsed: list[_Parsed]) -> list[ActionChange]:
        seen: dict[tuple[Any, ...], int] = {}
        changes = []
        for p in parsed:
            if not p.is_action or p.code is None:
                continue
            change = self._action_change(p, seen)
            if change is not None:
                changes.append(change)
        return changes

    def _office(self, p: _Parsed) -> Office | None:
        code = p.values["office_code"]
        if code is None:
            if "office_code" not in p.bad:
                self.problem(p, "office_code", _("Give the office code of the action."))
            return None
        office = self.offices.get(code)
        if office is None:
            self.problem(p, "office_code", _("Unknown office code %(code)s.", code=code))
        return office

    def _match(
        self, p: _Parsed, office: Office | None, seen: dict[tuple[Any, ...], int]
    ) -> ActionItem | None:
        """The existing action the row is about, None for a new one; problems if it cannot be told."""
        values, recommendation = p.values, self.recommendations.get(p.code or "")
        item: ActionItem | None = None
        key: tuple[Any, ...] | None = None
        column = "action_id"
        if values["action_id"] is not None:
            item = self.items.get(values["action_id"])
            if item is None:
                self.problem(p, column, _("No action has the id %(id)d.", id=values["action_id"]))
            elif office is not None and item.office_id != office.id:
                self.problem(p, column, _("Action %(id)d belongs to another office.", id=item.id))
            elif recommendation is None or item.recommendation_id != recommendation.id:
                self.problem(
                    p,
                    column,
                    _(
                        "Action %(id)d belongs to recommendation %(code)s.",
                        id=item.id,
                        code=item.recommendation.code,
                    ),
                )
            else:
                key = ("item", item.id)
        elif values["title"] is not None and office is not None:
            column = "action_title"
            found = (
                [
                    self.items[i]
                    for i in self.by_key.get((recommendation.id, office.id, _norm(values["title"])), [])
                ]
                if recommendation
                else []
            )
            if len(found) > 1:
                self.problem(
                    p,
                    column,
                    _(
                        "Several actions of %(office)s for %(code)s have this title: "
                        "give the action_id of the one to change.",
                        office=office.code,
                        code=p.code,
                    ),
                )
            item = found[0] if len(found) == 1 else None
            key = ("item", item.id) if item else ("new", p.code, office.id, _norm(values["title"]))
        elif values["title"] is None and not {"action_title", "action_id"} & p.bad:
            self.problem(p, "action_title", _("Give the action's title, or its action_id."))
        if key is not None:
            if key in seen:
                self.problem(
                    p, column, _("Duplicate: the same action is already in row %(row)d.", row=seen[key])
                )
            else:
                seen[key] = p.row.number
        return item if key is not None else None

    def _user(self, p: _Parsed, column: str, office: Office | None, current_id: int | None) -> User | None:
        email = p.values[column]
        if email is None:
            return None
        user = self.users.get(email)
        if user is None:
            self.problem(p, column, _("Unknown email: no user has the email %(email)s.", email=email))
            return None
        if office is not None and user.id != current_id and not may_be_assigned(user, office):
            self.problem(
                p,
                column,
                _(
                    "%(email)s is not an active focal point or manager of %(office)s.",
                    email=email,
                    office=office.code,
                ),
            )
            return None
        return user

    def _action_change(self, p: _Parsed, seen: dict[tuple[Any, ...], int]) -> ActionChange | None:
        office = self._office(p)
        item = self._match(p, office, seen)
        owner = self._user(p, "owner_email", office, item.owner_id if item else None)
        deputy = self._user(p, "deputy_email", office, item.deputy_id if item else None)
        before = (item.owner_id, item.deputy_id) if item else (None, None)
        after = (owner.id if owner else before[0], deputy.id if deputy else before[1])
        if after != before and after[1] is not None and after[0] == after[1]:
            column = "deputy_email" if deputy is not None else "owner_email"
            self.problem(p, column, _("The deputy must be someone other than the owner."))
        if office is None or any(c in p.bad for c in ("action_id", "action_title")):
            return None
        if item is None:
            return self._creation(p, office, owner, deputy)
        return self._update(p, office, item, owner, deputy)

    def _creation(self, p: _Parsed, office: Office, owner: User | None, deputy: User | None) -> ActionChange:
        values = p.values
        if not office.active:
            self.problem(
                p,
                "office_code",
                _("Office %(code)s is inactive: no action can be added to it.", code=office.code),
            )
        if values["deadline"] is None and "deadline" not in p.bad:
            self.problem(p, "deadline", _("Required for a new action."))
        title = values["title"] or ""
        return ActionChange(
            p.row.number,
            p.code or "",
            office,
            CREATE,
            title,
            None,
            {
                "title": title,
                "description": values["description"],
                "owner": owner,
                "deputy": deputy,
                "deadline": values["deadline"],
                "agreed_deadline": values["agreed_deadline"] or values["deadline"],
                "status": values["status"] or Status.NOT_STARTED.value,
                "progress": values["progress"] if values["progress"] is not None else 0,
                "note": values["note"],
            },
        )

    def _update(
        self, p: _Parsed, office: Office, item: ActionItem, owner: User | None, deputy: User | None
    ) -> ActionChange:
        values, new, changes = p.values, {}, []
        if values["title"] is not None and _norm(values["title"]) != _norm(item.title):
            new["title"] = values["title"]
            changes.append(_("Title: %(old)s → %(new)s", old=item.title, new=values["title"]))
        if values["description"] is not None and _norm(values["description"]) != _norm(
            item.description or ""
        ):
            new["description"] = _norm(values["description"])
            changes.append(_("Description changed"))
        if owner is not None and owner.id != item.owner_id:
            new["owner"] = owner
            changes.append(_("Owner: %(old)s → %(new)s", old=_person(item.owner), new=_person(owner)))
        if deputy is not None and deputy.id != item.deputy_id:
            new["deputy"] = deputy
            changes.append(_("Deputy: %(old)s → %(new)s", old=_person(item.deputy), new=_person(deputy)))
        agreed = values["agreed_deadline"]
        if agreed is not None and agreed != item.agreed_deadline:
            self.problem(
                p,
                "agreed_deadline",
                _(
                    "The agreed deadline of action %(id)d is %(date)s; an import does not change it. "
                    "Leave the cell as exported, or empty.",
                    id=item.id,
                    date=item.agreed_deadline.isoformat(),
                ),
            )
        if values["deadline"] is not None and values["deadline"] != item.deadline:
            new["deadline"] = values["deadline"]
            changes.append(
                _(
                    "Deadline: %(old)s → %(new)s",
                    old=item.deadline.isoformat(),
                    new=values["deadline"].isoformat(),
                )
            )
        if values["status"] is not None and values["status"] != item.status:
            new["status"] = values["status"]
            changes.append(
                _(
                    "Status: %(old)s → %(new)s",
                    old=status_label(item.status),
                    new=status_label(values["status"]),
                )
            )
        if values["progress"] is not None and values["progress"] != item.progress:
            new["progress"] = values["progress"]
            changes.append(_("Progress: %(old)d → %(new)d", old=item.progress, new=values["progress"]))
        if values["note"] is not None:
            new["note"] = values["note"]
            changes.append(_("Note: %(note)s", note=values["note"]))
        return ActionChange(
            p.row.number,
            p.code or "",
            office,
            UPDATE if new else UNCHANGED,
            item.title,
            item,
            new,
            changes,
            item.id,
        )


def describe_plan(plan: ImportPlan) -> list[str]:
    """The plan as lines of text (for the command line): counts, each change, warnings, problems."""
    lines = [
        _("%(name)s: %(num)d rows.", name=plan.filename, num=plan.rows),
        _(
            "Recommendations: %(create)d to create, %(update)d to update, %(same)d unchanged.",
            create=plan.count("recommendations", CREATE),
            update=plan.count("recommendations", UPDATE),
            same=plan.count("recommendations", UNCHANGED),
        ),
        _(
            "Actions: %(create)d to create, %(update)d to update, %(same)d unchanged.",
            create=plan.count("actions", CREATE),
            update=plan.count("actions", UPDATE),
            same=plan.count("actions", UNCHANGED),
        ),
    ]
    listed = 0
    for r in plan.recommendations:
        if r.kind != UNCHANGED:
            listed += 1
            if listed > DESCRIBED:
                continue
        if r.kind == CREATE:
            lines.append(_("  row %(row)d: create recommendation %(code)s", row=r.row, code=r.code))
        elif r.kind == UPDATE:
            lines.append(
                _(
                    "  row %(row)d: update recommendation %(code)s: %(changes)s",
                    row=r.row,
                    code=r.code,
                    changes="; ".join(r.changes),
                )
            )
    for a in plan.actions:
        if a.kind != UNCHANGED:
            listed += 1
            if listed > DESCRIBED:
                continue
        if a.kind == CREATE:
            lines.append(
                _(
                    "  row %(row)d: create action “%(title)s” of %(office)s for %(code)s",
                    row=a.row,
                    title=a.title,
                    office=a.office.code,
                    code=a.code,
                )
            )
        elif a.kind == UPDATE and a.item_id is not None:
            lines.append(
                _(
                    "  row %(row)d: update action %(id)d “%(title)s”: %(changes)s",
                    row=a.row,
                    id=a.item_id,
                    title=a.title,
                    changes="; ".join(a.changes),
                )
            )
    if listed > DESCRIBED:
        lines.append(_("  … and %(num)d more changes (see the counts above).", num=listed - DESCRIBED))
    lines.extend(_("Warning: %(text)s", text=w) for w in plan.warnings)
    lines.extend(problem_lines(plan.problems))
    return lines


def problem_lines(problems: Iterable[Problem]) -> list[str]:
    """Each problem as one line of text: where (row, column) and what."""
    lines = []
    for p in problems:
        where = _("row %(row)d", row=p.row) if p.row else _("file")
        lines.append(f"{_('Problem')}: {where}, {p.column or '–'}: {p.message}")
    return lines
