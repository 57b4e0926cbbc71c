"""The indicator API through HTTP: the list, one indicator, creating one, an indicator's values under
filters and visibility, reporting and correcting a value with PUT, refusals naming their field, and
statement counts that do not grow with the data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import time_machine
from jsonschema_rs import Draft202012Validator

from tracker.api.auth import create_token
from tracker.api.openapi import document
from tracker.extensions import db
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement, MeasurementChange
from tracker.models import User

#: The world's today: 2026Q3 is the last quarter that has ended, 2026Q4 has not.
NOW = datetime(2026, 11, 24, 4, tzinfo=UTC)
PROBLEM = "application/problem+json"


@pytest.fixture
def api(app, world):
    """Factory: a client whose requests carry the bearer token of the user with this label."""

    class Api:
        def __init__(self, label: str) -> None:
            with app.app_context():
                user = db.session.get(User, world.user_ids[label])
                _row, self.secret = create_token(user, "test", datetime.now(UTC))
                db.session.commit()
            self.client = app.test_client()

        def open(self, method: str, url: str, **kwargs):
            headers = {"Authorization": f"Bearer {self.secret}"}
            with time_machine.travel(NOW, tick=False):
                return self.client.open(url, method=method, headers=headers, **kwargs)

        def get(self, url: str, **kwargs):
            return self.open("GET", url, **kwargs)

        def post(self, url: str, **kwargs):
            return self.open("POST", url, **kwargs)

        def put(self, url: str, **kwargs):
            return self.open("PUT", url, **kwargs)

    return Api


def _problem(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status and body["detail"] and body["request_id"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def _fields(response) -> set:
    return {e["field"] for e in _problem(response, 422)["errors"]}


def _snapshot(app) -> tuple:
    """Every indicator, value and history row, to show that a refused request wrote nothing."""
    with app.app_context():
        return (
            db.session.execute(sa.select(Indicator.id, Indicator.code).order_by(Indicator.id)).all(),
            db.session.execute(
                sa.select(Measurement.id, Measurement.value, Measurement.state, Measurement.version).order_by(
                    Measurement.id
                )
            ).all(),
            db.session.scalar(sa.select(sa.func.count()).select_from(MeasurementChange)),
        )


def _values(response) -> dict:
    assert response.status_code == 200, response.text
    return {(m["office"], m["period"]): (m["value"], m["state"]) for m in response.get_json()["items"]}


def _conforms(body, schema_name: str) -> None:
    """The body validates against the published document's schema of this name."""
    doc = document("/api/v1")
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    errors = [str(e) for e in Draft202012Validator(root).iter_errors(body)]
    assert not errors, errors


# --- reading indicators -------------------------------------------------------------------------------------


def test_the_list_is_paged_by_code_and_the_detail_has_every_offices_goals(app, world, indicators, api):
    focal = api("focal_my")
    page = focal.get("/api/v1/indicators", query_string={"per_page": 2}).get_json()
    assert [i["code"] for i in page["items"]] == ["EXAM", "GUIDE"]
    assert (page["page"], page["per_page"], page["total"]) == (1, 2, 3)
    _conforms(page, "IndicatorPage")
    second = focal.get("/api/v1/indicators", query_string={"per_page": 2, "page": 2}).get_json()
    assert [i["code"] for i in second["items"]] == ["ONLINE"]

    online = focal.get(f"/api/v1/indicators/{indicators.indicators['ONLINE']}")
    assert online.status_code == 200
    body = online.get_json()
    _conforms(body, "IndicatorDetail")
    assert (body["code"], body["unit"], body["direction"], body["archived"]) == (
        "ONLINE",
        "percent",
        "higher",
        False,
    )
    assert body["offices"] == [
        {
            "office": "MY",
            "baseline_value": 30,
            "baseline_period": "2025Q4",
            "target_value": 80,
            "target_period": "2027Q4",
        },
        {
            "office": "SG",
            "baseline_value": 50,
            "baseline_period": "2025Q4",
            "target_value": 90,
            "target_period": "2027Q4",
        },
    ]
    guide = focal.get(f"/api/v1/indicators/{indicators.indicators['GUIDE']}").get_json()
    assert [g["office"] for g in guide["offices"]] == ["SG"]

    _problem(focal.get("/api/v1/indicators/999999"), 404)
    assert _fields(focal.get("/api/v1/indicators?per_page=0")) == {"per_page"}
    assert _fields(focal.get("/api/v1/indicators?archived=maybe")) == {"archived"}


def test_archived_indicators_are_listed_apart(app, world, indicators, api):
    with app.app_context():
        db.session.get(Indicator, indicators.indicators["GUIDE"]).archived_at = NOW
        db.session.commit()
    reader = api("manager")
    assert [i["code"] for i in reader.get("/api/v1/indicators").get_json()["items"]] == ["EXAM", "ONLINE"]
    archived = reader.get("/api/v1/indicators?archived=true").get_json()["items"]
    assert [(i["code"], i["archived"]) for i in archived] == [("GUIDE", True)]


# --- creating indicators ------------------------------------------------------------------------------------


def test_reviewers_create_indicators_and_a_taken_code_is_a_409(app, world, api):
    reviewer = api("reviewer")
    body = {
        "code": "ind-avail",
        "name": "IT system availability",
        "unit": "percent",
        "definition": "Hours up over hours in the quarter.",
        "recommendation_id": world.recommendation_id,
    }
    created = reviewer.post("/api/v1/indicators", json=body)
    assert created.status_code == 201, created.text
    made = created.get_json()
    _conforms(made, "IndicatorDetail")
    assert (made["code"], made["direction"], made["offices"]) == ("IND-AVAIL", "higher", [])
    assert made["recommendation"] == {"id": world.recommendation_id, "code": "R-1"}
    assert created.headers["Location"].endswith(f"/api/v1/indicators/{made['id']}")
    assert reviewer.get(created.headers["Location"]).get_json()["name"] == "IT system availability"

    before = _snapshot(app)
    again = reviewer.post("/api/v1/indicators", json={**body, "code": "IND-AVAIL", "name": "Other"})
    problem = _problem(again, 409)
    assert "IND-AVAIL" in problem["detail"] and problem["errors"][0]["field"] == "code"
    assert _snapshot(app) == before


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"unit": "hours"}, {"unit"}),
        ({"name": "   "}, {"name"}),
        ({"code": "has space"}, {"code"}),
        ({"code": "X" * 33}, {"code"}),
        ({"direction": "sideways"}, {"direction"}),
        ({"recommendation_id": 999999}, {"recommendation_id"}),
        ({"colour": "red"}, {"colour"}),
        ({"code": None, "unit": 3}, {"code", "unit"}),
    ],
)
def test_a_new_indicator_is_checked_field_by_field(app, world, api, change, fields):
    before = _snapshot(app)
    body = {"code": "NEW", "name": "New", "unit": "number", **change}
    assert _fields(api("admin").post("/api/v1/indicators", json=body)) == fields
    assert _snapshot(app) == before


def test_only_reviewers_and_admins_create_indicators(app, world, api):
    before = _snapshot(app)
    for label in ("focal_sg", "manager", "manager_sg"):
        _problem(
            api(label).post("/api/v1/indicators", json={"code": "X", "name": "X", "unit": "number"}), 403
        )
    assert _snapshot(app) == before


# --- reading values -----------------------------------------------------------------------------------------


def test_values_not_yet_validated_are_seen_by_their_office_reviewers_and_admins(app, world, indicators, api):
    online = f"/api/v1/indicators/{indicators.indicators['ONLINE']}/measurements"
    exam = f"/api/v1/indicators/{indicators.indicators['EXAM']}/measurements"
    everything_online = {
        ("SG", "2026Q3"): (65, "reported"),
        ("MY", "2026Q2"): (40, "validated"),
        ("SG", "2026Q2"): (60, "validated"),
    }
    for label in ("reviewer", "admin", "focal_sg", "manager_sg"):
        assert _values(api(label).get(online)) == everything_online, label
    # Malaysia's focal point and the programme-wide manager see the validated values only.
    for label in ("focal_my", "manager"):
        assert _values(api(label).get(online)) == {
            ("MY", "2026Q2"): (40, "validated"),
            ("SG", "2026Q2"): (60, "validated"),
        }, label
    assert _values(api("focal_my").get(exam)) == {
        ("SG", "2026Q3"): (20, "validated"),
        ("MY", "2026Q3"): (30, "sent_back"),
    }
    assert _values(api("manager").get(exam)) == {("SG", "2026Q3"): (20, "validated")}
    # Filtering on the hidden state does not reveal it either.
    assert (
        api("focal_my").get(online, query_string={"office": "SG", "state": "reported"}).get_json()["total"]
        == 0
    )


def test_values_newest_first_filtered_and_paged(app, world, indicators, api):
    reader = api("reviewer")
    url = f"/api/v1/indicators/{indicators.indicators['ONLINE']}/measurements"
    page = reader.get(url).get_json()
    _conforms(page, "MeasurementPage")
    assert [(m["period"], m["office"]) for m in page["items"]] == [
        ("2026Q3", "SG"),
        ("2026Q2", "MY"),
        ("2026Q2", "SG"),
    ]
    first = page["items"][0]
    assert first["indicator"] == "ONLINE" and first["reported_by"] == world.users["focal_sg"]
    assert first["reported_at"] == "2026-10-10T03:00:00Z" and first["reviewed_at"] is None
    assert _values(reader.get(url, query_string={"office": "sg"})) == {
        ("SG", "2026Q3"): (65, "reported"),
        ("SG", "2026Q2"): (60, "validated"),
    }
    assert set(_values(reader.get(url, query_string={"from": "2026Q3"}))) == {("SG", "2026Q3")}
    assert set(_values(reader.get(url, query_string={"to": "2026Q2"}))) == {
        ("SG", "2026Q2"),
        ("MY", "2026Q2"),
    }
    assert set(
        _values(reader.get(url, query_string={"from": "2026Q2", "to": "2026Q2", "state": "validated"}))
    ) == {
        ("SG", "2026Q2"),
        ("MY", "2026Q2"),
    }
    paged = reader.get(url, query_string={"per_page": 1, "page": 3}).get_json()
    assert (paged["total"], [m["office"] for m in paged["items"]]) == (3, ["SG"])
    assert reader.get(url, query_string={"page": 9}).get_json()["items"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026Q5"}, "from"),
        ({"from": "Q3 2026"}, "from"),
        ({"to": "2026-09"}, "to"),
        ({"from": "2026Q3", "to": "2026Q1"}, "from"),
        ({"office": "XX"}, "office"),
        ({"office": "TOO-LONG-CODE"}, "office"),
        ({"state": "draft"}, "state"),
        ({"per_page": "1000"}, "per_page"),
    ],
)
def test_bad_filters_name_the_parameter(world, indicators, api, query, field):
    url = f"/api/v1/indicators/{indicators.indicators['ONLINE']}/measurements"
    response = api("reviewer").get(url, query_string=query)
    assert _fields(response) == {field}
    assert field in response.get_json()["detail"]


def test_an_unknown_indicator_has_no_values(world, indicators, api):
    _problem(api("reviewer").get("/api/v1/indicators/999999/measurements"), 404)


# --- reporting values ---------------------------------------------------------------------------------------


def _put(client, indicators, code: str, office: str, period: str, body):
    return client.put(
        f"/api/v1/indicators/{indicators.indicators[code]}/measurements/{office}/{period}", json=body
    )


def test_a_focal_point_reports_corrects_and_repeats_their_offices_values(app, world, indicators, api):
    focal = api("focal_sg")
    created = _put(focal, indicators, "GUIDE", "SG", "2026Q3", {"value": True, "note": "Published in June."})
    assert created.status_code == 201, created.text
    made = created.get_json()
    _conforms(made, "Measurement")
    assert (made["value"], made["state"], made["version"], made["note"]) == (
        1,
        "reported",
        1,
        "Published in June.",
    )
    assert made["reported_by"] == world.users["focal_sg"] and made["reported_at"] == "2026-11-24T04:00:00Z"
    assert created.headers["Location"].endswith(
        f"/indicators/{indicators.indicators['GUIDE']}/measurements/SG/2026Q3"
    )

    # The reported value of Q3 (65) corrected: 200, a new version, a history row.
    corrected = _put(
        focal,
        indicators,
        "ONLINE",
        "sg",
        "2026Q3",
        {"value": 70.5, "evidence_url": "https://ipos.example/q3"},
    )
    assert corrected.status_code == 200, corrected.text
    body = corrected.get_json()
    assert (body["office"], body["value"], body["state"], body["version"]) == ("SG", 70.5, "reported", 2)
    assert body["evidence_url"] == "https://ipos.example/q3" and "Location" not in corrected.headers

    # The same again changes nothing: 200, the same body, nothing written.
    before = _snapshot(app)
    again = _put(focal, indicators, "ONLINE", "SG", "2026Q3", {"value": 70.5})
    assert again.status_code == 200 and again.get_json() == body
    assert _snapshot(app) == before

    # A validated value corrected goes back to "reported": a reviewer validates it again.
    revised = _put(
        focal, indicators, "ONLINE", "SG", "2026Q2", {"value": 61, "note": "Late filings counted."}
    )
    assert revised.get_json()["state"] == "reported"
    with app.app_context():
        events = db.session.scalars(
            sa.select(MeasurementChange.event)
            .where(MeasurementChange.measurement_id == indicators.measurements["online_sg_q2"])
            .order_by(MeasurementChange.id)
        ).all()
    assert events == ["reported", "validated", "corrected"]


def test_a_value_sent_back_is_reported_again_even_unchanged(app, world, indicators, api):
    response = _put(
        api("focal_my"), indicators, "EXAM", "MY", "2026Q3", {"value": 30, "note": "Checked: right."}
    )
    assert response.status_code == 200
    assert (response.get_json()["state"], response.get_json()["review_note"]) == (
        "reported",
        "Check the source",
    )


def test_reviewers_report_for_any_office(app, world, indicators, api):
    response = _put(api("reviewer"), indicators, "ONLINE", "MY", "2026Q3", {"value": 45})
    assert response.status_code == 201
    assert response.get_json()["reported_by"] == world.users["reviewer"]


def test_nobody_reports_for_an_office_not_theirs(app, world, indicators, api):
    before = _snapshot(app)
    refused = _put(api("focal_my"), indicators, "ONLINE", "SG", "2026Q3", {"value": 10})
    assert "SG" in _problem(refused, 403)["detail"]
    _problem(_put(api("focal_sg"), indicators, "ONLINE", "MY", "2026Q3", {"value": 10}), 403)
    for label in ("manager", "manager_sg"):  # managers read, they do not report
        _problem(_put(api(label), indicators, "ONLINE", "SG", "2026Q3", {"value": 10}), 403)
    assert _snapshot(app) == before
    # Nor can Malaysia read Singapore's value that awaits validation through the API.
    values = _values(
        api("focal_my").get(f"/api/v1/indicators/{indicators.indicators['ONLINE']}/measurements")
    )
    assert ("SG", "2026Q3") not in values


@pytest.mark.parametrize(
    ("code", "period", "body", "fields"),
    [
        ("ONLINE", "2026Q3", {"value": 100.5}, {"value"}),
        ("ONLINE", "2026Q3", {"value": -1}, {"value"}),
        ("ONLINE", "2026Q3", {"value": "70"}, {"value"}),
        ("ONLINE", "2026Q3", {"value": True}, {"value"}),
        ("ONLINE", "2026Q3", {"value": 10**400}, {"value"}),
        ("ONLINE", "2026Q3", {"note": "no value"}, {"value"}),
        ("GUIDE", "2026Q3", {"value": 0.5}, {"value"}),
        ("EXAM", "2026Q4", {"value": 12}, {"period"}),  # has not ended yet
        ("EXAM", "2027Q1", {"value": 12}, {"period"}),
        ("EXAM", "2026Q5", {"value": 12}, {"period"}),
        ("EXAM", "2026-q3", {"value": 12}, {"period"}),
        ("EXAM", "last", {"value": -3}, {"period", "value"}),
        ("EXAM", "2026Q3", {"value": 12, "evidence_url": "ftp://x"}, {"evidence_url"}),
        ("EXAM", "2026Q3", {"value": 12, "note": "x" * 5001}, {"note"}),
        ("EXAM", "2026Q3", {"value": 12, "status": "validated"}, {"status"}),
    ],
)
def test_bad_values_and_periods_name_the_field_and_write_nothing(
    app, world, indicators, api, code, period, body, fields
):
    before = _snapshot(app)
    assert _fields(_put(api("focal_sg"), indicators, code, "SG", period, body)) == fields
    assert _snapshot(app) == before


def test_unknown_indicators_offices_and_bodies(app, world, indicators, api):
    focal = api("focal_sg")
    before = _snapshot(app)
    _problem(focal.put("/api/v1/indicators/999999/measurements/SG/2026Q3", json={"value": 1}), 404)
    _problem(_put(api("reviewer"), indicators, "ONLINE", "XX", "2026Q3", {"value": 1}), 404)
    assert _fields(_put(focal, indicators, "ONLINE", "SG", "2026Q3", [1])) == {None}
    url = f"/api/v1/indicators/{indicators.indicators['ONLINE']}/measurements/SG/2026Q3"
    _problem(focal.put(url, data="value=1", content_type="application/x-www-form-urlencoded"), 415)
    _problem(focal.put(url, data="{", content_type="application/json"), 400)
    assert _snapshot(app) == before


def test_an_archived_indicator_takes_no_values(app, world, indicators, api):
    with app.app_context():
        db.session.get(Indicator, indicators.indicators["GUIDE"]).archived_at = NOW
        db.session.commit()
    assert _fields(_put(api("focal_sg"), indicators, "GUIDE", "SG", "2026Q3", {"value": 1})) == {"indicator"}


# --- the document and the statement counts ------------------------------------------------------------------


def test_the_document_describes_every_indicator_operation():
    paths = document("/api/v1")["paths"]
    operations = {
        (method, path): operation["operationId"]
        for path, item in paths.items()
        if path.startswith("/indicators")
        for method, operation in item.items()
    }
    assert operations == {
        ("get", "/indicators"): "listIndicators",
        ("post", "/indicators"): "createIndicator",
        ("get", "/indicators/{id}"): "getIndicator",
        ("get", "/indicators/{id}/measurements"): "listMeasurements",
        ("put", "/indicators/{id}/measurements/{office_code}/{period}"): "putMeasurement",
    }
    put = paths["/indicators/{id}/measurements/{office_code}/{period}"]["put"]
    assert {"200", "201", "403", "404", "409", "422"} <= set(put["responses"])
    body = put["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["value"] and set(body["properties"]) == {"value", "note", "evidence_url"}
    names = [p["name"] for p in paths["/indicators/{id}/measurements"]["get"]["parameters"]]
    assert {"office", "from", "to", "page", "per_page"} <= set(names)


def test_reads_take_the_same_number_of_statements_whatever_the_data(
    app, world, indicators, api, count_queries
):
    reader = api("reviewer")
    reader.get("/api/v1/me")  # the token's first use is noted once; leave it out of the counts
    online = indicators.indicators["ONLINE"]
    urls = [
        "/api/v1/indicators",
        f"/api/v1/indicators/{online}",
        f"/api/v1/indicators/{online}/measurements",
        f"/api/v1/indicators/{online}/measurements?office=SG&from=2020Q1",
    ]

    def counted() -> list[int]:
        found = []
        for url in urls:
            with count_queries() as statements:
                assert reader.get(url).status_code == 200
            found.append(len(statements))
        return found

    small = counted()
    with app.app_context():
        # More offices, indicators and values, each value reported by its own person, so that a
        # lazy load per row would show in the counts.
        from tracker.models import Office

        for n in range(6):
            office = Office(code=f"O{n}", name=f"Office {n}", country="X", timezone="UTC")
            db.session.add(office)
            db.session.add(Indicator(code=f"EXTRA{n}", name=f"Extra {n}", unit="number"))
            db.session.flush()
            db.session.add(
                IndicatorTarget(
                    indicator_id=online, office_id=office.id, target_value=9, target_period="2027Q4"
                )
            )
            for quarter in range(1, 5):
                person = User(
                    email=f"p{n}.{quarter}@example.test", name="P", role="focal_point", office=office
                )
                db.session.add(person)
                db.session.flush()
                db.session.add(
                    Measurement(
                        indicator_id=online,
                        office_id=office.id,
                        period=f"2025Q{quarter}",
                        value=quarter,
                        state="validated",
                        reported_by_id=person.id,
                    )
                )
        db.session.commit()
    assert counted() == small
