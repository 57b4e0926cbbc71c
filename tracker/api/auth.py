"""Personal API tokens: creating, listing, revoking, and recognising them in requests.

A token is ``secrets.token_urlsafe(32)``; only its SHA-256 (hex) is stored, so a copy of the
database does not give API access. The secret is shown once, when the token is created.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from tracker.auth import audit
from tracker.extensions import db
from tracker.models import ApiToken, User

log = logging.getLogger(__name__)

#: ``last_used_at`` is written at most this often per token (one UPDATE, not one per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: Longest token name, as in the model.
NAME_MAX = 100
#: Active tokens one person may hold; revoked ones do not count.
MAX_ACTIVE_TOKENS = 20
#: No secret we issue is longer (43 characters); longer input is refused without a query.
_SECRET_MAX = 200


class TokenError(ValueError):
    """A token cannot be created; ``field`` names the form field the message belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def hash_secret(secret: str) -> str:
    """The SHA-256 of a secret, as stored (64 hex characters)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(user: User, name: str, now: datetime) -> tuple[ApiToken, str]:
    """Add a token for ``user``; returns it with its secret, which is never stored or shown again."""
    name = (name or "").strip()
    if not name:
        raise TokenError(_("Give the token a name, e.g. what will use it."), "name")
    if len(name) > NAME_MAX:
        raise TokenError(_("The name is at most %(num)d characters.", num=NAME_MAX), "name")
    active = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    )
    if active >= MAX_ACTIVE_TOKENS:
        raise TokenError(
            _("You have %(num)d active tokens; revoke one you no longer use first.", num=active), "name"
        )
    secret = secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_secret(secret), created_at=now)
    db.session.add(token)
    db.session.flush()
    audit.record("token_created", now, actor=user, subject=user, detail=f"#{token.id} {name}")
    log.info("API token %s created for user %s", token.id, user.id)
    return token, secret


def user_tokens(user: User) -> list[ApiToken]:
    """The user's tokens, active ones first, newest first."""
    return list(
        db.session.scalars(
            sa.select(ApiToken)
            .where(ApiToken.user_id == user.id)
            .order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def get_own_token(user: User, token_id: int) -> ApiToken | None:
    """One of the user's own tokens; None whether it is missing or someone else's."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        return None
    return token


def revoke_token(token: ApiToken, now: datetime) -> None:
    """Stop a token from working (kept, marked revoked, for the record); revoking twice does nothing."""
    if token.revoked_at is None:
        token.revoked_at = now
        audit.record(
            "token_revoked", now, actor=token.user, subject=token.user, detail=f"#{token.id} {token.name}"
        )
        db.session.flush()
        log.info("API token %s revoked", token.id)


def user_for_secret(secret: str, now: datetime) -> User | None:
    """The active user a valid, unrevoked token belongs to; None for anything else.

    Notes the use in ``last_used_at`` at most once a minute, with a conditional UPDATE committed
    at once, so concurrent requests do not fight over the row and a read stays read-only otherwise.
    """
    if not secret or len(secret) > _SECRET_MAX:
        return None
    found = db.session.execute(
        sa.select(ApiToken.id, ApiToken.user_id, ApiToken.last_used_at)
        .join(ApiToken.user)
        .where(
            ApiToken.token_hash == hash_secret(secret),
            ApiToken.revoked_at.is_(None),
            User.active.is_(True),
        )
    ).first()
    if found is None:
        return None
    token_id, user_id, last_used_at = found
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        # Before any object is loaded: the commit has nothing of this request's to expire.
        db.session.execute(
            sa.update(ApiToken)
            .where(
                ApiToken.id == token_id,
                sa.or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return db.session.scalar(sa.select(User).where(User.id == user_id).options(joinedload(User.office)))


def bearer_secret(header: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header; None for any other header."""
    if not header:
        return None
    scheme, _sep, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or None
