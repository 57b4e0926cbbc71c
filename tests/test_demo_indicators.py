"""The demo's indicators: six of them, every office's goals, eight quarters of credible values."""

from __future__ import annotations

import time as clock
from collections import Counter
from datetime import UTC, date, datetime, time

import pytest
import sqlalchemy as sa

from tracker.demo import OFFICES, seed_demo
from tracker.demo_indicators import SENT_BACK, UNREPORTED
from tracker.extensions import db
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement, MeasurementChange
from tracker.indicators.services import value_problem
from tracker.quarters import Quarter


@pytest.mark.parametrize(
    "today", [date(2026, 11, 24), date(2027, 4, 5)], ids=["mid-quarter", "early-quarter"]
)
def test_demo_indicators(app, today):
    with app.app_context():
        started = clock.perf_counter()
        seed_demo(today)
        db.session.commit()
        assert clock.perf_counter() - started < 30
        indicators = db.session.scalars(sa.select(Indicator)).all()
        assert len(indicators) == 6
        assert {i.unit for i in indicators} == {"percent", "months", "number", "yes_no"}
        assert all(i.definition for i in indicators)
        units = {i.id: i.unit for i in indicators}
        last = Quarter.last_ended(today)
        quarters = [str(q) for q in Quarter(last.year - 2, last.number).next.span(last)]
        assert len(quarters) == 8

        targets = db.session.scalars(sa.select(IndicatorTarget)).all()
        assert len(targets) == 6 * 12
        for t in targets:
            assert t.baseline_period == quarters[0] and t.target_period > str(Quarter.containing(today))
            assert value_problem(units[t.indicator_id], t.baseline_value) is None
            assert value_problem(units[t.indicator_id], t.target_value) is None

        values = db.session.scalars(sa.select(Measurement)).all()
        assert {m.period for m in values} == set(quarters)
        assert all(value_problem(units[m.indicator_id], m.value) is None for m in values)
        # Every office has values, different from the others'.
        online = next(i for i in indicators if i.code == "IND-ONLINE")
        firsts = {m.value for m in values if m.indicator_id == online.id and m.period == quarters[0]}
        assert len(firsts) >= 10
        # Yes/no: some offices switched to yes during the period.
        guide = next(i for i in indicators if i.unit == "yes_no")
        by_office: dict[int, list[float]] = {}
        for m in sorted(values, key=lambda m: m.period):
            if m.indicator_id == guide.id:
                by_office.setdefault(m.office_id, []).append(m.value)
        assert any(v[0] == 0 and v[-1] == 1 for v in by_office.values())

        # The last quarter: a few unreported, a few awaiting validation, one sent back; the rest validated.
        states = Counter(m.state for m in values if m.period == str(last))
        codes = {code: n for n, (code, *_rest) in enumerate(OFFICES)}
        reported_last = {m.office.code for m in values if m.period == str(last)}
        assert reported_last == set(codes) - set(UNREPORTED)
        assert states["reported"] == 3 * 6 and states["sent_back"] == 1
        sent_back = next(m for m in values if m.state == "sent_back")
        assert (sent_back.office.code, sent_back.indicator.code) == SENT_BACK and sent_back.review_note
        assert all(m.state == "validated" for m in values if m.period != str(last))

        # History: every value reported (then reviewed) before today.
        changes = db.session.scalars(sa.select(MeasurementChange)).all()
        assert len(changes) == 2 * len(values) - states["reported"]
        assert max(c.created_at for c in changes) < datetime.combine(today, time(0), UTC)

        assert not any(seed_demo(today).values())  # loading again adds nothing


def test_demo_on_a_quarters_first_day_has_no_value_of_the_quarter_just_ended(app):
    today = date(2027, 1, 1)
    with app.app_context():
        seed_demo(today)
        db.session.commit()
        periods = set(db.session.scalars(sa.select(Measurement.period)))
        assert "2026Q4" not in periods and "2026Q3" in periods
