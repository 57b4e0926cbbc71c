"""Evidence: links and files, what may be given, where files are kept, and how they are served.

Links are http or https addresses with a real host (:func:`link_problem`, for the form, the API and
the command alike). Files are checked by extension, size and first bytes (a renamed executable is
not a PDF), stored under the upload folder with random names, and only ever served through a view
that asks permissions.py about the item they belong to.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _
from werkzeug.datastructures import FileStorage

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


@dataclass
class CheckedFile:
    """An upload that passed the checks, held in memory until it is stored."""

    filename: str
    content_type: str
    data: bytes


def upload_dir() -> Path:
    """The folder that holds evidence files (TRACKER_UPLOAD_DIR, default instance/uploads)."""
    return Path(current_app.config["TRACKER_UPLOAD_DIR"])


def check(upload: FileStorage) -> CheckedFile:
    """Read one upload and check its name, size and content; raise EvidenceError if refused."""
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
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise EvidenceError(_("%(name)s: the file is larger than %(mb)d MB.", name=name, mb=limit // 2**20))
    if not data:
        raise EvidenceError(_("%(name)s: the file is empty.", name=name))
    content_type, signatures = ALLOWED[extension]
    if signatures is None:
        if b"\x00" in data[:8192]:
            raise EvidenceError(_("%(name)s: the file is not plain text.", name=name))
    elif not data.startswith(signatures):
        raise EvidenceError(_("%(name)s: the content is not a .%(ext)s file.", name=name, ext=extension))
    return CheckedFile(filename=name[:255], content_type=content_type, data=data)


def store(checked: CheckedFile) -> str:
    """Write a checked file under a new random name; returns that name."""
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stored_name = secrets.token_hex(16)
    (folder / stored_name).write_bytes(checked.data)
    return stored_name


def path_of(stored_name: str) -> Path:
    """Where a stored file lives on disk."""
    return upload_dir() / stored_name


def discard(stored_names: list[str]) -> None:
    """Remove files written for a change that was then not saved."""
    for stored_name in stored_names:
        path_of(stored_name).unlink(missing_ok=True)
