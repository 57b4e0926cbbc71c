"""The indicator commands and queries: bounds, quarters, one value per quarter, review, visibility."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from werkzeug.exceptions import Forbidden

from tracker.actions.commands import StateConflict, WorkflowError
from tracker.extensions import db
from tracker.indicators import queries, services
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement, MeasurementChange
from tracker.models import Office, User
from tracker.permissions import may_see_measurement
from tracker.quarters import Quarter

NOW = datetime(2026, 11, 24, 4, tzinfo=UTC)


def _user(world, label):
    return db.session.get(User, world.user_ids[label])


def _office(world, code):
    return db.session.get(Office, world.offices[code])


def _indicator(indicators, code):
    return db.session.get(Indicator, indicators.indicators[code])


@pytest.mark.parametrize(
    ("unit", "text", "expected"),
    [
        ("percent", "87.5", 87.5),
        ("percent", "87,5", 87.5),
        ("percent", "100 %", 100.0),
        ("days", "0", 0.0),
        ("yes_no", "Yes", 1.0),
        ("yes_no", "no", 0.0),
        ("yes_no", "1", 1.0),
        ("number", 12, 12.0),
    ],
)
def test_values_are_read_as_typed(unit, text, expected):
    assert services.parse_value(unit, text) == expected


@pytest.mark.parametrize(
    ("unit", "text", "message"),
    [
        ("percent", "100.5", "above 100"),
        ("percent", "-1", "negative"),
        ("days", "-3", "negative"),
        ("months", "soon", "Give a number"),
        ("yes_no", "maybe", "yes or no"),
        ("yes_no", "0.5", "yes or no"),
        ("number", "", "Give a value"),
        ("number", "nan", "Give a number"),
        ("number", "inf", "Give a number"),
    ],
)
def test_values_out_of_bounds_are_refused_naming_the_field(app, unit, text, message):
    with app.test_request_context(), pytest.raises(WorkflowError) as refused:
        services.parse_value(unit, text, field="values-3")
    assert message in refused.value.message
    assert refused.value.field == "values-3"


def test_a_focal_point_reports_and_a_reviewer_validates_with_history(app, world, indicators):
    with app.test_request_context():
        online, sg = _indicator(indicators, "ONLINE"), _office(world, "SG")
        focal, reviewer = _user(world, "focal_sg"), _user(world, "reviewer")
        entry = services.Report(
            value=70, note="From the e-filing statistics", evidence_url="https://ipos.example/stats"
        )
        measurement = services.report(focal, online, sg, Quarter(2026, 1), entry, NOW, create_only=True)
        db.session.commit()
        assert measurement.state == "reported" and measurement.version == 1
        services.validate(reviewer, measurement, NOW, version=1)
        db.session.commit()
        assert measurement.state == "validated" and measurement.reviewed_by_id == reviewer.id
        events = [(c.event, c.new_state, c.author_id) for c in measurement.changes]
        assert events == [("reported", "reported", focal.id), ("validated", "validated", reviewer.id)]
        # Correcting a validated value sends it back to the reviewers.
        services.report(focal, online, sg, Quarter(2026, 1), services.Report(value=71), NOW)
        db.session.commit()
        assert measurement.state == "reported" and measurement.value == 71
        assert measurement.changes[-1].event == "corrected" and measurement.changes[-1].old_value == 70
        # History is never edited.
        measurement.changes[0].note = "rewritten"
        with pytest.raises(ValueError, match="never edited"):
            db.session.flush()
        db.session.rollback()


def test_refusals_write_nothing(app, world, indicators):
    with app.test_request_context():
        online, sg, my = _indicator(indicators, "ONLINE"), _office(world, "SG"), _office(world, "MY")
        focal = _user(world, "focal_sg")
        before = db.session.scalar(sa.select(sa.func.count()).select_from(MeasurementChange))
        cases = [
            (online, sg, Quarter(2026, 4), 50, "period", "has not ended"),
            (online, sg, Quarter(2027, 1), 50, "period", "has not ended"),
            (online, sg, Quarter(2026, 1), 101, "value", "above 100"),
            (online, my, Quarter(2026, 1), 50, "office", "MY"),
            (online, sg, Quarter(2026, 3), 50, "period", "already has a value"),
        ]
        for indicator, office, period, value, field, message in cases:
            with pytest.raises(WorkflowError) as refused:
                services.report(
                    focal, indicator, office, period, services.Report(value=value), NOW, create_only=True
                )
            assert refused.value.field == field and message in refused.value.message
        db.session.rollback()
        after = db.session.scalar(sa.select(sa.func.count()).select_from(MeasurementChange))
        assert after == before


def test_the_quarter_ends_in_the_offices_zone(app, world, indicators):
    with app.test_request_context():
        online, sg = _indicator(indicators, "ONLINE"), _office(world, "SG")
        focal = _user(world, "focal_sg")
        # 1 October 2026, 00:30 in Singapore is still 30 September in UTC: Q3 has ended there.
        moment = datetime(2026, 9, 30, 16, 30, tzinfo=UTC)
        assert services.last_reportable(sg, moment) == Quarter(2026, 3)
        measurement = services.report(focal, online, sg, Quarter(2026, 1), services.Report(value=1), moment)
        assert measurement is not None


def test_stale_versions_and_second_reviews_conflict(app, world, indicators):
    with app.test_request_context():
        m = db.session.get(Measurement, indicators.measurements["online_sg_q3"])
        reviewer, focal = _user(world, "reviewer"), _user(world, "focal_sg")
        with pytest.raises(StateConflict):
            services.validate(reviewer, m, NOW, version=m.version + 1)
        with pytest.raises(WorkflowError) as refused:
            services.send_back(reviewer, m, "  ", NOW)
        assert refused.value.field == "note"
        services.send_back(reviewer, m, "Which month is this?", NOW)
        with pytest.raises(StateConflict):
            services.validate(reviewer, m, NOW)
        with pytest.raises(Forbidden):
            services.validate(focal, m, NOW)


def test_unchanged_reports_write_nothing(app, world, indicators):
    with app.test_request_context():
        m = db.session.get(Measurement, indicators.measurements["online_sg_q3"])
        entry = services.Report(value=m.value, note=m.note or "")
        assert (
            services.report(_user(world, "focal_sg"), m.indicator, m.office, Quarter(2026, 3), entry, NOW)
            is None
        )


def test_visibility_validated_to_all_the_rest_to_the_office_and_reviewers(app, world, indicators):
    with app.test_request_context():
        rows = db.session.scalars(sa.select(Measurement)).all()
        labels = {v: k for k, v in indicators.measurements.items()}
        expected = {
            "focal_sg": {"online_sg_q2", "online_sg_q3", "online_my_q2", "exam_sg_q3"},
            "focal_my": {"online_sg_q2", "online_my_q2", "exam_sg_q3", "exam_my_q3"},
            "manager_sg": {"online_sg_q2", "online_sg_q3", "online_my_q2", "exam_sg_q3"},
            "manager": {"online_sg_q2", "online_my_q2", "exam_sg_q3"},
            "reviewer": set(indicators.measurements),
            "admin": set(indicators.measurements),
        }
        for label, seen in expected.items():
            user = _user(world, label)
            by_rule = {labels[m.id] for m in rows if may_see_measurement(user, m)}
            by_clause = {
                labels[i] for i in db.session.scalars(sa.select(Measurement.id).where(queries.visible(user)))
            }
            assert by_rule == by_clause == seen, label


def test_latest_values_progress_and_median(app, world, indicators):
    with app.test_request_context():
        online, exam = _indicator(indicators, "ONLINE"), _indicator(indicators, "EXAM")
        offices = [world.offices["SG"], world.offices["MY"]]
        cells = queries.grid([online, exam], offices)
        sg, my = world.offices["SG"], world.offices["MY"]
        assert cells[(online.id, sg)].value == 60  # Q3 is not validated yet
        assert cells[(online.id, sg)].progress == pytest.approx((60 - 50) / (90 - 50))
        assert cells[(online.id, my)].progress == pytest.approx((40 - 30) / (80 - 30))
        assert cells[(exam.id, sg)].progress == pytest.approx((20 - 24) / (12 - 24))
        assert cells[(exam.id, my)].value is None and cells[(exam.id, my)].progress is None
        assert queries.median(cells[(online.id, o)].value for o in offices) == 50
        target = IndicatorTarget(target_value=12, baseline_value=None)
        assert queries.progress(exam, target, 11) == 1.0 and queries.progress(exam, target, 13) is None


def test_goals_and_indicators_are_checked(app, world, indicators):
    with app.test_request_context():
        reviewer, sg = _user(world, "reviewer"), _office(world, "SG")
        online = _indicator(indicators, "ONLINE")
        with pytest.raises(WorkflowError) as refused:
            services.save_goal(
                reviewer, online, sg, services.Goal(target_value=120, target_period=Quarter(2027, 4)), NOW
            )
        assert refused.value.field == "target_value"
        with pytest.raises(WorkflowError) as refused:
            services.save_goal(reviewer, online, sg, services.Goal(baseline_value=10), NOW)
        assert refused.value.field == "baseline_period"
        fields = services.IndicatorFields(code="online", name="Again", unit="percent")
        with pytest.raises(StateConflict) as refused:
            services.save_indicator(reviewer, fields, NOW)
        assert refused.value.field == "code"
        fields = services.IndicatorFields(code="ONLINE", name="Online", unit="days")
        with pytest.raises(WorkflowError) as refused:
            services.save_indicator(reviewer, fields, NOW, online)
        assert refused.value.field == "unit"
        with pytest.raises(Forbidden):
            services.save_indicator(
                _user(world, "focal_sg"), services.IndicatorFields("X", "X", "number"), NOW
            )


def test_a_first_value_is_undone_by_the_callers_rollback(app, world, indicators):
    # The command's savepoint must not commit on SQLite (whose driver begins no transaction before
    # a SAVEPOINT): a page that refuses a later row rolls back the first one too.
    with app.test_request_context():
        online, sg = _indicator(indicators, "ONLINE"), _office(world, "SG")
        focal = _user(world, "focal_sg")
        services.report(focal, online, sg, Quarter(2026, 1), services.Report(value=55), NOW, create_only=True)
        db.session.rollback()
        assert services.find(online.id, sg.id, "2026Q1") is None
