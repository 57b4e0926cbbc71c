"""The dashboard's cache: figures computed once per data version and local dates, forgotten by any
write (page, API, core statement, another host), refreshed by a new day; the same figures as a
direct computation over the items, for every scope; a flat, small number of statements."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from flask import url_for

from tests.conftest import PASSWORD_HASH, csrf_token, login
from tracker import create_app
from tracker.api.auth import create_token
from tracker.dashboard import fragments, services
from tracker.dashboard.aggregates import last_quarters
from tracker.dashboard.cache import VersionedCache, cache_of
from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    DONE_STATUSES,
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    Office,
    Recommendation,
    Source,
    User,
    mark_data_changed,
)
from tracker.permissions import office_scope

#: 18:00 in Singapore and Kuala Lumpur, 05:00 in Bogotá: 2026-11-24 everywhere.
NOW = datetime(2026, 11, 24, 10, tzinfo=UTC)
#: 00:30 on the 25th in Singapore and Kuala Lumpur, still the 24th (11:30) in Bogotá.
NEXT_DAY_IN_ASIA = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)


@pytest.fixture
def data(app, world):
    """Beside the world's two items (due 2026-11-24): a third office in another zone, a second
    source and theme, items in every status, completions in history, approved extensions."""
    with app.app_context():
        co = Office(code="CO", name="SIC Colombia", country="Colombia", timezone="America/Bogota")
        manager_co = User(email="manager.co@example.test", name="Manager Co", role="manager", office=co)
        manager_co.password_hash = PASSWORD_HASH
        db.session.add_all([co, manager_co])
        r1 = db.session.get(Recommendation, world.recommendation_id)
        r2 = Recommendation(
            source=Source(title="Review"), code="R-2", title="Modernise", text="T", theme="Legal"
        )
        archived = Recommendation(
            source=r1.source, code="R-0", title="Old", text="T", theme="Digital", archived_at=NOW
        )
        db.session.add_all([r2, archived])
        owners = {
            code: db.session.get(User, world.user_ids[f"focal_{code.lower()}"]) for code in ("SG", "MY")
        }
        offices = {
            "SG": db.session.get(Office, world.offices["SG"]),
            "MY": db.session.get(Office, world.offices["MY"]),
        }
        offices["CO"] = co
        statuses = ("not_started", "in_progress", "blocked", "completed", "verified", "cancelled")
        n = 0
        for rec in (r1, r2, archived):
            for code in ("SG", "MY", "CO"):
                for i, status in enumerate(statuses):
                    n += 1
                    item = ActionItem(
                        recommendation=rec,
                        office=offices[code],
                        title=f"{rec.code} {code} {status}",
                        owner=owners.get(code),
                        status=status,
                        progress=(n * 17) % 101,
                        deadline=date(2026, 11, 24) + timedelta(days=(n % 5) * 9 - 18),
                        agreed_deadline=date(2026, 11, 24) - timedelta(days=(n % 3) * 10),
                    )
                    done_at = datetime(2026, 1 + n % 11, 3, tzinfo=UTC)
                    item.updates = [
                        ActionUpdate(new_status="completed", created_at=done_at),
                        ActionUpdate(new_status="completed", created_at=done_at + timedelta(days=40)),
                    ][: i % 3]
                    if i % 2:
                        item.extensions = [
                            ExtensionRequest(
                                current_deadline=date(2026, 1, 1),
                                requested_deadline=date(2026, 2, 1),
                                reason="More time",
                                state="approved" if i % 4 == 1 else "rejected",
                            )
                        ]
                    db.session.add(item)
        db.session.commit()
        return {"review": r2.source_id, "CO": co.id}


def _get(client, path: str, at: datetime = NOW, **query: str) -> str:
    with time_machine.travel(at, tick=False):
        response = client.get(path, query_string=query or None)
    assert response.status_code == 200, response.status_code
    return response.text


def _signed_in(login_as, email: str):
    with time_machine.travel(NOW, tick=False):
        return login_as(email)


def _content(page: str) -> str:
    """The dashboard's figures (the page around them carries per-session tokens)."""
    return re.search(r'<section aria-labelledby="totals-heading">.*</section>', page, re.S).group(0)


def _tile(page: str, key: str) -> int:
    return int(re.search(rf'id="total-{key}"><span class="tile-count">([^<]+)</span>', page).group(1))


def _cell(page: str, key: str) -> str:
    return re.search(rf'<td class="[^"]*" data-cell="{key}">(.*?)</td>', page, re.S).group(1)


# --- what invalidates the cache ------------------------------------------------------------------


def test_a_page_write_is_seen_at_once(app, world, data, login_as):
    reviewer = _signed_in(login_as, world.users["reviewer"])
    before = _tile(_get(reviewer, "/dashboard"), "in_progress")
    focal = _signed_in(login_as, world.users["focal_sg"])
    with time_machine.travel(NOW, tick=False):
        page = focal.get(f"/actions/{world.items['SG']}").text
        form = {"csrf_token": csrf_token(page), "version": "1", "status": "in_progress", "note": "Going"}
        assert focal.post(f"/actions/{world.items['SG']}", data=form).status_code in (302, 303)
    assert _tile(_get(reviewer, "/dashboard"), "in_progress") == before + 1


def test_an_api_write_is_seen_at_once(app, world, data, login_as):
    with app.app_context():
        _row, secret = create_token(db.session.get(User, world.user_ids["reviewer"]), "t", NOW)
        db.session.commit()
    reviewer = _signed_in(login_as, world.users["reviewer"])
    page = _get(reviewer, "/dashboard")
    before = _tile(page, "blocked")
    with time_machine.travel(NOW, tick=False):
        response = app.test_client().patch(
            f"/api/v1/actions/{world.items['MY']}",
            json={"status": "blocked", "note": "Waiting"},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert response.status_code == 200, response.text
    assert _tile(_get(reviewer, "/dashboard"), "blocked") == before + 1


def test_a_core_statement_is_seen_once_marked(app, world, data, login_as):
    reviewer = _signed_in(login_as, world.users["reviewer"])
    before = _tile(_get(reviewer, "/dashboard"), "all")
    with app.app_context():
        db.session.execute(sa.delete(ActionUpdate).where(ActionUpdate.action_item_id == world.items["SG"]))
        db.session.execute(sa.delete(ActionItem).where(ActionItem.id == world.items["SG"]))
        db.session.commit()  # not marked: the cache cannot know (bulk writers must say so)
    assert _tile(_get(reviewer, "/dashboard"), "all") == before
    with app.app_context():
        db.session.execute(sa.delete(ActionUpdate).where(ActionUpdate.action_item_id == world.items["MY"]))
        db.session.execute(sa.delete(ActionItem).where(ActionItem.id == world.items["MY"]))
        mark_data_changed(db.session)
        db.session.commit()
    assert _tile(_get(reviewer, "/dashboard"), "all") == before - 2


def test_a_second_host_sees_the_first_hosts_write(app, world, data, login_as, tmp_path):
    other = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "TRACKER_UPLOAD_DIR": str(tmp_path),
        }
    )
    try:
        there = other.test_client()
        with time_machine.travel(NOW, tick=False):
            assert login(there, world.users["reviewer"]).status_code == 302
        here = _signed_in(login_as, world.users["reviewer"])
        assert _content(_get(here, "/dashboard")) == _content(_get(there, "/dashboard"))  # each its own
        assert cache_of(other) is not cache_of(app)
        before = _tile(_get(there, "/dashboard"), "verified")
        with app.app_context():  # written on the first host
            db.session.get(ActionItem, world.items["SG"]).status = "verified"
            db.session.commit()
        assert _tile(_get(there, "/dashboard"), "verified") == before + 1
        assert _tile(_get(here, "/dashboard"), "verified") == before + 1
    finally:
        with other.app_context():
            db.engine.dispose()


def test_a_new_day_in_an_office_changes_what_is_overdue(app, world, data, login_as):
    reviewer = _signed_in(login_as, world.users["reviewer"])
    today = _get(reviewer, "/dashboard")
    later = _get(reviewer, "/dashboard", at=NEXT_DAY_IN_ASIA)  # no write in between
    with app.app_context():
        expected = [
            _oracle(app, world.users["reviewer"], at, services.Filters())["totals"][1]
            for at in (NOW, NEXT_DAY_IN_ASIA)
        ]
    # Items open and due on the 24th are overdue from midnight in Singapore and Malaysia only.
    assert [_tile(today, "overdue"), _tile(later, "overdue")] == expected
    assert expected[1] > expected[0]
    assert "E-filing for SG" in later and "E-filing for SG" not in today


# --- the same figures as a direct computation -------------------------------------------------


def _oracle(app, email: str, now: datetime, filters: services.Filters, limit: int = 20) -> dict:
    """The figures computed item by item from the ORM, without SQL aggregates or the cache."""
    user = db.session.scalar(sa.select(User).where(User.email == email))
    scope = office_scope(user)
    items = [
        i
        for i in db.session.scalars(sa.select(ActionItem))
        if i.recommendation.archived_at is None
        and (scope is None or i.office_id in scope)
        and filters.source_id in (None, i.recommendation.source_id)
        and filters.theme in (None, i.recommendation.theme)
        and filters.office_code in (None, i.office.code)
    ]
    closed = {s.value for s in CLOSED_STATUSES}

    def due_soon(i):
        today = i.office.today(now)
        return i.status not in closed and today <= i.deadline <= today + timedelta(days=14)

    offices = {}
    for i in items:
        o = offices.setdefault(i.office.code, [0, 0, 0, 0, 0, 0, 0])
        o[0] += 1
        o[3] += i.is_overdue(now)
        o[5] += sum(e.state == "approved" for e in i.extensions)
        if i.status != "cancelled":
            o[1] += 1
            o[4] += i.progress
            o[6] += max((i.deadline - i.agreed_deadline).days, 0)
            o[2] += i.status in DONE_STATUSES
    cells = {}
    for i in items:
        c = cells.setdefault((i.recommendation.code, i.office.code), [0, 0])
        c[0] += 1
        c[1] += i.is_overdue(now)
    late = sorted((i for i in items if i.is_overdue(now)), key=lambda i: (i.deadline, i.id))[:limit]
    quarters = dict.fromkeys(last_quarters(now.date()), 0)
    for i in items:
        done = [u.created_at for u in i.updates if u.new_status in DONE_STATUSES]
        if done:
            first = min(done)
            key = (first.year, (first.month - 1) // 3 + 1)
            if key in quarters:
                quarters[key] += 1
    return {
        "totals": (len(items), sum(i.is_overdue(now) for i in items), sum(due_soon(i) for i in items)),
        "offices": {
            code: (n, counted, done, overdue, round(progress / counted, 6) if counted else None, ext, days)
            for code, (n, counted, done, overdue, progress, ext, days) in offices.items()
        },
        "cells": {key: tuple(c) for key, c in cells.items()},
        "overdue": [
            (i.id, (i.office.today(now) - i.deadline).days, i.owner.name if i.owner else None) for i in late
        ],
        "quarters": quarters,
    }


def _figures(data: services.Dashboard) -> dict:
    return {
        "totals": (data.totals.total, data.totals.overdue, data.totals.due_soon),
        "offices": {
            p.office.code: (
                p.items,
                p.counted,
                p.done,
                p.overdue,
                None if p.average_progress is None else round(p.average_progress, 6),
                p.extensions_granted,
                p.days_slipped,
            )
            for p in data.offices
            if p.items
        },
        "cells": {
            (r.code, o.code): (c.count, c.overdue)
            for r in data.matrix.recommendations
            for o in data.matrix.offices
            if (c := data.matrix.cell(r.id, o.id))
        },
        "overdue": [(i.id, i.days_late, i.owner_name) for i in data.overdue_items],
        "quarters": {(q.year, q.quarter): q.count for q in data.quarters},
    }


@pytest.mark.parametrize("role", ["focal_sg", "manager_sg", "manager", "reviewer", "manager_co"])
@pytest.mark.parametrize("at", [NOW, NEXT_DAY_IN_ASIA])
def test_cached_figures_equal_a_direct_computation(app, world, data, role, at):
    email = world.users.get(role, "manager.co@example.test")
    filter_sets = [
        services.Filters(),
        services.Filters(theme="Digital"),
        services.Filters(source_id=data["review"]),
        services.Filters(office_code="SG"),
        services.Filters(theme="Legal", office_code="CO"),
    ]
    with app.test_request_context(), time_machine.travel(at, tick=False):
        user = db.session.scalar(sa.select(User).where(User.email == email))
        for filters in filter_sets:
            expected = _oracle(app, email, at, filters)
            first = services.build_dashboard(user, at, filters)
            again = services.build_dashboard(user, at, filters)  # from the cache
            assert _figures(first) == expected, filters
            assert _figures(again) == expected and again.key == first.key
            assert all(isinstance(o, services.OfficeInfo) for o in first.matrix.offices)  # plain data


# --- statements ---------------------------------------------------------------------------------


def _bulk(app, world, n: int) -> None:
    with app.app_context():
        rec = Recommendation(
            source_id=db.session.get(Recommendation, world.recommendation_id).source_id,
            code=f"B-{n}",
            title=f"Bulk {n}",
            text="T",
            theme="Digital",
        )
        db.session.add(rec)
        for i in range(n):
            item = ActionItem(
                recommendation=rec,
                office_id=world.offices[("SG", "MY")[i % 2]],
                title=f"Bulk {i}",
                owner_id=world.user_ids[("focal_sg", "focal_my")[i % 2]],
                deadline=date(2026, 11, 24) - timedelta(days=i % 40 - 20),
                status=("not_started", "in_progress", "completed")[i % 3],
            )
            item.updates = [ActionUpdate(new_status="completed", created_at=NOW - timedelta(days=i))]
            db.session.add(item)
        db.session.commit()


@pytest.mark.parametrize("role", ["reviewer", "focal_sg"])
def test_statements_are_few_and_flat_cold_and_warm(app, world, login_as, count_queries, role):
    client = _signed_in(login_as, world.users[role])
    paths = ["/dashboard", "/dashboard?theme=Digital", "/reports/offices/SG"]
    if role == "reviewer":
        paths.append("/reports/programme")

    def counts() -> tuple[list[int], list[int]]:
        cold, warm = [], []
        for path in paths:
            for found in (cold, warm):
                with count_queries() as seen:
                    _get(client, path)
                found.append(len(seen))
                if found is warm:
                    assert not [s for s in seen if "action_item" in s], path  # nothing aggregated again
        return cold, warm

    _bulk(app, world, 5)
    small = counts()
    _bulk(app, world, 200)
    assert counts() == small
    assert max(small[1]) <= 5  # the session and user, the version, the sources, the owners' names


def test_fragments_are_kept_per_language(app, world, data, login_as):
    reviewer = _signed_in(login_as, world.users["reviewer"])
    assert "Blocked" in _cell(_get(reviewer, "/dashboard"), "R-1/CO")
    with app.app_context():
        db.session.get(User, world.user_ids["manager"]).language = "fr"  # not programme data
        db.session.commit()
    manager = _signed_in(login_as, world.users["manager"])  # the same scope as the reviewer's
    cell = _cell(_get(manager, "/dashboard"), "R-1/CO")
    assert "Bloquée" in cell and "Blocked" not in cell


def test_matrix_links_are_url_fors(app):
    with app.test_request_context():
        office = services.OfficeInfo(id=1, code="SG", name="n", country="c", timezone="UTC", active=True)
        rec = services.RecommendationInfo(id=2, code="R 1/é&x?", title="t", source_id=3, theme="A&B")
        matrix = services.Matrix([rec], [office], {(2, 1): services.Cell(2, 1, {"blocked": 2})})
        links = {"source": 3, "theme": "A&B é", "none": None}
        (row,) = fragments.matrix_rows(matrix, links)
        expected = url_for("actions.home", office="SG", recommendation="R 1/é&x?", source=3, theme="A&B é")
        assert row.cells[0].href == expected
        assert row.cells[0].css == "cell status-blocked cell-overdue"
        assert fragments.matrix_rows(matrix, None)[0].cells[0].href is None


def test_the_cache_is_bounded_and_keeps_one_version():
    cache = VersionedCache(size=2)
    calls = []

    def compute(value):
        return lambda: calls.append(value) or value

    assert cache.get_or_compute(1, "a", compute("a1")) == "a1"
    assert cache.get_or_compute(1, "a", compute("again")) == "a1"
    cache.get_or_compute(1, "b", compute("b1"))
    cache.get_or_compute(1, "c", compute("c1"))  # "a" is the least recently used: dropped
    assert cache.get_or_compute(1, "a", compute("a1'")) == "a1'"
    assert cache.get_or_compute(2, "c", compute("c2")) == "c2"  # a newer version forgets the rest
    assert cache.get_or_compute(2, "c", compute("never")) == "c2"
    # A lower version (a restored backup, or a reader older than a write) starts again from it:
    # what was cached at version 2 is never served once the count climbs back to 2.
    assert cache.get_or_compute(1, "c", compute("c1 restored")) == "c1 restored"
    assert cache.get_or_compute(2, "c", compute("c2 after")) == "c2 after"
    assert calls == ["a1", "b1", "c1", "a1'", "c2", "c1 restored", "c2 after"]
