"""The status workflow of DESIGN.md: which moves exist, who may make them, what they need.

The table below is the only statement of the rules; the update form offers what
:func:`allowed_targets` returns and the service refuses anything else, so a forged form value
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracker.models import ActionItem, Status
from tracker.permissions import Perm, can

NS, IP, BL, CO, VE, CA = (
    Status.NOT_STARTED,
    Status.IN_PROGRESS,
    Status.BLOCKED,
    Status.COMPLETED,
    Status.VERIFIED,
    Status.CANCELLED,
)

#: Statuses in which the owner's office keeps working on the item.
OPEN = frozenset({NS, IP, BL})


@dataclass(frozen=True)
class Move:
    """A status change: the permission it takes and what it must carry."""

    perm: Perm
    needs_note: bool = False
    needs_note_or_evidence: bool = False


#: (from, to) → Move. Anything absent is not a move anyone may make.
MOVES: dict[tuple[Status, Status], Move] = {
    (NS, IP): Move(Perm.UPDATE_ACTION),
    (NS, BL): Move(Perm.UPDATE_ACTION),
    (IP, BL): Move(Perm.UPDATE_ACTION),
    (BL, IP): Move(Perm.UPDATE_ACTION),
    # Reported done: awaits a reviewer, and must say what was done or show it.
    (IP, CO): Move(Perm.UPDATE_ACTION, needs_note_or_evidence=True),
    (CO, VE): Move(Perm.VERIFY_ACTION),
    # Sent back by a reviewer, who must say why.
    (CO, IP): Move(Perm.VERIFY_ACTION, needs_note=True),
    # Reopened after verification (a mistake, new facts), with a note; the owner is told.
    (VE, IP): Move(Perm.REOPEN_ACTION, needs_note=True),
    **{(s, CA): Move(Perm.CANCEL_ACTION, needs_note=True) for s in OPEN},
}


def move_for(current: str, target: str) -> Move | None:
    """The rule for going from ``current`` to ``target``; None if there is no such move."""
    return MOVES.get((Status(current), Status(target)))


def allowed_targets(user: Any, item: ActionItem) -> list[Status]:
    """The statuses ``user`` may move ``item`` to, in workflow order."""
    current = Status(item.status)
    return [
        target
        for target in Status
        if (move := MOVES.get((current, target))) is not None and can(user, move.perm, item)
    ]


def may_update_in_place(user: Any, item: ActionItem) -> bool:
    """May the user add a note or evidence (and, while open, change progress) without a move?

    While a completion awaits verification the office may still add notes and evidence.
    """
    return Status(item.status) in OPEN | {CO} and can(user, Perm.UPDATE_ACTION, item)
