"""Reporting and reviewing indicator values through HTTP: an office's values for a quarter on one
page (all or nothing, bounds, other offices, future quarters, concurrent changes), a value's page and
evidence file, validation and sending back from the review queue, the notice on My work."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.indicators.models import Indicator, Measurement, MeasurementChange

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def _snapshot(app) -> list[tuple]:
    """Every measurement and the number of history rows: what a refused save must leave as it was."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(
                Measurement.id,
                Measurement.indicator_id,
                Measurement.office_id,
                Measurement.period,
                Measurement.value,
                Measurement.state,
                Measurement.version,
            ).order_by(Measurement.id)
        ).all()
        changes = db.session.scalar(sa.select(sa.func.count()).select_from(MeasurementChange))
    return [tuple(r) for r in rows] + [("changes", changes)]


def _value(app, indicators, code, office_id, period):
    with app.app_context():
        return db.session.scalar(
            sa.select(Measurement).where(
                Measurement.indicator_id == indicators.indicators[code],
                Measurement.office_id == office_id,
                Measurement.period == period,
            )
        )


def _form(page_text: str) -> dict[str, str]:
    """The report form as the page shows it: token, versions, values, notes and links."""
    data = {"csrf_token": csrf_token(page_text)}
    for name, value in re.findall(
        r'name="((?:version|value|evidence_url)-\d+)"[^>]*?value="([^"]*)"', page_text
    ):
        data[name] = value
    for name, value in re.findall(r'name="(note-\d+)"[^>]*>([^<]*)</textarea>', page_text):
        data[name] = value
    return data


@time_machine.travel(NOW, tick=False)
def test_focal_point_reports_every_indicator_at_once(app, world, indicators, login_as):
    c = login_as(world.users["focal_sg"])
    page = c.get("/indicators/report")
    assert page.status_code == 200
    text = page.text
    ids = indicators.indicators
    # The last reportable quarter by default, every active indicator with its unit and bounds.
    assert 'value="2026Q3" selected' in text
    for code in ("ONLINE", "EXAM", "GUIDE"):
        assert f'id="value-{ids[code]}"' in text
    assert re.search(rf'id="value-{ids["ONLINE"]}"[^>]*min="0" max="100"', text)
    assert "percent (0 to 100)" in text
    # Last quarter's value beside the field, and this quarter's state.
    assert "60 %" in text
    assert "Reported, awaiting validation" in text
    form = _form(text)
    form[f"value-{ids['EXAM']}"] = "18.5"
    form[f"note-{ids['EXAM']}"] = "From the registry"
    form[f"value-{ids['GUIDE']}"] = "1"
    form[f"evidence_url-{ids['GUIDE']}"] = "https://example.org/guidelines"
    form[f"file-{ids['GUIDE']}"] = (io.BytesIO(b"%PDF-1.7\n% guidelines\n"), "guidelines.pdf")
    response = c.post("/indicators/report?period=2026Q3", data=form, content_type="multipart/form-data")
    assert response.status_code == 302, response.text
    assert response.headers["Location"].endswith("/indicators/report?office=SG&period=2026Q3")
    assert "2 values saved." in c.get(response.headers["Location"]).text
    sg = world.offices["SG"]
    exam = _value(app, indicators, "EXAM", sg, "2026Q3")
    assert (exam.value, exam.state, exam.note, exam.version) == (18.5, "reported", "From the registry", 2)
    guide = _value(app, indicators, "GUIDE", sg, "2026Q3")
    assert (guide.value, guide.state, guide.evidence_url, guide.evidence_filename) == (
        1.0,
        "reported",
        "https://example.org/guidelines",
        "guidelines.pdf",
    )
    # ONLINE was left as it was: not touched (no new history row).
    online = _value(app, indicators, "ONLINE", sg, "2026Q3")
    assert (online.value, online.version) == (65, 1)


@time_machine.travel(NOW, tick=False)
def test_a_value_out_of_bounds_names_its_field_and_nothing_is_written(app, world, indicators, login_as):
    c = login_as(world.users["focal_sg"])
    ids = indicators.indicators
    form = _form(c.get("/indicators/report").text)
    form[f"value-{ids['ONLINE']}"] = "120"  # a percentage above 100
    form[f"value-{ids['GUIDE']}"] = "1"  # fine on its own, but the page is all or nothing
    before = _snapshot(app)
    response = c.post("/indicators/report", data=form)
    assert response.status_code == 422
    assert "Nothing was saved" in response.text
    error = re.search(
        rf'<ul class="errors" id="value-{ids["ONLINE"]}-errors"><li>([^<]+)</li>', response.text
    )
    assert error and "above 100" in error.group(1)
    assert re.search(rf'id="value-{ids["ONLINE"]}"[^>]*value="120"[^>]*aria-invalid="true"', response.text)
    assert _snapshot(app) == before


@time_machine.travel(NOW, tick=False)
def test_another_office_is_not_found_and_its_values_are_refused(app, world, indicators, login_as):
    c = login_as(world.users["focal_sg"])
    assert c.get("/indicators/report?office=MY").status_code == 404
    form = _form(c.get("/indicators/report").text)
    form[f"value-{indicators.indicators['GUIDE']}"] = "1"
    before = _snapshot(app)
    assert c.post("/indicators/report?office=MY", data=form).status_code == 404
    assert _snapshot(app) == before
    # A manager reports nothing; a reviewer chooses any office.
    assert login_as(world.users["manager_sg"]).get("/indicators/report").status_code == 403
    reviewer = login_as(world.users["reviewer"]).get("/indicators/report?office=MY")
    assert reviewer.status_code == 200
    assert '<option value="MY" selected>' in reviewer.text


@time_machine.travel(NOW, tick=False)
def test_a_quarter_that_has_not_ended_is_refused(app, world, indicators, login_as):
    c = login_as(world.users["focal_sg"])
    token = csrf_token(c.get("/indicators/report").text)
    page = c.get("/indicators/report?period=2026Q4")
    assert page.status_code == 422
    assert "2026Q4 has not ended yet" in page.text
    assert 'name="value-' not in page.text
    before = _snapshot(app)
    data = {"csrf_token": token, f"value-{indicators.indicators['GUIDE']}": "1"}
    response = c.post("/indicators/report?period=2026Q4", data=data)
    assert response.status_code == 422
    assert "2026Q4 has not ended yet" in response.text
    assert _snapshot(app) == before
    assert c.get("/indicators/report?period=someday").status_code == 422


@time_machine.travel(NOW, tick=False)
def test_a_value_changed_meanwhile_is_a_conflict(app, world, indicators, login_as):
    c = login_as(world.users["focal_sg"])
    ids = indicators.indicators
    form = _form(c.get("/indicators/report").text)
    # A reviewer validates ONLINE after the page was opened: its version moves on.
    reviewer = login_as(world.users["reviewer"])
    queue = reviewer.get("/verification?kind=values").text
    online = indicators.measurements["online_sg_q3"]
    assert (
        reviewer.post(
            f"/indicators/measurements/{online}/validate",
            data={"csrf_token": csrf_token(queue), "version": "1"},
        ).status_code
        == 302
    )
    form[f"value-{ids['ONLINE']}"] = "66"
    form[f"value-{ids['GUIDE']}"] = "0"
    before = _snapshot(app)
    response = c.post("/indicators/report", data=form)
    assert response.status_code == 409
    assert "changed by someone else meanwhile" in response.text
    assert _snapshot(app) == before
    # A first report racing another one: the page had no value, someone entered one meanwhile.
    form = _form(c.get("/indicators/report").text)
    with app.app_context():
        from tracker.indicators import services
        from tracker.models import Office, User

        services.report(
            db.session.get(User, world.user_ids["reviewer"]),
            db.session.get(Indicator, ids["GUIDE"]),
            db.session.get(Office, world.offices["SG"]),
            services.parse_period("2026Q3"),
            services.Report(value=1),
            NOW,
        )
        db.session.commit()
    form[f"value-{ids['GUIDE']}"] = "0"
    response = c.post("/indicators/report", data=form)
    assert response.status_code == 409
    assert _value(app, indicators, "GUIDE", world.offices["SG"], "2026Q3").value == 1


@time_machine.travel(NOW, tick=False)
def test_reviewer_validates_and_sends_back_from_the_queue(app, world, indicators, login_as):
    ids = indicators.indicators
    focal = login_as(world.users["focal_sg"])
    form = _form(focal.get("/indicators/report").text)
    form[f"value-{ids['GUIDE']}"] = "1"
    assert focal.post("/indicators/report", data=form).status_code == 302
    reviewer = login_as(world.users["reviewer"])
    queue = reviewer.get("/verification?kind=values")
    assert queue.status_code == 200
    assert "2 indicator values await validation" in queue.text
    # Oldest first: ONLINE (reported in October) before GUIDE (reported now).
    assert queue.text.index("Applications filed online") < queue.text.index("Examination guidelines")
    online = indicators.measurements["online_sg_q3"]
    guide = _value(app, indicators, "GUIDE", world.offices["SG"], "2026Q3").id
    token = csrf_token(queue.text)
    back = "/verification?kind=values"
    done = reviewer.post(
        f"/indicators/measurements/{online}/validate?next={back}", data={"csrf_token": token, "version": "1"}
    )
    assert done.status_code == 302 and done.headers["Location"] == back
    # Sending back needs a note: refused without one, nothing changes.
    refused = reviewer.post(
        f"/indicators/measurements/{guide}/send-back?next={back}",
        data={"csrf_token": token, "version": "1", "note": " "},
    )
    assert refused.status_code == 302
    assert "Say what needs correcting." in reviewer.get(back).text
    sent = reviewer.post(
        f"/indicators/measurements/{guide}/send-back?next=https://evil.example/",
        data={"csrf_token": token, "version": "1", "note": "Which guidelines?"},
    )
    assert sent.headers["Location"] == f"/indicators/measurements/{guide}"
    with app.app_context():
        assert db.session.get(Measurement, online).state == "validated"
        sent_back = db.session.get(Measurement, guide)
        assert (sent_back.state, sent_back.review_note) == ("sent_back", "Which guidelines?")
    # Deciding twice (a stale queue) is a conflict, said and changing nothing.
    again = reviewer.post(
        f"/indicators/measurements/{online}/validate?next={back}", data={"csrf_token": token, "version": "1"}
    )
    assert again.status_code == 302
    assert "corrected meanwhile" in reviewer.get(back).text
    assert "No indicator value awaits validation." in reviewer.get(back).text
    # The focal point sees the note on the report page, and the notice on My work.
    page = focal.get("/indicators/report").text
    assert "Which guidelines?" in page
    my = focal.get("/my").text
    assert "1 value was sent back for correction." in my
    # Focal points may not decide.
    assert (
        focal.post(
            f"/indicators/measurements/{guide}/validate",
            data={"csrf_token": csrf_token(page), "version": "3"},
        ).status_code
        == 403
    )


@time_machine.travel(NOW, tick=False)
def test_my_work_says_which_values_are_missing(app, world, indicators, login_as):
    my = login_as(world.users["focal_sg"]).get("/my").text
    # SG has ONLINE and EXAM for 2026Q3; GUIDE is missing.
    assert "1 indicator value of SG is missing for 2026Q3." in my
    assert "/indicators/report?period=2026Q3" in my
    malaysia = login_as(world.users["focal_my"]).get("/my").text
    assert "2 indicator values of MY are missing for 2026Q3." in malaysia
    assert "1 value was sent back for correction." in malaysia
    assert 'id="indicators-due"' not in login_as(world.users["reviewer"]).get("/my").text


@time_machine.travel(NOW, tick=False)
def test_who_sees_a_value_page(app, world, indicators, login_as):
    m = indicators.measurements
    validated, reported, sent_back = m["online_my_q2"], m["online_sg_q3"], m["exam_my_q3"]
    expect = {
        "focal_sg": {validated: 200, reported: 200, sent_back: 404},
        "focal_my": {validated: 200, reported: 404, sent_back: 200},
        "manager_sg": {validated: 200, reported: 200, sent_back: 404},
        "manager": {validated: 200, reported: 404, sent_back: 404},
        "reviewer": {validated: 200, reported: 200, sent_back: 200},
        "admin": {validated: 200, reported: 200, sent_back: 200},
    }
    for label, answers in expect.items():
        c = login_as(world.users[label])
        for measurement_id, status in answers.items():
            response = c.get(f"/indicators/measurements/{measurement_id}")
            assert response.status_code == status, (label, measurement_id)
    page = login_as(world.users["focal_my"]).get(f"/indicators/measurements/{sent_back}").text
    assert "Check the source" in page  # the reviewer's note
    assert "Sent back" in page and "Reviewer" in page
    assert "30 months" in page
    assert login_as(world.users["reviewer"]).get("/indicators/measurements/999999").status_code == 404


@time_machine.travel(NOW, tick=False)
def test_the_evidence_file_is_downloaded_by_those_who_see_the_value(app, world, indicators, login_as):
    focal = login_as(world.users["focal_sg"])
    ids = indicators.indicators
    form = _form(focal.get("/indicators/report").text)
    form[f"value-{ids['GUIDE']}"] = "1"
    form[f"file-{ids['GUIDE']}"] = (io.BytesIO(b"%PDF-1.7\n% proof\n"), "Richtlinien ü.pdf")
    assert focal.post("/indicators/report", data=form, content_type="multipart/form-data").status_code == 302
    guide = _value(app, indicators, "GUIDE", world.offices["SG"], "2026Q3").id
    url = f"/indicators/measurements/{guide}/evidence"
    response = focal.get(url)
    assert response.status_code == 200
    assert response.data == b"%PDF-1.7\n% proof\n"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "filename*=UTF-8''Richtlinien%20%C3%BC.pdf" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert f'href="{url}"' in focal.get(f"/indicators/measurements/{guide}").text
    assert login_as(world.users["reviewer"]).get(url).status_code == 200
    # Not validated yet: another office and the programme manager get nothing.
    assert login_as(world.users["focal_my"]).get(url).status_code == 404
    assert login_as(world.users["manager"]).get(url).status_code == 404
    # A value without a file has no download.
    no_file = indicators.measurements["online_sg_q3"]
    assert focal.get(f"/indicators/measurements/{no_file}/evidence").status_code == 404


def _add_reported(app, world, indicators, n: int) -> None:
    """``n`` more values awaiting validation (extra indicators, SG and MY, 2026Q3)."""
    with app.app_context():
        for k in range(n):
            indicator = Indicator(code=f"EXTRA-{k}", name=f"Extra {k}", unit="number")
            db.session.add(indicator)
            for office in ("SG", "MY"):
                db.session.add(
                    Measurement(
                        indicator=indicator,
                        office_id=world.offices[office],
                        period="2026Q3",
                        value=k,
                        reported_by_id=world.user_ids["focal_sg" if office == "SG" else "focal_my"],
                        reported_at=datetime(2026, 10, 1, tzinfo=UTC),
                        changes=[MeasurementChange(author_id=world.user_ids["reviewer"], event="reported")],
                    )
                )
        db.session.commit()


@time_machine.travel(NOW, tick=False)
def test_statements_do_not_grow_with_the_values(app, world, indicators, login_as, count_queries):
    reviewer = login_as(world.users["reviewer"])
    focal = login_as(world.users["focal_sg"])
    measurement = indicators.measurements["online_sg_q3"]

    def statements() -> list[int]:
        counts = []
        for client, url in (
            (reviewer, "/verification"),
            (reviewer, "/verification?kind=values"),
            (focal, "/indicators/report"),
            (reviewer, f"/indicators/measurements/{measurement}"),
            (focal, "/my"),
        ):
            with count_queries() as seen:
                assert client.get(url).status_code == 200, url
            counts.append(len(seen))
        return counts

    small = statements()
    _add_reported(app, world, indicators, 12)
    # More history on the value too.
    with app.app_context():
        for k in range(10):
            db.session.add(
                MeasurementChange(
                    measurement_id=measurement,
                    author_id=world.user_ids["focal_sg"],
                    event="corrected",
                    new_value=k,
                )
            )
        db.session.commit()
    assert statements() == small
    # The queue pages: 24 + 1 values, the kind filter keeps to them.
    page = reviewer.get("/verification?kind=values&page=2").text
    assert "25 indicator values await validation" in page


@time_machine.travel(NOW, tick=False)
def test_another_offices_unvalidated_value_is_not_found_by_any_of_these_urls(
    app, world, indicators, login_as
):
    c = login_as(world.users["focal_sg"])
    token = csrf_token(c.get("/indicators/report").text)
    malaysian = indicators.measurements["exam_my_q3"]  # sent back: Malaysia's, reviewers' and admins' only
    before = _snapshot(app)
    for url in ("", "/evidence"):
        assert c.get(f"/indicators/measurements/{malaysian}{url}").status_code == 404
    for url in ("/validate", "/send-back"):
        data = {"csrf_token": token, "version": "2", "note": "forged"}
        assert c.post(f"/indicators/measurements/{malaysian}{url}", data=data).status_code == 404
    assert _snapshot(app) == before
