"""The demo's recent events: extension requests and decisions, proposed actions, absences.

Placed relative to "today" like the rest of the demo's history (tracker/demo_history.py).
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm.attributes import flag_modified

from tracker.demo_history import Timeline, at
from tracker.extensions import db
from tracker.models import (
    Absence,
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    ExtensionState,
    HistoryEvent,
    ResponseRequest,
    Status,
    User,
)

LATE_SUPPLIER = "The supplier delivered late; we need one more quarter to test and launch."
NEW_LAW = "The new law on electronic signatures takes effect two months later than planned."
STAFF = "Two of the three people on the project left; the replacements start next month."

#: (office code, kind of action, days ago asked) of the requests waiting for a reviewer.
PENDING = (("MY", "overdue_rung1", 3), ("LA", "overdue_rung2", 11), ("TH", "overdue_weeks", 6))
#: (office code, kind, days ago asked, days ago decided, approved, days later, reason, decision note)
DECIDED = (
    ("ID", "later", 110, 106, True, 60, NEW_LAW, "Agreed: the delay is outside the office's control."),
    ("PH", "later", 9, 3, True, 45, NEW_LAW, "Agreed; please report the new timetable in the next update."),
    (
        "VN",
        "due_soon",
        8,
        2,
        False,
        90,
        STAFF,
        "The deadline holds: report what is done and what is missing, and we will look at the rest.",
    ),
)


def seed_extensions(
    line: Timeline,
    placed: dict[tuple[str, str], list[ActionItem]],
    users: dict[str, User],
    added: dict[str, int],
) -> None:
    """Extension requests: three wait for a decision (asked in the last two weeks), three decided."""
    reviewer = users["reviewer@demo.test"]
    rng = random.Random("extensions")
    for code, kind, asked_ago in PENDING:
        for item in placed.get((code, kind), [])[:1]:
            asker = users[f"focal.{code.lower()}@demo.test"]
            request = _request(
                item,
                asker,
                at(line.days_ago(asked_ago), rng),
                item.deadline + timedelta(days=90),
                LATE_SUPPLIER,
            )
            _history(
                item,
                request,
                asker,
                request.requested_at,
                HistoryEvent.EXTENSION_REQUESTED,
                LATE_SUPPLIER,
                added,
            )
    for code, kind, asked_ago, decided_ago, approved, later, reason, note in DECIDED:
        for item in placed.get((code, kind), [])[:1]:
            asker = users[f"focal.{code.lower()}@demo.test"]
            if approved:  # the deadline moved: the agreed one stays where the plan put it
                item.agreed_deadline = item.deadline
            request = _request(
                item, asker, at(line.days_ago(asked_ago), rng), item.deadline + timedelta(days=later), reason
            )
            decided = at(line.days_ago(decided_ago), rng)
            request.state = (ExtensionState.APPROVED if approved else ExtensionState.REJECTED).value
            request.decided_by, request.decided_at, request.decision_note = reviewer, decided, note
            _history(
                item, request, asker, request.requested_at, HistoryEvent.EXTENSION_REQUESTED, reason, added
            )
            event = HistoryEvent.EXTENSION_APPROVED if approved else HistoryEvent.EXTENSION_REJECTED
            _history(item, request, reviewer, decided, event, note, added)
            if approved:
                item.deadline = request.requested_deadline
    db.session.flush()


def decision_mails(line: Timeline) -> None:
    """The mails the extension decisions of the last two weeks caused."""
    from tracker.notifications.account import notify_extension_decision

    since = line.days_ago(14)
    for request in db.session.scalars(
        sa.select(ExtensionRequest)
        .where(ExtensionRequest.decided_at.is_not(None))
        .order_by(ExtensionRequest.id)
    ):
        if request.decided_at and request.decided_at.date() >= since:
            notify_extension_decision(request, request.decided_at)


def _request(
    item: ActionItem, asker: User, moment: datetime, deadline: date, reason: str
) -> ExtensionRequest:
    request = ExtensionRequest(
        action_item=item,
        requested_by=asker,
        requested_at=moment,
        current_deadline=item.deadline,
        requested_deadline=deadline,
        reason=reason,
        state=ExtensionState.PENDING.value,
    )
    db.session.add(request)
    return request


def _history(
    item: ActionItem,
    request: ExtensionRequest,
    author: User,
    moment: datetime,
    event: HistoryEvent,
    note: str | None,
    added: dict[str, int],
) -> None:
    moves = event is not HistoryEvent.EXTENSION_REJECTED  # asked for, or granted: the later date
    db.session.add(
        ActionUpdate(
            action_item=item,
            author=author,
            created_at=moment,
            old_deadline=request.current_deadline,
            new_deadline=request.requested_deadline if moves else request.current_deadline,
            note=note,
            event=event.value,
            extension=request,
        )
    )
    item.updated_at = max(item.updated_at, moment)
    flag_modified(item, "updated_at")  # set even when unchanged, or its onupdate would write now
    added["updates"] += 1
    if event is HistoryEvent.EXTENSION_REQUESTED:
        added["extension requests"] += 1


#: What became of a proposed action: (days ago proposed, days ago decided or None, status now).
PROPOSAL_FATES = {
    "proposed": (4, None, Status.PROPOSED),
    "accepted": (12, 6, Status.NOT_STARTED),
    "declined": (10, 4, Status.CANCELLED),
}


def propose(
    item: ActionItem, fate: str, line: Timeline, focal: User, reviewer: User, rng: random.Random
) -> int:
    """An action its office proposed for the recent recommendation, and the reviewer's decision if any.

    Returns the history rows added.
    """
    proposed_ago, decided_ago, status = PROPOSAL_FATES[fate]
    if fate == "proposed" and item.office.code == "VN":
        proposed_ago = 2
    proposed = at(line.days_ago(proposed_ago), rng)
    deadline = item.recommendation.target_date or line.today + timedelta(days=300)
    item.deadline = item.agreed_deadline = deadline
    item.status, item.progress, item.created_at, item.updated_at = status.value, 0, proposed, proposed
    rows = [
        ActionUpdate(
            author=focal,
            created_at=proposed,
            new_status=Status.PROPOSED.value,
            new_progress=0,
            new_deadline=deadline,
            note="Proposed for our action plan: the single sign-on project is already budgeted.",
            event=HistoryEvent.PROPOSED.value,
        )
    ]
    if decided_ago is not None:
        decided = at(line.days_ago(decided_ago), rng)
        accepted = status is Status.NOT_STARTED
        note = (
            "Accepted into the plan."
            if accepted
            else "Declined: the national e-government portal already provides this; respond instead."
        )
        rows.append(
            ActionUpdate(
                author=reviewer,
                created_at=decided,
                old_status=Status.PROPOSED.value,
                new_status=status.value,
                old_progress=0,
                new_progress=0,
                note=note,
                event=(HistoryEvent.ACCEPTED if accepted else HistoryEvent.DECLINED).value,
            )
        )
        item.updated_at = decided
    item.updates = rows
    return len(rows)


#: (email, first day from today, last day from today, note) of the absences around today.
ABSENCES = (
    ("focal.sg@demo.test", -3, 4, "Annual leave"),
    ("deputy.th@demo.test", 10, 17, "Training course"),
)


def seed_absences(line: Timeline, users: dict[str, User]) -> None:
    """A focal point away this week (their deputy covers), another away soon; once per person."""
    for email, first, last, note in ABSENCES:
        person = users[email]
        if db.session.scalar(sa.select(sa.func.count(Absence.id)).where(Absence.user_id == person.id)):
            continue
        made = at(line.today + timedelta(days=first - 20), random.Random(email))
        db.session.add(
            Absence(
                user=person,
                starts_on=line.today + timedelta(days=first),
                ends_on=line.today + timedelta(days=last),
                note=note,
                created_by=person,
                created_at=made,
            )
        )


def request_and_proposal_mails() -> None:
    """The mails asking each office's focal points to respond to the recommendation sent to every
    office, and those telling the proposers what became of their proposed actions."""
    from tracker.notifications.account import notify_proposal_decision, notify_response_request

    people: dict[int, list[User]] = {}
    for user in db.session.scalars(sa.select(User).where(User.role == "focal_point").order_by(User.id)):
        people.setdefault(user.office_id or 0, []).append(user)
    for request in db.session.scalars(sa.select(ResponseRequest).order_by(ResponseRequest.id)):
        for person in people.get(request.office_id, []):
            sender = request.requested_by or person
            notify_response_request(
                person, request.recommendation, request.office, None, sender, request.requested_at
            )
    decided = (HistoryEvent.ACCEPTED.value, HistoryEvent.DECLINED.value)
    for item in db.session.scalars(
        sa.select(ActionItem).join(ActionItem.updates).where(ActionUpdate.event.in_(decided))
    ):
        rows = {u.event: u for u in item.updates}
        proposal, decision = (
            rows.get(HistoryEvent.PROPOSED.value),
            next(rows[e] for e in decided if e in rows),
        )
        if proposal is not None and proposal.author is not None:
            accepted = decision.event == HistoryEvent.ACCEPTED.value
            notify_proposal_decision(item, proposal.author, accepted, decision.note, decision.created_at)
