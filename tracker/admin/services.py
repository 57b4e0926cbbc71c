"""Managing users and offices: the rules a form, the CLI and later imports share.

Every function checks everything before it changes anything, then flushes; the caller commits
(or rolls back on an error). The database's unique keys and check constraints stay the backstop:
a flush they refuse becomes the same kind of error, with a message.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import available_timezones

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from tracker.auth import audit, sessions
from tracker.auth.services import MIN_PASSWORD_LENGTH
from tracker.extensions import db
from tracker.models import ApiToken, Office, Role, User, normalise_email

#: An office code: 2 to 8 letters (ISO 3166 alpha-2 codes, or longer ones for regional bodies).
OFFICE_CODE = re.compile(r"[A-Za-z]{2,8}")

#: Values of the "state" filter of the user list.
USER_STATES = ("active", "deactivated")

#: The "office" filter value for users without an office (no office code can contain "-").
NO_OFFICE = "-"


class AdminError(ValueError):
    """A change refused with a message; ``field`` names the form field it is about, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UserError(AdminError):
    """A user cannot be created or changed as asked; the message says why."""


class OfficeError(AdminError):
    """An office cannot be created or changed as asked; the message says why."""


@lru_cache(maxsize=1)
def timezone_names() -> frozenset[str]:
    """Every IANA time zone name this system knows (computed once: it reads the tz database)."""
    return frozenset(available_timezones())


def languages() -> tuple[str, ...]:
    """The languages users and offices may choose (``TRACKER_LANGUAGES``)."""
    return tuple(current_app.config["TRACKER_LANGUAGES"])


# --- users -----------------------------------------------------------------------------------


def list_users(
    actor: User,
    *,
    page: int = 1,
    per_page: int = 50,
    q: str | None = None,
    role: str | None = None,
    office_code: str | None = None,
    state: str | None = None,
) -> Pagination:
    """One page of users by email, filtered; the office is loaded in the same query."""
    query = sa.select(User).options(joinedload(User.office)).order_by(User.email)
    if q:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", q.strip()) + "%"
        query = query.where(
            sa.or_(User.email.ilike(pattern, escape="\\"), User.name.ilike(pattern, escape="\\"))
        )
    if role:
        query = query.where(User.role == role)
    if office_code == NO_OFFICE:
        query = query.where(User.office_id.is_(None))
    elif office_code:
        query = query.where(
            User.office_id.in_(sa.select(Office.id).where(Office.code == office_code.upper()))
        )
    if state in USER_STATES:
        query = query.where(User.active.is_(state == "active"))
    return db.paginate(query, page=page, per_page=per_page, error_out=False)


def _check_email(email: str) -> str:
    try:
        # test_environment admits the reserved .test domain of the demo accounts; no DNS look-up.
        checked = validate_email(email, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise UserError(
            _("%(email)r is not a valid email address: %(reason)s", email=email, reason=str(exc)), "email"
        ) from None
    return normalise_email(checked.normalized)


def _check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(
            _(
                "unknown role %(role)r; choose one of %(roles)s",
                role=role,
                roles=", ".join(r.value for r in Role),
            ),
            "role",
        ) from None


def _find_office(office_code: str | None, current: Office | None = None) -> Office | None:
    """The office with this code (None for a blank code); a user may not join an inactive office."""
    if not office_code:
        return None
    office = db.session.scalar(sa.select(Office).where(Office.code == office_code.strip().upper()))
    if office is None:
        raise UserError(_("unknown office code %(code)r", code=office_code), "office")
    if not office.active and office is not current:
        raise UserError(
            _("The office %(code)s is inactive; reactivate it first.", code=office.code), "office"
        )
    return office


def _check_role_and_office(role: Role, office: Office | None) -> None:
    if role == Role.FOCAL_POINT and office is None:
        raise UserError(_("A focal point needs an office."), "office")
    if role in (Role.ADMIN, Role.REVIEWER) and office is not None:
        raise UserError(
            _("An administrator or reviewer works programme-wide and has no office; leave the office blank."),
            "office",
        )


def _check_language(language: str | None) -> str | None:
    if language and language not in languages():
        raise UserError(_("Unknown language %(code)r.", code=language), "language")
    return language or None


def _check_timezone(timezone: str | None) -> str | None:
    timezone = (timezone or "").strip()
    if timezone and timezone not in timezone_names():
        raise UserError(
            _("Unknown time zone %(zone)r; use an IANA name such as Asia/Singapore.", zone=timezone),
            "timezone",
        )
    return timezone or None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(
            _("The password needs at least %(num)d characters.", num=MIN_PASSWORD_LENGTH), "password"
        )


def _flush(error: type[AdminError]) -> None:
    """Flush; a refusal by the database's keys or checks becomes ``error`` (the caller rolls back)."""
    try:
        db.session.flush()
    except IntegrityError:
        raise error(
            _("The database refused the change (a duplicate or a broken rule); nothing was saved.")
        ) from None


def create_user(
    email: str,
    role: str,
    *,
    name: str | None = None,
    office_code: str | None = None,
    password: str | None = None,
    language: str | None = None,
    timezone: str | None = None,
    actor: User | None = None,
    now: datetime | None = None,
) -> User:
    """Add a user after checking every rule; flushes, the caller commits. ``actor`` None is the shell."""
    email = _check_email(email)
    checked_role = _check_role(role)
    if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise UserError(_("A user with the email %(email)s already exists.", email=email), "email")
    office = _find_office(office_code)
    _check_role_and_office(checked_role, office)
    language = _check_language(language)
    timezone = _check_timezone(timezone)
    if password is not None:
        _check_password(password)
    user = User(
        email=email,
        name=(name or "").strip() or email.split("@")[0],
        role=checked_role.value,
        office=office,
        language=language,
        timezone=timezone,
    )
    if now is not None:
        user.created_at = now
    if password is not None:
        user.set_password(password)
    db.session.add(user)
    _flush(UserError)
    audit.record("user_created", now or datetime.now(UTC), actor=actor, subject=user, detail=user.role)
    return user


def update_user(
    actor: User,
    user: User,
    *,
    name: str,
    role: str,
    office_code: str | None,
    language: str | None,
    timezone: str | None,
    now: datetime | None = None,
) -> None:
    """Change a user's name, role, office, language and time zone; an admin cannot demote themselves.

    A change of role or office is recorded in the audit log.
    """
    name = name.strip()
    if not name:
        raise UserError(_("A name is needed."), "name")
    checked_role = _check_role(role)
    if user.id == actor.id and user.role == Role.ADMIN and checked_role != Role.ADMIN:
        raise UserError(
            _("You cannot remove your own administrator role; ask another administrator."), "role"
        )
    office = _find_office(office_code, current=user.office)
    _check_role_and_office(checked_role, office)
    language = _check_language(language)
    timezone = _check_timezone(timezone)
    now = now or datetime.now(UTC)
    if user.role != checked_role.value:
        audit.record(
            "role_changed", now, actor=actor, subject=user, detail=f"{user.role} → {checked_role.value}"
        )
    if user.office_id != (office.id if office else None):
        before = user.office.code if user.office else "—"
        audit.record(
            "office_changed",
            now,
            actor=actor,
            subject=user,
            detail=f"{before} → {office.code if office else '—'}",
        )
    user.name = name
    user.role = checked_role.value
    user.office = office
    user.language = language
    user.timezone = timezone
    _flush(UserError)


def deactivate_user(actor: User, user: User, now: datetime | None = None) -> bool:
    """Stop a user from signing in, end their sessions and revoke their API tokens for good.

    False if they already were inactive. The tokens stay revoked if the account is reactivated.
    """
    if user.id == actor.id:
        raise UserError(_("You cannot deactivate your own account."))
    if not user.active:
        return False
    now = now or datetime.now(UTC)
    user.active = False
    user.session_token = secrets.token_urlsafe(32)  # password links sent before stop working
    sessions.end_all(user, "deactivated", now)
    revoked = db.session.execute(
        sa.update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    audit.record(
        "user_deactivated", now, actor=actor, subject=user, detail=f"{revoked or 0} API tokens revoked"
    )
    _flush(UserError)
    return True


def reactivate_user(actor: User, user: User, now: datetime | None = None) -> bool:
    """Let a deactivated user sign in again; False if they already were active."""
    if user.active:
        return False
    user.active = True
    audit.record("user_reactivated", now or datetime.now(UTC), actor=actor, subject=user)
    _flush(UserError)
    return True


def reset_password(actor: User, user: User, now: datetime | None = None) -> str:
    """Give a user a random temporary password (their sessions end) and return it, to show once."""
    if user.id == actor.id:
        raise UserError(_("Change your own password on the Password page."))
    temporary = secrets.token_urlsafe(12)  # 16 characters, about 96 bits
    now = now or datetime.now(UTC)
    user.set_password(temporary)
    sessions.end_all(user, "password_changed", now)
    audit.record("password_reset", now, actor=actor, subject=user, detail="temporary password by an admin")
    _flush(UserError)
    return temporary


def open_session_count(user: User, now: datetime) -> int:
    """How many sessions the user has that can still be used (shown on their edit page)."""
    return len(sessions.open_sessions(user, now))


def end_sessions(actor: User, user: User, now: datetime) -> int:
    """Sign a user out everywhere (a saved cookie opens nothing afterwards); returns how many ended.

    Not for one's own account: the profile page ends one's other sessions and keeps this one.
    """
    if user.id == actor.id:
        raise UserError(_("End your own sessions on your profile page."))
    count = sessions.end_all(user, "ended_by_admin", now)
    if count:
        audit.record(
            "session_ended", now, actor=actor, subject=user, detail=f"ended by an admin: {count} sessions"
        )
    _flush(UserError)
    return count


# --- offices ---------------------------------------------------------------------------------


def list_offices(actor: User) -> list[tuple[Office, int]]:
    """Every office by code with its number of users, counted in one grouped query."""
    counts = (
        sa.select(User.office_id, sa.func.count(User.id).label("users"))
        .where(User.office_id.is_not(None))
        .group_by(User.office_id)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(Office, sa.func.coalesce(counts.c.users, 0))
        .outerjoin(counts, counts.c.office_id == Office.id)
        .order_by(Office.code)
    )
    return [(office, count) for office, count in rows]


def all_offices() -> list[Office]:
    """Every office by code (for choices and filters)."""
    return list(db.session.scalars(sa.select(Office).order_by(Office.code)))


def _check_office_fields(name: str, country: str, timezone: str, language: str) -> tuple[str, str, str]:
    name, country, timezone = name.strip(), country.strip(), timezone.strip()
    if not name:
        raise OfficeError(_("A name is needed."), "name")
    if not country:
        raise OfficeError(_("A country is needed."), "country")
    if timezone not in timezone_names():
        raise OfficeError(
            _("Unknown time zone %(zone)r; use an IANA name such as Asia/Singapore.", zone=timezone),
            "timezone",
        )
    if language not in languages():
        raise OfficeError(_("Unknown language %(code)r.", code=language), "language")
    return name, country, timezone


def create_office(
    actor: User, *, code: str, name: str, country: str, timezone: str, language: str, active: bool = True
) -> Office:
    """Add an office with a unique upper-case code and a valid time zone; flushes."""
    code = code.strip()
    if not OFFICE_CODE.fullmatch(code):
        raise OfficeError(_("The code is 2 to 8 letters, e.g. SG."), "code")
    code = code.upper()
    if db.session.scalar(sa.select(Office.id).where(Office.code == code)) is not None:
        raise OfficeError(_("An office with the code %(code)s already exists.", code=code), "code")
    name, country, timezone = _check_office_fields(name, country, timezone, language)
    office = Office(
        code=code, name=name, country=country, timezone=timezone, language=language, active=active
    )
    db.session.add(office)
    _flush(OfficeError)
    return office


def update_office(
    actor: User, office: Office, *, name: str, country: str, timezone: str, language: str, active: bool
) -> None:
    """Change an office's name, country, time zone, language and state (the code stays)."""
    name, country, timezone = _check_office_fields(name, country, timezone, language)
    office.name = name
    office.country = country
    office.timezone = timezone
    office.language = language
    office.active = active
    _flush(OfficeError)
