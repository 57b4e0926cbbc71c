"""The admin outbox: every message with its delivery state, a message as sent, retrying a failed one,
and the scheduler's heartbeat (admins only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_decimal, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from tracker import params
from tracker.extensions import db
from tracker.labels import kind_label
from tracker.models import Notification, NotificationKind, NotificationState, SchedulerLease, SchedulerRun
from tracker.notifications import dispatch, health
from tracker.notifications.compose import offices_without_manager
from tracker.notifications.forms import ConfirmForm, ResendFailedForm
from tracker.notifications.outbox import HeaderInjectionError, safe_header
from tracker.permissions import Perm, require

bp = Blueprint("outbox", __name__, url_prefix="/admin/outbox")

STATE_LABELS = {
    NotificationState.PENDING: _l("Pending"),
    NotificationState.SENT: _l("Sent"),
    NotificationState.FAILED: _l("Failed"),
}

#: A scheduler whose heartbeat is older than this has stopped (it beats every few seconds).
STALE_AFTER = timedelta(minutes=3)


def state_label(value: str) -> str:
    """The name of a delivery state in the current language."""
    return str(STATE_LABELS[NotificationState(value)])


@dataclass(frozen=True)
class Heartbeat:
    """One scheduler lease as the page shows it."""

    name: str
    holder: str
    heartbeat_at: datetime
    expires_at: datetime
    #: How long ago the last heartbeat was (negative if the clocks disagree).
    age: timedelta
    stale: bool
    #: (job id, next run time) by time; None when the stored JSON cannot be read.
    next_runs: list[tuple[str, datetime]] | None


def _parse_next_runs(raw: str | None) -> list[tuple[str, datetime]] | None:
    """The scheduler's JSON of job id → ISO time, sorted by time; None if it is not readable."""
    if not raw:
        return []
    try:
        data = json.loads(raw)
        runs = []
        for job, value in data.items():
            when = datetime.fromisoformat(value)
            runs.append((str(job), when if when.tzinfo else when.replace(tzinfo=UTC)))
    except (ValueError, TypeError, AttributeError):
        return None
    return sorted(runs, key=lambda run: run[1])


def scheduler_heartbeats(now: datetime) -> list[Heartbeat]:
    """Every scheduler lease with its age at ``now``; empty when no scheduler has ever run."""
    leases = db.session.scalars(sa.select(SchedulerLease).order_by(SchedulerLease.name))
    return [
        Heartbeat(
            name=lease.name,
            holder=lease.holder,
            heartbeat_at=lease.heartbeat_at,
            expires_at=lease.expires_at,
            age=now - lease.heartbeat_at,
            stale=now - lease.heartbeat_at > STALE_AFTER,
            next_runs=_parse_next_runs(lease.next_runs),
        )
        for lease in leases
    ]


def last_runs() -> list[SchedulerRun]:
    """The last run of each scheduler job, by job id (one row per job, whichever scheduler ran it)."""
    return list(db.session.scalars(sa.select(SchedulerRun).order_by(SchedulerRun.job_id)))


def _filters() -> dict[str, str]:
    """The list's filters from the URL; unknown values are ignored."""
    kind = request.args.get("kind", "")
    state = request.args.get("state", "")
    return {
        "kind": kind if kind in {k.value for k in NotificationKind} else "",
        "state": state if state in {s.value for s in NotificationState} else "",
        "recipient": request.args.get("recipient", "").strip()[:254],
    }


def _query(filters: dict[str, str]) -> sa.Select[Any]:
    """Outbox rows matching the filters, newest first."""
    query = sa.select(Notification).order_by(Notification.created_at.desc(), Notification.id.desc())
    if filters["kind"]:
        query = query.where(Notification.kind == filters["kind"])
    if filters["state"]:
        query = query.where(Notification.state == filters["state"])
    if filters["recipient"]:
        # Addresses are stored lower-cased; % and _ typed by the admin are plain characters.
        query = query.where(Notification.to_address.contains(filters["recipient"].lower(), autoescape=True))
    return query


@bp.route("")
@login_required
def index() -> str:
    """The outbox, newest first, filtered by kind, state and recipient; the scheduler's heartbeat."""
    require(current_user, Perm.MANAGE_OUTBOX)
    filters = _filters()
    page = params.paginate(
        _query(filters), page=params.page_arg(), per_page=current_app.config["TRACKER_PAGE_SIZE"]
    )
    return render_template(
        "outbox/index.html",
        page=page,
        filters=filters,
        kinds=list(NotificationKind),
        states=list(NotificationState),
        heartbeats=scheduler_heartbeats(datetime.now(UTC)),
        last_runs=last_runs(),
        format_decimal=format_decimal,
        kind_label=kind_label,
        state_label=state_label,
        stale_after=int(STALE_AFTER.total_seconds() // 60),
        unmanaged=offices_without_manager(),
        status=health.outbox_status(datetime.now(UTC)),
        resend_form=_resend_form(request.args),
        smtp=bool(current_app.config.get("MAIL_SERVER")),
        mail_dir=current_app.config["TRACKER_MAIL_DIR"],
    )


@bp.route("/<int:notification_id>")
@login_required
def detail(notification_id: int) -> str:
    """One message as it is sent: headers, the text body, and the HTML body in a sandboxed frame."""
    require(current_user, Perm.MANAGE_OUTBOX)
    notification = db.get_or_404(Notification, notification_id)
    headers = dispatch.headers_for(notification)
    try:
        for value in headers.values():
            safe_header(value)
        unsafe = None
    except HeaderInjectionError as exc:
        unsafe = str(exc)
    return render_template(
        "outbox/detail.html",
        n=notification,
        headers=headers,
        unsafe=unsafe,
        kind_label=kind_label,
        state_label=state_label,
    )


@bp.route("/<int:notification_id>/body.html")
@login_required
def mail_html(notification_id: int) -> Response:
    """The HTML body of a message, for the sandboxed frame of its page (its policy: tracker/security.py)."""
    require(current_user, Perm.MANAGE_OUTBOX)
    notification = db.get_or_404(Notification, notification_id)
    return Response(notification.body_html or "", mimetype="text/html")


@bp.route("/<int:notification_id>/retry", methods=["POST"])
@login_required
def retry(notification_id: int) -> Response:
    """Put a failed message back in the queue, to be sent at the next dispatch."""
    require(current_user, Perm.MANAGE_OUTBOX)
    notification = db.get_or_404(Notification, notification_id)
    to_address = notification.to_address
    if dispatch.retry(notification.id, datetime.now(UTC)):
        db.session.commit()
        flash(
            _("The message to %(email)s will be sent again at the next dispatch.", email=to_address),
            "success",
        )
    else:
        flash(_("Only a failed message can be sent again."), "error")
    return redirect(url_for("outbox.detail", notification_id=notification_id))


def _resend_form(args: Any) -> ResendFailedForm:
    """The "send failed messages again" selection, read from the query string."""
    form = ResendFailedForm(formdata=args if args.get("resend") else None)
    form.kind.choices = [SelectChoice("", _("Any kind"))] + [
        SelectChoice(k.value, kind_label(k.value)) for k in NotificationKind
    ]
    return form


@bp.route("/resend", methods=["GET", "POST"])
@login_required
def resend_failed() -> Response | tuple[str, int]:
    """Ask, then put every failed message of a kind and period back in the queue (admins)."""
    require(current_user, Perm.MANAGE_OUTBOX)
    selection = _resend_form(request.args)
    if not selection.validate():
        flash(_("Nothing was sent again: see the messages in the form."), "error")
        return render_template("outbox/resend.html", form=selection, count=None, confirm=ConfirmForm()), 422
    kind, since, until = selection.kind.data or None, selection.since.data, selection.until.data
    confirm = ConfirmForm()
    if request.method == "POST":
        if not confirm.validate_on_submit():
            return render_template("outbox/resend.html", form=selection, count=None, confirm=confirm), 400
        now = datetime.now(UTC)
        count = health.retry_failed(kind, since, until, now)
        db.session.commit()
        flash(
            ngettext(
                "%(num)d failed message will be sent again at the next dispatch.",
                "%(num)d failed messages will be sent again at the next dispatch.",
                count,
            ),
            "success",
        )
        return redirect(url_for("outbox.index", state="pending"))
    count = health.count_failed(kind, since, until)
    return render_template("outbox/resend.html", form=selection, count=count, confirm=confirm), 200
