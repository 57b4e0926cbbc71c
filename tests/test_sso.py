"""Single sign-on with OpenID Connect, against a real provider (oidc-provider-mock) on loopback.

The Flask test client is the browser on tracker's side; ``requests`` is the browser on the
provider's side (real HTTP to the provider's authorization form); tracker's own calls to the
provider (discovery, signing keys, token exchange) are real HTTP too. The provider lets a test
choose who signs in (``PUT /users/<sub>`` sets the claims, the form takes the ``sub``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import uuid
import warnings
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import authlib.deprecate  # noqa: F401  (before the provider: on import it adds a warning filter)
import pytest
import requests
import sqlalchemy as sa
import time_machine
import werkzeug.serving
from flask import Flask
from flask.testing import FlaskClient

from config import ConfigError
from tests.conftest import World
from tracker import create_app
from tracker.extensions import db
from tracker.models import AuditEvent, User

with warnings.catch_warnings():  # the provider imports Authlib modules that Authlib has deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock

# The provider (a test tool built on an older Authlib interface) warns when it signs a token;
# the warning is about its code, not ours, and would otherwise fail the test from its thread.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

CLIENT_ID = "tracker-test"
LABEL = "Programme ID"


class TokenRequests:
    """WSGI middleware in front of the provider: keeps the form of every token request it gets."""

    def __init__(self, app) -> None:
        self.app = app
        self.forms: list[dict[str, list[str]]] = []

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/oauth2/token":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            self.forms.append(parse_qs(body.decode()))
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def provider_server() -> Iterator[tuple[str, TokenRequests]]:
    """An OpenID Connect provider served from a thread on loopback: its issuer URL and its log."""
    recorder = TokenRequests(oidc_provider_mock.app())
    server = werkzeug.serving.make_server("localhost", 0, recorder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}", recorder
    server.shutdown()
    thread.join(5)
    server.server_close()


@pytest.fixture
def provider(provider_server) -> str:
    """The provider's issuer URL."""
    return provider_server[0]


@pytest.fixture
def sso_app(app: Flask, provider: str) -> Iterator[Flask]:
    """The application with single sign-on through ``provider``, on the test database."""
    configured = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "TRACKER_UPLOAD_DIR": app.config["TRACKER_UPLOAD_DIR"],
            "TRACKER_SSO_ISSUER": provider,
            "TRACKER_SSO_CLIENT_ID": CLIENT_ID,
            "TRACKER_SSO_CLIENT_SECRET": "client-secret",
            "TRACKER_SSO_LABEL": LABEL,
        }
    )
    yield configured
    with configured.app_context():
        db.session.remove()
        db.engine.dispose()


def provider_user(provider: str, email: str | None, verified: object = True, **claims: object) -> str:
    """Create a person at the provider with these claims; returns their subject."""
    sub = f"person-{uuid.uuid4().hex}"
    set_claims(provider, sub, email=email, email_verified=verified, **claims)
    return sub


def set_claims(provider: str, sub: str, **claims: object) -> None:
    """Replace the claims the provider gives for ``sub``."""
    body = {key: value for key, value in claims.items() if value is not None}
    response = requests.put(f"{provider}/users/{sub}", json=body, timeout=10)
    assert response.status_code == 204, response.text


def leave(client: FlaskClient, **query: str) -> str:
    """Follow tracker's sign-on link; returns the provider's authorization URL."""
    response = client.get("/auth/sso/start", query_string=query)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def authorize(url: str, sub: str | None = None, *, deny: bool = False) -> str:
    """Answer the provider's form as ``sub`` (or deny); returns tracker's callback path and query."""
    form = requests.get(url, timeout=10)
    assert form.status_code == 200 and "Authorize" in form.text
    data = {"action": "deny"} if deny else {"sub": sub}
    response = requests.post(url, data=data, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    back = urlsplit(response.headers["Location"])
    assert back.path == "/auth/sso/callback"
    return f"{back.path}?{back.query}"


def sign_on(client: FlaskClient, sub: str, **query: str):
    """The whole round trip for ``sub``; returns tracker's answer to the callback."""
    return client.get(authorize(leave(client, **query), sub))


def signed_in(client: FlaskClient) -> bool:
    """True if the client's session opens the home page."""
    return client.get("/").status_code == 200


def events(app: Flask, kind: str) -> list[AuditEvent]:
    """The audit events of one kind, oldest first."""
    with app.app_context():
        return list(
            db.session.scalars(sa.select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id))
        )


def user_by_email(app: Flask, email: str) -> User | None:
    """The account with this email (detached), or None."""
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        if user is not None:
            db.session.expunge(user)
        return user


def count_users(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(User))


# --- the sign-in page and the settings ---------------------------------------------------------


def test_sign_in_page_shows_the_provider_link_only_when_configured(client, sso_app):
    assert "Sign in with" not in client.get("/auth/login").text
    assert client.get("/auth/sso/start").status_code == 404
    assert client.get("/auth/sso/callback?code=x&state=y").status_code == 404
    page = sso_app.test_client().get("/auth/login?next=/recommendations/")
    assert page.status_code == 200
    assert f">Sign in with {LABEL}</a>" in page.text
    assert 'href="/auth/sso/start?next=/recommendations/"' in page.text
    assert "<form" not in page.text.split("Sign in with")[0]  # a link above the password form


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TRACKER_SSO_CREATE_USERS": "focal_point"}, "TRACKER_SSO_CREATE_USERS"),
        ({"TRACKER_SSO_CREATE_USERS": "manager"}, "TRACKER_SSO_CREATE_USERS"),
        ({"TRACKER_SSO_CREATE_USERS": "admin"}, "TRACKER_SSO_CREATE_USERS"),
        ({"TRACKER_SSO_CREATE_USERS": "reviewr"}, "TRACKER_SSO_CREATE_USERS"),
        ({"TRACKER_SSO_ISSUER": "http://idp.example.org"}, "https://"),
        ({"TRACKER_SSO_CLIENT_SECRET": None}, "TRACKER_SSO_CLIENT_SECRET not set"),
    ],
)
def test_bad_settings_stop_the_start(settings, message):
    base = {
        "TRACKER_SSO_ISSUER": "https://idp.example.org",
        "TRACKER_SSO_CLIENT_ID": CLIENT_ID,
        "TRACKER_SSO_CLIENT_SECRET": "secret",
    }
    with pytest.raises(ConfigError, match=message):
        create_app({**base, **settings})


def test_good_settings_start(provider):
    for issuer in ("https://idp.example.org", "http://127.0.0.1:8080", provider):
        app = create_app(
            {
                "TRACKER_SSO_ISSUER": issuer,
                "TRACKER_SSO_CLIENT_ID": CLIENT_ID,
                "TRACKER_SSO_CLIENT_SECRET": "secret",
                "TRACKER_SSO_CREATE_USERS": "reviewer",
            }
        )
        assert app.extensions["tracker.sso"].client_id == CLIENT_ID


# --- the authorization request -----------------------------------------------------------------


def test_authorization_request_carries_pkce_state_and_nonce(sso_app, provider):
    client = sso_app.test_client()
    url = urlsplit(leave(client))
    assert f"{url.scheme}://{url.netloc}" == provider
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == sso_app.config["TRACKER_BASE_URL"] + "/auth/sso/callback"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 20 and len(query["nonce"]) >= 20
    with client.session_transaction() as session:
        flow = session[f"_state_sso_{query['state']}"]["data"]
    digest = hashlib.sha256(flow["code_verifier"].encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert flow["nonce"] == query["nonce"]


def test_the_token_request_proves_the_pkce_verifier(sso_app, provider_server, world):
    provider, recorder = provider_server
    sub = provider_user(provider, world.users["reviewer"])
    client = sso_app.test_client()
    url = leave(client)
    challenge = parse_qs(urlsplit(url).query)["code_challenge"][0]
    assert client.get(authorize(url, sub)).status_code == 302
    form = recorder.forms[-1]
    assert form["grant_type"] == ["authorization_code"]
    assert form["redirect_uri"] == [sso_app.config["TRACKER_BASE_URL"] + "/auth/sso/callback"]
    [verifier] = form["code_verifier"]
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge


# --- who gets in -------------------------------------------------------------------------------


def test_known_email_signs_in_and_links_the_identity(sso_app, provider, world: World):
    email = world.users["reviewer"]
    sub = provider_user(provider, email.upper(), name="Rita Reviewer")
    client = sso_app.test_client()
    response = sign_on(client, sub)
    assert response.status_code == 302 and response.headers["Location"] == "/verification"
    assert signed_in(client)
    assert user_by_email(sso_app, email).sso_subject == f"{provider}|{sub}"
    [linked] = events(sso_app, "sso_linked")
    assert (linked.subject_id, linked.detail) == (world.user_ids["reviewer"], f"{provider}|{sub}")
    [sign_in] = events(sso_app, "sign_in")
    assert (sign_in.subject_id, sign_in.detail) == (world.user_ids["reviewer"], "sso")

    # Later the provider knows them by another address: the subject still names the account.
    set_claims(provider, sub, email="rita@elsewhere.example", email_verified=True)
    again = sso_app.test_client()
    assert sign_on(again, sub).status_code == 302
    assert signed_in(again)
    assert len(events(sso_app, "sign_in")) == 2
    assert len(events(sso_app, "sso_linked")) == 1
    assert user_by_email(sso_app, "rita@elsewhere.example") is None


def test_next_survives_the_round_trip_and_stays_on_site(sso_app, provider, world):
    sub = provider_user(provider, world.users["focal_sg"])
    client = sso_app.test_client()
    target = f"/actions/{world.items['SG']}"
    assert sign_on(client, sub, next=target).headers["Location"] == target
    elsewhere = sso_app.test_client()
    assert sign_on(elsewhere, sub, next="https://evil.example/").headers["Location"] == "/my"


def test_unknown_email_is_refused_and_nothing_is_created(sso_app, provider, world):
    before = count_users(sso_app)
    sub = provider_user(provider, "stranger@example.org")
    client = sso_app.test_client()
    response = sign_on(client, sub)
    assert response.status_code == 403
    assert (
        "No tracker account uses the address stranger@example.org; ask your administrator." in response.text
    )
    assert not signed_in(client)
    assert count_users(sso_app) == before
    [refused] = events(sso_app, "sso_refused")
    assert (refused.email, refused.detail) == ("stranger@example.org", "no account uses this email")
    assert events(sso_app, "sign_in") == []


def test_new_people_get_the_configured_role(sso_app, provider, world):
    sso_app.config["TRACKER_SSO_CREATE_USERS"] = "reviewer"
    sub = provider_user(provider, "New.Person@Example.org", name="New Person")
    client = sso_app.test_client()
    assert sign_on(client, sub).status_code == 302
    assert signed_in(client)
    user = user_by_email(sso_app, "new.person@example.org")
    assert (user.role, user.name, user.office_id, user.sso_subject) == (
        "reviewer",
        "New Person",
        None,
        f"{provider}|{sub}",
    )
    assert user.password_hash is None
    [created] = events(sso_app, "user_created")
    assert (created.subject_id, created.actor_id, created.detail) == (user.id, None, "reviewer")
    assert [e.subject_id for e in events(sso_app, "sign_in")] == [user.id]


def test_a_new_account_is_not_made_for_an_address_tracker_cannot_use(sso_app, provider, world):
    sso_app.config["TRACKER_SSO_CREATE_USERS"] = "reviewer"
    before = count_users(sso_app)
    sub = provider_user(provider, "not an address")
    client = sso_app.test_client()
    response = sign_on(client, sub)
    assert response.status_code == 403
    assert "No account could be created for not an address" in response.text
    assert not signed_in(client)
    assert count_users(sso_app) == before
    assert events(sso_app, "user_created") == []
    assert events(sso_app, "sso_refused")[0].detail.startswith("account could not be created")


@pytest.mark.parametrize("verified", [False, None, "yes"])
def test_an_address_the_provider_has_not_verified_is_refused(sso_app, provider, world, verified):
    sso_app.config["TRACKER_SSO_CREATE_USERS"] = "reviewer"  # not even a new account
    before = count_users(sso_app)
    sub = provider_user(provider, world.users["reviewer"], verified=verified)
    client = sso_app.test_client()
    response = sign_on(client, sub)
    assert response.status_code == 403
    assert "is not confirmed by" in response.text
    assert not signed_in(client)
    assert count_users(sso_app) == before
    assert user_by_email(sso_app, world.users["reviewer"]).sso_subject is None
    [refused] = events(sso_app, "sso_refused")
    assert refused.detail == "email not verified by the provider"


def test_a_deactivated_account_is_refused(sso_app, provider, world):
    email = world.users["inactive_sg"]
    sub = provider_user(provider, email)
    client = sso_app.test_client()
    response = sign_on(client, sub)
    assert response.status_code == 403
    assert f"The tracker account of {email} is deactivated" in response.text
    assert not signed_in(client)
    assert user_by_email(sso_app, email).sso_subject is None
    [refused] = events(sso_app, "sso_refused")
    assert (refused.subject_id, refused.detail) == (world.user_ids["inactive_sg"], "account deactivated")


def test_a_linked_account_deactivated_later_is_refused(sso_app, provider, world):
    sub = provider_user(provider, world.users["focal_sg"])
    assert signed_in_after(sso_app, sub)
    with sso_app.app_context():
        db.session.get(User, world.user_ids["focal_sg"]).active = False
        db.session.commit()
    client = sso_app.test_client()
    assert sign_on(client, sub).status_code == 403
    assert not signed_in(client)


def signed_in_after(app: Flask, sub: str) -> bool:
    client = app.test_client()
    return sign_on(client, sub).status_code == 302 and signed_in(client)


def test_an_account_linked_to_another_identity_is_not_taken_over(sso_app, provider, world):
    first = provider_user(provider, world.users["manager"])
    assert signed_in_after(sso_app, first)
    second = provider_user(provider, world.users["manager"])  # another person claims the address
    client = sso_app.test_client()
    response = sign_on(client, second)
    assert response.status_code == 403
    assert "linked to another sign-on identity" in response.text
    assert not signed_in(client)
    assert user_by_email(sso_app, world.users["manager"]).sso_subject == f"{provider}|{first}"


# --- answers that must not sign anyone in ------------------------------------------------------


def refused_without_session(client: FlaskClient, response, text: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert text in response.text
    assert "Back to the sign-in page" in response.text
    assert not signed_in(client)


def test_a_tampered_nonce_is_refused(sso_app, provider, world):
    sub = provider_user(provider, world.users["reviewer"])
    client = sso_app.test_client()
    url = leave(client)
    with client.session_transaction() as session:
        [key] = [key for key in session if key.startswith("_state_sso_")]
        flow = session[key]
        flow["data"]["nonce"] = "not-the-nonce-that-was-sent"
        session[key] = flow
    response = client.get(authorize(url, sub))
    refused_without_session(client, response, "could not be verified")
    [refused] = events(sso_app, "sso_refused")
    assert refused.detail.startswith("ID token rejected") and "nonce" in refused.detail
    assert user_by_email(sso_app, world.users["reviewer"]).sso_subject is None


def test_a_code_from_another_browsers_flow_is_refused(sso_app, provider, world):
    """An attacker's code pasted into the victim's flow (or the reverse) fails the nonce check."""
    sub = provider_user(provider, world.users["admin"])
    theirs = sso_app.test_client()
    stolen = parse_qs(urlsplit(authorize(leave(theirs), sub)).query)["code"][0]
    mine = sso_app.test_client()
    state = parse_qs(urlsplit(leave(mine)).query)["state"][0]
    response = mine.get("/auth/sso/callback", query_string={"code": stolen, "state": state})
    refused_without_session(mine, response, "could not be verified")
    assert events(sso_app, "sign_in") == []


@pytest.mark.parametrize("state", ["forged-state", ""])
def test_a_wrong_or_missing_state_is_refused(sso_app, provider, world, state):
    sub = provider_user(provider, world.users["reviewer"])
    client = sso_app.test_client()
    back = parse_qs(urlsplit(authorize(leave(client), sub)).query)
    query = {"code": back["code"][0], **({"state": state} if state else {})}
    response = client.get("/auth/sso/callback", query_string=query)
    refused_without_session(client, response, "expired or was started in another browser")
    assert events(sso_app, "sso_refused")[0].detail == "missing or unknown state"


def test_an_answer_cannot_be_replayed(sso_app, provider, world):
    sub = provider_user(provider, world.users["reviewer"])
    client = sso_app.test_client()
    back = authorize(leave(client), sub)
    with client.session_transaction() as session:
        before = dict(session)  # the state, nonce and verifier are in it
    assert client.get(back).status_code == 302
    # A copy of the session from before the callback still holds the state, but the provider
    # gives each code once, so the exchange fails ...
    copy = sso_app.test_client()
    with copy.session_transaction() as session:
        session.update(before)
    refused_without_session(copy, copy.get(back), "was not confirmed")
    # ... and the state is used up in that browser too.
    refused_without_session(copy, copy.get(back), "expired or was started in another browser")
    assert len(events(sso_app, "sign_in")) == 1


def test_a_missing_code_is_refused(sso_app, provider):
    client = sso_app.test_client()
    state = parse_qs(urlsplit(leave(client)).query)["state"][0]
    response = client.get("/auth/sso/callback", query_string={"state": state})
    refused_without_session(client, response, "was incomplete")
    assert events(sso_app, "sso_refused")[0].detail == "no authorization code"


def test_a_code_the_provider_does_not_know_is_refused(sso_app, provider):
    client = sso_app.test_client()
    state = parse_qs(urlsplit(leave(client)).query)["state"][0]
    response = client.get("/auth/sso/callback", query_string={"state": state, "code": "made-up"})
    refused_without_session(client, response, "was not confirmed")
    assert events(sso_app, "sso_refused")[0].detail.startswith("token exchange failed")


def test_the_person_saying_no_at_the_provider_gets_a_friendly_page(sso_app, provider):
    client = sso_app.test_client()
    response = client.get(authorize(leave(client), deny=True))
    refused_without_session(client, response, "was cancelled or refused")
    assert events(sso_app, "sso_refused")[0].detail == "provider error: access_denied"


def test_a_sign_on_left_too_long_expires(sso_app, provider, world):
    sub = provider_user(provider, world.users["reviewer"])
    client = sso_app.test_client()
    with time_machine.travel("2026-11-24 09:00Z", tick=True) as traveller:
        url = leave(client)
        back = authorize(url, sub)
        traveller.shift(timedelta(minutes=20))
        response = client.get(back)
    refused_without_session(client, response, "expired")
    assert events(sso_app, "sso_refused")[0].detail == "sign-on took too long"


def test_an_unreachable_provider_gives_a_friendly_page(app):
    down = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "TRACKER_SSO_ISSUER": "http://127.0.0.1:9",  # the discard port: nothing listens
            "TRACKER_SSO_CLIENT_ID": CLIENT_ID,
            "TRACKER_SSO_CLIENT_SECRET": "secret",
            "TRACKER_SSO_LABEL": LABEL,
        }
    )
    try:
        response = down.test_client().get("/auth/sso/start")
        assert response.status_code == 502
        assert f"{LABEL} is not possible just now" in response.text
    finally:
        with down.app_context():
            db.engine.dispose()


# --- the second factor -------------------------------------------------------------------------


def _give_second_factor(app: Flask, user_id: int) -> None:
    with app.app_context():
        db.session.get(User, user_id).totp_secret = "JBSWY3DPEHPK3PXP"
        db.session.commit()


def test_a_person_with_a_second_factor_is_asked_for_it(sso_app, provider, world):
    _give_second_factor(sso_app, world.user_ids["reviewer"])
    sub = provider_user(provider, world.users["reviewer"])
    client = sso_app.test_client()
    response = sign_on(client, sub, next="/recommendations/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/second-factor"
    assert not signed_in(client)  # not before the code is given
    assert events(sso_app, "sign_in") == []
    assert user_by_email(sso_app, world.users["reviewer"]).sso_subject == f"{provider}|{sub}"


def test_the_provider_may_stand_for_the_second_factor(sso_app, provider, world):
    sso_app.config["TRACKER_SSO_SKIPS_2FA"] = True
    _give_second_factor(sso_app, world.user_ids["reviewer"])
    sub = provider_user(provider, world.users["reviewer"])
    client = sso_app.test_client()
    assert sign_on(client, sub).headers["Location"] == "/verification"
    assert signed_in(client)


def test_query_of_the_callback_is_not_reflected_unescaped(sso_app, provider):
    client = sso_app.test_client()
    query = urlencode({"error": "<script>alert(1)</script>", "state": "x"})
    response = client.get(f"/auth/sso/callback?{query}")
    assert response.status_code == 400
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;" in response.text
