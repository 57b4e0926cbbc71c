"""Recommendations, sources and office responses through HTTP."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import ActionItem, OfficeResponse, Recommendation, Source


def _add_recommendations(app, world, n: int) -> None:
    _add_recommendations_offset(app, world, n, 0)


def _add_recommendations_offset(app, world, n: int, start: int = 100) -> None:
    with app.app_context():
        for i in range(start, start + n):
            rec = Recommendation(
                source_id=world.source_id,
                code=f"R-X-{i:03}",
                title=f"Extra recommendation {i}",
                text="About e-filing" if i % 2 else "About statistics",
                theme=("Digital", "Statistics")[i % 2],
                priority=("high", "medium", "low")[i % 3],
            )
            db.session.add(rec)
            db.session.flush()
            for code in ("SG", "MY"):
                db.session.add(
                    ActionItem(
                        recommendation=rec,
                        office_id=world.offices[code],
                        title=f"Do {i} in {code}",
                        deadline=sa.func.current_date(),
                        status=("completed", "in_progress")[i % 2],
                    )
                )
        db.session.commit()


def test_list_search_filter_sort_and_paginate(app, world, login_as):
    _add_recommendations(app, world, 12)
    c = login_as(world.users["reviewer"])
    page = c.get("/recommendations").text
    assert "13 recommendations" in page and "R-X-011" in page and "Go digital" in page
    assert "2 of 2" in c.get("/recommendations", query_string={"q": "r-x-000"}).text  # items done / total
    assert "6 recommendations" in c.get("/recommendations", query_string={"q": "E-FILING"}).text
    assert "6 recommendations" in c.get("/recommendations", query_string={"theme": "Statistics"}).text
    assert "4 recommendations" in c.get("/recommendations", query_string={"priority": "high"}).text
    assert "6 recommendations" in c.get("/recommendations", query_string={"status": "completed"}).text
    assert "13 recommendations" in c.get("/recommendations", query_string={"office": "sg"}).text
    by_title = c.get("/recommendations", query_string={"sort": "title"}).text
    assert by_title.index("Extra recommendation 0") < by_title.index("Go digital")
    app.config["TRACKER_PAGE_SIZE"] = 5
    try:
        paged = c.get("/recommendations", query_string={"theme": "Digital", "page": 2}).text
        assert "Page 2 of 2" in paged and "theme=Digital" in paged  # the pager keeps the filters
    finally:
        app.config["TRACKER_PAGE_SIZE"] = 50
    for bad in ({"page": "x"}, {"source": "abc"}, {"sort": "drop table"}, {"status": "nope"}):
        assert c.get("/recommendations", query_string=bad).status_code == 200


def test_focal_point_sees_own_office_numbers_responses_and_items(app, world, login_as):
    with app.app_context():
        db.session.add(
            OfficeResponse(
                recommendation_id=world.recommendation_id,
                office_id=world.offices["MY"],
                response="noted",
                comment="MY says no",
            )
        )
        db.session.commit()
    focal = login_as(world.users["focal_sg"])
    page = focal.get(f"/recommendations/{world.recommendation_id}").text
    assert "E-filing for SG" in page and "E-filing for MY" not in page and "MY says no" not in page
    assert '<th scope="row" data-label="Office">MY</th>' not in page
    assert "0 of 1" in focal.get("/recommendations").text  # counts only SG's item
    reviewer = login_as(world.users["reviewer"]).get(f"/recommendations/{world.recommendation_id}").text
    assert "E-filing for MY" in reviewer and "MY says no" in reviewer and "Noted (not accepted)" in reviewer


def test_focal_point_records_their_office_response_only(app, world, login_as):
    focal = login_as(world.users["focal_sg"])
    url = f"/recommendations/{world.recommendation_id}"
    token = csrf_token(focal.get(url).text)
    ok = focal.post(
        url,
        data={
            "csrf_token": token,
            "office_id": world.offices["SG"],
            "response": "partially_accepted",
            "comment": "Designs later",
        },
    )
    assert ok.status_code == 302
    assert "Partially accepted" in focal.get(url).text
    again = focal.post(
        url,
        data={"csrf_token": token, "office_id": world.offices["SG"], "response": "accepted", "comment": ""},
    )
    assert again.status_code == 302
    forged = focal.post(
        url, data={"csrf_token": token, "office_id": world.offices["MY"], "response": "accepted"}
    )
    assert forged.status_code == 422 and "Not a valid choice" in forged.text
    bad = focal.post(url, data={"csrf_token": token, "office_id": world.offices["SG"], "response": "maybe"})
    assert bad.status_code == 422
    with app.app_context():
        rows = db.session.scalars(sa.select(OfficeResponse)).all()
        assert [(r.office_id, r.response, r.comment) for r in rows] == [
            (world.offices["SG"], "accepted", None)
        ]
    manager = login_as(world.users["manager_sg"])
    page = manager.get(url)
    assert "Record a response" not in page.text
    assert (
        manager.post(
            url,
            data={"csrf_token": csrf_token(page.text), "office_id": world.offices["SG"], "response": "noted"},
        ).status_code
        == 403
    )


def test_reviewer_writes_edits_and_archives_a_recommendation(app, world, login_as):
    c = login_as(world.users["reviewer"])
    form = c.get("/recommendations/new")
    data = {
        "csrf_token": csrf_token(form.text),
        "code": "R-2026-01",
        "title": "Open data",
        "text": "Publish data.",
        "theme": "Digital",
        "priority": "high",
        "source_id": world.source_id,
        "target_date": "2027-06-30",
    }
    created = c.post("/recommendations/new", data=data)
    assert created.status_code == 302
    with app.app_context():
        rec = db.session.scalar(sa.select(Recommendation).where(Recommendation.code == "R-2026-01"))
        rec_id = rec.id
    duplicate = c.post("/recommendations/new", data=dict(data, title="Other"))
    assert duplicate.status_code == 422 and "already has the code R-2026-01" in duplicate.text
    for field, value in (
        ("code", ""),
        ("code", "bad code!"),
        ("target_date", "soon"),
        ("priority", "urgent"),
        ("source_id", "999"),
    ):
        assert c.post("/recommendations/new", data={**data, "code": "R-NEW", field: value}).status_code == 422
    edited = c.post(f"/recommendations/{rec_id}/edit", data=dict(data, title="Open data, reused"))
    assert edited.status_code == 302
    confirm = c.get(f"/recommendations/{rec_id}/archive")
    assert "Archive R-2026-01?" in confirm.text
    assert (
        c.post(
            f"/recommendations/{rec_id}/archive", data={"csrf_token": csrf_token(confirm.text)}
        ).status_code
        == 302
    )
    row = '<td data-label="Code">R-2026-01</td>'
    assert row not in c.get("/recommendations").text
    assert row in c.get("/recommendations", query_string={"archived": "1"}).text
    with app.app_context():
        rec = db.session.get(Recommendation, rec_id)
        assert rec.title == "Open data, reused" and rec.archived_at is not None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Recommendation)) == 2


def test_others_cannot_write_recommendations_or_sources(world, login_as):
    for role in ("manager", "manager_sg", "focal_sg"):
        c = login_as(world.users[role])
        token = csrf_token(c.get("/").text)
        for url in (
            "/recommendations/new",
            f"/recommendations/{world.recommendation_id}/edit",
            f"/recommendations/{world.recommendation_id}/archive",
            "/sources/new",
            f"/sources/{world.source_id}/edit",
            f"/sources/{world.source_id}/archive",
        ):
            assert c.get(url).status_code == 403, (role, url)
            assert c.post(url, data={"csrf_token": token, "code": "X", "title": "X"}).status_code == 403, (
                role,
                url,
            )
    assert login_as(world.users["reviewer"]).get("/recommendations/999/edit").status_code == 404


def test_sources(app, world, login_as):
    c = login_as(world.users["admin"])
    token = csrf_token(c.get("/sources/new").text)
    data = {
        "csrf_token": token,
        "title": "Evaluation 2025",
        "place": "Geneva",
        "starts_on": "2025-03-01",
        "ends_on": "2025-03-02",
    }
    assert c.post("/sources/new", data=data).status_code == 302
    assert "Evaluation 2025" in c.get("/sources").text
    assert "already has this title" in c.post("/sources/new", data=data).text
    assert (
        "The end comes before the start."
        in c.post("/sources/new", data=dict(data, title="T2", ends_on="2025-01-01")).text
    )
    with app.app_context():
        source_id = db.session.scalar(sa.select(Source.id).where(Source.title == "Evaluation 2025"))
    assert c.post(f"/sources/{source_id}/archive", data={"csrf_token": token}).status_code == 302
    new_form = c.get("/recommendations/new").text
    assert "Evaluation 2025" not in new_form and "Dialogue" in new_form  # archived sources are not offered
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Source)) == 2


def test_pages_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    c = login_as(world.users["reviewer"])

    def statements(url: str) -> int:
        with count_queries() as seen:
            assert c.get(url).status_code == 200
        return len(seen)

    _add_recommendations(app, world, 3)
    urls = ["/recommendations", f"/recommendations/{world.recommendation_id}", "/sources"]
    small = [statements(u) for u in urls]
    with app.app_context():
        for i in range(30):
            db.session.add(
                ActionItem(
                    recommendation_id=world.recommendation_id,
                    office_id=world.offices["SG"],
                    title=f"t{i}",
                    deadline=sa.func.current_date(),
                )
            )
        db.session.add_all(Source(title=f"S{i}") for i in range(30))
        db.session.commit()
    _add_recommendations_offset(app, world, 30)
    assert [statements(u) for u in urls] == small
