"""Seeing, comparing and managing indicators through the pages: the list, the comparison page with its
charts and visibility rules, the indicator and goals forms, archiving, the office page's section and
the dashboard's table; each page's statements do not grow with the number of offices."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement
from tracker.models import Office

NOW = datetime(2026, 11, 24, 4, tzinfo=UTC)
VISIBILITY = (
    "Validated values of every office are visible to every signed-in user; values not yet validated "
    "are seen only by their office, reviewers and administrators."
)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def _get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.text


def _row(page: str, attr: str, key: str) -> str:
    match = re.search(rf'<tr[^>]*{attr}="{re.escape(key)}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row {attr}={key}"
    return match.group(1)


def _figure(row: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}"[^>]*>(.*?)</td>', row, re.S)
    assert match, f"no figure {name}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def _post(client, url, data, status=302):
    page = client.get(url)
    assert page.status_code == 200, url
    response = client.post(url, data={"csrf_token": csrf_token(page.text), **data})
    assert response.status_code == status, (url, response.status_code, response.text[:2000])
    return response


def _more_offices(app, world, indicators, n):
    """Offices X00.. with a baseline, a target and validated values of ONLINE for 2026Q1–Q3."""
    with app.app_context():
        for k in range(n):
            office = Office(code=f"X{k:02d}", name=f"Office {k}", country="Somewhere", timezone="UTC")
            db.session.add(office)
            db.session.add(
                IndicatorTarget(
                    indicator_id=indicators.indicators["ONLINE"],
                    office=office,
                    baseline_value=10,
                    baseline_period="2025Q4",
                    target_value=50,
                    target_period="2027Q4",
                )
            )
            for q, value in (("2026Q1", 15), ("2026Q2", 20), ("2026Q3", 30)):
                db.session.add(
                    Measurement(
                        indicator_id=indicators.indicators["ONLINE"],
                        office=office,
                        period=q,
                        value=value + k,
                        state="validated",
                    )
                )
        db.session.commit()


# --- the list ---------------------------------------------------------------------------------


def test_the_list_shows_every_indicator_with_counts_and_medians(app, world, indicators, login_as):
    with app.app_context():
        db.session.get(Indicator, indicators.indicators["GUIDE"]).archived_at = NOW
        db.session.commit()
    page = _get(login_as(world.users["manager"]), "/indicators/")
    assert VISIBILITY in page
    assert 'href="/indicators/"' in page  # in the main navigation
    active = page.split('id="indicators-active"')[1].split("</table>")[0]
    archived = page.split('id="indicators-archived"')[1].split("</table>")[0]
    assert "ONLINE" in active and "EXAM" in active and "GUIDE" not in active
    assert "GUIDE" in archived
    online = _row(page, "data-indicator", "ONLINE")
    assert _figure(online, "reported") == "0"  # SG's 2026Q3 value awaits validation
    assert _figure(online, "median") == "50 %"  # SG 60, MY 40
    exam = _row(page, "data-indicator", "EXAM")
    assert _figure(exam, "reported") == "1"  # SG's 20 validated; MY's sent back
    assert _figure(exam, "median") == "20 months"
    assert f'href="/indicators/{indicators.indicators["ONLINE"]}"' in page
    assert "New indicator" not in page  # a manager does not manage indicators
    assert "New indicator" in _get(login_as(world.users["reviewer"]), "/indicators/")


# --- the comparison page ------------------------------------------------------------------------


def test_the_comparison_page_shows_values_baselines_targets_progress_and_median(
    app, world, indicators, login_as
):
    url = f"/indicators/{indicators.indicators['ONLINE']}"
    page = _get(login_as(world.users["focal_my"]), url)
    assert VISIBILITY in page
    sg = _row(page, "data-office", "SG")
    assert _figure(sg, "latest") == "60 % (2026Q2)"
    assert _figure(sg, "baseline") == "50 % (2025Q4)"
    assert _figure(sg, "target") == "90 % (2027Q4)"
    assert "25%" in _figure(sg, "progress")  # (60 - 50) / (90 - 50)
    my = _row(page, "data-office", "MY")
    assert _figure(my, "latest") == "40 % (2026Q2)"
    assert "20%" in _figure(my, "progress")  # (40 - 30) / (80 - 30)
    median = _row(page, "data-office", "median")
    assert _figure(median, "latest") == "50 %"
    # focal_my must not see SG's 65 awaiting validation, anywhere on the page
    assert "65" not in page and "awaiting validation</span>" not in page


def test_unvalidated_values_are_shown_marked_to_those_allowed(app, world, indicators, login_as):
    url = f"/indicators/{indicators.indicators['ONLINE']}"
    for who in ("reviewer", "focal_sg", "admin"):
        page = _get(login_as(world.users[who]), url)
        sg = _row(page, "data-office", "SG")
        assert "65 % (2026Q3)" in _figure(sg, "latest") and "awaiting validation" in _figure(sg, "latest")
        assert _figure(sg, "latest").startswith("60 % (2026Q2)")  # the validated value stays first
        table = page.split('id="table-sg"')[1].split("</table>")[0]
        assert re.search(r'data-quarter="2026Q3".*?65 %.*?awaiting validation', table, re.S)
        assert "point pending" in page.split('id="office-sg"')[1].split("</svg>")[0]
    # a programme-wide manager sees validated values only
    page = _get(login_as(world.users["manager"]), url)
    assert "65" not in page
    exam = _get(login_as(world.users["focal_my"]), f"/indicators/{indicators.indicators['EXAM']}")
    assert "sent back" in _figure(_row(exam, "data-office", "MY"), "latest")
    exam = _get(login_as(world.users["focal_sg"]), f"/indicators/{indicators.indicators['EXAM']}")
    assert "30 months" not in exam and _figure(_row(exam, "data-office", "MY"), "latest") == "—"


def test_each_office_has_a_chart_with_its_target_and_a_table(app, world, indicators, login_as):
    page = _get(login_as(world.users["focal_sg"]), f"/indicators/{indicators.indicators['ONLINE']}")
    for code in ("sg", "my"):
        chart = page.split(f'id="office-{code}"')[1].split("</svg>")[0]
        assert 'role="img"' in chart and f'aria-labelledby="chart-{code}-title chart-{code}-desc"' in chart
        assert 'class="target-line"' in chart and ">Target<" in chart
        assert f'id="table-{code}"' in page
    table = page.split('id="table-my"')[1].split("</table>")[0]
    assert re.search(r'data-quarter="2026Q2".*?40 %', table, re.S)
    assert "80 %" in table  # the target row
    assert len(re.findall(r'data-quarter="20\d\dQ\d"><th', table)) == 8  # the last 8 quarters
    assert 'data-quarter="2024Q4"' in table and 'data-quarter="2026Q3"' in table


def test_the_quarter_range_is_a_filter_kept_in_links(app, world, indicators, login_as):
    url = f"/indicators/{indicators.indicators['ONLINE']}"
    c = login_as(world.users["reviewer"])
    page = _get(c, url + "?from=2026Q1&to=2026Q2")
    table = page.split('id="table-sg"')[1].split("</table>")[0]
    assert re.findall(r'data-quarter="(20\d\dQ\d)"', table) == ["2026Q1", "2026Q2"]
    assert "65" not in _figure(_row(page, "data-office", "SG"), "latest")  # Q3 is past the range
    assert 'value="2026Q1"' in page and 'value="2026Q2"' in page
    assert "from=2025Q3&amp;to=2025Q4" in page  # earlier quarters, the same length
    assert "from=2026Q3&amp;to=2026Q4" in page  # later: up to the last ended quarter
    bad = _get(c, url + "?from=soon&to=2030Q1")
    assert "Give quarters such as 2026Q3" in bad
    assert 'value="2026Q3"' in bad  # the future is cut at the last ended quarter
    huge = _get(c, url + "?from=1000Q1&to=2026Q3")
    assert "At most 40 quarters" in huge
    _get(c, "/indicators/999999", 404)


# --- managing -----------------------------------------------------------------------------------


def test_reviewers_create_and_edit_an_indicator(app, world, indicators, login_as):
    c = login_as(world.users["reviewer"])
    response = _post(
        c,
        "/indicators/new",
        {
            "code": "avail",
            "name": "IT system availability",
            "definition": "Share of hours the e-filing system is up.",
            "unit": "percent",
            "direction": "higher",
            "recommendation_id": str(world.recommendation_id),
        },
    )
    with app.app_context():
        made = db.session.scalar(sa.select(Indicator).where(Indicator.code == "AVAIL"))
        assert made.name == "IT system availability" and made.recommendation_id == world.recommendation_id
        made_id = made.id
    assert response.headers["Location"].endswith(f"/indicators/{made_id}")
    page = _get(c, f"/indicators/{made_id}")
    assert "is saved" in page and "R-1 — Go digital" in page
    edit = _get(c, f"/indicators/{made_id}/edit")
    assert 'value="AVAIL"' in edit and re.search(rf'<option selected value="{world.recommendation_id}"', edit)
    _post(
        c,
        f"/indicators/{made_id}/edit",
        {
            "code": "AVAIL",
            "name": "System availability",
            "unit": "percent",
            "direction": "higher",
            "recommendation_id": "",
        },
    )
    with app.app_context():
        made = db.session.get(Indicator, made_id)
        assert made.name == "System availability" and made.recommendation_id is None


def test_a_duplicate_code_is_refused_beside_the_field(app, world, indicators, login_as):
    c = login_as(world.users["admin"])
    response = _post(
        c,
        "/indicators/new",
        {"code": "online", "name": "Again", "unit": "number", "direction": "higher"},
        200,
    )
    errors = re.search(r'id="code-errors">(.*?)</ul>', response.text, re.S)
    assert errors and "Another indicator has the code ONLINE" in errors.group(1)
    assert 'aria-invalid="true"' in response.text and "Nothing was saved" in response.text
    response = _post(
        c, "/indicators/new", {"code": "NEW", "name": " ", "unit": "number", "direction": "higher"}, 200
    )
    assert re.search(r'id="name-errors">.*?Give a name', response.text, re.S)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Indicator)) == 3


def test_the_unit_is_fixed_once_values_exist(app, world, indicators, login_as):
    c = login_as(world.users["reviewer"])
    url = f"/indicators/{indicators.indicators['ONLINE']}/edit"
    response = _post(
        c, url, {"code": "ONLINE", "name": "Online", "unit": "number", "direction": "higher"}, 200
    )
    assert re.search(r'id="unit-errors">.*?cannot change', response.text, re.S)


def test_archiving_asks_first_and_can_be_undone(app, world, indicators, login_as):
    c = login_as(world.users["reviewer"])
    online = indicators.indicators["ONLINE"]
    confirm = _get(c, f"/indicators/{online}/archive")
    assert "Archive ONLINE?" in confirm and 'name="csrf_token"' in confirm
    with app.app_context():
        assert db.session.get(Indicator, online).archived_at is None  # asking changed nothing
    assert c.post(f"/indicators/{online}/archive").status_code == 400  # no CSRF token, nothing done
    _post(c, f"/indicators/{online}/archive", {})
    with app.app_context():
        assert db.session.get(Indicator, online).archived_at is not None
    listing = _get(c, "/indicators/")
    assert "ONLINE" in listing.split('id="indicators-archived"')[1]
    assert "Bring back ONLINE?" in _get(c, f"/indicators/{online}/unarchive")
    _post(c, f"/indicators/{online}/unarchive", {})
    with app.app_context():
        assert db.session.get(Indicator, online).archived_at is None


def test_goals_are_saved_for_every_office_or_for_none(app, world, indicators, login_as):
    c = login_as(world.users["reviewer"])
    guide, sg, my = indicators.indicators["GUIDE"], world.offices["SG"], world.offices["MY"]
    url = f"/indicators/{guide}/goals"
    page = _get(c, url)
    assert f'name="o{sg}_target_value"' in page and 'value="1"' in page and 'value="2026Q4"' in page
    good_my = {
        f"o{my}_baseline_value": "no",
        f"o{my}_baseline_period": "2025Q4",
        f"o{my}_target_value": "yes",
        f"o{my}_target_period": "2027Q2",
    }
    bad_sg = {
        f"o{sg}_baseline_value": "0",
        f"o{sg}_baseline_period": "2025Q4",
        f"o{sg}_target_value": "maybe",
        f"o{sg}_target_period": "2026Q4",
    }
    response = _post(c, url, {**good_my, **bad_sg}, 200)
    errors = re.search(rf'id="o{sg}_target_value-errors">(.*?)</ul>', response.text, re.S)
    assert errors and "yes or no" in errors.group(1)
    assert "Nothing was saved" in response.text
    with app.app_context():  # MY's valid goal was not written either
        assert (
            db.session.scalar(
                sa.select(IndicatorTarget).where(
                    IndicatorTarget.office_id == my, IndicatorTarget.indicator_id == guide
                )
            )
            is None
        )
    # a value without its quarter, named beside the field
    response = _post(
        c, url, {**good_my, **bad_sg, f"o{sg}_target_value": "1", f"o{sg}_target_period": ""}, 200
    )
    assert re.search(rf'id="o{sg}_target_period-errors">.*?quarter', response.text, re.S)
    _post(c, url, {**good_my, **bad_sg, f"o{sg}_target_value": "yes"})
    with app.app_context():
        saved = {
            t.office_id: t
            for t in db.session.scalars(
                sa.select(IndicatorTarget).where(IndicatorTarget.indicator_id == guide)
            )
        }
        assert saved[my].target_value == 1 and saved[my].target_period == "2027Q2"
        assert saved[my].baseline_value == 0 and saved[sg].target_value == 1


def test_focal_points_and_managers_may_not_manage(app, world, indicators, login_as):
    online = indicators.indicators["ONLINE"]
    for who in ("focal_sg", "manager"):
        c = login_as(world.users[who])
        page = _get(c, f"/indicators/{online}")
        assert "/goals" not in page and "/archive" not in page
        for url in (
            "/indicators/new",
            f"/indicators/{online}/edit",
            f"/indicators/{online}/goals",
            f"/indicators/{online}/archive",
            f"/indicators/{online}/unarchive",
        ):
            _get(c, url, 403)
            assert c.post(url, data={"csrf_token": csrf_token(page)}).status_code == 403
    assert app.test_client().get("/indicators/").status_code == 302  # signed out: to the sign-in page


# --- the office page and the dashboard ----------------------------------------------------------


def test_the_office_page_has_its_indicators(app, world, indicators, login_as):
    page = _get(login_as(world.users["focal_sg"]), "/offices/SG")
    section = page.split('id="office-indicators"')[1].split("</table>")[0]
    online = _row(section, "data-indicator", "ONLINE")
    assert _figure(online, "latest").startswith("60 % (2026Q2)")
    assert "65 % (2026Q3)" in _figure(online, "latest") and "awaiting validation" in online
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", online))
    assert "90 % (2027Q4)" in text and "50 % (2025Q4)" in text
    assert "25" in _figure(online, "progress")
    assert f'href="/indicators/{indicators.indicators["ONLINE"]}"' in online
    page = _get(login_as(world.users["manager"]), "/offices/SG")
    online = _row(page.split('id="office-indicators"')[1], "data-indicator", "ONLINE")
    assert "65" not in online


def test_the_dashboard_has_the_office_by_indicator_table(app, world, indicators, login_as):
    page = _get(login_as(world.users["reviewer"]), "/dashboard")
    table = page.split('id="table-indicators"')[1].split("</table>")[0]
    sg = _row(table, "data-office", "SG")
    online = re.search(r'<td class="ind-cell ind-(\w+)" data-indicator="ONLINE">(.*?)</td>', sg, re.S)
    assert online.group(1) == "low" and "60 %" in online.group(2) and "2026Q2" in online.group(2)
    assert "25" in online.group(2) and "of the way" in online.group(2)
    exam = re.search(r'<td class="ind-cell ind-(\w+)" data-indicator="EXAM">(.*?)</td>', sg, re.S)
    assert exam.group(1) == "mid" and "20 months" in exam.group(2)  # (20 - 24) / (12 - 24): a third
    assert "65" not in table  # validated values only, even for a reviewer
    assert "Target reached" in page  # the legend
    mine = _get(login_as(world.users["focal_my"]), "/dashboard")
    table = mine.split('id="table-indicators"')[1].split("</table>")[0]
    assert 'data-office="MY"' in table and 'data-office="SG"' not in table  # the dashboard's scope


# --- statements -----------------------------------------------------------------------------------


def test_pages_run_the_same_statements_for_2_offices_as_for_12(
    app, world, indicators, login_as, count_queries
):
    online = indicators.indicators["ONLINE"]
    reviewer, focal = login_as(world.users["reviewer"]), login_as(world.users["focal_sg"])
    urls = [
        (reviewer, "/indicators/"),
        (reviewer, f"/indicators/{online}"),
        (focal, f"/indicators/{online}"),
        (reviewer, f"/indicators/{online}/goals"),
        (focal, "/offices/SG"),
    ]

    def statements() -> list[int]:
        counted = []
        for client, url in urls:
            with count_queries() as seen:
                _get(client, url)
            counted.append(len(seen))
        return counted

    statements()  # the office page's past quarters' rates are computed once
    small = statements()
    _more_offices(app, world, indicators, 10)
    statements()
    assert statements() == small
    page = _get(reviewer, f"/indicators/{online}")
    assert len(re.findall(r'<svg class="chart chart-indicator"', page)) == 12
