"""Indicator values in chromium: a focal point fills the report page (a bad value first, refused
beside its field with nothing saved) and saves; a reviewer validates the value in the review queue;
the programme manager compares the offices on the indicator's page, where the validated value is
now shown and the value still awaiting validation is not."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from tests.browser.conftest import screenshot
from tests.browser.test_workflow_flow import sign_in
from tests.conftest import build_indicators
from tracker.extensions import db
from tracker.indicators.models import Measurement
from tracker.quarters import Quarter


def _states(app, office_id: int, period: str) -> dict[int, tuple[float, str]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Measurement.indicator_id, Measurement.value, Measurement.state).where(
                Measurement.office_id == office_id, Measurement.period == period
            )
        ).all()
    return {i: (v, s) for i, v, s in rows}


def test_focal_point_reports_and_reviewer_validates(app, browser, live_server, world):
    with app.app_context():
        found = build_indicators(world)
    ids, sg = found.indicators, world.offices["SG"]
    period = str(Quarter.last_ended(datetime.now(UTC).date()))  # the page's default quarter
    focal = browser.new_context(base_url=live_server).new_page()
    sign_in(focal, world.users["focal_sg"])
    focal.goto("/my")
    focal.locator("#indicators-due").get_by_role("link", name="Report indicator values").click()
    focal.get_by_role("heading", name="Report indicator values").wait_for()
    assert focal.get_by_label("Quarter", exact=True).input_value() == period

    row = focal.locator(f"#row-{ids['EXAM']}")
    row.get_by_label("Value").fill("-4")
    focal.locator(f"#row-{ids['GUIDE']}").get_by_label("Value").select_option(label="Yes")
    focal.get_by_role("button", name="Save the values").click()
    assert focal.get_by_text("Nothing was saved").is_visible()
    assert row.get_by_text("The value cannot be negative.").is_visible()
    assert ids["GUIDE"] not in _states(app, sg, period)

    row.get_by_label("Value").fill("18")
    row.get_by_label("Note").fill("From the examination register.")
    screenshot(focal, "indicator-report-filled")
    focal.get_by_role("button", name="Save the values").click()
    assert focal.get_by_text("2 values saved.").is_visible()
    states = _states(app, sg, period)
    assert states[ids["EXAM"]] == (18.0, "reported")
    assert states[ids["GUIDE"]] == (1.0, "reported")

    reviewer = browser.new_context(base_url=live_server).new_page()
    sign_in(reviewer, world.users["reviewer"])
    reviewer.goto("/verification")
    reviewer.get_by_label("Kind").select_option(label="Indicator values")
    reviewer.get_by_role("button", name="Apply filters").click()
    card = reviewer.locator("li.queue-values").filter(has_text="From the examination register.")
    assert card.get_by_text("18 months").is_visible()
    screenshot(reviewer, "review-queue-values")
    card.get_by_role("button", name="Validate").click()
    assert reviewer.get_by_text("is validated").is_visible()
    assert "kind=values" in reviewer.url
    assert _states(app, sg, period)[ids["EXAM"]] == (18.0, "validated")

    manager = browser.new_context(base_url=live_server).new_page()
    sign_in(manager, world.users["manager"])
    manager.get_by_role("link", name="Indicators", exact=True).first.click()
    manager.get_by_role("link", name="EXAM — Months to first examination action").click()
    sg_row = manager.locator("#comparison tr[data-office='SG']")
    assert sg_row.locator("[data-figure='latest']").inner_text().startswith(f"18 months ({period})")
    assert manager.locator("#visibility-note").is_visible()
    # The chart of SG has its figures as a table; GUIDE's "yes" awaits validation: not shown to a manager.
    manager.locator("#office-sg details summary").click()
    assert manager.locator("#table-sg").get_by_text("18 months").is_visible()
    screenshot(manager, "indicator-comparison-manager")
    manager.goto(f"/indicators/{ids['GUIDE']}")
    assert manager.locator("#comparison tr[data-office='SG'] [data-figure='latest']").inner_text() == "—"


def send_a_bad_value(page, ids: dict[str, int]) -> None:
    """The accessibility pages' step: a percentage above 100 on the report page, refused beside it."""
    page.locator(f"#value-{ids['indicator']}").fill("150")
    page.get_by_role("button", name="Save the values").click()
    page.get_by_text("A percentage cannot be above 100.").wait_for()
