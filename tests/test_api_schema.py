"""The OpenAPI document against the code: every route is documented and nothing else is, and
schemathesis runs every operation in-process and finds no 5xx and no answer that breaks the document."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from tracker.api.auth import create_token
from tracker.api.openapi import document
from tracker.extensions import db
from tracker.models import User

#: Statuses that schema-valid input may still get: business rules the schema cannot express
#: (412 stale If-Match, 422 a workflow refusal or an unknown email) on top of schemathesis' defaults.
POSITIVE_STATUSES = ["2xx", "401", "403", "404", "409", "412", "422"]


def _token(app, world, label: str) -> str:
    with app.app_context():
        user = db.session.get(User, world.user_ids[label])
        _token, secret = create_token(user, "schemathesis", datetime.now(UTC))
        db.session.commit()
    return secret


# Hypothesis warns when it formats a large generated body for its report; harmless here.
@pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")
def test_every_operation_conforms(app, world, indicators):
    secret = _token(app, world, "admin")
    config = SchemathesisConfig.from_dict(
        {
            "seed": 20261124,
            "headers": {"Authorization": f"Bearer {secret}"},
            # Examples per operation for the fuzzing phase; no example database written to disk.
            "generation": {"max-examples": 25, "database": "none"},
            "checks": {
                "positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES},
                # schemathesis 4.32's probe for this check passes `max_redirects` to werkzeug's test
                # client and crashes in-process; test_api.py checks every operation without a token.
                "ignored_auth": {"enabled": False},
            },
        }
    )
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)
    problems, requests, answered = [], 0, set()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            requests += len(event.recorder.interactions)
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None and interaction.response.status_code < 300:
                    # The document's server and paths lead to the routes (a wrong base path 404s).
                    answered.add(urlsplit(interaction.request.uri).path.split("/")[3])
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        problems.append(
                            f"{event.recorder.label}: {check.name}: {failure.title}\n{failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"error: {getattr(event, 'label', '')} {event.info.format()}")
    print(f"{requests} requests")
    assert not problems, "\n\n".join(dict.fromkeys(problems))
    assert {"me", "offices", "recommendations", "actions", "extensions", "indicators"} <= answered, answered


def test_every_route_is_documented_and_nothing_else(app):
    documented = {
        (method.upper(), "/api/v1" + path)
        for path, item in document("/api/v1")["paths"].items()
        for method in item
    }
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.not_found":
            path = re.sub(r"<(?:[^:<>]+:)?(\w+)>", r"{\1}", rule.rule)
            routed |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented


def test_every_operation_documents_its_errors_as_problems(app):
    for path, item in document("/api/v1")["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if operation.get("security") != []:
                assert "401" in responses, (method, path)
            if "{id}" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)


def test_the_server_is_the_configured_address_and_the_paths_are_relative_to_it(app, client):
    """Clients and generated code reach TRACKER_BASE_URL, whichever address the document was read on."""
    doc = client.get("/api/v1/openapi.json", base_url="http://10.1.2.3:8080").get_json()
    assert doc["servers"] == [{"url": "http://127.0.0.1:5000/api/v1", "description": "This tracker."}]
    assert "/me" in doc["paths"] and not any(path.startswith("/api/") for path in doc["paths"])
    before = app.config["TRACKER_BASE_URL"]
    app.config["TRACKER_BASE_URL"] = "https://tracker.example.org"
    try:
        doc = client.get("/api/v1/openapi.json").get_json()
    finally:
        app.config["TRACKER_BASE_URL"] = before
    assert doc["servers"][0]["url"] == "https://tracker.example.org/api/v1"
    # A server plus a path names a route the app answers: the document's own entry leads back to it.
    assert urlsplit(doc["servers"][0]["url"]).path + "/openapi.json" == "/api/v1/openapi.json"
