"""Action exports too large for a request: queued by the export routes, run by tracker.jobs.

The job keeps the request's filters and time; it runs with the permissions the person has when it
runs (their office scope), writes the file into a temporary file (constant memory), then stores it
in the job's chunks for /jobs/<id>/download.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import ngettext

from tracker.actions import queries
from tracker.extensions import db
from tracker.jobs import CHUNK_BYTES, JobFailed, Progress, enqueue, handler, store_output
from tracker.models import BackgroundJob, JobState, User
from tracker.transfer import columns, export

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MIMETYPE = "text/csv"

#: The export formats: job kind and content type of each.
KINDS = {"csv": "export_csv", "xlsx": "export_xlsx"}
#: Rows between two progress reports (each one is throttled to a write a second anyway).
REPORT_EVERY = 1000


def file_name(fmt: str, now: datetime) -> str:
    """The name of an action export made at ``now``."""
    return f"actions-{now:%Y%m%d}.{fmt}"


def queue_export(user: User, fmt: str, args: Mapping[str, str], now: datetime, total: int) -> BackgroundJob:
    """Queue the export of the actions ``user`` may see under the list's filters ``args``; flushes.

    The same export asked again while one is still waiting or running (a double click, a reload)
    is that job: the person is sent to it rather than given a second copy to wait for.
    """
    filters = dict(args)
    waiting = db.session.scalars(
        sa.select(BackgroundJob)
        .where(
            BackgroundJob.user_id == user.id,
            BackgroundJob.kind == KINDS[fmt],
            BackgroundJob.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
        )
        .order_by(BackgroundJob.id)
    )
    for job in waiting:
        if json.loads(job.params).get("filters") == filters:
            return job
    params = {"format": fmt, "filters": filters, "now": now.isoformat()}
    return enqueue(user, KINDS[fmt], params, total=total, now=now)


def _counted(rows: Iterable[list[Any]], progress: Progress) -> Iterator[list[Any]]:
    """The rows again, reporting every REPORT_EVERY of them."""
    done = 0
    for done, row in enumerate(rows, start=1):
        if done % REPORT_EVERY == 0:
            progress(done)
        yield row
    progress(done)


def _pieces(file: IO[bytes]) -> Iterator[bytes]:
    while piece := file.read(CHUNK_BYTES):
        yield piece


def _run(job: BackgroundJob, progress: Progress) -> None:
    params = json.loads(job.params)
    fmt = params["format"]
    user = job.user
    if not user.active:
        raise JobFailed(_("Your account is no longer active, so the export was not made."))
    now = datetime.fromisoformat(params["now"])
    try:
        filters = queries.action_filters(params["filters"])
    except queries.FilterError as exc:
        raise JobFailed(str(exc)) from None
    query = queries.filtered_actions(user, now, filters)
    total = export.count_rows(query)
    progress(0, total)
    rows = _counted(export.export_rows(query, now), progress)
    header = columns.column_labels(export.EXPORT_HEADER)
    with tempfile.TemporaryFile() as file:
        if fmt == "csv":
            for text in export.csv_stream(header, rows):
                file.write(text.encode("utf-8"))
        else:
            export.write_xlsx(file, [export.Sheet(_("Actions"), header, rows, export.EXPORT_WIDTHS)])
        file.seek(0)
        content_type = CSV_MIMETYPE if fmt == "csv" else XLSX_MIMETYPE
        store_output(job, _pieces(file), file_name=file_name(fmt, now), content_type=content_type)
    job.result = json.dumps({"rows": progress.done})
    job.message = ngettext("%(num)d action exported.", "%(num)d actions exported.", progress.done)


@handler(KINDS["csv"])
def export_csv(job: BackgroundJob, progress: Progress) -> None:
    """The action list as CSV, under the filters the job keeps."""
    _run(job, progress)


@handler(KINDS["xlsx"])
def export_xlsx(job: BackgroundJob, progress: Progress) -> None:
    """The action list as XLSX, under the filters the job keeps."""
    _run(job, progress)
