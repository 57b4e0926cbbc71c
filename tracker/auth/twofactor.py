"""The second factor: an authenticator app's time-based one-time codes (TOTP, RFC 6238), with ten
single-use recovery codes for the day the phone is lost.

A code is accepted for the current 30-second step and the one before and after it (clocks drift,
people type slowly), but never for a step at or before the last one accepted (``totp_last_step``):
a code seen over someone's shoulder cannot be used again. Recovery codes are stored as SHA-256 and
shown once, when they are made.

Every function takes the person and the time and only flushes; the request commits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
import sqlalchemy as sa
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy.orm.attributes import set_committed_value

from tracker.auth import audit, sessions
from tracker.auth.signin import second_factor_required
from tracker.extensions import db
from tracker.models import AuditEvent, RecoveryCode, User

#: The name authenticator apps show above the account (stable: it is not translated).
ISSUER = "tracker"
#: Codes of this many steps before and after the current one are accepted too.
VALID_WINDOW = 1
#: How many recovery codes a person gets at a time.
RECOVERY_CODES = 10
#: Letters and digits nobody confuses when reading them off paper (no 0/o, 1/l/i).
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
#: Characters in a recovery code (about 50 bits); shown as abcd-efgh-ij.
RECOVERY_LENGTH = 10


class TwoFactorError(Exception):
    """A refusal to show the person; ``field`` names the form field it belongs to, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- enrolment -------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh random TOTP secret (base32, 160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(user: User, secret: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code: issuer and email."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_code_svg(uri: str, title: str) -> Markup:
    """The QR code of ``uri`` as inline SVG: colours as attributes, no style (the CSP forbids inline
    style), and ``title`` as its text alternative."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=4, border=4, dark="#000", light="#fff", title=title, svgclass="qr-code", lineclass=None
    )
    # An image to assistive technology, named by its <title>.
    return Markup(svg.replace("<svg ", '<svg role="img" focusable="false" ', 1))


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def enable(user: User, secret: str, code: str, now: datetime) -> list[str] | None:
    """Turn the second factor on once ``code`` proves the app holds ``secret``.

    Returns the ten new recovery codes (to show once), or None when the code is wrong.
    """
    if user.has_second_factor:
        raise TwoFactorError(_("You already use a second factor."))
    step = _matching_step(secret, code, now, after=None)
    if step is None:
        return None
    user.totp_secret = secret
    user.totp_enabled_at = now
    user.totp_last_step = step  # the code that proved it cannot sign anyone in afterwards
    codes = _replace_recovery_codes(user, now)
    audit.record("second_factor_enrolled", now, actor=user, subject=user)
    db.session.flush()
    return codes


# --- codes -----------------------------------------------------------------------------------------


def _clean(code: str | None) -> str:
    """What was typed, without spaces and dashes, in lower case."""
    return "".join((code or "").split()).replace("-", "").lower()


def _matching_step(secret: str, code: str, now: datetime, after: int | None) -> int | None:
    """The time step (within the window around ``now``) whose code is ``code``, later than ``after``."""
    code = _clean(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    found = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        # Every step is compared, in constant time, whatever matched before.
        if hmac.compare_digest(totp.generate_otp(step), code) and (after is None or step > after):
            found = step
    return found


def check_code(user: User, code: str, now: datetime) -> bool:
    """True if ``code`` is the app's code for now (±1 step) and no later or equal step was used.

    The step is claimed with one conditional UPDATE, so two requests racing with the same code
    cannot both succeed.
    """
    if not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code, now, after=user.totp_last_step)
    if step is None:
        return False
    claimed = db.session.execute(
        sa.update(User)
        .where(User.id == user.id, sa.or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        return False
    set_committed_value(user, "totp_last_step", step)
    return True


def _hash(code: str) -> str:
    return hashlib.sha256(_clean(code).encode("utf-8")).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _replace_recovery_codes(user: User, now: datetime) -> list[str]:
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash(c), created_at=now) for c in codes)
    return codes


def use_recovery_code(user: User, code: str, now: datetime) -> bool:
    """True if ``code`` is one of the person's unused recovery codes; it is then used up."""
    cleaned = _clean(code)
    if len(cleaned) != RECOVERY_LENGTH or not user.has_second_factor:
        return False
    digest = _hash(cleaned)
    rows = db.session.scalars(
        sa.select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).all()
    match = None
    for row in rows:  # compare with every code, in constant time, so timing tells nothing
        if hmac.compare_digest(row.code_hash, digest):
            match = row
    if match is None:
        return False
    claimed = db.session.execute(
        sa.update(RecoveryCode)
        .where(RecoveryCode.id == match.id, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:  # another request used it a moment ago
        return False
    set_committed_value(match, "used_at", now)
    audit.record(
        "recovery_code_used", now, actor=user, subject=user, detail=f"{len(rows) - 1} recovery codes left"
    )
    return True


def verify(user: User, code: str, now: datetime, *, recovery: bool = False) -> str | None:
    """How ``code`` proves the second factor: "totp", "recovery", or None when it does not.

    A recovery code is tried when ``recovery`` is set or when what was typed is not six digits.
    """
    cleaned = _clean(code)
    if not recovery and len(cleaned) == 6 and cleaned.isdigit():
        return "totp" if check_code(user, cleaned, now) else None
    return "recovery" if use_recovery_code(user, cleaned, now) else None


def record_failure(user: User, now: datetime, detail: str) -> None:
    """Note a wrong second-factor code in the audit log."""
    audit.record("second_factor_failed", now, subject=user, detail=detail)


def failures_since(user: User, since: datetime) -> int:
    """Wrong codes given for ``user`` since ``since`` (counted in the database, not the cookie)."""
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.kind == "second_factor_failed",
            AuditEvent.subject_id == user.id,
            AuditEvent.at >= since,
        )
    )


def recovery_codes_left(user: User) -> int:
    """How many of the person's recovery codes are still unused."""
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )


def renew_recovery_codes(user: User, now: datetime) -> list[str]:
    """Replace the person's recovery codes (the old ones stop working) and return the new ones."""
    if not user.has_second_factor:
        raise TwoFactorError(_("You do not use a second factor."))
    codes = _replace_recovery_codes(user, now)
    audit.record("recovery_codes_renewed", now, actor=user, subject=user)
    db.session.flush()
    return codes


@dataclass(frozen=True)
class Status:
    """What the profile and the admins' user page show about a person's second factor."""

    enabled: bool
    enabled_at: datetime | None
    codes_left: int
    #: Their role requires a second factor (TRACKER_2FA_REQUIRED_ROLES).
    required: bool
    may_remove: bool


def status(user: User) -> Status:
    """The person's second factor: on since when, recovery codes left, required by the role."""
    required = second_factor_required(user)
    return Status(
        enabled=user.has_second_factor,
        enabled_at=user.totp_enabled_at,
        codes_left=recovery_codes_left(user) if user.has_second_factor else 0,
        required=required,
        may_remove=not required,
    )


# --- removal ---------------------------------------------------------------------------------------


def may_remove(user: User) -> bool:
    """True if the person may turn their second factor off (their role does not require one)."""
    return not second_factor_required(user)


def _clear(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(user: User, password: str, code: str, now: datetime) -> None:
    """Turn one's own second factor off, with the password and a current code (or a recovery code).

    Refused (TwoFactorError) when the role requires a second factor or a proof is wrong; a wrong
    code is recorded in the audit log, which the caller commits.
    """
    if not user.has_second_factor:
        raise TwoFactorError(_("You do not use a second factor."))
    if not may_remove(user):
        raise TwoFactorError(_("Your role requires a second factor: it cannot be removed."))
    if not user.check_password(password or ""):
        raise TwoFactorError(_("The password is not right."), "password")
    if verify(user, code, now) is None:
        record_failure(user, now, "removing the second factor")
        raise TwoFactorError(_("This code is not right, or it has been used already."), "code")
    _clear(user)
    audit.record("second_factor_disabled", now, actor=user, subject=user)
    db.session.flush()


def reset(actor: User, user: User, now: datetime) -> int:
    """An admin removes a person's second factor and recovery codes and ends their sessions.

    They sign in with their password alone next time, and enrol again if their role requires it.
    Returns how many sessions ended.
    """
    if actor.id == user.id:
        raise TwoFactorError(_("Manage your own second factor on your profile page."))
    if not user.has_second_factor:
        raise TwoFactorError(_("%(name)s does not use a second factor.", name=user.name))
    _clear(user)
    ended = sessions.end_all(user, "second_factor_reset", now)
    audit.record("second_factor_reset", now, actor=actor, subject=user, detail=f"{ended} sessions ended")
    db.session.flush()
    return ended
