"""Background jobs: work too long for a request (a large export, a large import), run by the
scheduler process (``jobs`` in tracker.scheduler.JOBS) or by ``flask --app wsgi tracker run-jobs``.

How a feature uses it:

1. Register a handler in a module listed in ``HANDLER_MODULES``::

       @handler("import")
       def run_import(job: BackgroundJob, progress: Progress) -> None:
           params = json.loads(job.params)
           with open_input(job) as file:      # or: for piece in read_input(job)
               ...
               progress(done, total)          # often: it is throttled, and it is where a
                                              # cancellation arrives (JobCancelled)
           job.result = json.dumps({...})     # figures for the job page (optional)
           job.message = _("…")               # a line for the person (optional)

   The handler runs in an app context, with ``db.session``, in the locale of the person who
   asked (so ``gettext`` speaks their language). It may commit. Raising ``JobFailed(message)``
   marks the job failed with that message (writes not yet committed are rolled back); any other
   exception marks it failed with a generic message and is logged. When it returns, the runner
   flushes, marks the job done in the same transaction (only if this runner still holds it and
   nobody cancelled it: otherwise everything uncommitted is rolled back), commits, and puts the
   ``job_done`` mail in the outbox. A handler that commits part of its work must be safe to run
   again: a runner killed after that commit but before "done" leaves a job the next runner starts
   from the beginning (``attempts`` says how many times it was started, up to
   TRACKER_JOB_MAX_ATTEMPTS).

2. A request enqueues it and commits: ``job = enqueue(current_user, "import", {...},
   input_chunks=[data], total=rows)``, then redirects to ``url_for("jobs.show", job_id=job.id)``.

3. To hand back a file: ``store_output(job, chunks, file_name=…, content_type=…)`` (call it last:
   it sets columns of the job row), and ``/jobs/<id>/download`` serves it.

Do not change the job row's ``done``/``total``/``state``/``claimed_*`` yourself: ``Progress`` and
the runner own them. Change ``result`` and ``message`` at the end (on PostgreSQL a flushed change
to the job row locks it, and progress waits for nothing: it then keeps its figures for later).
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from tracker import files
from tracker.extensions import db
from tracker.models import BackgroundJob, JobChunk, JobState, User

log = logging.getLogger(__name__)

#: Modules that register handlers; imported by ``load_handlers()`` when a runner starts and when a
#: job is enqueued. A feature adds its module's name here.
HANDLER_MODULES: tuple[str, ...] = ("tracker.transfer.export_jobs", "tracker.transfer.import_jobs")

Handler = Callable[[BackgroundJob, "Progress"], None]

#: kind → the function that runs it.
HANDLERS: dict[str, Handler] = {}

#: The largest piece of a file kept in one job_chunk row.
CHUNK_BYTES = 1024 * 1024

INPUT, OUTPUT = "input", "output"

Clock = Callable[[], datetime]


class JobFailed(Exception):  # noqa: N818 - reads better at the call sites
    """Raised by a handler: the job failed, and ``message`` (for the person, translated) says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JobCancelled(Exception):  # noqa: N818 - reads better at the call sites
    """Raised by ``Progress`` when the person cancelled the job (or another runner took it over)."""


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register ``fn(job, progress) -> None`` as the way to run jobs of ``kind`` (≤ 30 characters)."""
    if len(kind) > 30:
        raise ValueError(f"job kind {kind!r} is longer than 30 characters")

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


def load_handlers() -> dict[str, Handler]:
    """Import every module of HANDLER_MODULES (once), so that their handlers are registered."""
    for name in HANDLER_MODULES:
        importlib.import_module(name)
    return HANDLERS


# --- files -----------------------------------------------------------------------------------


def _pieces(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of ``chunks`` again, cut or joined into pieces of at most CHUNK_BYTES."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


def _store(job_id: int, role: str, chunks: Iterable[bytes]) -> int:
    """Replace the job's ``role`` file with ``chunks``, one INSERT per piece; its size in bytes."""
    db.session.execute(sa.delete(JobChunk).where(JobChunk.job_id == job_id, JobChunk.role == role))
    size = 0
    for seq, piece in enumerate(_pieces(chunks)):
        # A Core INSERT: the piece does not stay in the session's identity map.
        db.session.execute(sa.insert(JobChunk).values(job_id=job_id, role=role, seq=seq, data=piece))
        size += len(piece)
    return size


def read_chunks(job_id: int, role: str) -> Iterator[bytes]:
    """A stored file, one piece (≤ 1 MB) at a time: one SELECT per piece, so only one is in memory."""
    return files.read_pieces(JobChunk.seq, JobChunk.data, JobChunk.job_id == job_id, JobChunk.role == role)


def enqueue(
    user: User,
    kind: str,
    params: dict[str, Any],
    *,
    input_chunks: Iterable[bytes] | None = None,
    total: int | None = None,
    now: datetime | None = None,
) -> BackgroundJob:
    """Queue a job of ``kind`` for ``user`` with JSON ``params`` (and an input file, in pieces of any
    size); adds the rows and flushes, the caller commits. ``total``: the units (rows) to do, if known."""
    if kind not in load_handlers():
        raise ValueError(f"no handler for job kind {kind!r}")
    job = BackgroundJob(
        kind=kind,
        user_id=user.id,
        state=JobState.QUEUED.value,
        params=json.dumps(params, sort_keys=True),
        total=total,
        done=0,
        attempts=0,
        created_at=now or datetime.now(UTC),
    )
    db.session.add(job)
    db.session.flush()
    if input_chunks is not None:
        _store(job.id, INPUT, input_chunks)
    return job


def read_input(job: BackgroundJob) -> Iterator[bytes]:
    """The job's input file, one piece (≤ 1 MB) at a time."""
    return read_chunks(job.id, INPUT)


def open_input(job: BackgroundJob) -> IO[bytes]:
    """The job's input file copied into a seekable temporary file (at position 0); close it after use."""
    return files.spooled(read_input(job))


def store_output(job: BackgroundJob, chunks: Iterable[bytes], *, file_name: str, content_type: str) -> int:
    """Keep the job's result file (replacing one a previous attempt left) in pieces of ≤ 1 MB, and
    set its name, type and size on the job; returns the size. Flushes; the runner commits."""
    size = _store(job.id, OUTPUT, chunks)
    job.file_name = file_name[:200]
    job.content_type = content_type[:100]
    job.size = size
    return size


# --- progress --------------------------------------------------------------------------------


class Progress:
    """Reports a running job's progress: call ``progress(done, total=None)`` as often as you like.

    At most one write per ``every`` seconds (1 s), on a connection of its own and in its own short
    transaction, so the job page sees it while the job's transaction is still open. Each write also
    renews this runner's claim on the job (until now + TRACKER_JOB_CLAIM_SECONDS), and finds out
    whether the person cancelled it: the next call then raises ``JobCancelled`` (so does a job
    another runner has taken over). The runner also writes every claim/3 seconds from a heartbeat
    thread, so a long step without calls (compressing a workbook) keeps its claim.

    Writes never wait: while the job's own transaction holds a lock the write needs — on SQLite
    any write transaction of the job's session (one writer at a time), on PostgreSQL a flushed
    change to the job row — the write gives up at once (SQLite ``busy_timeout`` 0, PostgreSQL
    ``lock_timeout`` 100 ms), keeps the figures and writes them at the next call or beat after
    the job commits. On SQLite, a handler that writes should therefore commit at least once per
    claim time (60 s by default), else its claim lapses and another runner may start it again.
    """

    def __init__(
        self,
        job_id: int,
        holder: str,
        *,
        clock: Clock,
        claim_for: timedelta,
        total: int | None = None,
        every: float = 1.0,
    ) -> None:
        self.job_id = job_id
        self.holder = holder
        self.clock = clock
        self.claim_for = claim_for
        self.every = every
        self.engine = db.engine  # bound now: the heartbeat thread has no app context
        self.done = 0
        self.total = total
        #: The person cancelled the job, or this runner no longer holds it.
        self.cancelled = False
        #: Writes made, and writes that found the database locked (for tests and logs).
        self.writes = 0
        self.deferred = 0
        self._last = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int | None = None) -> None:
        """Record ``done`` of ``total`` units; write them if a second has passed; raise JobCancelled
        if the person cancelled."""
        self.done = done
        if total is not None:
            self.total = total
        if time.monotonic() - self._last >= self.every:
            self.write()
        if self.cancelled:
            raise JobCancelled

    def write(self) -> bool:
        """Write the figures and renew the claim now; False if the database was locked (kept for later)."""
        with self._lock:
            self._last = time.monotonic()
            values: dict[str, Any] = {"done": self.done, "claimed_until": self.clock() + self.claim_for}
            if self.total is not None:
                values["total"] = self.total
            statement = (
                sa.update(BackgroundJob)
                .where(
                    BackgroundJob.id == self.job_id,
                    BackgroundJob.claimed_by == self.holder,
                    BackgroundJob.state == JobState.RUNNING.value,
                )
                .values(**values)
            )
            sqlite = self.engine.dialect.name == "sqlite"
            try:
                with self.engine.connect() as connection:
                    try:
                        if sqlite:
                            connection.exec_driver_sql("PRAGMA busy_timeout=0")
                        else:
                            connection.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")
                        held = connection.execute(statement).rowcount
                        connection.commit()
                    finally:
                        connection.rollback()
                        if sqlite:  # back to what tracker sets on every connection (tracker/__init__.py)
                            connection.exec_driver_sql("PRAGMA busy_timeout=5000")
            except OperationalError:
                self.deferred += 1
                log.debug("job %s: progress deferred, the database is locked", self.job_id)
                return False
            self.writes += 1
            if not held:
                self.cancelled = True
            return True


def run_pending(
    now: datetime, holder: str, *, clock: Clock | None = None, budget: float | None = None
) -> int:
    """Run queued jobs (and jobs whose runner died) one after another until none is left or
    ``budget`` seconds (TRACKER_JOB_BUDGET_SECONDS) have passed; the number of jobs run.

    ``now`` is the time of the first claim; ``clock`` (default: the real time) is read after it.
    See tracker.jobs.runner.
    """
    from tracker.jobs import runner

    return runner.run_pending(now, holder, clock=clock, budget=budget)
