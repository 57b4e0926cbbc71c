"""Files kept in the database (evidence files, import files waiting for their confirmation): the one
place that writes, reads and deletes them.

A file is a ``stored_file`` row and its pieces of at most 1 MB in ``file_chunk``. It is written a
piece at a time as it is read, and read back a piece at a time (one SELECT per piece), so a file
is never whole in memory, on the writing host or on the reading one. Every web host therefore
serves every file, and a database backup holds them. Like a service, these functions flush; the
request (or the command) commits, so a file written for a change that is then refused or rolled
back leaves nothing behind.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import FileChunk, StoredFile, utcnow

#: The largest piece of a file kept in one file_chunk row.
CHUNK_BYTES = 1024 * 1024


class FileTooLarge(ValueError):  # noqa: N818 - reads better at the call sites
    """The file has more bytes than the limit it was written with; the caller rolls back."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than {limit} bytes")
        self.limit = limit


def remaining_size(source: IO[bytes]) -> int | None:
    """How many bytes are left to read in ``source`` (its position kept), or None if it cannot seek."""
    try:
        if not source.seekable():
            return None
        start = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return end - start


def write(source: IO[bytes], *, limit: int | None = None, now: datetime | None = None) -> StoredFile:
    """Store what is left to read in ``source``, one INSERT per piece as it is read; flushes.

    With ``limit``, a file of more bytes raises FileTooLarge: before anything is written when the
    source can seek (its size is measured first), else as soon as the limit is passed (the pieces
    already inserted go with the caller's rollback).
    """
    if limit is not None and (size := remaining_size(source)) is not None and size > limit:
        raise FileTooLarge(limit)
    stored = StoredFile(size=0, created_at=now or utcnow())
    db.session.add(stored)
    db.session.flush()
    size, seq = 0, 0
    while piece := _read_piece(source):
        size += len(piece)
        if limit is not None and size > limit:
            raise FileTooLarge(limit)
        # A Core INSERT: the piece does not stay in the session's identity map.
        db.session.execute(sa.insert(FileChunk).values(file_id=stored.id, seq=seq, data=piece))
        seq += 1
    stored.size = size
    db.session.flush()
    return stored


def _read_piece(source: IO[bytes]) -> bytes:
    """The next CHUNK_BYTES bytes of ``source`` (fewer only at its end): a stream may return less."""
    piece = source.read(CHUNK_BYTES)
    if not piece or len(piece) == CHUNK_BYTES:
        return piece
    parts = [piece]
    missing = CHUNK_BYTES - len(piece)
    while missing and (more := source.read(missing)):
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def read(file_id: int) -> Iterator[bytes]:
    """A stored file, one piece (≤ 1 MB) at a time: one SELECT per piece, so only one is in memory."""
    return read_pieces(FileChunk.seq, FileChunk.data, FileChunk.file_id == file_id)


def read_pieces(seq: Any, data: Any, *where: sa.ColumnElement[bool]) -> Iterator[bytes]:
    """The pieces of a file kept as rows (``seq``, ``data``) that match ``where``, in order of
    ``seq``: one SELECT per piece, so only one is in memory (stored files, background job files)."""
    seqs = list(db.session.scalars(sa.select(seq).where(*where).order_by(seq)))
    for number in seqs:
        piece = db.session.scalar(sa.select(data).where(*where, seq == number))
        if piece is not None:
            yield bytes(piece)


def size(file_id: int) -> int | None:
    """A stored file's size in bytes; None if there is no such file."""
    return db.session.scalar(sa.select(StoredFile.size).where(StoredFile.id == file_id))


def spool(file_id: int) -> IO[bytes]:
    """A stored file copied into a seekable temporary file on this host (at position 0): for readers
    that seek (openpyxl opens an XLSX as a zip). The caller closes it."""
    return spooled(read(file_id))


def spooled(pieces: Iterable[bytes]) -> IO[bytes]:
    """``pieces`` written into a seekable temporary file (at position 0), in memory up to 1 MB and
    on local disk beyond; the caller closes it."""
    file = tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES)  # noqa: SIM115 - the caller closes it
    try:
        for piece in pieces:
            file.write(piece)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file


def delete(file_ids: list[int]) -> None:
    """Delete stored files and their pieces (rows that refer to them are the caller's); flushes."""
    if not file_ids:
        return
    db.session.execute(sa.delete(FileChunk).where(FileChunk.file_id.in_(file_ids)))
    db.session.execute(sa.delete(StoredFile).where(StoredFile.id.in_(file_ids)))
    db.session.flush()
