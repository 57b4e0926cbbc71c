"""The demo's indicators: six measures from the dialogue's themes, with each office's baseline,
target and eight quarters of values ending with the last quarter that has ended (tracker/demo.py
calls :func:`seed_indicators`).

Like the rest of the demo, everything derives from "today": the indicators were agreed about a
month after the recommendations were adopted (the earlier quarters were entered then, from the
offices' records), each later quarter was reported two to four weeks after it ended and validated
by the demo reviewer days later. The values are drawn from a random generator seeded by indicator
and office, so the demo is the same whenever it is loaded: each office starts from its own baseline
and moves toward its target with some noise. In the last quarter a few offices have not reported
yet, a few wait for validation and one value was sent back with a note.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from tracker.demo_history import Timeline, at
from tracker.extensions import db
from tracker.indicators.models import (
    Indicator,
    IndicatorTarget,
    Measurement,
    MeasurementChange,
    MeasurementEvent,
    MeasurementState,
)
from tracker.models import Office, User, mark_data_changed
from tracker.quarters import Quarter

#: Quarters of values per office, the last being the last quarter that has ended.
QUARTERS = 8
#: How many quarters after the current one the targets fall.
TARGET_AHEAD = 4
#: Offices that have not reported the last quarter yet, and those whose values await validation.
UNREPORTED = ("LA", "MN")
AWAITING = ("BD", "KH", "PH")
#: The one value sent back by the reviewer (office, indicator), and why.
SENT_BACK = ("VN", "IND-EXAM")
SENT_BACK_NOTE = (
    "Please check the figure: it seems to count from the request for examination, not from filing."
)


@dataclass(frozen=True)
class DemoIndicator:
    """One demo indicator, and how to draw an office's baseline and target from its generator."""

    code: str
    name: str
    unit: str
    direction: str
    definition: str
    #: (baseline, target) for an office.
    goal: Callable[[random.Random], tuple[float, float]]
    #: Decimal places of its values.
    places: int
    #: Noise around the trend, as a share of the distance from baseline to target.
    noise: float = 0.15


def _online(rng: random.Random) -> tuple[float, float]:
    base = rng.uniform(20, 70)
    return base, min(98.0, base + rng.uniform(15, 30))


def _exam(rng: random.Random) -> tuple[float, float]:
    base = rng.uniform(10, 30)
    return base, base * rng.uniform(0.5, 0.7)


def _services(rng: random.Random) -> tuple[float, float]:
    base = rng.randint(3, 15)
    return base, base + rng.randint(5, 12)


def _satisfaction(rng: random.Random) -> tuple[float, float]:
    base = rng.uniform(55, 80)
    return base, min(95.0, base + rng.uniform(8, 15))


def _uptime(rng: random.Random) -> tuple[float, float]:
    return rng.uniform(95, 99), rng.choice((99.5, 99.8, 99.9))


def _guidelines(rng: random.Random) -> tuple[float, float]:
    return 0, 1  # the quarter they are published in is drawn by _values


INDICATORS = (
    DemoIndicator(
        "IND-ONLINE",
        "Share of patent applications filed online",
        "percent",
        "higher",
        "Patent applications received through the office's online filing system in the quarter, "
        "as a percentage of all patent applications received in the quarter.",
        _online,
        1,
    ),
    DemoIndicator(
        "IND-EXAM",
        "Months to first examination action",
        "months",
        "lower",
        "Median time, in months, from the filing date to the first examination report or office "
        "action, over the applications that received one in the quarter.",
        _exam,
        1,
    ),
    DemoIndicator(
        "IND-SERVICES",
        "Services available online",
        "number",
        "higher",
        "Number of the office's services (filing, renewal, recordal, search, payment, certified copy…) "
        "that can be completed entirely online on the last day of the quarter.",
        _services,
        0,
        noise=0.05,
    ),
    DemoIndicator(
        "IND-SATISFACTION",
        "User satisfaction",
        "percent",
        "higher",
        "Share of respondents to the office's user survey who are satisfied or very satisfied with "
        "its services, from the survey closed in or last before the quarter.",
        _satisfaction,
        1,
    ),
    DemoIndicator(
        "IND-UPTIME",
        "IT system availability",
        "percent",
        "higher",
        "Time the online filing and search systems were available during the published service "
        "hours of the quarter, as a percentage of those hours, planned maintenance excluded.",
        _uptime,
        2,
        noise=0.25,
    ),
    DemoIndicator(
        "IND-GUIDELINES",
        "Examination guidelines published online",
        "yes_no",
        "higher",
        "Yes when the office's current patent examination guidelines are published on its website, "
        "free of charge, on the last day of the quarter.",
        _guidelines,
        0,
    ),
)


def _values(demo: DemoIndicator, rng: random.Random, base: float, target: float) -> list[float]:
    """The office's values over the quarters: from its baseline toward its target, with noise."""
    if demo.unit == "yes_no":
        # Some offices published before the period, some during it, a few not yet.
        switch = rng.choice((0, 2, 3, 4, 5, 6, 7, None, None))
        return [1.0 if switch is not None and k >= switch else 0.0 for k in range(QUARTERS)]
    reach = rng.uniform(0.45, 0.95)  # how far toward the target the office has come by now
    values, spread = [], abs(target - base) * demo.noise
    for k in range(QUARTERS):
        trend = base + (target - base) * reach * k / (QUARTERS - 1)
        value = trend + (rng.uniform(-spread, spread) if k else 0)
        if demo.unit == "percent":
            value = min(value, 100.0)
        if demo.unit == "number" and values:
            value = max(value, values[-1])  # services once online stay online
        values.append(round(max(value, 0.0), demo.places))
    return values


def seed_indicators(
    line: Timeline, offices: dict[str, Office], users: dict[str, User], added: dict[str, int]
) -> None:
    """The six indicators with every office's goals and values; an indicator already there is left
    as it is (loading twice adds nothing)."""
    added.setdefault("indicators", 0)
    added.setdefault("indicator values", 0)
    existing = set(db.session.scalars(sa.select(Indicator.code)))
    reviewer = users["reviewer@demo.test"]
    last = line.quarter.previous
    quarters = [last]
    while len(quarters) < QUARTERS:
        quarters.insert(0, quarters[0].previous)
    target_period = line.quarter
    for _ in range(TARGET_AHEAD):
        target_period = target_period.next
    agreed = line.adopted + timedelta(days=30)
    #: Values to write in bulk: their indicator, row and history.
    pending: list[tuple[Indicator, dict[str, Any], list[dict[str, Any]]]] = []
    for demo in INDICATORS:
        if demo.code in existing:
            continue
        indicator = Indicator(
            code=demo.code,
            name=demo.name,
            unit=demo.unit,
            direction=demo.direction,
            definition=demo.definition,
            created_at=at(agreed, random.Random(demo.code)),
        )
        indicator.updated_at = indicator.created_at
        db.session.add(indicator)
        added["indicators"] += 1
        for code, office in offices.items():
            rng = random.Random(f"indicator:{demo.code}:{code}")
            base, target = demo.goal(rng)
            values = _values(demo, rng, round(base, demo.places), round(target, demo.places))
            db.session.add(
                IndicatorTarget(
                    indicator=indicator,
                    office=office,
                    baseline_value=values[0],
                    baseline_period=str(quarters[0]),
                    target_value=round(target, demo.places),
                    target_period=str(target_period),
                    updated_by=reviewer,
                    updated_at=indicator.created_at,
                )
            )
            for quarter, value in zip(quarters, values, strict=True):
                if quarter == last and code in UNREPORTED:
                    continue
                spec = _Value(demo, office, quarter, value, users[f"focal.{code.lower()}@demo.test"])
                if (planned := _history(spec, line, agreed, reviewer, rng)) is not None:
                    pending.append((indicator, *planned))
    db.session.flush()  # the indicators' ids
    _insert(pending)
    added["indicator values"] += len(pending)


@dataclass(frozen=True)
class _Value:
    """One office's value of a demo indicator for a quarter, and who reported it."""

    demo: DemoIndicator
    office: Office
    quarter: Quarter
    value: float
    focal: User


def _insert(pending: list[tuple[Indicator, dict[str, Any], list[dict[str, Any]]]]) -> None:
    """Write the values and their history in two bulk statements (the demo loads in seconds)."""
    if not pending:
        return
    rows = [dict(row, indicator_id=indicator.id) for indicator, row, _changes in pending]
    ids = db.session.scalars(
        sa.insert(Measurement).returning(Measurement.id, sort_by_parameter_order=True), rows
    ).all()
    changes = [
        dict(change, measurement_id=measurement_id)
        for measurement_id, (_indicator, _row, history) in zip(ids, pending, strict=True)
        for change in history
    ]
    db.session.execute(sa.insert(MeasurementChange), changes)
    mark_data_changed(db.session)


def _history(
    spec: _Value, line: Timeline, agreed: date, reviewer: User, rng: random.Random
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """One value's row and its history: reported after its quarter ended (or when the indicators
    were agreed, for the quarters before), then validated, left awaiting or sent back; None when its
    quarter ended too recently to have been reported."""
    yesterday = line.today - timedelta(days=1)
    reported_on = min(max(spec.quarter.last_day + timedelta(days=rng.randint(12, 28)), agreed), yesterday)
    if reported_on <= spec.quarter.last_day:
        return None  # the quarter has only just ended
    reported_at = at(reported_on, rng)
    reviewed_at = max(at(min(reported_on + timedelta(days=rng.randint(2, 10)), yesterday), rng), reported_at)
    last = spec.quarter == line.quarter.previous
    if last and (spec.office.code, spec.demo.code) == SENT_BACK:
        state = MeasurementState.SENT_BACK
    elif last and spec.office.code in AWAITING:
        state = MeasurementState.REPORTED
    else:
        state = MeasurementState.VALIDATED
    reviewed = state != MeasurementState.REPORTED
    note = SENT_BACK_NOTE if state == MeasurementState.SENT_BACK else None
    row = {
        "office_id": spec.office.id,
        "period": str(spec.quarter),
        "value": spec.value,
        "state": state.value,
        "reported_by_id": spec.focal.id,
        "reported_at": reported_at,
        "reviewed_by_id": reviewer.id if reviewed else None,
        "reviewed_at": reviewed_at if reviewed else None,
        "review_note": note,
        "version": 2 if reviewed else 1,
    }
    changes = [
        {
            "author_id": spec.focal.id,
            "created_at": reported_at,
            "event": MeasurementEvent.REPORTED.value,
            "old_value": None,
            "new_value": spec.value,
            "old_state": None,
            "new_state": MeasurementState.REPORTED.value,
            "note": None,
        }
    ]
    if reviewed:
        changes.append(
            {
                "author_id": reviewer.id,
                "created_at": reviewed_at,
                "event": state.value,
                "old_value": spec.value,
                "new_value": spec.value,
                "old_state": MeasurementState.REPORTED.value,
                "new_state": state.value,
                "note": note,
            }
        )
    return row, changes
