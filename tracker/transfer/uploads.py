"""Uploaded import files waiting between their preview and their confirmation (at most a day).

They are kept in the database (``import_upload`` and a stored file, tracker/files.py), so that the
confirmation may reach another web host than the upload. Like services, these functions flush;
the request commits.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

import sqlalchemy as sa

from tracker import files
from tracker.extensions import db
from tracker.models import ImportUpload
from tracker.transfer.read import clean_filename

#: How long an uploaded file waits for its confirmation.
UPLOAD_MAX_AGE = timedelta(days=1)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")


@dataclass
class StoredUpload:
    """An uploaded file kept until it is confirmed, cancelled or a day old."""

    token: str
    filename: str
    user_id: int
    created_at: datetime
    file_id: int
    size: int

    def open(self) -> IO[bytes]:
        """The file, to read (close it after use).

        The readers seek (openpyxl opens an XLSX as a zip; the CSV reader measures and rewinds), so
        the pieces are copied into a temporary file on the host that reads it: in memory up to
        1 MB, on its local disk beyond.
        """
        return files.spool(self.file_id)


def store_upload(
    source: bytes | IO[bytes], filename: str, user_id: int, now: datetime, limit: int | None = None
) -> str:
    """Keep an uploaded file (its bytes, or a stream stored a piece at a time) for its owner; returns
    the token naming it. More than ``limit`` bytes raises files.FileTooLarge (before anything is
    written when the stream can seek). Uploads older than a day are swept away first. Flushes."""
    sweep_uploads(now)
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    stored = files.write(stream, limit=limit, now=now)
    token = secrets.token_urlsafe(24)
    db.session.add(
        ImportUpload(
            token=token,
            user_id=user_id,
            filename=clean_filename(filename),
            stored_file_id=stored.id,
            created_at=now,
        )
    )
    db.session.flush()
    return token


def load_upload(token: str, user_id: int, now: datetime) -> StoredUpload | None:
    """The file stored under ``token`` if this user uploaded it less than a day ago; else None."""
    if not _TOKEN.match(token or ""):
        return None
    found = db.session.get(ImportUpload, token)
    if found is None or found.user_id != user_id or now - found.created_at > UPLOAD_MAX_AGE:
        return None
    size = files.size(found.stored_file_id)
    if size is None:
        return None
    return StoredUpload(token, found.filename, user_id, found.created_at, found.stored_file_id, size)


def discard_upload(token: str) -> None:
    """Delete a stored upload (after its confirmation or cancellation); flushes, the caller commits."""
    if not _TOKEN.match(token or ""):
        return
    file_id = db.session.scalar(sa.select(ImportUpload.stored_file_id).where(ImportUpload.token == token))
    if file_id is None:
        return
    db.session.execute(sa.delete(ImportUpload).where(ImportUpload.token == token))
    files.delete([file_id])


def sweep_uploads(now: datetime) -> int:
    """Delete the stored uploads older than a day; returns how many went. Flushes."""
    old = ImportUpload.created_at < now - UPLOAD_MAX_AGE
    file_ids = list(db.session.scalars(sa.select(ImportUpload.stored_file_id).where(old)))
    if not file_ids:
        return 0
    db.session.execute(sa.delete(ImportUpload).where(ImportUpload.stored_file_id.in_(file_ids)))
    files.delete(file_ids)
    return len(file_ids)
