"""The benchmark's workload, written straight to the database with core bulk inserts.

N actions over the twelve offices (``tracker.demo.OFFICES``), five focal points each (60 owners),
one manager per office, a programme manager, a reviewer and an admin; one source and 100
recommendations, each with actions in every office. Of the actions, exactly 20 % are closed
(verified, completed or cancelled), 30 % open and overdue (deadline 2 to 150 days ago) and 50 %
open and due ahead (2 to 365 days); each has its history (a "created" row, and one or two for its
status). A quarter of the open actions have not been updated for more than 90 days. Beside them,
``INDICATORS`` indicators with every office's baseline and target and ``QUARTERS`` quarters of values
(ten years: far more than a programme keeps), all validated but the last quarter's, where a third
await validation and a sixth are missing. Everything is
drawn from a seeded random generator, relative to "today", so two runs on the same day write the
same data.

The rows are written with ``session.execute(insert(table), rows)`` in batches of ``BATCH``
(SQLAlchemy cuts each executemany to the database's parameter limit), with explicit ids so that
the history can refer to its actions without reading them back.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from tracker.batches import chunks
from tracker.demo import OFFICES
from tracker.extensions import db
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement, MeasurementChange
from tracker.models import (
    ActionItem,
    ActionUpdate,
    HistoryEvent,
    Office,
    Recommendation,
    Role,
    Source,
    Status,
    User,
)
from tracker.quarters import Quarter

PASSWORD = "bench-password"
#: Who the benchmark signs in as (sees every office), and whose API token it uses.
REVIEWER = "reviewer@bench.test"
ADMIN = "admin@bench.test"
FOCAL_POINTS_PER_OFFICE = 5
#: A programme's recommendations do not grow with its actions: each has more of them.
RECOMMENDATIONS = 100
#: Rows handed to one executemany (SQLAlchemy cuts it further to the database's limit).
BATCH = 5000
#: Indicators, and quarters of values per office and indicator.
INDICATORS, QUARTERS = 24, 40
#: The proportions the issue's workload asks for.
CLOSED, OVERDUE = 0.20, 0.30  # the rest (50 %) is open and due ahead

_OPEN_STATUSES = [Status.NOT_STARTED] * 40 + [Status.IN_PROGRESS] * 45 + [Status.BLOCKED] * 15
_CLOSED_STATUSES = [Status.VERIFIED] * 60 + [Status.COMPLETED] * 30 + [Status.CANCELLED] * 10


@dataclass
class Workload:
    """What was written: counts by kind, and the time it took."""

    actions: int = 0
    history: int = 0
    users: int = 0
    offices: int = 0
    recommendations: int = 0
    measurements: int = 0
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


def reset_schema() -> None:
    """Drop and create every table of the app's metadata (the benchmark's database only)."""
    db.drop_all()
    db.create_all()


def generate(actions: int, *, seed: int = 13, today: date | None = None) -> Workload:
    """Write the workload into the (empty) tables of the current app's database; commits."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    today = today or now.date()
    rng = random.Random(seed)
    workload = Workload()
    password_hash = generate_password_hash(PASSWORD)

    offices = [
        {
            "id": n,
            "code": code,
            "name": name,
            "country": country,
            "timezone": zone,
            "language": "en",
            "active": True,
        }
        for n, (code, name, country, zone) in enumerate(OFFICES, start=1)
    ]
    _insert(Office, offices)
    workload.offices = len(offices)

    users: list[dict] = []

    def person(email: str, name: str, role: Role, office_id: int | None) -> int:
        users.append(
            {
                "id": len(users) + 1,
                "email": email,
                "name": name,
                "role": role.value,
                "office_id": office_id,
                "password_hash": password_hash,
                "active": True,
                "session_token": secrets.token_urlsafe(32),
                "created_at": now - timedelta(days=800),
            }
        )
        return len(users)

    person(ADMIN, "Bench Admin", Role.ADMIN, None)
    reviewer = person(REVIEWER, "Bench Reviewer", Role.REVIEWER, None)
    person("manager@bench.test", "Programme Manager", Role.MANAGER, None)
    focal_points: dict[int, list[int]] = {}
    for office in offices:
        code = office["code"].lower()
        person(f"manager.{code}@bench.test", f"Manager {office['code']}", Role.MANAGER, office["id"])
        focal_points[office["id"]] = [
            person(
                f"focal{k}.{code}@bench.test", f"Focal {k} {office['code']}", Role.FOCAL_POINT, office["id"]
            )
            for k in range(1, FOCAL_POINTS_PER_OFFICE + 1)
        ]
    _insert(User, users)
    workload.users = len(users)

    _insert(
        Source,
        [
            {
                "id": 1,
                "title": "Benchmark dialogue",
                "place": "Loopback",
                "starts_on": today - timedelta(days=900),
            }
        ],
    )
    recommendation_count = min(RECOMMENDATIONS, math.ceil(actions / len(offices)))
    _insert(
        Recommendation,
        (
            {
                "id": r,
                "source_id": 1,
                "code": f"B-{r:05d}",
                "title": f"Benchmark recommendation {r}",
                "text": "A recommendation of the benchmark's workload.",
                "theme": ("Digital services", "Examination", "Enforcement", "Awareness")[r % 4],
                "priority": ("high", "medium", "low")[r % 3],
                "created_at": now - timedelta(days=700),
                "updated_at": now - timedelta(days=700),
            }
            for r in range(1, recommendation_count + 1)
        ),
    )
    workload.recommendations = recommendation_count

    # Exact proportions, in a random order over the offices.
    closed, overdue = round(actions * CLOSED), round(actions * OVERDUE)
    kinds = ["closed"] * closed + ["overdue"] * overdue + ["ahead"] * (actions - closed - overdue)
    rng.shuffle(kinds)
    workload.by_kind = {kind: kinds.count(kind) for kind in ("closed", "overdue", "ahead")}

    for batch in chunks(enumerate(kinds, start=1), BATCH):
        items: list[dict] = []
        history: list[dict] = []
        for n, kind in batch:
            office = offices[(n - 1) % len(offices)]
            # Twelve actions in a row (one per office) share a recommendation: each has every office.
            recommendation = (n - 1) // len(offices) % recommendation_count + 1
            people = focal_points[office["id"]]
            item, rows = _action(rng, n, kind, office, recommendation, people, reviewer, now, today)
            items.append(item)
            history.extend(rows)
        workload.actions += _insert(ActionItem, items)  # the actions first: the history refers to them
        workload.history += _insert(ActionUpdate, history)
    workload.measurements = _indicators(rng, offices, focal_points, reviewer, now, today)
    _fix_sequences()
    db.session.commit()
    workload.seconds = time.perf_counter() - started
    return workload


def _action(
    rng: random.Random,
    n: int,
    kind: str,
    office: dict,
    recommendation: int,
    people: list[int],
    reviewer: int,
    now: datetime,
    today: date,
) -> tuple[dict, list[dict]]:
    """Action ``n`` of ``kind`` (closed, overdue, ahead) in ``office`` for ``recommendation``, and
    its history rows."""
    owner = rng.choice(people)
    deputy = rng.choice([p for p in people if p != owner]) if rng.random() < 0.3 else None
    created_at = now - timedelta(days=rng.randint(200, 600), minutes=rng.randint(0, 1440))
    if kind == "closed":
        status = rng.choice(_CLOSED_STATUSES)
        deadline = today + timedelta(days=rng.randint(-200, 200))
    else:
        status = rng.choice(_OPEN_STATUSES)
        deadline = today + timedelta(days=rng.randint(2, 365) if kind == "ahead" else -rng.randint(2, 150))
    # A quarter of the open actions idle for more than 90 days (what the stale reminder looks for).
    is_open = status not in (Status.VERIFIED, Status.COMPLETED, Status.CANCELLED)
    idle = rng.randint(91, 180) if is_open and rng.random() < 0.25 else rng.randint(0, 89)
    updated_at = max(created_at, now - timedelta(days=idle, minutes=rng.randint(0, 1440)))
    progress = {
        Status.NOT_STARTED: 0,
        Status.IN_PROGRESS: rng.randint(10, 90),
        Status.BLOCKED: rng.randint(0, 60),
        Status.CANCELLED: rng.randint(0, 80),
    }.get(status, 100)
    moves = _moves(status)
    history = [_history(n, reviewer, created_at, 1, None, Status.NOT_STARTED, 0, HistoryEvent.CREATED)]
    step = (updated_at - created_at) / (len(moves) or 1)
    before = Status.NOT_STARTED
    for k, (after, event) in enumerate(moves, start=1):
        author = reviewer if event else owner
        history.append(_history(n, author, created_at + step * k, k + 1, before, after, progress, event))
        before = after
    item = {
        "id": n,
        "recommendation_id": recommendation,
        "office_id": office["id"],
        "title": f"Action {n:06d} of {office['code']}",
        "description": "Part of the benchmark's workload.",
        "owner_id": owner,
        "deputy_id": deputy,
        "deadline": deadline,
        "agreed_deadline": deadline,
        "status": status.value,
        "progress": progress,
        "version": 1 + len(moves),
        "created_at": created_at,
        "updated_at": updated_at,
    }
    return item, history


def _moves(status: Status) -> list[tuple[Status, HistoryEvent | None]]:
    """The history rows after "created" that lead to ``status`` (None: a plain update)."""
    if status == Status.NOT_STARTED:
        return []
    if status == Status.VERIFIED:
        return [(Status.COMPLETED, None), (Status.VERIFIED, HistoryEvent.VERIFIED)]
    return [(status, None)]


def _history(
    item_id: int,
    author: int,
    at: datetime,
    version: int,
    old: Status | None,
    new: Status,
    progress: int,
    event: HistoryEvent | None,
) -> dict:
    return {
        "action_item_id": item_id,
        "author_id": author,
        "created_at": at,
        "item_version": version,
        "old_status": old.value if old else None,
        "new_status": new.value,
        "old_progress": None if old is None else 0,
        "new_progress": progress if new != Status.NOT_STARTED else 0,
        "note": "Agreed in the plan." if event == HistoryEvent.CREATED else "Progress report.",
        "event": event.value if event else None,
    }


def _indicators(
    rng: random.Random,
    offices: list[dict],
    focal_points: dict[int, list[int]],
    reviewer: int,
    now: datetime,
    today: date,
) -> int:
    """INDICATORS indicators, each office's baseline and target, QUARTERS quarters of values with
    their history; how many values."""
    units = ("percent", "months", "number", "percent", "percent", "yes_no")
    last = Quarter.last_ended(today)
    quarters = Quarter(last.year - QUARTERS // 4, last.number).next.span(last)
    _insert(
        Indicator,
        (
            {
                "id": i,
                "code": f"B-IND-{i:02d}",
                "name": f"Benchmark indicator {i}",
                "definition": "An indicator of the benchmark's workload.",
                "unit": units[i % len(units)],
                "direction": "lower" if units[i % len(units)] == "months" else "higher",
                "period": "quarterly",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(1, INDICATORS + 1)
        ),
    )
    targets, values, history = [], [], []
    for i in range(1, INDICATORS + 1):
        unit = units[i % len(units)]
        high = {"percent": 100.0, "months": 40.0, "number": 50.0, "yes_no": 1.0}[unit]
        for office in offices:
            base = round(rng.uniform(0, high * 0.6), 1) if unit != "yes_no" else 0.0
            goal = round(min(high, base + high * 0.3), 1) if unit != "months" else round(base * 0.5, 1)
            targets.append(
                {
                    "indicator_id": i,
                    "office_id": office["id"],
                    "baseline_value": base,
                    "baseline_period": str(quarters[0]),
                    "target_value": goal if unit != "yes_no" else 1.0,
                    "target_period": str(last.next.next),
                    "updated_at": now,
                }
            )
            for k, quarter in enumerate(quarters):
                newest = quarter == last
                if newest and rng.random() < 1 / 6:
                    continue  # not reported yet
                state = "reported" if newest and rng.random() < 1 / 3 else "validated"
                share = k / len(quarters)
                value = 1.0 if unit == "yes_no" and share > 0.5 else base + (goal - base) * share
                value = round(min(high, max(0.0, value + rng.uniform(-1, 1) * high * 0.02)), 1)
                if unit == "yes_no":
                    value = 1.0 if value >= 0.5 else 0.0
                mid = len(values) + 1
                reported_at = datetime.combine(
                    quarter.last_day + timedelta(days=10), datetime.min.time(), UTC
                )
                values.append(
                    {
                        "id": mid,
                        "indicator_id": i,
                        "office_id": office["id"],
                        "period": str(quarter),
                        "value": value,
                        "state": state,
                        "reported_by_id": focal_points[office["id"]][0],
                        "reported_at": reported_at,
                        "reviewed_by_id": reviewer if state == "validated" else None,
                        "reviewed_at": reported_at + timedelta(days=3) if state == "validated" else None,
                        "version": 2 if state == "validated" else 1,
                    }
                )
                history.append(
                    {
                        "measurement_id": mid,
                        "author_id": focal_points[office["id"]][0],
                        "created_at": reported_at,
                        "event": "reported",
                        "old_value": None,
                        "new_value": value,
                        "old_state": None,
                        "new_state": "reported",
                    }
                )
                if state == "validated":
                    history.append(
                        {
                            "measurement_id": mid,
                            "author_id": reviewer,
                            "created_at": reported_at + timedelta(days=3),
                            "event": "validated",
                            "old_value": value,
                            "new_value": value,
                            "old_state": "reported",
                            "new_state": "validated",
                        }
                    )
    _insert(IndicatorTarget, targets)
    _insert(Measurement, values)
    _insert(MeasurementChange, history)
    return len(values)


def _insert(model: type[db.Model], rows) -> int:
    """Insert ``rows`` (an iterable of dicts) in executemany batches of BATCH; how many."""
    count = 0
    for batch in chunks(rows, BATCH):
        db.session.execute(sa.insert(model.__table__), batch)
        count += len(batch)
    return count


def _fix_sequences() -> None:
    """PostgreSQL: move each id sequence past the ids written explicitly."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    for model in (Office, User, Source, Recommendation, ActionItem, ActionUpdate, Indicator, Measurement):
        table = model.__table__.name
        db.session.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            )
        )
