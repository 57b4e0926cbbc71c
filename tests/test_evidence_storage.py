"""Evidence files and waiting import files kept in the database: uploaded on one web host, served
and confirmed by another (each host an app of its own, with its own folders, on the same
database); downloads streamed a piece at a time in bounded memory; a refused update keeps no byte."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import EnvironBuilder, FlaskClient
from openpyxl import Workbook

from tests.conftest import csrf_token, login
from tracker import create_app, files
from tracker.extensions import db
from tracker.jobs import INPUT, read_chunks
from tracker.models import (
    ActionItem,
    ActionUpdate,
    BackgroundJob,
    EvidenceFile,
    FileChunk,
    ImportUpload,
    Recommendation,
    StoredFile,
)
from tracker.transfer import columns

MB = 2**20


@pytest.fixture
def hosts(app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, Flask]]:
    """Two web hosts on the one database, each with an upload folder of its own (left empty)."""
    monkeypatch.setitem(app.config, "TRACKER_UPLOAD_DIR", str(tmp_path / "host1-uploads"))
    second = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "TRACKER_UPLOAD_DIR": str(tmp_path / "host2-uploads"),
            "TRACKER_MAIL_DIR": str(tmp_path / "host2-mail"),
        }
    )
    yield app, second
    with second.app_context():
        db.session.remove()
        db.engine.dispose()
    for folder in ("host1-uploads", "host2-uploads"):  # nothing was written to disk on either host
        assert not (tmp_path / folder).exists() or not os.listdir(tmp_path / folder)


def _signed_in(host: Flask, email: str) -> FlaskClient:
    client = host.test_client()
    assert login(client, email).status_code == 302
    return client


def _multipart(client: FlaskClient, path: str, data: dict):
    """A multipart POST whose body is closed here (the test client leaves a large one's temp file open)."""
    builder = EnvironBuilder(
        client.application, path, method="POST", data=data, content_type="multipart/form-data"
    )
    environ = builder.get_environ()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()


def _update(client: FlaskClient, item_id: int, attachments: list[tuple[bytes, str]], note: str = "Proof."):
    page = client.get(f"/actions/{item_id}")
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page.text).group(1)
    data = {
        "csrf_token": csrf_token(page.text),
        "version": version,
        "status": "",
        "note": note,
        "files": [(io.BytesIO(content), name) for content, name in attachments],
    }
    return _multipart(client, f"/actions/{item_id}", data)


def _pdf(size: int) -> bytes:
    head = b"%PDF-1.7\n"
    body = hashlib.sha256(b"seed").digest() * (size // 32 + 1)  # not one repeated byte: real pieces
    return head + body[: size - len(head)]


def _count(model: type) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def _evidence(item_id: int) -> list[EvidenceFile]:
    query = sa.select(EvidenceFile).where(EvidenceFile.action_item_id == item_id).order_by(EvidenceFile.id)
    return list(db.session.scalars(query))


def test_a_file_uploaded_on_one_host_is_served_by_another(hosts, world):
    first, second = hosts
    item_id = world.items["SG"]
    pdf, text = _pdf(2 * MB + 123), "Résumé, line one\nline two\n".encode()
    saved = _update(
        _signed_in(first, world.users["focal_sg"]),
        item_id,
        [(pdf, "rapport final é.pdf"), (text, "notes.txt")],
    )
    assert saved.status_code == 302, saved.text
    with first.app_context():
        stored = _evidence(item_id)
        assert [(f.filename, f.stored_name, f.size) for f in stored] == [
            ("rapport final é.pdf", None, len(pdf)),
            ("notes.txt", None, len(text)),
        ]
        assert [files.size(f.stored_file_id) for f in stored] == [len(pdf), len(text)]
        # Pieces of at most 1 MB, in order.
        pieces = db.session.execute(
            sa.select(FileChunk.seq, sa.func.length(FileChunk.data))
            .where(FileChunk.file_id == stored[0].stored_file_id)
            .order_by(FileChunk.seq)
        ).all()
        assert [tuple(p) for p in pieces] == [(0, MB), (1, MB), (2, 123)]
        pdf_id, text_id = (f.id for f in stored)

    other = _signed_in(second, world.users["focal_sg"])
    with other.get(f"/evidence/{pdf_id}") as download:
        assert download.status_code == 200 and download.is_streamed
        assert download.data == pdf
        assert download.content_length == len(pdf)
        assert download.headers["Content-Type"] == "application/pdf"
        assert download.headers["Content-Disposition"] == (
            "attachment; filename=\"rapport final e.pdf\"; filename*=UTF-8''rapport%20final%20%C3%A9.pdf"
        )
        assert download.headers["Cache-Control"] == "private, no-store"
        assert download.headers["X-Content-Type-Options"] == "nosniff"
    with other.get(f"/evidence/{text_id}") as download:
        assert download.data == text and download.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert download.headers["Content-Disposition"] == "attachment; filename=notes.txt"
    # The reviewer on the second host sees it too; another office's focal point, on either host, does not.
    assert _signed_in(second, world.users["reviewer"]).get(f"/evidence/{pdf_id}").data == pdf
    for host in (first, second):
        stranger = _signed_in(host, world.users["focal_my"])
        assert stranger.get(f"/evidence/{pdf_id}").status_code == 404
        assert stranger.get(f"/evidence/{text_id}").status_code == 404
    assert second.test_client().get(f"/evidence/{pdf_id}").status_code == 302  # signed out: to sign in


def test_a_download_streams_in_bounded_memory(hosts, world):
    first, second = hosts
    item_id = world.items["SG"]
    size = first.config["TRACKER_MAX_UPLOAD_BYTES"]  # 10 MB: the largest file accepted
    content = _pdf(size)
    expected = hashlib.sha256(content).hexdigest()
    assert (
        _update(_signed_in(first, world.users["focal_sg"]), item_id, [(content, "big.pdf")]).status_code
        == 302
    )
    del content
    with first.app_context():
        file_id = _evidence(item_id)[0].id
    client = _signed_in(second, world.users["focal_sg"])
    client.get("/")  # warm up: the first request of an app compiles and caches a good deal
    tracemalloc.start()
    try:
        digest, received = hashlib.sha256(), 0
        with client.get(f"/evidence/{file_id}") as response:
            assert response.status_code == 200 and response.is_streamed
            assert response.content_length == size
            for piece in response.response:
                assert len(piece) <= MB
                digest.update(piece)
                received += len(piece)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (received, digest.hexdigest()) == (size, expected)
    print(f"download of {size / MB:g} MB: peak traced memory {peak / MB:.2f} MB")
    assert peak < 4 * MB, f"{peak / MB:.1f} MB held for a {size / MB:g} MB file"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((b"MZ\x90\x00" + b"x" * 5000, "tool.pdf"), "the content is not a .pdf file"),
        ((b"plain\x00text", "data.csv"), "the file is not plain text"),
        ((_pdf(10 * MB + 1), "huge.pdf"), "larger than 10 MB"),
        ((b"", "empty.txt"), "the file is empty"),
    ],
    ids=["signature", "nul", "size", "empty"],
)
def test_a_refused_file_writes_no_file_of_the_update(app, world, login_as, count_queries, bad, message):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    # Good files before and after the refused one: none of them is written either, not even
    # for a rollback to undo: every file is checked before any is stored.
    attachments = [(_pdf(3 * MB), "first.pdf"), bad, (b"fine\n", "last.txt")]
    with count_queries() as statements:
        response = _update(focal, item_id, attachments)
    assert response.status_code == 422 and message in response.text
    assert not [s for s in statements if re.match(r"\s*INSERT INTO (stored_file|file_chunk)", s)]
    with app.app_context():
        assert [_count(m) for m in (EvidenceFile, StoredFile, FileChunk)] == [0, 0, 0]
        assert db.session.get(ActionItem, item_id).version == 1
        assert _count(ActionUpdate) == 2  # the two "agreed" rows of the world


def test_a_failed_commit_keeps_no_file(app, world, login_as, monkeypatch):
    """The files are written in the update's transaction: when it fails, they go with it."""
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    from tracker.actions import commands

    original = commands.record_update

    def then_fail(*args, **kwargs):
        update = original(*args, **kwargs)
        db.session.execute(sa.text("INSERT INTO data_version (name, version) VALUES ('programme', 1)"))
        return update  # not reached: the row exists, so the insert fails after the files were written

    monkeypatch.setattr(commands, "record_update", then_fail)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    response = _update(focal, item_id, [(_pdf(MB + 5), "a.pdf")])
    assert response.status_code == 500
    with app.app_context():
        assert [_count(m) for m in (EvidenceFile, StoredFile, FileChunk)] == [0, 0, 0]


def test_a_file_from_before_is_served_from_the_upload_folder_until_moved(
    app, world, login_as, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "TRACKER_UPLOAD_DIR", str(tmp_path))
    (tmp_path / "0123abcd").write_bytes(b"%PDF-1.4 old\n")
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        kept, lost = (
            EvidenceFile(
                update=item.updates[0],
                action_item=item,
                filename=name,
                stored_name=stored_name,
                content_type="application/pdf",
                size=13,
            )
            for name, stored_name in (("old.pdf", "0123abcd"), ("lost.pdf", "deadbeef"))
        )
        db.session.add_all([kept, lost])
        db.session.commit()
        kept_id, lost_id = kept.id, lost.id
    focal = login_as(world.users["focal_sg"])
    with focal.get(f"/evidence/{kept_id}") as download:
        assert download.status_code == 200 and download.data == b"%PDF-1.4 old\n"
        assert download.content_length == 13 and download.headers["X-Content-Type-Options"] == "nosniff"
        assert download.headers["Content-Disposition"] == "attachment; filename=old.pdf"
    assert focal.get(f"/evidence/{lost_id}").status_code == 404  # its file is gone from the folder
    assert login_as(world.users["focal_my"]).get(f"/evidence/{kept_id}").status_code == 404


# --- waiting import files ------------------------------------------------------------------


def _import_csv(codes: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns.COLUMNS)
    for code in codes:
        row = {
            "recommendation_code": code,
            "recommendation_title": f"Title of {code}",
            "recommendation_text": f"Text of {code}",
            "theme": "Digital",
            "source": "Dialogue",
        }
        writer.writerow([row.get(c, "") for c in columns.COLUMNS])
    return out.getvalue().encode()


def _import_xlsx(codes: list[str]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(list(columns.COLUMNS))
    for code in codes:
        row = {
            "recommendation_code": code,
            "recommendation_title": f"Title of {code}",
            "recommendation_text": f"Text of {code}",
            "theme": "Digital",
            "source": "Dialogue",
        }
        sheet.append([row.get(c, "") for c in columns.COLUMNS])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _upload_import(client: FlaskClient, content: bytes, name: str):
    token = csrf_token(client.get("/import").text)
    return _multipart(client, "/import", {"csrf_token": token, "file": (io.BytesIO(content), name)})


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_an_import_previewed_on_one_host_is_confirmed_on_another(hosts, world, kind):
    first, second = hosts
    content = _import_csv(["R-2", "R-3"]) if kind == "csv" else _import_xlsx(["R-2", "R-3"])
    uploaded = _upload_import(_signed_in(first, world.users["reviewer"]), content, f"plan.{kind}")
    assert uploaded.status_code == 303, uploaded.text
    url = uploaded.headers["Location"]
    token = url.rsplit("/", 1)[-1]
    with first.app_context():
        waiting = db.session.get(ImportUpload, token)
        assert waiting.filename == f"plan.{kind}"
        assert b"".join(files.read(waiting.stored_file_id)) == content
    other = _signed_in(second, world.users["reviewer"])
    page = other.get(url)
    assert page.status_code == 200 and "R-3" in page.text
    assert _signed_in(second, world.users["admin"]).get(url).status_code == 404  # the uploader's only
    confirmed = other.post(url, data={"csrf_token": csrf_token(page.text)})
    assert confirmed.status_code == 303, confirmed.text
    with first.app_context():
        codes = set(db.session.scalars(sa.select(Recommendation.code)))
        assert codes == {"R-1", "R-2", "R-3"}
        # Confirmed: the waiting file is gone, its content with it.
        assert [_count(m) for m in (ImportUpload, StoredFile, FileChunk)] == [0, 0, 0]
    assert other.get(url).status_code == 404


def test_a_refused_import_file_is_not_kept(hosts, world, monkeypatch):
    first, _second = hosts
    client = _signed_in(first, world.users["reviewer"])
    monkeypatch.setitem(first.config, "TRACKER_IMPORT_MAX_BYTES", 1000)
    big = _import_csv([f"R-{i}" for i in range(2, 40)])
    response = _upload_import(client, big, "big.csv")
    assert response.status_code == 413 and "big.csv is larger than" in response.text
    response = _upload_import(client, b"recommendation_code\nR-\x002\n", "nul.csv")
    assert response.status_code == 422
    with first.app_context():
        assert [_count(m) for m in (ImportUpload, StoredFile, FileChunk)] == [0, 0, 0]


def test_a_large_import_goes_to_a_job_with_its_file(hosts, world, monkeypatch):
    first, _second = hosts
    monkeypatch.setitem(first.config, "TRACKER_IMPORT_INLINE_ROWS", 2)
    content = _import_csv(["R-2", "R-3", "R-4"])
    response = _upload_import(_signed_in(first, world.users["reviewer"]), content, "plan.csv")
    assert response.status_code == 303 and "/import/jobs/" in response.headers["Location"]
    with first.app_context():
        job = db.session.scalars(sa.select(BackgroundJob)).one()
        assert b"".join(read_chunks(job.id, INPUT)) == content  # the job holds its own copy
        assert [_count(m) for m in (ImportUpload, StoredFile, FileChunk)] == [0, 0, 0]


def test_waiting_uploads_expire_after_a_day(app, world, login_as):
    from datetime import UTC, datetime, timedelta

    from tracker.transfer import uploads

    reviewer = login_as(world.users["reviewer"])
    response = _upload_import(reviewer, _import_csv(["R-2"]), "plan.csv")
    url = response.headers["Location"]
    token = url.rsplit("/", 1)[-1]
    with app.app_context():
        now = datetime.now(UTC)
        db.session.execute(
            sa.update(ImportUpload).values(created_at=now - uploads.UPLOAD_MAX_AGE - timedelta(seconds=1))
        )
        db.session.commit()
    assert reviewer.get(url).status_code == 404
    with app.app_context():
        assert uploads.sweep_uploads(datetime.now(UTC)) == 1
        db.session.commit()
        assert [_count(m) for m in (ImportUpload, StoredFile, FileChunk)] == [0, 0, 0]
        assert db.session.get(ImportUpload, token) is None


# --- streams that cannot seek ----------------------------------------------------------------


class _OneWay(io.RawIOBase):
    """A stream read once, front to back (as a socket or a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        piece = self._data.read(min(len(buffer), 100_000))  # short reads, as a socket gives
        buffer[: len(piece)] = piece
        return len(piece)


def test_limits_hold_for_streams_that_cannot_seek(app, count_queries):
    from werkzeug.datastructures import FileStorage

    from tracker.actions import evidence

    limit = app.config["TRACKER_MAX_UPLOAD_BYTES"]
    with app.test_request_context():
        upload = FileStorage(_OneWay(_pdf(limit)), "ok.pdf")
        try:
            checked = evidence.check(upload)
            assert checked.size == limit and checked.stream is upload.stream  # closed with the upload
            stored = evidence.store(checked)
        finally:
            upload.close()  # as the request does with its files
        assert files.size(stored.id) == limit
        pieces = db.session.scalars(
            sa.select(sa.func.length(FileChunk.data)).where(FileChunk.file_id == stored.id)
        ).all()
        assert pieces == [MB] * (limit // MB)  # short reads are joined into whole pieces
        with pytest.raises(evidence.EvidenceError, match="larger than 10 MB"):
            evidence.check(FileStorage(_OneWay(_pdf(limit + 1)), "big.pdf"))
        # files.write: a seekable source over the limit is refused before any write; a one-way
        # one once the limit is passed (the caller rolls back what was written).
        with count_queries() as statements, pytest.raises(files.FileTooLarge):
            files.write(io.BytesIO(b"x" * 11), limit=10)
        assert statements == []
        with pytest.raises(files.FileTooLarge):
            files.write(_OneWay(b"x" * (MB + 11)), limit=MB + 10)
        db.session.rollback()
        assert [_count(m) for m in (StoredFile, FileChunk)] == [0, 0]
