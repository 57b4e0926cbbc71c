"""`flask --app wsgi tracker …`: demo data and user administration from the shell."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import sqlalchemy as sa
from flask.cli import with_appcontext
from sqlalchemy.exc import OperationalError

from tracker.admin.services import UserError, create_user
from tracker.demo import DEFAULT_PASSWORD, OFFICES, demo_users, seed_demo
from tracker.extensions import db
from tracker.models import Office, Role


@click.group("tracker")
def tracker_cli() -> None:
    """tracker's own commands."""


@tracker_cli.command("seed-demo")
@click.option("--password", default=DEFAULT_PASSWORD, show_default=True, help="Demo accounts' password.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has offices.")
@with_appcontext
def seed_demo_command(password: str, if_empty: bool) -> None:
    """Load the twelve demo offices, their users, recommendations and action plans."""
    try:
        if if_empty and db.session.scalar(sa.select(sa.func.count()).select_from(Office)):
            click.echo("The database already has data; demo data not loaded.")
            return
        added = seed_demo(datetime.now(UTC).date(), password)
        db.session.commit()
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    click.echo("Demo data: " + ", ".join(f"{n} {what} added" for what, n in added.items()))
    click.echo(f"Sign in at the home page with one of these accounts, password {password!r}:")
    for email, _name, role, code in demo_users():
        if email.startswith(("admin", "reviewer", "manager", "focal.sg")):
            click.echo(f"  {email:<24} {role.value}{' of ' + code if code else ''}")
    codes = ", ".join(code.lower() for code, *_ in OFFICES)
    click.echo(f"  focal.<code>@demo.test   focal point of each office ({codes})")


@tracker_cli.command("create-user")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]), help="What the user does.")
@click.option("--office", "office_code", help="Office code (required for focal points).")
@click.option("--name", help="Display name (defaults to the part of the email before @).")
@click.option("--password", help="Password; prompted for when not given.")
@with_appcontext
def create_user_command(
    email: str, role: str, office_code: str | None, name: str | None, password: str | None
) -> None:
    """Add a user who can sign in with EMAIL."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(email, role, name=name, office_code=office_code, password=password)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    click.echo(f"Created {user.email} ({user.role}{', ' + office_code.upper() if office_code else ''}).")
