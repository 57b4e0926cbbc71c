"""The import's fast path for new actions: checked by the commands' own rules, written in batches.

A file of new actions is the common large import (a programme's plans loaded at once). Running
``create_action`` and ``record_update`` for each of its rows costs a dozen statements a row, twice
(a rehearsal for the preview, then the apply). Here each new action is checked by the rule
functions the commands themselves call — :func:`tracker.actions.commands.check_new_action` (who
may add it; its title, deadline, recommendation, owner and deputy) and
:func:`tracker.actions.commands.check_update` (its first move: the workflow, the note it needs,
its progress) — against look-ups read once for the file, with no statement per row and no
savepoint. The apply then writes the actions and their history rows ("created", and the first
move) as executemany of prepared rows, in batches of a bounded size (:mod:`tracker.batches`).

What is refused, and what is written (columns, history, notes, the one mail per new owner or
deputy), is what the commands refuse and write: the values come from the same functions
(``new_action_values``, ``created_history_values``). The history of a first move names nobody
it was made on behalf of: importers are admins and reviewers, who belong to no office and act in
their own right (:func:`tracker.profile.absences.acting_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from tracker.actions import commands, workflow
from tracker.batches import chunks
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import ActionItem, ActionUpdate, Recommendation, Status, User, mark_data_changed
from tracker.transfer.plan import ActionChange

#: The field a command names in its refusal → the import column it comes from.
ACTION_FIELD_COLUMNS = {
    "title": "action_title",
    "description": "description",
    "recommendation_id": "recommendation_code",
    "owner_id": "owner_email",
    "deputy_id": "deputy_email",
    "deadline": "deadline",
    "status": "status",
    "progress": "progress",
    "note": "note",
    "files": "note",
}
MOVE_VALUES = ("status", "progress", "note")
#: New actions prepared and written per round: bounds the memory of the prepared rows; each
#: round's statements are cut further to the database's parameter limit (tracker.batches).
ROUND = 5000

#: Where a refusal goes: (row, column, message).
Refuse = Callable[[int, str | None, str], None]


def first_move(values: dict[str, Any]) -> dict[str, Any]:
    """What a new action's row asks beyond "not started, 0 %": its status, progress and note."""
    wanted = {
        "status": values["status"] if values["status"] != Status.NOT_STARTED else None,
        "progress": values["progress"] or None,
        "note": values["note"],
    }
    return {key: value for key, value in wanted.items() if value is not None}


def move_request(item: ActionItem, values: dict[str, Any], mark: str) -> commands.UpdateRequest:
    """The update a row asks for, as the import sends it to ``record_update``.

    The row's own note, and only that, meets the moves that need one (reopen, send back, cancel,
    report a completion): the import's ``mark`` is added to it, never given in its place.
    """
    note, target = values.get("note"), values.get("status", item.status)
    move = workflow.move_for(item.status, target) if target != item.status else None
    needs_note = move is not None and (move.needs_note or move.needs_note_or_evidence)
    return commands.UpdateRequest(
        version=item.version,
        status=values.get("status"),
        progress=values.get("progress"),
        note=f"{mark}: {note}" if note else "" if needs_note else mark,
    )


def progress_refused(status: str, kept: int, values: dict[str, Any]) -> str | None:
    """The refusal of a row asking for a progress the command did not keep (a completed action is at
    100 %): the import writes what the file says, or nothing."""
    if "progress" not in values or kept == values["progress"]:
        return None
    return _(
        "A “%(status)s” action is at %(num)d %%, not %(asked)d %%.",
        status=status_label(status),
        num=kept,
        asked=values["progress"],
    )


class _FileLookups(commands.Lookups):
    """The recommendations and people of the file, read once (no statement per row)."""

    def __init__(self, recommendations: dict[int, Recommendation], users: dict[int, User]) -> None:
        self.recommendations, self.users = recommendations, users

    def recommendation(self, recommendation_id: int) -> Recommendation | None:
        """The recommendation of the file with this id, or None."""
        return self.recommendations.get(recommendation_id)

    def user(self, user_id: int) -> User | None:
        """The person of the file with this id, or None."""
        return self.users.get(user_id)


@dataclass(slots=True)
class Checked:
    """A new action that passed the rules: what its rows are built from."""

    change: ActionChange
    recommendation_id: int
    title: str
    fields: commands.ActionFields
    owner: User
    deputy: User | None
    #: The first move's (status, progress, event, note), or None when the action stays not started.
    move: tuple[str, int, str | None, str] | None


class NewActions:
    """Checks new actions by the commands' rules, then writes them and their history in batches."""

    def __init__(
        self,
        actor: User,
        now: datetime,
        mark: str,
        refuse: Refuse,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.actor, self.now, self.mark, self.refuse = actor, now, mark, refuse
        #: Told how many actions are written so far, after each batch.
        self.progress = progress
        self.checked: list[Checked] = []
        #: (user id, role) → (user, ids of the new actions they own or deputise).
        self.assigned: dict[tuple[int, str], tuple[User, list[int]]] = {}
        #: A not-started action of each office, for the first move's rules (which read only the
        #: office, the status and the progress of a new action).
        self._blank: dict[int, ActionItem] = {}
        self._created_rows: dict[tuple[int, int | None], dict[str, Any]] = {}

    def check(self, changes: list[ActionChange], recommendations: dict[str, Recommendation]) -> None:
        """Check each new action as ``create_action`` then ``record_update`` would; refusals go to
        ``refuse`` with the command's message, the others are kept for :meth:`write`."""
        users = {u.id: u for c in changes for u in (c.values["owner"], c.values["deputy"]) if u is not None}
        lookups = _FileLookups({r.id: r for r in recommendations.values()}, users)
        for change in changes:
            checked = self._check(change, recommendations[change.code], lookups)
            if checked is not None:
                self.checked.append(checked)

    def _check(
        self, change: ActionChange, recommendation: Recommendation, lookups: _FileLookups
    ) -> Checked | None:
        values = change.values
        owner, deputy = values["owner"], values["deputy"]
        fields = commands.ActionFields(
            title=values["title"],
            recommendation_id=recommendation.id,
            owner_id=owner.id if owner is not None else None,
            deputy_id=deputy.id if deputy is not None else None,
            deadline=values["deadline"],
            description=values["description"] or "",
            agreed_deadline=values["agreed_deadline"],
        )
        try:
            title, _rec, owner, deputy = commands.check_new_action(self.actor, change.office, fields, lookups)
        except commands.WorkflowError as exc:
            self.refuse(change.row, ACTION_FIELD_COLUMNS.get(exc.field or "", "action_title"), exc.message)
            return None
        except HTTPException:
            self.refuse(change.row, "action_title", _("You may not make this change."))
            return None
        wanted = first_move(values)
        move = None
        if wanted:
            blank = self._blank_of(change)
            request = move_request(blank, wanted, self.mark)
            column = next(key for key in MOVE_VALUES if key in wanted)
            try:
                target, progress, _deadline, event = commands.check_update(self.actor, blank, request)
            except commands.WorkflowError as exc:
                self.refuse(change.row, ACTION_FIELD_COLUMNS.get(exc.field or "", column), exc.message)
                return None
            except HTTPException:
                self.refuse(change.row, column, _("You may not make this change."))
                return None
            if refused := progress_refused(target.value, progress, wanted):
                self.refuse(change.row, "progress", refused)
                return None
            move = (target.value, progress, event.value if event else None, request.note.strip())
        return Checked(change, recommendation.id, title, fields, owner, deputy, move)

    def _blank_of(self, change: ActionChange) -> ActionItem:
        blank = self._blank.get(change.office.id)
        if blank is None:  # never added to the session: it only carries what the rules read
            blank = ActionItem(office_id=change.office.id, status=Status.NOT_STARTED.value, progress=0)
            blank.version = 1
            self._blank[change.office.id] = blank
        return blank

    def write(self) -> int:
        """Insert the checked actions, then their history rows, in bounded batches; flushes nothing
        else. Returns how many actions were written. The caller commits (all rows or none)."""
        db.session.flush()  # what the commands wrote first (new recommendations) is in the database
        written = 0
        for batch in chunks(self.checked, ROUND):
            ids = _new_ids(len(batch))
            insert_rows(ActionItem.__table__, self._actions(batch, ids), with_ids=True)
            insert_rows(ActionUpdate.__table__, self._history(batch, ids))
            for checked, item_id in zip(batch, ids, strict=True):
                self._assign(checked.owner, "owner", item_id)
                if checked.deputy is not None:
                    self._assign(checked.deputy, "deputy", item_id)
            written += len(batch)
            if self.progress is not None:
                self.progress(written)
        if written:
            mark_data_changed(db.session)  # core statements: the dashboard's cache must know
        return written

    def _actions(self, batch: list[Checked], ids: list[int]) -> Iterator[dict[str, Any]]:
        """The rows create_action writes, moved by the first move as record_update leaves them."""
        for c, item_id in zip(batch, ids, strict=True):
            row = commands.new_action_values(c.fields, c.title, self.now)
            row.update(
                id=item_id,
                recommendation_id=c.recommendation_id,
                office_id=c.change.office.id,
                owner_id=c.owner.id,
                deputy_id=c.deputy.id if c.deputy is not None else None,
                version=1,
            )
            if c.move is not None:
                row.update(status=c.move[0], progress=c.move[1], version=2)
            yield row

    def _history(self, batch: list[Checked], ids: list[int]) -> Iterator[dict[str, Any]]:
        """The rows create_action and record_update write: "created", then the first move (if any)."""
        author = self.actor.id
        for c, item_id in zip(batch, ids, strict=True):
            deadline = c.fields.deadline
            yield {
                **self._created(c.owner, c.deputy),
                "new_deadline": deadline,
                "action_item_id": item_id,
                "author_id": author,
            }
            if c.move is not None:
                status, progress, event, note = c.move
                yield {
                    **_EMPTY_HISTORY,
                    "action_item_id": item_id,
                    "author_id": author,
                    "created_at": self.now,
                    "item_version": 2,
                    "old_status": Status.NOT_STARTED.value,
                    "new_status": status,
                    "old_progress": 0,
                    "new_progress": progress,
                    "old_deadline": deadline,
                    "new_deadline": deadline,
                    "note": note or None,
                    "event": event,
                }

    def _created(self, owner: User, deputy: User | None) -> dict[str, Any]:
        """The "created" history row of an action of this owner and deputy (its note names them):
        made once per pair, not per row (a translated note costs more than the rest of a row)."""
        key = (owner.id, deputy.id if deputy is not None else None)
        created = self._created_rows.get(key)
        if created is None:
            created = {**_EMPTY_HISTORY, **commands.created_history_values(None, owner, deputy, self.now)}
            self._created_rows[key] = created
        return created

    def _assign(self, user: User, role: str, item_id: int) -> None:
        self.assigned.setdefault((user.id, role), (user, []))[1].append(item_id)


#: Every column of a history row that a new action's rows may leave empty: one executemany
#: needs the same keys in every row.
_EMPTY_HISTORY: dict[str, Any] = {
    "old_status": None,
    "new_status": None,
    "old_progress": None,
    "new_progress": None,
    "old_deadline": None,
    "new_deadline": None,
    "note": None,
    "evidence_url": None,
    "event": None,
    "on_behalf_of_id": None,
    "extension_id": None,
}


def insert_rows(table: sa.Table, rows: Iterable[dict[str, Any]], *, with_ids: bool = False) -> int:
    """Insert prepared rows (every column; the id too ``with_ids``, else it is generated) into
    ``table``; how many.

    The values are bound as SQLAlchemy binds them (each column type's own conversion, looked up
    once), then sent as one ``COPY … FROM STDIN`` on PostgreSQL, else as one executemany per
    batch of a bounded size: no statement carries more than one row's parameters, and no row
    goes through the ORM. A row without a value for a column raises KeyError rather than leave
    it empty (a column added with a Python default must be given here too).
    """
    connection = db.session.connection()
    dialect = connection.dialect
    columns = [c for c in table.columns if with_ids or c is not table.autoincrement_column]
    convert = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    names = [c.name for c in columns]

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            f(row[n]) if f is not None and row[n] is not None else row[n]
            for f, n in zip(convert, names, strict=True)
        )

    count = 0
    listed = ", ".join(names)
    if dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY {table.name} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(values(row))
                count += 1
        return count
    marks = ", ".join("?" if dialect.paramstyle == "qmark" else "%s" for _ in names)
    for part in chunks(rows, ROUND):
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({listed}) VALUES ({marks})", [values(r) for r in part]
        )
        count += len(part)
    return count


def _new_ids(count: int) -> list[int]:
    """Ids for ``count`` new actions, known before they are written (their history refers to them).

    PostgreSQL hands them out from the table's sequence, which no other writer can take again.
    SQLite has one writer at a time: the next ids after the largest; a writer that got in between
    makes the insert fail (a duplicate id, or a locked database), and nothing is written.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return list(
            db.session.scalars(
                sa.text(
                    "SELECT nextval(pg_get_serial_sequence('action_item', 'id')) FROM generate_series(1, :n)"
                ),
                {"n": count},
            )
        )
    largest = db.session.scalar(sa.select(sa.func.max(ActionItem.id))) or 0
    return list(range(largest + 1, largest + 1 + count))
