"""Large imports in the background: the preview is one job, the confirmed apply a second one.

A file of more than TRACKER_IMPORT_INLINE_ROWS rows is not planned in the request that uploads it:
:func:`start_preview` stores it as the input of an ``import_preview`` job (in the database, so that
any host's scheduler can read it) and the person watches it at ``/import/jobs/<id>``. The job
plans the file and checks every row by the commands' rules, as the preview page of a small file
does, and keeps the counts, the first rows of each kind and the problems in ``job.result``; the
page shows them as that preview, with its confirm button. Confirming (:func:`confirm`) queues an
``import_apply`` job with the same file, which plans it again (the data may have changed since) and
applies it as one transaction with the job's "done": every row, or none. The person is told by mail
when either job ends (tracker.jobs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

from babel import Locale
from flask import current_app
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from tracker.extensions import db
from tracker.jobs import JobFailed, Progress, enqueue, handler, open_input, read_input
from tracker.models import BackgroundJob, JobState, User
from tracker.transfer import apply, read
from tracker.transfer.plan import KINDS, ImportPlan, Problem, plan_import
from tracker.transfer.uploads import StoredUpload

log = logging.getLogger(__name__)

PREVIEW, APPLY = "import_preview", "import_apply"
#: Problems a job keeps for its page (the count covers them all).
KEPT_PROBLEMS = 1000
#: Rows of each kind a preview job keeps for its page (as the preview page shows them).
KEPT_ROWS = 50
#: Rows read between two progress reports.
_EVERY = 1000
_PIECE = 1 << 20


def start_preview(
    user: User, stored: StoredUpload, now: datetime, date_locale: Locale | None = None
) -> BackgroundJob:
    """Queue the preview of a stored upload, the file copied into the job; flushes, the caller commits.

    ``date_locale`` (the uploader's, from their request) is kept so that the job reads dates as the
    page would; the apply job inherits it.
    """
    params = {"filename": stored.filename, "date_locale": str(date_locale) if date_locale else None}
    with stored.open() as file:
        pieces = iter(lambda: file.read(_PIECE), b"")
        return enqueue(user, PREVIEW, params, input_chunks=pieces, now=now)


def job_of(user: User, job_id: int) -> BackgroundJob | None:
    """The user's own import job with this id, else None (another's is not found)."""
    found = db.session.get(BackgroundJob, job_id)
    if found is None or found.user_id != user.id or found.kind not in (PREVIEW, APPLY):
        return None
    return found


def confirm(user: User, preview: BackgroundJob, now: datetime) -> BackgroundJob | None:
    """Queue the apply of a finished preview that found no problem (once); None if it cannot be."""
    result = _result(preview)
    if preview.kind != PREVIEW or preview.state != JobState.DONE or not result:
        return None
    if result["problem_count"] or not result["changes_anything"] or result.get("applying"):
        return None
    params = {
        "filename": result["filename"],
        "preview": preview.id,
        "date_locale": json.loads(preview.params).get("date_locale"),
    }
    applying = enqueue(
        user, APPLY, params, input_chunks=read_input(preview), total=2 * result["rows"], now=now
    )
    result["applying"] = applying.id
    preview.result = json.dumps(result)
    return applying


def _result(job: BackgroundJob) -> dict[str, Any] | None:
    try:
        return json.loads(job.result) if job.result else None
    except ValueError:
        return None


# --- the jobs --------------------------------------------------------------------------------


def _limits() -> tuple[int, int]:
    config = current_app.config
    return config["TRACKER_IMPORT_MAX_BYTES"], config["TRACKER_IMPORT_MAX_ROWS"]


def _counted(rows: Any, progress: Progress, total: int | None) -> Iterator[read.Row]:
    """The rows, reporting every thousandth as read."""
    for count, row in enumerate(rows, start=1):
        yield row
        if count % _EVERY == 0:
            progress(count, total)


def _read_plan(job: BackgroundJob, progress: Progress, total: int | None) -> ImportPlan:
    """Plan the job's file, reporting the rows read; a file that cannot be read fails the job."""
    params = json.loads(job.params)
    max_bytes, max_rows = _limits()
    try:
        with open_input(job) as file:
            table = read.open_table(file, params["filename"], max_bytes=max_bytes, max_rows=max_rows)
            table.rows = _counted(table.rows, progress, total)
            return plan_import(table, params.get("date_locale"))
    except read.ImportFileError as exc:
        raise JobFailed(exc.message) from None


@handler(PREVIEW)
def run_preview(job: BackgroundJob, progress: Progress) -> None:
    """Plan the file and check every row by the rules (rolled back); keep what the page shows."""
    now = datetime.now(UTC)
    plan = _read_plan(job, progress, None)
    progress(plan.rows, plan.rows)
    apply.rehearse(plan, job.user, now, _("Imported from %(name)s", name=plan.filename))
    job.result = json.dumps(_summary(plan))
    if plan.problems:
        job.message = ngettext(
            "%(num)d problem: nothing can be imported until it is corrected.",
            "%(num)d problems: nothing can be imported until they are corrected.",
            len(plan.problems),
        )
    elif plan.changes_anything:
        job.message = _("The preview is ready: confirm it to import the file.")
    else:
        job.message = _("The file matches what tracker holds: there is nothing to import.")


@handler(APPLY)
def run_apply(job: BackgroundJob, progress: Progress) -> None:
    """Plan the file again and apply it: the writes and the job's "done" are one transaction."""
    now = datetime.now(UTC)
    total = job.total
    rows = total // 2 if total else None
    plan = _read_plan(job, progress, total)
    note = _("Imported from %(name)s", name=plan.filename)
    refused = _("Nothing was imported: correct the problems listed below in your file, then upload it again.")
    if plan.problems:
        apply.rehearse(plan, job.user, now, note)
        _refused(job, plan, refused)
        return
    try:
        counts = apply.apply_import(
            plan, job.user, now, note, progress=lambda written: progress(plan.rows + written, 2 * plan.rows)
        )
    except apply.ImportRefused:
        _refused(job, plan, refused)
        return
    except (IntegrityError, StaleDataError):
        log.info("background import of %s refused at write time", plan.filename, exc_info=True)
        raise JobFailed(
            _("Nothing was imported: the data changed while the file was being imported. Upload it again.")
        ) from None
    progress(2 * (rows or plan.rows), 2 * (rows or plan.rows))
    job.result = json.dumps({"filename": plan.filename, "rows": plan.rows, "counts": counts})
    job.message = apply.summary(counts)


def _refused(job: BackgroundJob, plan: ImportPlan, message: str) -> None:
    """Nothing was written (the apply rolled its rows back): the job ends with the problems for its page."""
    job.result = json.dumps({**_summary(plan), "refused": True})
    job.message = message


def _summary(plan: ImportPlan) -> dict[str, Any]:
    """What the page of a preview shows, as JSON: counts, the first rows of each kind, the problems."""
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {"recommendations": {}, "actions": {}}
    for kind in KINDS:
        samples["recommendations"][kind] = [
            {"row": r.row, "code": r.code, "title": r.title, "changes": r.changes}
            for r in plan.sample("recommendations", kind, KEPT_ROWS)
        ]
        samples["actions"][kind] = [
            {
                "row": a.row,
                "code": a.code,
                "office": a.office.code,
                "title": a.title,
                "item_id": a.item_id,
                "deadline": a.values["deadline"].isoformat()
                if kind == "create" and a.values.get("deadline")
                else None,
                "status": a.values.get("status") if kind == "create" else None,
                "changes": a.changes,
            }
            for a in plan.sample("actions", kind, KEPT_ROWS)
        ]
    return {
        "filename": plan.filename,
        "rows": plan.rows,
        "counts": {
            what: {kind: plan.count(what, kind) for kind in KINDS} for what in ("recommendations", "actions")
        },
        "changes_anything": plan.changes_anything,
        "warnings": plan.warnings,
        "problem_count": len(plan.problems),
        "problems": [[p.row, p.column, p.message] for p in plan.problems[:KEPT_PROBLEMS]],
        "samples": samples,
    }


# --- the page --------------------------------------------------------------------------------


class StoredPlan:
    """A preview job's result, read as the preview page reads an ImportPlan."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.filename = result["filename"]
        self.rows = result["rows"]
        self.warnings = result["warnings"]
        self.problems = [Problem(*p) for p in result["problems"]]
        self.problem_count = result["problem_count"]
        self.changes_anything = result["changes_anything"]
        self._counts = result["counts"]
        self._samples = result["samples"]

    def count(self, what: str, kind: str) -> int:
        """How many recommendations or actions (``what``) are created, updated or unchanged."""
        return self._counts[what][kind]

    def sample(self, what: str, kind: str, limit: int) -> list[SimpleNamespace]:
        """The first rows of one kind, as the preview page reads them."""
        found = []
        for one in self._samples[what][kind][:limit]:
            values = dict(one)
            if what == "actions":
                deadline = values.pop("deadline")
                values["office"] = SimpleNamespace(code=values["office"])
                values["values"] = SimpleNamespace(
                    deadline=date.fromisoformat(deadline) if deadline else None, status=values.pop("status")
                )
            found.append(SimpleNamespace(**values))
        return found


class JobView:
    """What the page of an import job shows: its state and progress, its preview, or what it wrote."""

    def __init__(self, job: BackgroundJob) -> None:
        self.job = job
        result = _result(job) or {}
        self.filename = result.get("filename") or json.loads(job.params).get("filename", "")
        self.finished = job.finished
        self.failed = job.state in (JobState.FAILED, JobState.CANCELLED)
        self.applying: int | None = result.get("applying")
        self.refused = bool(result.get("refused"))
        #: The preview to show: a finished preview job's, or the problems of an apply that was refused.
        has_preview = job.state == JobState.DONE and "samples" in result
        self.plan = StoredPlan(result) if has_preview else None
        self.counts: dict[str, int] | None = result.get("counts") if job.kind == APPLY else None
        self.summary = apply.summary(self.counts) if self.counts and not self.refused else None
        self.percent = int(100 * job.done / job.total) if job.total else None

    @property
    def is_apply(self) -> bool:
        """True for the job that writes (the second one)."""
        return self.job.kind == APPLY
