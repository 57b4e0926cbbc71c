"""Uploaded import files waiting on disk between their preview and their confirmation."""

from __future__ import annotations

import json
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from flask import current_app

from tracker.transfer.read import clean_filename

#: How long an uploaded file waits for its confirmation.
UPLOAD_MAX_AGE = timedelta(days=1)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")


@dataclass
class StoredUpload:
    """An uploaded file kept on disk until it is confirmed, cancelled or a day old."""

    token: str
    filename: str
    user_id: int
    created_at: datetime
    path: Path

    def open(self) -> IO[bytes]:
        """The file, to read (close it after use)."""
        return self.path.open("rb")

    @property
    def size(self) -> int:
        """Its size in bytes."""
        return self.path.stat().st_size


def import_dir() -> Path:
    """Where uploads wait (TRACKER_IMPORT_DIR, default <TRACKER_UPLOAD_DIR>/imports, shared by hosts)."""
    configured = current_app.config.get("TRACKER_IMPORT_DIR")
    return Path(configured) if configured else Path(current_app.config["TRACKER_UPLOAD_DIR"]) / "imports"


def store_upload(data: bytes | IO[bytes], filename: str, user_id: int, now: datetime, limit: int = -1) -> str:
    """Keep an uploaded file (its bytes, or a stream copied a block at a time, at most ``limit``
    bytes) under a random name for its owner; returns the token naming it."""
    folder = import_dir()
    folder.mkdir(parents=True, exist_ok=True)
    sweep_uploads(now)
    token = secrets.token_urlsafe(24)
    with (folder / f"{token}.data").open("wb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            _copy(data, out, limit)
    meta = {"filename": clean_filename(filename), "user_id": user_id, "created_at": now.isoformat()}
    (folder / f"{token}.json").write_text(json.dumps(meta), encoding="utf-8")
    return token


def load_upload(token: str, user_id: int, now: datetime) -> StoredUpload | None:
    """The file stored under ``token`` if this user uploaded it less than a day ago; else None."""
    if not _TOKEN.match(token or ""):
        return None
    folder = import_dir()
    try:
        meta = json.loads((folder / f"{token}.json").read_text(encoding="utf-8"))
        created_at = datetime.fromisoformat(meta["created_at"])
        if meta["user_id"] != user_id or now - created_at > UPLOAD_MAX_AGE:
            return None
        path = folder / f"{token}.data"
        if not path.is_file():
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return StoredUpload(token, str(meta["filename"]), user_id, created_at, path)


def _copy(source: IO[bytes], out: IO[bytes], limit: int) -> None:
    """Copy ``source`` into ``out`` a block at a time; at most ``limit`` bytes (all if negative)."""
    if limit < 0:
        shutil.copyfileobj(source, out)
        return
    while limit > 0 and (block := source.read(min(limit, 1 << 20))):
        out.write(block)
        limit -= len(block)


def discard_upload(token: str) -> None:
    """Delete a stored upload (after its confirmation or cancellation)."""
    if not _TOKEN.match(token or ""):
        return
    for suffix in (".data", ".json"):
        (import_dir() / f"{token}{suffix}").unlink(missing_ok=True)


def sweep_uploads(now: datetime) -> int:
    """Delete the stored uploads older than a day; returns how many files went."""
    removed = 0
    folder = import_dir()
    if not folder.is_dir():
        return 0
    limit = (now - UPLOAD_MAX_AGE).timestamp()
    for path in folder.iterdir():
        try:
            if path.suffix in (".data", ".json") and path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
