"""Evidence: links and files, what may be given, where files are kept, and how they are served.

Links are http or https addresses with a real host (:func:`link_problem`, for the form, the API and
the command alike). Files are checked by extension, size and first bytes (a renamed executable is
not a PDF) without being read whole, kept in the database (tracker/files.py) in the transaction of
their update, and only ever served through a view that asks permissions.py about the item they
belong to. Files from before that are still in the upload folder (TRACKER_UPLOAD_DIR) are served
from it until ``flask --app wsgi tracker move-uploads`` (:func:`move_uploads`) moves them in.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from werkzeug.datastructures import FileStorage

from tracker import files
from tracker.extensions import db
from tracker.models import EvidenceFile, StoredFile

log = logging.getLogger(__name__)

ZIP = (b"PK\x03\x04",)

#: extension → (content type, accepted leading bytes; None means "plain text")
ALLOWED: dict[str, tuple[str, tuple[bytes, ...] | None]] = {
    "pdf": ("application/pdf", (b"%PDF-",)),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ZIP),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ZIP),
    "pptx": ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ZIP),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "csv": ("text/csv", None),
    "txt": ("text/plain", None),
}


#: The longest evidence link: the length of its column (ActionUpdate.evidence_url).
MAX_LINK_LENGTH = 2000
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def link_problem(url: str) -> str | None:
    """Why ``url`` is not accepted as an evidence link, or None: http(s), a valid host, not too long.

    White space around it is allowed (it is stripped when saved); inside it, it is not.
    """
    url = url.strip()
    if len(url) > MAX_LINK_LENGTH:
        return _("A web address is at most %(num)d characters.", num=MAX_LINK_LENGTH)
    if not url.lower().startswith(("http://", "https://")):
        return _("Give a web address starting with http:// or https://.")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # a bad port or [IPv6] raises ValueError
    except ValueError:
        return _("Give a full web address.")
    if _SPACE_OR_CONTROL.search(url) or parts.username is not None or not host or not _valid_host(host):
        return _("Give a full web address.")
    return None


def _valid_host(host: str) -> bool:
    """A domain name (international ones too) or an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        ascii_host = host.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.split(".")
    return len(ascii_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


class EvidenceError(ValueError):
    """An uploaded file is refused; the message names it and says why."""


#: Bytes of a text file looked at for a NUL (a binary file renamed .txt or .csv).
TEXT_SNIFF_BYTES = 8192


@dataclass
class CheckedFile:
    """An upload that passed the checks: its stream (seekable, read again when stored) and size."""

    filename: str
    content_type: str
    stream: IO[bytes]
    size: int


def check(upload: FileStorage) -> CheckedFile:
    """Check one upload's name, size and first bytes without reading it whole; raise EvidenceError
    if refused. Nothing is written: a record_update checks every file before storing any."""
    name = Path(upload.filename or "").name.strip()
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in ALLOWED:
        allowed = ", ".join(sorted({e for e in ALLOWED if e != "jpeg"}))
        raise EvidenceError(
            _(
                "%(name)s: files of this type are not accepted (allowed: %(allowed)s).",
                name=name,
                allowed=allowed,
            )
        )
    limit = current_app.config["TRACKER_MAX_UPLOAD_BYTES"]
    too_large = _("%(name)s: the file is larger than %(mb)d MB.", name=name, mb=limit // 2**20)
    stream = _seekable(upload, limit)
    if stream is None:
        raise EvidenceError(too_large)
    stream.seek(0)
    size = files.remaining_size(stream) or 0
    if size > limit:
        raise EvidenceError(too_large)
    if not size:
        raise EvidenceError(_("%(name)s: the file is empty.", name=name))
    head = stream.read(TEXT_SNIFF_BYTES)
    stream.seek(0)
    content_type, signatures = ALLOWED[extension]
    if signatures is None:
        if b"\x00" in head:
            raise EvidenceError(_("%(name)s: the file is not plain text.", name=name))
    elif not head.startswith(signatures):
        raise EvidenceError(_("%(name)s: the content is not a .%(ext)s file.", name=name, ext=extension))
    return CheckedFile(filename=name[:255], content_type=content_type, stream=stream, size=size)


def _seekable(upload: FileStorage, limit: int) -> IO[bytes] | None:
    """The upload's stream if it can seek (werkzeug's always can: memory or a temporary file); else
    at most ``limit`` + 1 bytes of it copied into a temporary file; None if it holds more."""
    stream = upload.stream
    if files.remaining_size(stream) is not None:
        return stream
    copy = tempfile.SpooledTemporaryFile(max_size=files.CHUNK_BYTES)  # noqa: SIM115 - closed with the upload
    while copy.tell() <= limit and (block := stream.read(files.CHUNK_BYTES)):
        copy.write(block)
    if copy.tell() > limit:
        copy.close()
        return None
    upload.stream = copy  # closed when the request closes its files
    return copy


def store(checked: CheckedFile) -> StoredFile:
    """Write a checked file into the database (a piece at a time); flushes, the caller commits."""
    checked.stream.seek(0)
    return files.write(checked.stream, limit=checked.size)


def content(found: EvidenceFile) -> tuple[int, Iterator[bytes]] | None:
    """An evidence file's size and its bytes a piece at a time, from the database, or from the upload
    folder while it has not been moved in; None if its content is nowhere to be found."""
    if found.stored_file_id is not None:
        size = files.size(found.stored_file_id)
        return None if size is None else (size, files.read(found.stored_file_id))
    if found.stored_name is None:
        return None
    path = legacy_path(found.stored_name)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    return size, _read_disk(path)


def _read_disk(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while piece := file.read(files.CHUNK_BYTES):
            yield piece


def upload_dir() -> Path:
    """The folder where evidence files were kept before the database held them (TRACKER_UPLOAD_DIR)."""
    return Path(current_app.config["TRACKER_UPLOAD_DIR"])


def legacy_path(stored_name: str) -> Path:
    """Where a file from before lives on disk (its random name has no path in it)."""
    return upload_dir() / Path(stored_name).name


# --- moving the files of before into the database ---------------------------------------------


@dataclass
class MoveReport:
    """What :func:`move_uploads` did (or, dry, would do)."""

    moved: int = 0
    bytes: int = 0
    missing: int = 0


def move_uploads(*, dry_run: bool = False, say: Callable[[str], None] = log.info) -> MoveReport:
    """Move every evidence file still in the upload folder into the database, one file per
    transaction; commits. Safe to run again, and to kill at any point.

    Each file goes in two commits: (1) its bytes into stored_file and ``stored_file_id`` set, its
    ``stored_name`` kept; (2) once its disk copy is deleted, ``stored_name`` cleared. A run killed
    after (1) leaves a row with both set, which the next run finishes (deletes the disk copy if it
    is still there, clears the name); killed before (1) commits, nothing of it is in the database
    and the next run copies it again. Downloads prefer the database copy as soon as there is one.
    A row whose disk file is missing is reported and left alone.
    """
    report = MoveReport()
    ids = list(
        db.session.scalars(
            sa.select(EvidenceFile.id).where(EvidenceFile.stored_name.is_not(None)).order_by(EvidenceFile.id)
        )
    )
    db.session.rollback()  # no transaction held open between files
    for file_id in ids:
        _move_one(file_id, report, dry_run=dry_run, say=say)
    return report


def _move_one(file_id: int, report: MoveReport, *, dry_run: bool, say: Callable[[str], None]) -> None:
    """Move one file (see :func:`move_uploads`), in its own transactions."""
    row = db.session.get(EvidenceFile, file_id)
    if row is None or row.stored_name is None:  # gone, or finished by another run meanwhile
        db.session.rollback()
        return
    stored_name = row.stored_name
    path = legacy_path(stored_name)
    if row.stored_file_id is None:
        if not path.is_file():
            report.missing += 1
            say(f"missing: evidence file {row.id} ({row.filename!r}) has no file {path}")
            db.session.rollback()
            return
        if dry_run:
            report.moved += 1
            report.bytes += path.stat().st_size
            db.session.rollback()
            return
        with path.open("rb") as source:
            stored = files.write(source)
        # Only if no other run has moved it meanwhile (a second copy would be left unused).
        claimed = db.session.execute(
            sa.update(EvidenceFile)
            .where(EvidenceFile.id == file_id, EvidenceFile.stored_file_id.is_(None))
            .values(stored_file_id=stored.id)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            db.session.rollback()
            return
        db.session.commit()
        report.moved += 1
        report.bytes += stored.size
    elif dry_run:  # in the database already; only its disk copy and name are left to clear
        db.session.rollback()
        return
    path.unlink(missing_ok=True)
    db.session.execute(
        sa.update(EvidenceFile)
        .where(EvidenceFile.id == file_id, EvidenceFile.stored_file_id.is_not(None))
        .values(stored_name=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
