"""Demo data: twelve offices, the Singapore dialogue's recommendations, their action plans.

The history is placed relative to "today" (tracker/demo_history.py, tracker/demo_events.py), so
that whenever the demo is loaded the programme looks like one in its second year: completions and
verifications in the last quarters, a few recent completions and extension requests waiting for a
reviewer, a recommendation sent to every office three weeks ago, some actions overdue by days or
weeks. Loading twice adds nothing: every row is looked up by its natural key (office code, email,
source title, recommendation code, item title) first.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from tracker.demo_events import (
    decision_mails,
    propose,
    request_and_proposal_mails,
    seed_absences,
    seed_extensions,
)
from tracker.demo_history import (
    Timeline,
    at,
    mark_sent,
    office_kinds,
    place,
    recent_decision_mails,
    write_item,
)
from tracker.demo_indicators import seed_indicators
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ExtensionRequest,
    Notification,
    Office,
    OfficeResponse,
    Priority,
    Recommendation,
    ResponseKind,
    ResponseRequest,
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

#: The dialogue the recommendations come from (its dates follow the day the demo is loaded).
SOURCE_TITLE = "Strategic dialogue on digital public services, Singapore"
#: The recent meeting whose recommendation was sent to every office about three weeks ago.
MEETING_TITLE = "Heads of office meeting on digital services, Bangkok"


@dataclass(frozen=True)
class DemoRecommendation:
    number: int
    title: str
    text: str
    theme: str
    priority: Priority
    #: Days from the day the demo is loaded to the target date.
    target_in: int
    actions: list[str] = field(default_factory=list)

    def code(self, year: int) -> str:
        """``R-<year of the meeting>-<number>``."""
        return f"R-{year}-{self.number:02d}"


RECOMMENDATIONS = [
    DemoRecommendation(
        1,
        "Adopt a digital-first strategy for IP public services",
        "Each office should define which of its services are delivered online by default, "
        "with paper kept as an assisted channel, and publish a timetable for the transition.",
        "Digital public services",
        Priority.HIGH,
        -70,
        [
            "Publish the list of services to be delivered digital-first",
            "Adopt the transition timetable at management level",
        ],
    ),
    DemoRecommendation(
        2,
        "Offer end-to-end e-filing for patents, marks and designs",
        "Applicants should be able to file, pay, receive notifications and respond to office "
        "actions online for every IP right, without a paper step.",
        "E-filing and online services",
        Priority.HIGH,
        200,
        [
            "Extend e-filing to industrial designs",
            "Replace paper notifications with electronic notifications",
            "Accept electronic responses to office actions",
        ],
    ),
    DemoRecommendation(
        3,
        "Provide online payment and electronic certificates",
        "Fees should be payable online through common national payment channels, and grants "
        "issued as verifiable electronic certificates.",
        "E-filing and online services",
        Priority.MEDIUM,
        120,
        [
            "Connect the fee system to the national payment gateway",
            "Issue electronic registration certificates",
        ],
    ),
    DemoRecommendation(
        4,
        "Set up joint governance of policy, IT and users",
        "IT projects should be steered by a board where policy owners, IT staff and "
        "representatives of applicants and attorneys decide priorities together.",
        "IT strategy and collaboration between policy, IT and users",
        Priority.MEDIUM,
        -35,
        [
            "Constitute the IT steering board with user representatives",
            "Hold quarterly user consultations on online services",
        ],
    ),
    DemoRecommendation(
        5,
        "Publish a multi-year IT strategy tied to the business plan",
        "Each office should keep a three-to-five-year IT strategy, costed and linked to its "
        "business objectives, and review it every year.",
        "IT strategy and collaboration between policy, IT and users",
        Priority.MEDIUM,
        45,
        [
            "Draft the multi-year IT strategy",
            "Review the IT strategy against the business plan",
        ],
    ),
    DemoRecommendation(
        6,
        "Share examination guidelines and practice across offices",
        "Offices should publish their examination guidelines and exchange practice on "
        "difficult cases through a regional repository and regular examiner exchanges.",
        "Sharing of examination practice",
        Priority.MEDIUM,
        330,
        [
            "Publish the examination guidelines online",
            "Contribute case studies to the regional repository",
        ],
    ),
    DemoRecommendation(
        7,
        "Exchange performance information every year",
        "Offices should agree a small set of performance indicators (pendency, backlog, "
        "e-filing rate, user satisfaction) and exchange them annually on a common template.",
        "Exchange of performance information",
        Priority.LOW,
        150,
        [
            "Compile the agreed performance indicators",
            "Submit the annual performance return",
        ],
    ),
    DemoRecommendation(
        8,
        "Pilot emerging technologies in classification and search",
        "Offices should pilot machine-learning tools for classification and prior-art search, "
        "evaluate them against examiners' results and share the evaluations.",
        "Use of emerging technologies",
        Priority.LOW,
        365,
        [
            "Run a pilot of automated goods-and-services classification",
            "Evaluate an AI-assisted prior-art search tool",
        ],
    ),
    DemoRecommendation(
        9,
        "Measure user experience of online services",
        "Offices should survey users of their online services regularly and publish what they "
        "changed in response.",
        "Digital public services",
        Priority.MEDIUM,
        260,
        [
            "Run the annual user satisfaction survey",
            "Publish the actions taken on survey results",
        ],
    ),
]

#: The recent recommendation, sent to every office about three weeks ago (code R-<year>-01).
NEW_RECOMMENDATION = DemoRecommendation(
    1,
    "Offer a single online account for all IP services",
    "Applicants should reach every online service of the office (filing, payment, file "
    "inspection, renewals) with one account and one sign-in.",
    "Digital public services",
    Priority.MEDIUM,
    300,
    ["Offer a single sign-in across the office's online services"],
)

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


def is_deputy(email: str) -> bool:
    """True for the second focal point of an office (the deputy on half of its actions)."""
    return email.startswith("deputy.")


def seed_demo(today: date, password: str = DEFAULT_PASSWORD) -> dict[str, int]:
    """Load the demo data with its history placed relative to ``today``, skipping what exists.

    Returns counts of rows added. The history's dates all derive from ``today`` (see
    tracker/demo_history.py), so the demo looks the same whenever it is loaded.
    """
    added = dict.fromkeys(
        ("offices", "users", "recommendations", "responses", "actions", "updates", "extension requests"), 0
    )
    line = Timeline(today)
    offices = _seed_offices(added)
    users = _seed_users(offices, password, line, added)
    reviewer = users["reviewer@demo.test"]
    source = _source(SOURCE_TITLE, line.dialogue, 5)
    recommendations = _seed_recommendations(source, RECOMMENDATIONS, line, line.adopted, added)
    existing = {
        (rec_id, office_id, title)
        for rec_id, office_id, title in db.session.execute(
            sa.select(ActionItem.recommendation_id, ActionItem.office_id, ActionItem.title)
        )
    }
    responded = set(db.session.execute(sa.select(OfficeResponse.recommendation_id, OfficeResponse.office_id)))
    #: (office code, kind) → the actions placed so, for the extension requests.
    placed: dict[tuple[str, str], list[ActionItem]] = {}
    for o_index, (code, *_rest) in enumerate(OFFICES):
        office = offices[code]
        focal = users[f"focal.{code.lower()}@demo.test"]
        deputy = users[f"deputy.{code.lower()}@demo.test"]
        kinds = iter(office_kinds(o_index))
        for r_index, demo in enumerate(RECOMMENDATIONS):
            rec = recommendations[demo.number]
            rng = random.Random(f"{code}:{demo.number}")
            if (rec.id, office.id) not in responded:
                kind = RESPONSES[(o_index + r_index) % len(RESPONSES)]
                moment = at(line.adopted + timedelta(days=rng.randint(20, 70)), rng)
                _respond(rec, office, focal, kind, moment)
                added["responses"] += 1
            for k in range(1 + (o_index + r_index) % 2):
                title = demo.actions[(o_index + k) % len(demo.actions)]
                kind_name = next(kinds)
                if (rec.id, office.id, title) in existing:
                    continue
                owner, second = (focal, deputy) if (o_index + k) % 2 == 0 else (deputy, focal)
                item = _add_item(rec, office, title, owner, second, today)
                done = place(kind_name, line, random.Random(f"{code}:{demo.number}:{k}"))
                if done.status not in (Status.COMPLETED, Status.VERIFIED) and rec.target_date:
                    done.deadline = min(done.deadline, max(rec.target_date, today + timedelta(days=30)))
                item.deadline, item.status, item.progress = done.deadline, done.status.value, done.progress
                added["updates"] += write_item(item, done, owner, reviewer, rng)
                added["actions"] += 1
                placed.setdefault((code, kind_name), []).append(item)
    db.session.flush()
    _seed_recent(line, offices, users, added)
    seed_indicators(line, offices, users, added)
    first_mail = db.session.scalar(sa.select(sa.func.max(Notification.id))) or 0
    if not db.session.scalar(sa.select(sa.func.count(ExtensionRequest.id))):
        seed_extensions(line, placed, users, added)
    db.session.flush()
    if not first_mail:  # the outbox was empty: the mails the recent decisions caused
        recent_decision_mails(line)
        decision_mails(line)
        request_and_proposal_mails()
        _last_digest(line)
        mark_sent(first_mail)
    db.session.flush()
    return added


def _seed_recent(
    line: Timeline, offices: dict[str, Office], users: dict[str, User], added: dict[str, int]
) -> None:
    """The recommendation sent to every office three weeks ago, the answers so far, the proposals
    made for it, and the absences around today."""
    meeting = _source(MEETING_TITLE, line.meeting, 3)
    rec = _seed_recommendations(
        meeting, [NEW_RECOMMENDATION], line, line.meeting + timedelta(days=10), added
    )[NEW_RECOMMENDATION.number]
    reviewer = users["reviewer@demo.test"]
    asked = set(
        db.session.scalars(
            sa.select(ResponseRequest.office_id).where(ResponseRequest.recommendation_id == rec.id)
        )
    )
    responded = set(
        db.session.scalars(
            sa.select(OfficeResponse.office_id).where(OfficeResponse.recommendation_id == rec.id)
        )
    )
    titles = set(
        db.session.scalars(sa.select(ActionItem.office_id).where(ActionItem.recommendation_id == rec.id))
    )
    rng = random.Random("recent")
    sent_at = at(line.days_ago(21), rng)
    for index, (code, *_rest) in enumerate(OFFICES):
        office, focal = offices[code], users[f"focal.{code.lower()}@demo.test"]
        if office.id not in asked:
            db.session.add(
                ResponseRequest(
                    recommendation=rec, office=office, requested_by=reviewer, requested_at=sent_at
                )
            )
        if code in ANSWERED and office.id not in responded:
            kind = ResponseKind.PARTIALLY_ACCEPTED if code == "MY" else ResponseKind.ACCEPTED
            _respond(rec, office, focal, kind, at(line.days_ago(19 - 2 * index % 17), rng))
            added["responses"] += 1
        if code in PROPOSALS and office.id not in titles:
            item = _add_item(
                rec,
                office,
                NEW_RECOMMENDATION.actions[0],
                focal,
                users[f"deputy.{code.lower()}@demo.test"],
                line.today,
            )
            added["updates"] += propose(item, PROPOSALS[code], line, focal, reviewer, rng)
            added["actions"] += 1
    seed_absences(line, users)


#: Offices that answered the recent recommendation, and what became of their proposed actions.
ANSWERED = ("ID", "KH", "MY", "PH", "SG", "TH", "VN")
PROPOSALS = {"PH": "proposed", "VN": "proposed", "ID": "accepted", "KH": "declined"}


def _last_digest(line: Timeline) -> None:
    """The last quarter's digest, as the managers received it on the first morning of this quarter."""
    from tracker.notifications.compose import compose_digests

    first = line.quarter.first_day
    if first < line.today:
        compose_digests(line.quarter.previous, datetime.combine(first, time(1), UTC))


def _source(title: str, starts_on: date, days: int) -> Source:
    """The demo source of that title, made with its dates if missing."""
    source = db.session.scalar(sa.select(Source).where(Source.title == title))
    if source is None:
        place_name = title.rsplit(", ", 1)[-1]
        source = Source(
            title=title, place=place_name, starts_on=starts_on, ends_on=starts_on + timedelta(days=days - 1)
        )
        db.session.add(source)
    return source


def _respond(rec: Recommendation, office: Office, focal: User, kind: ResponseKind, moment: datetime) -> None:
    db.session.add(
        OfficeResponse(
            recommendation=rec,
            office=office,
            response=kind.value,
            comment=_response_comment(kind),
            responded_by=focal,
            responded_at=moment,
        )
    )


def _seed_offices(added: dict[str, int]) -> dict[str, Office]:
    offices = {o.code: o for o in db.session.scalars(sa.select(Office))}
    for code, name, country, zone in OFFICES:
        if code not in offices:
            offices[code] = Office(code=code, name=name, country=country, timezone=zone, language="en")
            db.session.add(offices[code])
            added["offices"] += 1
    return offices


def _seed_users(
    offices: dict[str, Office], password: str, line: Timeline, added: dict[str, int]
) -> dict[str, User]:
    """The demo accounts, made when the recommendations were adopted."""
    users = {u.email: u for u in db.session.scalars(sa.select(User))}
    made = datetime.combine(line.adopted, time(2), UTC)
    hashed: str | None = None
    for email, name, role, code in demo_users():
        if email not in users:
            user = User(email=email, name=name, role=role.value, office=offices[code] if code else None)
            # One (salted, slow) hash for the shared password: thirty would take half a minute.
            if hashed is None:
                user.set_password(password)
                hashed = user.password_hash
            user.password_hash = hashed
            user.created_at = made
            users[email] = user
            db.session.add(user)
            added["users"] += 1
    return users


def _seed_recommendations(
    source: Source, demos: list[DemoRecommendation], line: Timeline, adopted: date, added: dict[str, int]
) -> dict[int, Recommendation]:
    """The source's recommendations by number, coded with the year of the source."""
    year = source.starts_on.year if source.starts_on else line.today.year
    codes = {demo.code(year): demo for demo in demos}
    found = {
        r.code: r for r in db.session.scalars(sa.select(Recommendation).where(Recommendation.code.in_(codes)))
    }
    for code, demo in codes.items():
        if code not in found:
            made = datetime.combine(adopted, time(4), UTC)
            found[code] = Recommendation(
                source=source,
                code=code,
                title=demo.title,
                text=demo.text,
                theme=demo.theme,
                priority=demo.priority.value,
                target_date=line.today + timedelta(days=demo.target_in),
                created_at=made,
                updated_at=made,
            )
            db.session.add(found[code])
            added["recommendations"] += 1
    db.session.flush()
    return {codes[code].number: rec for code, rec in found.items()}


def _response_comment(kind: ResponseKind) -> str | None:
    return {
        ResponseKind.PARTIALLY_ACCEPTED: "Accepted for patents and marks; designs follow later.",
        ResponseKind.NOTED: "Noted; depends on a national e-government programme.",
    }.get(kind)


def _add_item(
    rec: Recommendation, office: Office, title: str, owner: User, deputy: User, today: date
) -> ActionItem:
    """A new action (its dates, status and history are placed by the caller)."""
    item = ActionItem(
        recommendation=rec,
        office=office,
        title=title,
        description=f"{office.country}: {title.lower()}, as agreed in the action plan for {rec.code}.",
        owner=owner,
        deputy=deputy,
        deadline=today,
    )
    db.session.add(item)
    return item
