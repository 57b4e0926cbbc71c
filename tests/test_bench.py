"""The benchmark's workload generator (bench/generate.py) and the arithmetic of its table (bench/run.py).

The benchmark itself (``make bench``) is not part of the suite: it starts gunicorn and several
commands and takes minutes. Here: the generator writes what the issue asks for, and the table
judges figures against the goals the right way round.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from bench.generate import REVIEWER, generate
from bench.run import Figure, database_url, judge, percentile, table
from tracker.actions.queries import ActionFilters, filtered_actions
from tracker.extensions import db
from tracker.models import CLOSED_STATUSES, ActionItem, ActionUpdate, Office, Role, User


def _count(query: sa.Select) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0


def test_the_workload_has_the_issues_shape(app):
    """300 actions over 12 offices and 60 owners: 20 % closed, 30 % overdue, 50 % due ahead."""
    with app.app_context():
        workload = generate(300)
        now = datetime.now(UTC)
        reviewer = db.session.scalar(sa.select(User).where(User.email == REVIEWER))
        closed = sa.select(ActionItem).where(ActionItem.status.in_([s.value for s in CLOSED_STATUSES]))
        overdue = filtered_actions(reviewer, now, ActionFilters(overdue=True))
        ahead = sa.select(ActionItem).where(
            ActionItem.status.not_in([s.value for s in CLOSED_STATUSES]),
            ActionItem.deadline > now.date() + timedelta(days=1),
        )
        assert (_count(closed), _count(overdue), _count(ahead)) == (60, 90, 150)
        assert workload.by_kind == {"closed": 60, "overdue": 90, "ahead": 150}

        assert db.session.scalar(sa.select(sa.func.count()).select_from(Office)) == 12
        owners = db.session.scalars(sa.select(ActionItem.owner_id).distinct()).all()
        assert len(owners) == 60
        assert {db.session.get(User, owner).role for owner in owners} == {Role.FOCAL_POINT.value}
        per_office = db.session.execute(
            sa.select(ActionItem.office_id, sa.func.count()).group_by(ActionItem.office_id)
        ).all()
        assert sorted(n for _, n in per_office) == [25] * 12
        # 25 recommendations, each with actions in every office.
        pairs = sa.select(ActionItem.recommendation_id, ActionItem.office_id).distinct()
        assert (_count(pairs), workload.recommendations) == (25 * 12, 25)
        # Every action has its history, and each history row's version follows the action's.
        history = db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate))
        assert history == workload.history and history >= 300
        versions = db.session.scalar(sa.select(sa.func.sum(ActionItem.version)))
        assert versions == history
        assert workload.seconds < 30


def test_the_workload_is_the_same_for_the_same_seed_and_day(app):
    with app.app_context():
        generate(120, today=date(2026, 11, 24))
        first = db.session.execute(
            sa.select(ActionItem.status, ActionItem.deadline).order_by(ActionItem.id)
        ).all()
    with app.app_context():
        for table_ in reversed(db.metadata.sorted_tables):
            if table_.name != "data_version":  # its one row lives as long as the database
                db.session.execute(table_.delete())
        db.session.commit()
        generate(120, today=date(2026, 11, 24))
        again = db.session.execute(
            sa.select(ActionItem.status, ActionItem.deadline).order_by(ActionItem.id)
        ).all()
    assert first == again


def test_the_table_judges_each_figure_against_its_goal():
    assert judge(42.0, 50) == "met"
    assert judge(120.0, 50) == "missed (×2.4)"
    assert judge(130.0, 100, at_least=True) == "met"
    assert judge(10.0, 100, at_least=True) == "missed (×10.0)"
    assert judge(0.0, 100, at_least=True) == "missed"
    assert judge(None, 5) == "not measured"
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
    assert percentile([3.0], 0.95) == 3.0
    text = table([Figure("dashboard p95", "120 ms", "≤ 100 ms", "missed (×1.2)")])
    assert text.splitlines()[2] == "| dashboard p95 | 120 ms | ≤ 100 ms | missed (×1.2) |"


def test_the_bench_empties_only_a_database_meant_for_it(monkeypatch):
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    assert database_url(None, False).endswith("instance/bench/bench.db")
    assert database_url("postgresql://u@h/tracker_bench", False) == "postgresql://u@h/tracker_bench"
    with pytest.raises(SystemExit, match="would be emptied"):
        database_url("postgresql://u@h/tracker", False)
    assert database_url("postgresql://u@h/tracker", True) == "postgresql://u@h/tracker"
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://u@h/tracker_test")
    assert database_url(None, False) == "postgresql://u@h/tracker_test"
    assert database_url("sqlite", False).startswith("sqlite:///")
