"""Single sign-on with OpenID Connect: the authorization code flow with PKCE (S256), state and nonce.

The provider is found by discovery at ``<TRACKER_SSO_ISSUER>/.well-known/openid-configuration``.
Authlib's Flask client builds the authorization request and keeps its state, nonce and PKCE
verifier in the Flask session until the provider sends the browser back; :func:`complete` then
checks that answer, exchanges the code, validates the ID token (signature against the provider's
published keys, issuer, audience, expiry, nonce) and finds the account the person may use. The
view hands that account to :func:`tracker.auth.signin.begin`, like a password sign-in.

Which account: the one already linked to the provider's subject (``iss|sub``), else the active
account whose email the provider has verified (which is then linked), else — only when
``TRACKER_SSO_CREATE_USERS`` names a role — a new account. Every refusal is an ``sso_refused``
audit event with its reason.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, session
from flask_babel import gettext as _
from joserfc.errors import JoseError
from sqlalchemy.exc import IntegrityError

from config import ConfigError
from tracker.auth import audit
from tracker.extensions import db
from tracker.models import Role, User, normalise_email

log = logging.getLogger(__name__)

#: The name of the Authlib client (its state lives under ``_state_sso_<state>`` in the session).
CLIENT_NAME = "sso"
SCOPE = "openid email profile"
#: How long a person has between leaving for the provider and coming back.
FLOW_MAX_AGE = timedelta(minutes=15)
#: Seconds to wait for each request to the provider (discovery, keys, token exchange).
PROVIDER_TIMEOUT = 10
#: Seconds of clock difference with the provider tolerated on the ID token's times.
LEEWAY = 60
#: Roles that TRACKER_SSO_CREATE_USERS may give. Focal points and office managers belong to an
#: office the provider cannot name, and nobody becomes an administrator because a provider
#: vouched for an address: admins create those accounts (which then sign on by their email).
CREATABLE_ROLES = (Role.REVIEWER.value,)

_EXTENSION_KEY = "tracker.sso"

#: What a provider that is down, slow or misbehaving makes Authlib, joserfc or requests raise.
_PROVIDER_ERRORS = (
    AuthlibBaseError,
    JoseError,
    requests.RequestException,
    ValueError,
    KeyError,
    TypeError,
    RuntimeError,
)


class SsoError(Exception):
    """A single sign-on that signs nobody in: ``reason`` is for the log, ``message`` for the person."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.status = status


# --- configuration -----------------------------------------------------------------------------


def enabled(config: Mapping[str, Any] | None = None) -> bool:
    """True when the issuer, the client id and the client secret are all set."""
    config = current_app.config if config is None else config
    return all(
        config.get(key)
        for key in ("TRACKER_SSO_ISSUER", "TRACKER_SSO_CLIENT_ID", "TRACKER_SSO_CLIENT_SECRET")
    )


def label() -> str | None:
    """The provider's name for "Sign in with <label>", or None when single sign-on is off."""
    return current_app.config["TRACKER_SSO_LABEL"] if enabled() else None


def secure_url(url: object) -> bool:
    """True for an https address, or an http one on this machine's loopback (tests, local providers)."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if not host:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse a half-configured single sign-on, a plain-http issuer or a role that cannot be given."""
    names = ("TRACKER_SSO_ISSUER", "TRACKER_SSO_CLIENT_ID", "TRACKER_SSO_CLIENT_SECRET")
    missing = [name for name in names if not config.get(name)]
    if 0 < len(missing) < len(names):
        raise ConfigError(f"single sign-on needs all of {', '.join(names)}; {', '.join(missing)} not set")
    issuer = config.get("TRACKER_SSO_ISSUER")
    if issuer and not secure_url(issuer):
        raise ConfigError(
            f"TRACKER_SSO_ISSUER must be an https:// address (plain http only on loopback), not {issuer!r}"
        )
    role = config.get("TRACKER_SSO_CREATE_USERS")
    if role and role not in CREATABLE_ROLES:
        known = ", ".join(r.value for r in Role)
        raise ConfigError(
            f"TRACKER_SSO_CREATE_USERS must be empty or one of {', '.join(CREATABLE_ROLES)}, not {role!r} "
            f"(roles: {known}; focal points and managers need an office and admins are made by an "
            "admin, so create those accounts on the Users page)"
        )


def init_app(app: Flask) -> None:
    """Check the settings and, when single sign-on is on, register this app's OpenID Connect client."""
    check_settings(app.config)
    if not enabled(app.config):
        return
    # One registry per application: Authlib's registry remembers a single app.
    oauth = OAuth(app)
    app.extensions[_EXTENSION_KEY] = oauth.register(
        CLIENT_NAME,
        client_id=app.config["TRACKER_SSO_CLIENT_ID"],
        client_secret=app.config["TRACKER_SSO_CLIENT_SECRET"],
        server_metadata_url=app.config["TRACKER_SSO_ISSUER"] + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "default_timeout": PROVIDER_TIMEOUT,
        },
    )


def _client() -> Any:
    return current_app.extensions[_EXTENSION_KEY]


def _discover(client: Any) -> dict[str, Any]:
    """The provider's metadata, checked: it names our issuer and every endpoint is https."""
    issuer = current_app.config["TRACKER_SSO_ISSUER"]  # kept without a final "/"
    metadata = client.load_server_metadata()
    problem = None
    if not isinstance(metadata.get("issuer"), str) or metadata["issuer"].rstrip("/") != issuer:
        problem = f"discovery names the issuer {metadata.get('issuer')!r}, not {issuer!r}"
    else:
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not secure_url(metadata.get(key)):
                problem = f"discovery gives no https {key}: {metadata.get(key)!r}"
                break
    if problem:
        metadata.pop("_loaded_at", None)  # read the document again next time
        raise ValueError(problem)
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" not in methods and "client_secret_post" in methods:
        client.client_kwargs["token_endpoint_auth_method"] = "client_secret_post"
    return metadata


# --- the round trip ----------------------------------------------------------------------------


def start(redirect_uri: str, next_url: str | None, now: datetime) -> str:
    """The provider's authorization URL for a new sign-on; its state is kept in the Flask session."""
    from tracker.auth.services import safe_next_url

    client = _client()
    try:
        _discover(client)
        request = client.create_authorization_url(redirect_uri)
    except _PROVIDER_ERRORS as exc:
        log.warning("single sign-on: the provider cannot be used: %s", exc)
        raise SsoError(
            f"provider unavailable: {exc}",
            _(
                "Signing in with %(label)s is not possible just now. "
                "Try again later, or sign in with your password.",
                label=label(),
            ),
            502,
        ) from None
    # Authlib keeps redirect_uri, code_verifier and nonce under the state; we add where to go
    # afterwards and when the flow began.
    kept = {key: value for key, value in request.items() if key != "url"}
    client.save_authorize_data(
        redirect_uri=redirect_uri, next=safe_next_url(next_url), started=now.timestamp(), **kept
    )
    return request["url"]


def complete(args: Mapping[str, str], now: datetime) -> tuple[User, str | None]:
    """Check the provider's answer and return the account to sign in and where to go next.

    Raises :class:`SsoError` after recording ``sso_refused`` (the caller commits either way).
    """
    client = _client()
    state = args.get("state") or ""
    flow = client.framework.get_state_data(session, state) if state else None
    if state:
        client.framework.clear_state_data(session, state)  # an answer is used once
    error = args.get("error")
    if error:
        if error == "access_denied":
            message = _(
                "The sign-in at %(label)s was cancelled or refused, so you are not signed in.", label=label()
            )
        else:
            message = _(
                "Signing in with %(label)s did not work (%(error)s). "
                "Try again, or sign in with your password.",
                label=label(),
                error=error[:100],
            )
        raise _refused(f"provider error: {error}", message, now)
    started = flow.get("started") if isinstance(flow, dict) else None
    if not isinstance(started, int | float):
        raise _refused(
            "missing or unknown state",
            _(
                "This sign-in has expired or was started in another browser. "
                "Start again from the sign-in page."
            ),
            now,
        )
    if not 0 <= now.timestamp() - started <= FLOW_MAX_AGE.total_seconds():
        raise _refused(
            "sign-on took too long",
            _(
                "This sign-in has expired or was started in another browser. "
                "Start again from the sign-in page."
            ),
            now,
        )
    code = args.get("code")
    if not code:
        raise _refused(
            "no authorization code",
            _("The answer from %(label)s was incomplete. Start again from the sign-in page.", label=label()),
            now,
        )
    claims = _verified_claims(client, flow, code, now)
    return _account_for(claims, now), flow.get("next")


def _verified_claims(client: Any, flow: dict, code: str, now: datetime) -> dict[str, Any]:
    """Exchange the code and validate the ID token; its claims (with the userinfo's, if needed)."""
    try:
        _discover(client)
        token = client.fetch_access_token(
            code=code, redirect_uri=flow["redirect_uri"], code_verifier=flow["code_verifier"]
        )
    except _PROVIDER_ERRORS as exc:
        raise _refused(
            f"token exchange failed: {exc}",
            _(
                "The sign-in with %(label)s was not confirmed, so you are not signed in. "
                "Start again from the sign-in page.",
                label=label(),
            ),
            now,
        ) from None
    try:
        if "id_token" not in token:
            raise ValueError("the token response has no ID token")
        options = {  # the issuer exactly as discovery gave it (some end it with "/")
            "iss": {"essential": True, "value": client.load_server_metadata()["issuer"]},
            "aud": {"essential": True, "value": client.client_id},
            "sub": {"essential": True},
        }
        claims = dict(
            client.parse_id_token(token, nonce=flow["nonce"], claims_options=options, leeway=LEEWAY)
        )
    except _PROVIDER_ERRORS as exc:
        raise _refused(
            f"ID token rejected: {type(exc).__name__}: {exc}",
            _(
                "The answer from %(label)s could not be verified, so you are not signed in. "
                "Start again from the sign-in page.",
                label=label(),
            ),
            now,
        ) from None
    if "email" not in claims or "email_verified" not in claims:
        claims = _with_userinfo(client, token, claims)
    return claims


def _with_userinfo(client: Any, token: dict, claims: dict[str, Any]) -> dict[str, Any]:
    """Add the userinfo endpoint's email claims (some providers leave them out of the ID token)."""
    if not client.load_server_metadata().get("userinfo_endpoint"):
        return claims
    try:
        info = dict(client.userinfo(token=token))
    except _PROVIDER_ERRORS as exc:
        log.info("single sign-on: no userinfo: %s", exc)
        return claims
    if info.get("sub") != claims["sub"]:  # OpenID Connect Core §5.3.2: must be the same person
        log.warning("single sign-on: the userinfo answer is about another subject; ignored")
        return claims
    return {**claims, **{key: info[key] for key in ("email", "email_verified") if key in info}}


def _account_for(claims: dict[str, Any], now: datetime) -> User:
    """The account these verified claims may use: linked, matched by email and linked, or created."""
    subject = f"{claims['iss']}|{claims['sub']}"
    email = normalise_email(str(claims.get("email") or ""))
    if claims.get("email_verified") not in (True, "true"):  # some providers send the string
        raise _refused(
            "email not verified by the provider",
            _(
                "Your email address is not confirmed by %(label)s, so tracker cannot tell "
                "which account is yours. Ask your administrator.",
                label=label(),
            ),
            now,
            email=email,
            status=403,
        )
    if len(subject) > User.sso_subject.type.length:
        raise _refused(
            "subject too long", _("Your sign-on identity is too long to be used here."), now, email=email
        )
    user = db.session.scalar(sa.select(User).where(User.sso_subject == subject))
    if user is None and email:
        user = db.session.scalar(sa.select(User).where(User.email == email))
        if user is not None and user.sso_subject is not None:
            raise _refused(
                "the account is linked to another sign-on identity",
                _(
                    "The tracker account of %(email)s is linked to another sign-on identity; "
                    "ask your administrator.",
                    email=email,
                ),
                now,
                user=user,
                email=email,
                status=403,
            )
        if user is not None and user.active:
            user.sso_subject = subject
            audit.record("sso_linked", now, actor=user, subject=user, email=email, detail=subject)
            db.session.flush()
    if user is None:
        return _create(subject, email, claims, now)
    if not user.active:
        raise _refused(
            "account deactivated",
            _("The tracker account of %(email)s is deactivated; ask your administrator.", email=user.email),
            now,
            user=user,
            email=email,
            status=403,
        )
    return user


def _create(subject: str, email: str, claims: dict[str, Any], now: datetime) -> User:
    """A new account for a verified address nobody uses, if TRACKER_SSO_CREATE_USERS allows it."""
    from tracker.admin.services import UserError, create_user

    role = current_app.config["TRACKER_SSO_CREATE_USERS"]
    if not role or not email:
        raise _refused(
            "no account uses this email",
            _("No tracker account uses the address %(email)s; ask your administrator.", email=email or "—"),
            now,
            email=email,
            status=403,
        )
    name = str(
        claims.get("name") or " ".join(str(claims.get(k) or "") for k in ("given_name", "family_name"))
    )
    try:
        with db.session.begin_nested():  # a refused insert is undone alone; the audit event stays
            user = create_user(email, role, name=name.strip()[:200] or None, actor=None, now=now)
            user.sso_subject = subject
            audit.record(
                "sso_linked", now, actor=user, subject=user, email=email, detail=f"new account {subject}"
            )
    except (UserError, IntegrityError) as exc:  # a bad address; the same person twice at once
        reason = exc.message if isinstance(exc, UserError) else _("it was created at the same moment")
        raise _refused(
            f"account could not be created: {reason}",
            _(
                "No account could be created for %(email)s (%(reason)s); ask your administrator.",
                email=email,
                reason=reason,
            ),
            now,
            email=email,
            status=403,
        ) from None
    log.info("single sign-on created user %s (%s)", user.id, role)
    return user


def _refused(
    reason: str,
    message: str,
    now: datetime,
    *,
    user: User | None = None,
    email: str | None = None,
    status: int = 400,
) -> SsoError:
    """Record the refusal in the audit log and return the error to raise."""
    log.info("single sign-on refused: %s", reason)
    audit.record("sso_refused", now, subject=user, email=email or None, detail=reason)
    return SsoError(reason, message, status)
