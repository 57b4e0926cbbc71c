"""The pages of background jobs: a person's jobs, one job's progress, its file, its cancellation."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from tracker.extensions import db
from tracker.jobs import OUTPUT, read_chunks
from tracker.jobs import services as jobs
from tracker.models import BackgroundJob
from tracker.transfer.forms import ConfirmForm

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

#: Seconds between two reloads of a job's page while it runs.
REFRESH_SECONDS = 3


def _job(job_id: int) -> BackgroundJob:
    job = jobs.visible_job(current_user, job_id)
    if job is None:
        abort(404)  # someone else's job: as if it did not exist
    return job


@bp.route("")
@login_required
def index() -> ResponseReturnValue:
    """The person's recent jobs (exports and imports prepared in the background)."""
    return render_template("jobs/index.html", jobs=jobs.recent_jobs(current_user), services=jobs)


@bp.route("/<int:job_id>")
@login_required
def show(job_id: int) -> ResponseReturnValue:
    """One job: its state, its progress (the page reloads itself while it runs), its file."""
    job = _job(job_id)
    return render_template(
        "jobs/show.html",
        job=job,
        services=jobs,
        result=jobs.result_of(job),
        refresh=None if job.finished else REFRESH_SECONDS,
    )


@bp.route("/<int:job_id>/download")
@login_required
def download(job_id: int) -> ResponseReturnValue:
    """The job's file, streamed one stored piece at a time with its length."""
    job = _job(job_id)
    if not jobs.has_file(job):
        abort(404)
    response = Response(stream_with_context(read_chunks(job.id, OUTPUT)), mimetype=job.content_type)
    response.content_length = job.size
    response.headers["Content-Disposition"] = f'attachment; filename="{job.file_name}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/<int:job_id>/cancel", methods=["GET", "POST"])
@login_required
def cancel(job_id: int) -> ResponseReturnValue:
    """Ask for a confirmation (GET), then cancel the job (POST)."""
    job = _job(job_id)
    form = ConfirmForm()
    if job.finished:
        flash(_("This job has already finished."), "info")
        return redirect(url_for(".show", job_id=job.id), 303)
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        if jobs.cancel(job, current_user, datetime.now(UTC)):
            db.session.commit()
            flash(_("The job is cancelled."), "success")
        return redirect(url_for(".show", job_id=job.id), 303)
    return render_template("jobs/cancel.html", job=job, form=form, services=jobs)
