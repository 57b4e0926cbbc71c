"""Demo data: twelve offices, the Singapore dialogue's recommendations, their action plans.

Deadlines are placed relative to "today" so that, whenever the demo is loaded, some actions are
overdue, some due soon and some completed. Loading twice adds nothing: every row is looked up
by its natural key (office code, email, source title, recommendation code, item title) first.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    ExtensionState,
    HistoryEvent,
    Office,
    OfficeResponse,
    Priority,
    Recommendation,
    ResponseKind,
    Role,
    Source,
    Status,
    User,
)

log = logging.getLogger(__name__)

DEFAULT_PASSWORD = "demo-password"

#: code, name, country, IANA time zone
OFFICES = [
    ("BD", "Department of Patents, Designs and Trademarks", "Bangladesh", "Asia/Dhaka"),
    ("BN", "Brunei Darussalam Intellectual Property Office", "Brunei Darussalam", "Asia/Brunei"),
    ("KH", "Department of Intellectual Property Rights", "Cambodia", "Asia/Phnom_Penh"),
    ("ID", "Directorate General of Intellectual Property", "Indonesia", "Asia/Jakarta"),
    ("MY", "Intellectual Property Corporation of Malaysia", "Malaysia", "Asia/Kuala_Lumpur"),
    ("MN", "Intellectual Property Office of Mongolia", "Mongolia", "Asia/Ulaanbaatar"),
    ("PH", "Intellectual Property Office of the Philippines", "Philippines", "Asia/Manila"),
    ("LA", "Department of Intellectual Property", "Lao PDR", "Asia/Vientiane"),
    ("SG", "Intellectual Property Office of Singapore", "Singapore", "Asia/Singapore"),
    ("LK", "National Intellectual Property Office of Sri Lanka", "Sri Lanka", "Asia/Colombo"),
    ("TH", "Department of Intellectual Property", "Thailand", "Asia/Bangkok"),
    ("VN", "Intellectual Property Office of Viet Nam", "Viet Nam", "Asia/Ho_Chi_Minh"),
]

SOURCE = {
    "title": "Strategic dialogue on digital public services, Singapore, 20–24 February 2023",
    "place": "Singapore",
    "starts_on": date(2023, 2, 20),
    "ends_on": date(2023, 2, 24),
}


@dataclass(frozen=True)
class DemoRecommendation:
    code: str
    title: str
    text: str
    theme: str
    priority: Priority
    target_date: date
    actions: list[str] = field(default_factory=list)


RECOMMENDATIONS = [
    DemoRecommendation(
        "R-2023-01",
        "Adopt a digital-first strategy for IP public services",
        "Each office should define which of its services are delivered online by default, "
        "with paper kept as an assisted channel, and publish a timetable for the transition.",
        "Digital public services",
        Priority.HIGH,
        date(2025, 12, 31),
        [
            "Publish the list of services to be delivered digital-first",
            "Adopt the transition timetable at management level",
        ],
    ),
    DemoRecommendation(
        "R-2023-02",
        "Offer end-to-end e-filing for patents, marks and designs",
        "Applicants should be able to file, pay, receive notifications and respond to office "
        "actions online for every IP right, without a paper step.",
        "E-filing and online services",
        Priority.HIGH,
        date(2026, 6, 30),
        [
            "Extend e-filing to industrial designs",
            "Replace paper notifications with electronic notifications",
            "Accept electronic responses to office actions",
        ],
    ),
    DemoRecommendation(
        "R-2023-03",
        "Provide online payment and electronic certificates",
        "Fees should be payable online through common national payment channels, and grants "
        "issued as verifiable electronic certificates.",
        "E-filing and online services",
        Priority.MEDIUM,
        date(2026, 3, 31),
        [
            "Connect the fee system to the national payment gateway",
            "Issue electronic registration certificates",
        ],
    ),
    DemoRecommendation(
        "R-2023-04",
        "Set up joint governance of policy, IT and users",
        "IT projects should be steered by a board where policy owners, IT staff and "
        "representatives of applicants and attorneys decide priorities together.",
        "IT strategy and collaboration between policy, IT and users",
        Priority.MEDIUM,
        date(2024, 12, 31),
        [
            "Constitute the IT steering board with user representatives",
            "Hold quarterly user consultations on online services",
        ],
    ),
    DemoRecommendation(
        "R-2023-05",
        "Publish a multi-year IT strategy tied to the business plan",
        "Each office should keep a three-to-five-year IT strategy, costed and linked to its "
        "business objectives, and review it every year.",
        "IT strategy and collaboration between policy, IT and users",
        Priority.MEDIUM,
        date(2025, 6, 30),
        [
            "Draft the multi-year IT strategy",
            "Review the IT strategy against the business plan",
        ],
    ),
    DemoRecommendation(
        "R-2023-06",
        "Share examination guidelines and practice across offices",
        "Offices should publish their examination guidelines and exchange practice on "
        "difficult cases through a regional repository and regular examiner exchanges.",
        "Sharing of examination practice",
        Priority.MEDIUM,
        date(2026, 12, 31),
        [
            "Publish the examination guidelines online",
            "Contribute case studies to the regional repository",
        ],
    ),
    DemoRecommendation(
        "R-2023-07",
        "Exchange performance information every year",
        "Offices should agree a small set of performance indicators (pendency, backlog, "
        "e-filing rate, user satisfaction) and exchange them annually on a common template.",
        "Exchange of performance information",
        Priority.LOW,
        date(2025, 3, 31),
        [
            "Compile the agreed performance indicators",
            "Submit the annual performance return",
        ],
    ),
    DemoRecommendation(
        "R-2023-08",
        "Pilot emerging technologies in classification and search",
        "Offices should pilot machine-learning tools for classification and prior-art search, "
        "evaluate them against examiners' results and share the evaluations.",
        "Use of emerging technologies",
        Priority.LOW,
        date(2027, 6, 30),
        [
            "Run a pilot of automated goods-and-services classification",
            "Evaluate an AI-assisted prior-art search tool",
        ],
    ),
    DemoRecommendation(
        "R-2023-09",
        "Measure user experience of online services",
        "Offices should survey users of their online services regularly and publish what they "
        "changed in response.",
        "Digital public services",
        Priority.MEDIUM,
        date(2026, 9, 30),
        [
            "Run the annual user satisfaction survey",
            "Publish the actions taken on survey results",
        ],
    ),
]

#: (status, days from today to the deadline: lowest, highest, progress range)
SCENARIOS: list[tuple[Status, int, int, tuple[int, int]]] = [
    (Status.VERIFIED, -400, -30, (100, 100)),
    (Status.IN_PROGRESS, -120, -1, (10, 80)),  # overdue
    (Status.IN_PROGRESS, 0, 14, (40, 90)),  # due soon
    (Status.NOT_STARTED, 20, 300, (0, 0)),
    (Status.COMPLETED, -60, 60, (100, 100)),  # awaiting verification
    (Status.IN_PROGRESS, 30, 365, (10, 60)),
    (Status.NOT_STARTED, -45, -2, (0, 0)),  # overdue, never started
    (Status.BLOCKED, -20, 90, (20, 50)),
    (Status.VERIFIED, -300, -60, (100, 100)),
    (Status.NOT_STARTED, 1, 10, (0, 0)),  # due soon
]

RESPONSES = [
    ResponseKind.ACCEPTED,
    ResponseKind.ACCEPTED,
    ResponseKind.ACCEPTED,
    ResponseKind.PARTIALLY_ACCEPTED,
    ResponseKind.ACCEPTED,
    ResponseKind.NOTED,
    ResponseKind.ACCEPTED,
]


def demo_users() -> list[tuple[str, str, Role, str | None]]:
    """(email, name, role, office code) of every demo account."""
    users: list[tuple[str, str, Role, str | None]] = [
        ("admin@demo.test", "Demo administrator", Role.ADMIN, None),
        ("reviewer@demo.test", "Demo reviewer", Role.REVIEWER, None),
        ("manager@demo.test", "Programme manager", Role.MANAGER, None),
        ("manager.sg@demo.test", "Manager, Singapore", Role.MANAGER, "SG"),
        # Three offices have a manager of their own; the others' escalations go up the ladder.
        ("manager.my@demo.test", "Manager, Malaysia", Role.MANAGER, "MY"),
        ("manager.th@demo.test", "Manager, Thailand", Role.MANAGER, "TH"),
    ]
    for code, _name, country, _zone in OFFICES:
        users.append((f"focal.{code.lower()}@demo.test", f"Focal point, {country}", Role.FOCAL_POINT, code))
        users.append(
            (f"deputy.{code.lower()}@demo.test", f"Deputy focal point, {country}", Role.FOCAL_POINT, code)
        )
    return users


def seed_demo(today: date, password: str = DEFAULT_PASSWORD) -> dict[str, int]:
    """Load the demo data for ``today``, skipping what exists; returns counts of rows added."""
    added = {
        "offices": 0,
        "users": 0,
        "recommendations": 0,
        "responses": 0,
        "actions": 0,
        "updates": 0,
        "extension requests": 0,
    }
    offices = _seed_offices(added)
    users = _seed_users(offices, password, added)
    source = db.session.scalar(sa.select(Source).where(Source.title == SOURCE["title"]))
    if source is None:
        source = Source(**SOURCE)
        db.session.add(source)
    recommendations = _seed_recommendations(source, added)
    existing = {
        (rec_id, office_id, title)
        for rec_id, office_id, title in db.session.execute(
            sa.select(ActionItem.recommendation_id, ActionItem.office_id, ActionItem.title)
        )
    }
    responded = set(db.session.execute(sa.select(OfficeResponse.recommendation_id, OfficeResponse.office_id)))
    reviewer = users["reviewer@demo.test"]
    for o_index, (code, *_rest) in enumerate(OFFICES):
        office = offices[code]
        focal = users[f"focal.{code.lower()}@demo.test"]
        deputy = users[f"deputy.{code.lower()}@demo.test"]
        for r_index, demo in enumerate(RECOMMENDATIONS):
            rec = recommendations[demo.code]
            rng = random.Random(f"{code}:{demo.code}")
            if (rec.id, office.id) not in responded:
                kind = RESPONSES[(o_index + r_index) % len(RESPONSES)]
                db.session.add(
                    OfficeResponse(
                        recommendation=rec,
                        office=office,
                        response=kind.value,
                        comment=_response_comment(kind),
                        responded_by=focal,
                        responded_at=datetime.combine(date(2023, 4, 15), time(9), UTC),
                    )
                )
                added["responses"] += 1
            count = 1 + (o_index + r_index) % 2
            for k in range(count):
                title = demo.actions[(o_index + k) % len(demo.actions)]
                if (rec.id, office.id, title) in existing:
                    continue
                scenario = SCENARIOS[(o_index * 3 + r_index * 7 + k * 5) % len(SCENARIOS)]
                owner, second = (focal, deputy) if (o_index + k) % 2 == 0 else (deputy, focal)
                _add_item(rec, office, title, owner, second, reviewer, scenario, today, rng, added)
    db.session.flush()
    _seed_extensions(today, users, reviewer, added)
    db.session.flush()
    return added


def _seed_extensions(today: date, users: dict[str, User], reviewer: User, added: dict[str, int]) -> None:
    """Extension requests: three offices wait for a decision on an overdue action, two had one approved.

    Skipped when any request exists already (the demo is loaded once).
    """
    if db.session.scalar(sa.select(sa.func.count(ExtensionRequest.id))):
        return
    open_items = db.session.scalars(
        sa.select(ActionItem)
        .join(ActionItem.office)
        .where(ActionItem.status.in_([Status.IN_PROGRESS.value, Status.BLOCKED.value]))
        .order_by(Office.code, ActionItem.id)
    ).all()
    overdue = [item for item in open_items if item.deadline < today]
    later = [item for item in open_items if item.deadline >= today]
    noon = time(3)
    pending_offices: set[int] = set()
    for item in overdue:
        if len(pending_offices) == 3 or item.office_id in pending_offices:
            continue
        pending_offices.add(item.office_id)
        asker = users[f"focal.{item.office.code.lower()}@demo.test"]
        asked = datetime.combine(today - timedelta(days=4), noon, UTC)
        reason = "The supplier delivered late; we need one more quarter to test and launch."
        request = ExtensionRequest(
            action_item=item,
            requested_by=asker,
            requested_at=asked,
            current_deadline=item.deadline,
            requested_deadline=item.deadline + timedelta(days=120),
            reason=reason,
            state=ExtensionState.PENDING.value,
        )
        db.session.add(request)
        _extension_history(item, request, asker, asked, HistoryEvent.EXTENSION_REQUESTED, reason, added)
    for item in [i for i in later if i.office_id not in pending_offices][:2]:
        # Approved months ago: the current deadline lies 60 days past the agreed one.
        asker = users[f"focal.{item.office.code.lower()}@demo.test"]
        asked = datetime.combine(today - timedelta(days=90), noon, UTC)
        decided = asked + timedelta(days=3)
        item.agreed_deadline = item.deadline - timedelta(days=60)
        reason = "The new law on electronic signatures takes effect two months later than planned."
        request = ExtensionRequest(
            action_item=item,
            requested_by=asker,
            requested_at=asked,
            current_deadline=item.agreed_deadline,
            requested_deadline=item.deadline,
            reason=reason,
            state=ExtensionState.APPROVED.value,
            decided_by=reviewer,
            decided_at=decided,
            decision_note="Agreed: the delay is outside the office's control.",
        )
        db.session.add(request)
        _extension_history(item, request, asker, asked, HistoryEvent.EXTENSION_REQUESTED, reason, added)
        _extension_history(
            item, request, reviewer, decided, HistoryEvent.EXTENSION_APPROVED, request.decision_note, added
        )


def _extension_history(
    item: ActionItem,
    request: ExtensionRequest,
    author: User,
    at: datetime,
    event: HistoryEvent,
    note: str | None,
    added: dict[str, int],
) -> None:
    old = request.current_deadline
    db.session.add(
        ActionUpdate(
            action_item=item,
            author=author,
            created_at=at,
            old_deadline=old,
            new_deadline=request.requested_deadline,
            note=note,
            event=event.value,
            extension=request,
        )
    )
    added["updates"] += 1
    if event is HistoryEvent.EXTENSION_REQUESTED:
        added["extension requests"] += 1


def _seed_offices(added: dict[str, int]) -> dict[str, Office]:
    offices = {o.code: o for o in db.session.scalars(sa.select(Office))}
    for code, name, country, zone in OFFICES:
        if code not in offices:
            offices[code] = Office(code=code, name=name, country=country, timezone=zone, language="en")
            db.session.add(offices[code])
            added["offices"] += 1
    return offices


def _seed_users(offices: dict[str, Office], password: str, added: dict[str, int]) -> dict[str, User]:
    users = {u.email: u for u in db.session.scalars(sa.select(User))}
    for email, name, role, code in demo_users():
        if email not in users:
            user = User(email=email, name=name, role=role.value, office=offices[code] if code else None)
            user.set_password(password)
            users[email] = user
            db.session.add(user)
            added["users"] += 1
    return users


def _seed_recommendations(source: Source, added: dict[str, int]) -> dict[str, Recommendation]:
    recs = {r.code: r for r in db.session.scalars(sa.select(Recommendation))}
    for demo in RECOMMENDATIONS:
        if demo.code not in recs:
            recs[demo.code] = Recommendation(
                source=source,
                code=demo.code,
                title=demo.title,
                text=demo.text,
                theme=demo.theme,
                priority=demo.priority.value,
                target_date=demo.target_date,
            )
            db.session.add(recs[demo.code])
            added["recommendations"] += 1
    db.session.flush()
    return recs


def _response_comment(kind: ResponseKind) -> str | None:
    return {
        ResponseKind.PARTIALLY_ACCEPTED: "Accepted for patents and marks; designs follow later.",
        ResponseKind.NOTED: "Noted; depends on a national e-government programme.",
    }.get(kind)


def _add_item(
    rec: Recommendation,
    office: Office,
    title: str,
    owner: User,
    deputy: User,
    reviewer: User,
    scenario: tuple[Status, int, int, tuple[int, int]],
    today: date,
    rng: random.Random,
    added: dict[str, int],
) -> None:
    """One action item and the history that led to its status."""
    status, low, high, (p_low, p_high) = scenario
    deadline = today + timedelta(days=rng.randint(low, high))
    progress = rng.randint(p_low, p_high)
    noon = time(3)  # about the middle of the working day in the region, in UTC
    agreed = datetime.combine(today - timedelta(days=rng.randint(400, 600)), noon, UTC)
    item = ActionItem(
        recommendation=rec,
        office=office,
        title=title,
        description=f"{office.country}: {title.lower()}, as agreed in the action plan for {rec.code}.",
        owner=owner,
        deputy=deputy,
        deadline=deadline,
        status=status.value,
        progress=progress,
        created_at=agreed,
    )
    history = [
        ActionUpdate(
            author=reviewer,
            created_at=agreed,
            new_status=Status.NOT_STARTED.value,
            new_progress=0,
            new_deadline=deadline,
            note="Action agreed with the office in its action plan.",
        )
    ]
    # Steps between "agreed" and "yesterday", so the history reads in order and ends in the past.
    step = max(1, (today - agreed.date()).days // 5)
    moment = agreed
    if status is not Status.NOT_STARTED:
        moment += timedelta(days=rng.randint(1, step))
        history.append(
            _update(
                owner, moment, Status.NOT_STARTED, Status.IN_PROGRESS, 0, min(progress, 30), "Work started."
            )
        )
    if status is Status.BLOCKED:
        moment += timedelta(days=rng.randint(1, step))
        history.append(
            _update(
                owner,
                moment,
                Status.IN_PROGRESS,
                Status.BLOCKED,
                min(progress, 30),
                progress,
                "Waiting for the budget to be approved.",
            )
        )
    if status is Status.IN_PROGRESS and progress > 30:
        moment += timedelta(days=rng.randint(1, step))
        history.append(
            _update(owner, moment, Status.IN_PROGRESS, Status.IN_PROGRESS, 30, progress, "Progress report.")
        )
    if status in (Status.COMPLETED, Status.VERIFIED):
        moment += timedelta(days=rng.randint(1, step))
        history.append(
            _update(
                owner,
                moment,
                Status.IN_PROGRESS,
                Status.COMPLETED,
                30,
                100,
                "Done; the announcement is published on the office website.",
            )
        )
    if status is Status.VERIFIED:
        moment += timedelta(days=rng.randint(1, step))
        history.append(
            _update(
                reviewer,
                moment,
                Status.COMPLETED,
                Status.VERIFIED,
                100,
                100,
                "Verified against the evidence.",
            )
        )
    item.updated_at = moment
    item.updates = history
    db.session.add(item)
    added["actions"] += 1
    added["updates"] += len(history)


def _update(
    author: User, at: datetime, old: Status, new: Status, old_progress: int, new_progress: int, note: str
) -> ActionUpdate:
    return ActionUpdate(
        author=author,
        created_at=at,
        old_status=old.value,
        new_status=new.value,
        old_progress=old_progress,
        new_progress=new_progress,
        note=note,
    )
