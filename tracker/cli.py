"""`flask --app wsgi tracker …`: demo data and user administration from the shell."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import with_appcontext
from sqlalchemy.exc import OperationalError

from tracker.admin.services import UserError, create_user
from tracker.demo import DEFAULT_PASSWORD, demo_users, is_deputy, seed_demo
from tracker.extensions import db
from tracker.models import Office, Role, User


@click.group("tracker")
def tracker_cli() -> None:
    """tracker's own commands."""


@tracker_cli.command("seed-demo")
@click.option("--password", default=DEFAULT_PASSWORD, show_default=True, help="Demo accounts' password.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has offices.")
@with_appcontext
def seed_demo_command(password: str, if_empty: bool) -> None:
    """Load the twelve demo offices, their users, recommendations and action plans; list the accounts."""
    try:
        if if_empty and db.session.scalar(sa.select(sa.func.count()).select_from(Office)):
            click.echo("The database already has data; demo data not loaded.")
            emails = set(db.session.scalars(sa.select(User.email).where(User.email.like("%@demo.test"))))
            if emails:  # `make run` again: the accounts are still worth showing
                click.echo("Sign in with one of these demo accounts (the password they were loaded with):")
                _echo_accounts(emails)
            return
        added = seed_demo(datetime.now(UTC).date(), password)
        db.session.commit()
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    click.echo("Demo data: " + ", ".join(f"{n} {what} added" for what, n in added.items()))
    click.echo(f"Sign in at the home page with one of these accounts, password {password!r}:")
    _echo_accounts({email for email, *_rest in demo_users()})


def _echo_accounts(emails: set[str]) -> None:
    """The demo accounts among ``emails`` as a table: email, role, office, deputy or not."""
    rows = [("email", "role", "office", "deputy")] + [
        (email, role.value, code or "—", "yes" if is_deputy(email) else "no")
        for email, _name, role, code in demo_users()
        if email in emails
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  " + "  ".join([*cells, row[3]]))


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


@tracker_cli.command("create-token")
@click.argument("email")
@click.option("--name", default="command line", show_default=True, help="What the token is for.")
@with_appcontext
def create_token_command(email: str, name: str) -> None:
    """Create a personal API token for EMAIL and print it (it is shown this once)."""
    from tracker.api.auth import TokenError, create_token
    from tracker.models import User, normalise_email

    try:
        user = db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))
        if user is None:
            raise click.ClickException(f"no user has the email {email!r}")
        if not user.active:
            raise click.ClickException(f"{user.email} is deactivated; a token would not work")
        _token, secret = create_token(user, name, datetime.now(UTC))
        db.session.commit()
    except TokenError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    click.echo(f"API token {name!r} for {user.email}; it is shown this once:", err=True)
    click.echo(secret)


@tracker_cli.command("import")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--dry-run", is_flag=True, help="Print the plan and the problems; write nothing.")
@click.option(
    "--as",
    "acting_email",
    metavar="EMAIL",
    help="The admin or reviewer the rows are checked and applied as, recorded as author of the "
    "history. Required for a file that changes anything.",
)
@with_appcontext
def import_command(path: str, dry_run: bool, acting_email: str | None) -> None:
    """Import recommendations and action items from a CSV or XLSX FILE: all rows or none.

    Prints what would be created, updated or left alone, and every problem; with problems,
    nothing is written and the exit status is 1. Rows go through the same rules as the pages
    (workflow moves, owners, deadlines, permissions), checked as the --as user: there is no
    system user that could bypass them, so a file that changes anything needs --as.
    """
    from pathlib import Path

    from flask import current_app
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm.exc import StaleDataError

    from tracker.models import User, normalise_email
    from tracker.permissions import Perm, can
    from tracker.transfer.apply import ImportRefused, apply_import, rehearse
    from tracker.transfer.plan import describe_plan, plan_import, problem_lines
    from tracker.transfer.read import ImportFileError, open_table

    max_bytes = current_app.config["TRACKER_IMPORT_MAX_BYTES"]
    max_rows = current_app.config["TRACKER_IMPORT_MAX_ROWS"]
    file = Path(path)
    now = datetime.now(UTC)
    note = f"Imported from {file.name}"
    try:
        actor = None
        if acting_email is not None:
            actor = db.session.scalar(sa.select(User).where(User.email == normalise_email(acting_email)))
            if actor is None or not can(actor, Perm.IMPORT_DATA):
                raise click.ClickException(
                    f"--as must name an active admin or reviewer, not {acting_email!r}"
                )
        try:
            with file.open("rb") as handle:  # read row by row; its size is checked first
                plan = plan_import(open_table(handle, file.name, max_bytes=max_bytes, max_rows=max_rows))
        except ImportFileError as exc:
            raise click.ClickException(exc.message) from None
        if actor is not None and plan.changes_anything and (dry_run or plan.problems):
            # What the rules refuse, as that user; rolled back. A file to apply is checked by the
            # apply itself (same rules, all rows or none), not twice.
            rehearse(plan, actor, now, note)
        for line in describe_plan(plan):
            click.echo(line)
        if plan.problems:
            db.session.rollback()
            click.echo(f"{len(plan.problems)} problem(s): nothing was imported.", err=True)
            raise click.exceptions.Exit(1)
        if not plan.changes_anything:
            db.session.rollback()
            click.echo("Nothing to import: the file matches what tracker holds.")
            return
        if actor is None:
            db.session.rollback()
            raise click.ClickException(
                "give --as EMAIL (an active admin or reviewer): the rows are checked against the "
                "workflow and applied as that person, who is recorded as author of the history; "
                "nothing was imported"
            )
        if dry_run:
            db.session.rollback()
            click.echo("Dry run: nothing was written.")
            return
        try:
            apply_import(plan, actor, now, note)
            db.session.commit()
        except ImportRefused:
            db.session.rollback()
            for line in problem_lines(plan.problems):
                click.echo(line)
            raise click.ClickException("the rules refused some rows: nothing was imported") from None
        except (IntegrityError, StaleDataError):
            db.session.rollback()
            raise click.ClickException(
                "nothing was imported: the data changed while the file was being imported; run it again"
            ) from None
    except OperationalError as exc:
        db.session.rollback()
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    click.echo("Imported: all rows were written.")


@tracker_cli.command("remind")
@click.option(
    "--today",
    "today_text",
    metavar="YYYY-MM-DD",
    help="Compose as of the morning of this date in each recipient's zone, whatever the time "
    "(default: for whoever's morning has come, like the scheduler).",
)
@click.option("--dry-run", is_flag=True, help="Print who would receive what; write nothing.")
@with_appcontext
def remind_command(today_text: str | None, dry_run: bool) -> None:
    """Queue the due-soon, overdue, escalation, stale, review-queue and indicators-due mails (compose job).

    Also names the offices without an active manager: their escalations go to the next level.
    """
    from tracker.notifications.compose import compose_reminders, offices_without_manager
    from tracker.notifications.indicators_due import compose_indicators_due

    today = None
    if today_text is not None:
        try:
            today = datetime.strptime(today_text.strip(), "%Y-%m-%d").date()
        except ValueError:
            raise click.ClickException(
                f"--today must be a date written YYYY-MM-DD, e.g. 2026-11-24, not {today_text!r}"
            ) from None
    try:
        unmanaged = offices_without_manager()
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    for office in unmanaged:
        click.echo(
            f"office {office.code} has no active manager: its escalations go to the next level of "
            "TRACKER_ESCALATION_LADDER"
        )

    def compose(now: datetime) -> list[Any]:
        return compose_reminders(now, today=today, dry_run=dry_run) + compose_indicators_due(
            now, today=today, dry_run=dry_run
        )

    _compose_and_report(compose, dry_run)


@tracker_cli.command("digest")
@click.option(
    "--quarter",
    "quarter_text",
    metavar="YYYYQn",
    help="The quarter to report on, e.g. 2026Q3 (default: the quarter that just ended).",
)
@click.option("--dry-run", is_flag=True, help="Print who would receive what; write nothing.")
@with_appcontext
def digest_command(quarter_text: str | None, dry_run: bool) -> None:
    """Queue every manager's quarterly digest now (each manager gets each quarter's once)."""
    from tracker.notifications.compose import compose_digests
    from tracker.quarters import Quarter

    now = datetime.now(UTC)
    if quarter_text is None:
        quarter = Quarter.containing(now.date()).previous
    else:
        try:
            quarter = Quarter.parse(quarter_text)
        except ValueError:
            raise click.ClickException(
                "--quarter must be a quarter written YYYYQn with n from 1 to 4, "
                f"e.g. 2026Q3, not {quarter_text!r}"
            ) from None
        if quarter.ends_at > now:
            raise click.ClickException(f"{quarter} has not ended yet; its digest cannot be composed")
    click.echo(f"Quarterly digest {quarter}:")
    _compose_and_report(lambda at: compose_digests(quarter, at, dry_run=dry_run), dry_run)


def _compose_and_report(compose: Callable[[datetime], list[Any]], dry_run: bool) -> None:
    """Run a compose service now, commit (or roll back a dry run), and print what it queued."""
    from tracker.notifications.compose import ComposeConfigError

    try:
        planned = compose(datetime.now(UTC))
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
    except ComposeConfigError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        db.session.rollback()
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    verb = "would queue" if dry_run else "queued"
    for one in planned:
        email, subject = one.recipient.email, one.subject
        click.echo(f"  {verb} {one.kind.value} to {email}: {subject} [{one.key}, items: {one.items}]")
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(Counter(p.kind.value for p in planned).items()))
    done = "would be queued" if dry_run else "queued"
    click.echo(f"{len(planned)} mails {done}{' (' + summary + ')' if summary else ''}.")
    if dry_run:
        click.echo("Dry run: nothing was written.")


@tracker_cli.command("send-mail")
@click.option("--dry-run", is_flag=True, help="Only count the messages that are due; send nothing.")
@with_appcontext
def send_mail_command(dry_run: bool) -> None:
    """Send every outbox message that is due now (the scheduler's dispatch job, by hand).

    Exits 1 when the relay could not be reached or kept breaking the connection.
    """
    from tracker.notifications.dispatch import MailConfigError, dispatch, due_count
    from tracker.notifications.health import alert_admins

    now = datetime.now(UTC)
    try:
        if dry_run:
            click.echo(f"{due_count(now)} due; nothing sent (dry run).")
            return
        result = dispatch()  # the real clock, read for every claim and every mark
        if alert_admins(datetime.now(UTC)):  # the relay has failed for long: tell the admins, once
            db.session.commit()
    except MailConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    summary = f"sent {result.sent}, retried {result.retried}, failed {result.failed}"
    click.echo(summary + (f", not tried {result.deferred}" if result.deferred else ""))
    if result.relay_error:  # exit 1: cron or a monitor notices; the untried mail waits for the next run
        raise click.ClickException(f"the relay failed; the rest waits for the next run: {result.relay_error}")


@tracker_cli.command("run-jobs")
@click.option("--dry-run", is_flag=True, help="Only count the jobs waiting to run; run nothing.")
@with_appcontext
def run_jobs_command(dry_run: bool) -> None:
    """Run the background jobs waiting now (large exports, imports), then stop: the scheduler's
    jobs job by hand, for `make run` without a scheduler, or for an operator. Deletes first the
    jobs finished more than TRACKER_JOB_KEEP_DAYS ago."""
    from tracker.jobs import runner
    from tracker.scheduler import holder_id

    now = datetime.now(UTC)
    try:
        if dry_run:
            click.echo(f"{runner.waiting(now)} jobs waiting; nothing run (dry run).")
            return
        purged = runner.purge(now)  # as the scheduler's daily purge does, for a host without one
        db.session.commit()
        ran = runner.run_pending(now, f"cli:{holder_id()}")
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    click.echo(
        f"ran {ran} jobs" + (f"; deleted {purged} finished more than their keep days ago" if purged else "")
    )


@tracker_cli.command("outbox-status")
@click.option(
    "--max-age",
    type=click.IntRange(min=1),
    default=None,
    help="Exit with status 1 when the oldest pending message has waited longer than this (seconds).",
)
@with_appcontext
def outbox_status_command(max_age: int | None) -> None:
    """Print the outbox's counts by state and the age of its oldest pending message (for monitors)."""
    from tracker.notifications.health import outbox_status, relay_trouble

    now = datetime.now(UTC)
    try:
        status = outbox_status(now)
        trouble = relay_trouble(now)
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    click.echo(" ".join(f"{state}={count}" for state, count in status.counts.items()))
    age = status.oldest_pending_age
    if age is None:
        click.echo("oldest pending: none")
    else:
        queued = f"{status.oldest_pending_at:%Y-%m-%d %H:%M:%S} UTC"
        click.echo(f"oldest pending: {int(age.total_seconds())} s (queued {queued})")
    if trouble is not None:
        click.echo(f"relay failing since {trouble.failing_since:%Y-%m-%d %H:%M:%S} UTC: {trouble.last_error}")
    if max_age is not None and age is not None and age.total_seconds() > max_age:
        click.echo(f"ALERT: the oldest pending message has waited more than {max_age} s", err=True)
        raise SystemExit(1)


@tracker_cli.command("purge-audit")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted; delete nothing.")
@with_appcontext
def purge_audit_command(dry_run: bool) -> None:
    """Delete security events and sessions older than TRACKER_AUDIT_DAYS (the scheduler's daily purge job)."""
    from flask import current_app

    from tracker.auth.audit import purge_security_records

    try:
        events, sessions = purge_security_records(datetime.now(UTC))
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
    except OperationalError as exc:
        db.session.rollback()
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    verb = "would be deleted" if dry_run else "deleted"
    days = current_app.config["TRACKER_AUDIT_DAYS"]
    click.echo(f"{events} security events and {sessions} sessions older than {days} days {verb}.")
    if dry_run:
        click.echo("Dry run: nothing was written.")


@tracker_cli.command("move-uploads")
@click.option("--dry-run", is_flag=True, help="Only count what would be moved; change nothing.")
@with_appcontext
def move_uploads_command(dry_run: bool) -> None:
    """Move the evidence files still in TRACKER_UPLOAD_DIR into the database, one file per transaction.

    Safe to run again, and to interrupt: a new run finishes what an earlier one left. A file
    missing from the folder is reported and its row left alone (the exit code is then 1).
    """
    from flask import current_app

    from tracker.actions.evidence import move_uploads

    try:
        report = move_uploads(dry_run=dry_run, say=click.echo)
    except OperationalError as exc:
        db.session.rollback()
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    verb = "would be moved" if dry_run else "moved"
    click.echo(
        f"{report.moved} evidence files {verb} into the database ({report.bytes:,} bytes); "
        f"{report.missing} missing from {current_app.config['TRACKER_UPLOAD_DIR']}."
    )
    click.echo(
        "Import files waiting for their confirmation in the old import folder are not moved: "
        "they were kept for a day only; whoever uploaded one uploads it again."
    )
    if dry_run:
        click.echo("Dry run: nothing was written.")
    if report.missing:
        raise SystemExit(1)


@tracker_cli.command("backup")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def backup_command(path: str) -> None:
    """Write a complete, consistent backup of the database to FILE while the app keeps running.

    Everything is in it: programme data, history, the outbox and the evidence files. SQLite is
    copied with SQLite's online backup; PostgreSQL with pg_dump (custom format). The file appears
    only when complete (it is written to FILE.partial first).
    """
    from pathlib import Path

    from flask import current_app

    from tracker.backup import backup

    with _backup_errors():
        done = backup(current_app.config["SQLALCHEMY_DATABASE_URI"], Path(path))
    click.echo(
        f"Wrote {path}: {done.size:,} bytes, {done.engine}, schema revision {done.revision or 'none'}, "
        f"{done.actions if done.actions is not None else 'no'} actions."
    )


@contextlib.contextmanager
def _backup_errors() -> Iterator[None]:
    """A backup or restore that could not be done, or a database out of reach: one line, exit 1."""
    from tracker.backup import BackupError

    try:
        yield
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database (DATABASE_URL): {exc.orig}") from None


@tracker_cli.command("restore")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option(
    "--yes", is_flag=True, help="Restore into a database that holds data: it is deleted first (asks)."
)
@with_appcontext
def restore_command(path: str, yes: bool) -> None:
    """Restore the backup FILE (from `tracker backup`) into the database of DATABASE_URL.

    The database must be empty (a new one, or one just made by `flask db upgrade`), unless --yes
    is given: then, once confirmed, everything in it is replaced. Stop the web app and the
    scheduler first; afterwards run `flask db upgrade` if told to, then start them.
    """
    from pathlib import Path

    from flask import current_app

    from tracker.backup import check_restorable, occupied_tables, restore, revision_advice

    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    shown = sa.make_url(url).render_as_string(hide_password=True)
    with _backup_errors():
        check_restorable(url, Path(path))
        occupied = occupied_tables(url)
        if occupied and not yes:
            raise click.ClickException(
                f"{shown} is not empty ({', '.join(occupied[:5])}{' …' if len(occupied) > 5 else ''} hold "
                "rows); nothing was restored. Restore into an empty database: for PostgreSQL `createdb "
                "NAME` and DATABASE_URL=postgresql://…/NAME, for SQLite a new file in DATABASE_URL. Or "
                "give --yes to delete this database's data and replace it"
            )
        if occupied:
            click.confirm(
                f"Delete everything in {shown} ({len(occupied)} tables hold rows) "
                f"and replace it with {path}?",
                abort=True,
            )
        done = restore(url, Path(path))
    click.echo(
        f"Restored {path} into {shown}: {done.engine}, schema revision {done.revision or 'none'}, "
        f"{done.actions if done.actions is not None else 'no'} actions."
    )
    advice = revision_advice(done.revision, current_app.extensions["migrate"].directory)
    if advice:
        click.echo(f"Next: {advice}.")


@tracker_cli.command("scheduler")
@click.option("--once", is_flag=True, help="Take the lease, run every job once, and exit.")
@with_appcontext
def scheduler_command(once: bool) -> None:
    """Run the scheduler: reminders, digests, mail delivery and the daily purge of old security records.

    Its own process, never started by web workers.
    """
    import logging

    from flask import current_app

    from tracker.scheduler import Scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is too chatty
    scheduler = Scheduler(current_app._get_current_object())  # type: ignore[attr-defined]
    if once:
        if not scheduler.run_once():
            raise click.ClickException("another scheduler holds the lease; nothing was run")
        click.echo("Ran every job once.")
        return
    scheduler.start()
