"""Applying an import plan through the same commands as the pages: every row, or none.

An import changes nothing by itself. Each recommendation goes through
:func:`tracker.recommendations.services.save_recommendation` (which records its history) and each
action row through the commands of :mod:`tracker.actions.commands`, with the importing user as
actor, so the workflow's moves, the owners, the deadlines and the permissions are checked where
the pages check them:

- a new action: ``create_action`` (its agreed deadline: the row's, else its deadline), then
  ``record_update`` when the row asks for a status, progress or note beyond "not started";
- an existing action: ``edit_action`` for its plan (title, description, owner, deputy, and the
  current deadline: a reviewer's deadline change, recorded as theirs) and ``record_update`` for
  its status, progress and note. A verified or cancelled action is moved first (reopened), then
  edited; any other is edited first, then moved (so a deadline can change before a completion);
- a row asking for a progress the command does not keep (a completed or verified action is at
  100 %) is refused too: the import writes what the file says, or nothing.

:func:`rehearse` runs the rows inside a SAVEPOINT and rolls it back, turning each refusal into a
problem at its row and column (the command's own message): the preview lists exactly what the
apply would refuse. :func:`apply_import` runs them the same way and keeps the writes only if no
row was refused. The history rows are the commands' (author: the importing user; event: the
command's). An edit's note ends with "Imported from <file>"; a status or progress update's note is
"Imported from <file>", or "Imported from <file>: <the row's note>" — a move that needs a note
(reopen, send back, cancel, report a completion) is met by the row's note only. Owners and
deputies are told once per person and role for the whole import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from tracker.actions import commands
from tracker.extensions import db
from tracker.models import ActionItem, Priority, Recommendation, User
from tracker.notifications import account
from tracker.permissions import Perm, require
from tracker.recommendations import services as recommendation_services
from tracker.transfer import bulk
from tracker.transfer.plan import (
    CREATE,
    KINDS,
    UNCHANGED,
    ActionChange,
    ImportPlan,
    Problem,
    RecommendationChange,
    no_cycle_collection,
    ordered,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The field a command names in its refusal → the import column it comes from.
ACTION_FIELD_COLUMNS = bulk.ACTION_FIELD_COLUMNS
RECOMMENDATION_FIELD_COLUMNS = {
    "code": "recommendation_code",
    "title": "recommendation_title",
    "text": "recommendation_text",
    "theme": "theme",
    "priority": "priority",
    "source_id": "source",
}
#: An action's plan values, with the column each comes from (in the file's order).
PLAN_VALUES = (
    ("title", "action_title"),
    ("description", "description"),
    ("owner", "owner_email"),
    ("deputy", "deputy_email"),
    ("deadline", "deadline"),
)
MOVE_VALUES = bulk.MOVE_VALUES


class ImportRefused(Exception):  # noqa: N818 - a refusal, like WorkflowError
    """Some rows were refused by the commands: they are in ``plan.problems``; nothing was written."""

    def __init__(self, plan: ImportPlan) -> None:
        super().__init__(f"{len(plan.problems)} problem(s)")
        self.plan = plan


def rehearse(
    plan: ImportPlan, actor: User, now: datetime, note: str, *, one_by_one: bool = False
) -> ImportPlan:
    """Run the plan's rows through the commands in a SAVEPOINT, add what they refuse, roll back.

    New actions are checked by the commands' rules without running them (tracker.transfer.bulk),
    unless ``one_by_one`` asks for create_action and record_update themselves (slower; the same
    refusals). Rows that already have problems (and the actions of a recommendation that cannot
    be created) are left out. Writes nothing: the savepoint is always rolled back, mail included.
    """
    if not plan.changes_anything:
        return plan
    runner = _Runner(plan, actor, now, note, write=False, one_by_one=one_by_one)
    savepoint = db.session.begin_nested()
    try:
        with no_cycle_collection():
            runner.run()
    except (IntegrityError, StaleDataError):
        log.info("import rehearsal of %s met a concurrent change", plan.filename, exc_info=True)
        runner.problems.append(
            Problem(
                runner.row,
                None,
                _("This row could not be checked: the data changed meanwhile. Check the preview again."),
            )
        )
    finally:
        savepoint.rollback()  # also after a failed flush, which leaves it inactive but open
    plan.problems = ordered([*plan.problems, *runner.problems])
    return plan


def apply_import(
    plan: ImportPlan,
    actor: User,
    now: datetime,
    note: str,
    *,
    progress: Callable[[int], None] | None = None,
    one_by_one: bool = False,
) -> dict[str, int]:
    """Write a plan without problems through the commands and flush (the caller commits).

    Returns the counts by kind. ``note`` starts the note of every history row it writes. A row
    the commands refuse raises :class:`ImportRefused` with the problems added to the plan, after
    rolling back every row; a concurrent change fails the flush (IntegrityError, StaleDataError)
    and the caller rolls back. Either way nothing is written. ``progress`` hears how many new
    actions are written, batch by batch; ``one_by_one``: as in :func:`rehearse`.
    """
    if plan.problems:
        raise ValueError("a plan with problems cannot be applied")
    require(actor, Perm.IMPORT_DATA)
    runner = _Runner(plan, actor, now, note, write=True, progress=progress, one_by_one=one_by_one)
    savepoint = db.session.begin_nested()
    try:
        with no_cycle_collection():
            runner.run()
    except BaseException:
        savepoint.rollback()
        raise
    if runner.problems:
        savepoint.rollback()
        plan.problems = ordered(runner.problems)
        raise ImportRefused(plan)
    savepoint.commit()
    runner.notify()
    return {
        f"{what}_{kind}": plan.count(what, kind) for what in ("recommendations", "actions") for kind in KINDS
    }


def summary(counts: dict[str, int]) -> str:
    """What an import wrote, in one sentence."""
    return _(
        "Imported: %(rc)d recommendations created, %(ru)d updated; "
        "%(ac)d actions created, %(au)d updated. Unchanged: %(rn)d recommendations, %(an)d actions.",
        rc=counts["recommendations_create"],
        ru=counts["recommendations_update"],
        rn=counts["recommendations_unchanged"],
        ac=counts["actions_create"],
        au=counts["actions_update"],
        an=counts["actions_unchanged"],
    )


def _id(user: User | None) -> int | None:
    return user.id if user is not None else None


class _Runner:
    """Runs a plan's rows through the commands (new actions through :mod:`tracker.transfer.bulk`,
    by the same rules), collecting each refusal as a problem; writes only with ``write``."""

    def __init__(
        self,
        plan: ImportPlan,
        actor: User,
        now: datetime,
        note: str,
        *,
        write: bool,
        progress: Callable[[int], None] | None = None,
        one_by_one: bool = False,
    ) -> None:
        self.plan, self.actor, self.now, self.note, self.write = plan, actor, now, note, write
        self.one_by_one = one_by_one
        self.problems: list[Problem] = []
        self.new_actions = bulk.NewActions(actor, now, note, self._refuse, progress)
        #: The row being run (for a failure at flush time).
        self.row: int | None = None
        self.bad_rows = {p.row for p in plan.problems if p.row is not None}
        self.recommendations: dict[str, Recommendation] = {}
        self.assigned: dict[tuple[int, str], tuple[User, list[ActionItem]]] = {}

    def run(self) -> None:
        """Recommendations first (actions refer to them), then changed actions in the file's order,
        then the new ones (checked together; written in batches if nothing was refused)."""
        for change in self.plan.recommendations:
            if change.recommendation is not None:
                self.recommendations[change.code] = change.recommendation
            if change.kind == UNCHANGED or self.bad_rows.intersection(change.rows):
                continue
            self.row = change.row
            saved = self._recommendation(change)
            if saved is not None:
                self.recommendations[change.code] = saved
        new: list[ActionChange] = []
        for change in self.plan.actions:
            if change.kind == UNCHANGED or change.row in self.bad_rows:
                continue
            if change.code not in self.recommendations:
                continue  # its recommendation could not be created: that is the problem shown
            self.row = change.row
            if change.kind != CREATE:
                self._update(change)
            elif self.one_by_one:
                self._create(change)
            else:
                new.append(change)
        self.row = None
        self.new_actions.check(new, self.recommendations)
        if self.write and not self.problems:
            self.new_actions.write()

    def notify(self) -> None:
        """One mail per new owner or deputy for the whole import (queued; sent after the commit)."""
        for key, (user, _ids) in self.new_actions.assigned.items():
            self.assigned.setdefault(key, (user, []))
        for key, (user, items) in self.assigned.items():
            # The new actions go by id: the mail counts them and reads back only those it lists.
            ids = self.new_actions.assigned.get(key, (user, []))[1]
            account.notify_assignment(items, user, key[1], self.now, ids=ids)

    # -- calling the commands --

    def _problem(self, column: str | None, message: str) -> None:
        self.problems.append(Problem(self.row, column, message))

    def _refuse(self, row: int, column: str | None, message: str) -> None:
        self.problems.append(Problem(row, column, message))

    def _call(self, columns: dict[str, str], default: str, command: Callable[[], T]) -> T | None:
        """Run one command; a refusal becomes a problem at the column of the field it names."""
        try:
            return command()
        except (commands.WorkflowError, recommendation_services.RecommendationError) as exc:
            self._problem(columns.get(exc.field or "", default), exc.message)
        except commands.ConflictError:
            self._problem(default, _("The action changed while the file was read. Check the preview again."))
        except HTTPException:
            self._problem(default, _("You may not make this change."))
        return None

    def _assign(self, user: User | None, role: str, item: ActionItem) -> None:
        if user is not None:
            self.assigned.setdefault((user.id, role), (user, []))[1].append(item)

    # -- recommendations --

    def _recommendation(self, change: RecommendationChange) -> Recommendation | None:
        existing, values = change.recommendation, change.values
        current: dict[str, Any] = {
            "title": existing.title if existing else "",
            "text": existing.text if existing else "",
            "theme": existing.theme if existing else "",
            "priority": existing.priority if existing else Priority.MEDIUM.value,
            "source": existing.source if existing else None,
            "target_date": existing.target_date if existing else None,
        }
        current.update(values)
        source = current["source"]
        return self._call(
            RECOMMENDATION_FIELD_COLUMNS,
            "recommendation_code",
            lambda: recommendation_services.save_recommendation(
                self.actor,
                existing,
                code=existing.code if existing else change.code,
                title=current["title"],
                text=current["text"],
                theme=current["theme"],
                priority=current["priority"],
                source_id=source.id if source is not None else 0,
                target_date=current["target_date"],
                now=self.now,
            ),
        )

    # -- actions --

    def _create(self, change: ActionChange) -> None:
        values = change.values
        fields = commands.ActionFields(
            title=values["title"],
            recommendation_id=self.recommendations[change.code].id,
            owner_id=_id(values["owner"]),
            deputy_id=_id(values["deputy"]),
            deadline=values["deadline"],
            description=values["description"] or "",
            agreed_deadline=values["agreed_deadline"],
        )
        item = self._call(
            ACTION_FIELD_COLUMNS,
            "action_title",
            lambda: commands.create_action(self.actor, change.office, self.now, fields, notify=False),
        )
        if item is None:
            return
        self._assign(item.owner, "owner", item)
        self._assign(item.deputy, "deputy", item)
        wanted = bulk.first_move(values)
        if wanted:
            self._move(item, wanted)

    def _update(self, change: ActionChange) -> None:
        item, values = change.item, change.values
        assert item is not None
        steps = [self._edit, self._move]
        if item.status in commands.FINAL:
            steps.reverse()  # reopened first; a verified or cancelled action's plan is settled
        for step in steps:
            if not step(item, values):
                return

    def _edit(self, item: ActionItem, values: dict[str, Any]) -> bool:
        """Change the plan (title, description, owner, deputy, deadline) with edit_action, if asked."""
        asked = [column for key, column in PLAN_VALUES if key in values]
        if not asked:
            return True
        fields = commands.ActionFields(
            title=values.get("title", item.title),
            recommendation_id=item.recommendation_id,
            owner_id=values["owner"].id if "owner" in values else item.owner_id,
            deputy_id=values["deputy"].id if "deputy" in values else item.deputy_id,
            deadline=values.get("deadline", item.deadline),
            description=values.get("description", item.description or ""),
            note=self.note,
        )
        update = self._call(
            ACTION_FIELD_COLUMNS,
            asked[0],
            lambda: commands.edit_action(self.actor, item, self.now, fields, item.version, notify=False),
        )
        if update is None:
            return False
        if "owner" in values:
            self._assign(values["owner"], "owner", item)
        if "deputy" in values:
            self._assign(values["deputy"], "deputy", item)
        return True

    def _move(self, item: ActionItem, values: dict[str, Any]) -> bool:
        """Record the status, progress and note with record_update, if asked; check what it kept."""
        asked = [key for key in MOVE_VALUES if key in values]
        if not asked:
            return True
        request = bulk.move_request(item, values, self.note)
        update = self._call(
            ACTION_FIELD_COLUMNS,
            asked[0],
            lambda: commands.record_update(self.actor, item, self.now, request),
        )
        if update is None:
            return False
        if refused := bulk.progress_refused(item.status, item.progress, values):
            self._problem("progress", refused)
            return False
        return True
