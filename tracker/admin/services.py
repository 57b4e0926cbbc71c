"""Managing users: creation with the rules a form, the CLI and later imports share."""

from __future__ import annotations

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from tracker.auth.services import MIN_PASSWORD_LENGTH
from tracker.extensions import db
from tracker.models import Office, Role, User, normalise_email


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message says why."""


def create_user(
    email: str,
    role: str,
    *,
    name: str | None = None,
    office_code: str | None = None,
    password: str | None = None,
) -> User:
    """Add a user after checking email, role and office; flushes, the caller commits."""
    try:
        # test_environment admits the reserved .test domain of the demo accounts; no DNS look-up.
        checked = validate_email(email, check_deliverability=False, test_environment=True)
        email = normalise_email(checked.normalized)
    except EmailNotValidError as exc:
        raise UserError(f"{email!r} is not a valid email address: {exc}") from None
    try:
        role = Role(role)
    except ValueError:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}") from None
    if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise UserError(f"a user with the email {email} already exists")
    office = None
    if office_code:
        office = db.session.scalar(sa.select(Office).where(Office.code == office_code.upper()))
        if office is None:
            raise UserError(f"unknown office code {office_code!r}")
    if role == Role.FOCAL_POINT and office is None:
        raise UserError("a focal point needs an office (--office CODE)")
    if role in (Role.ADMIN, Role.REVIEWER) and office is not None:
        raise UserError(f"a {role.value} works programme-wide and has no office")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    user = User(email=email, name=name or email.split("@")[0], role=role.value, office=office)
    if password is not None:
        user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user
