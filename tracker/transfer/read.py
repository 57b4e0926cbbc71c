"""Reading an uploaded CSV or XLSX file into a Table: its real type, size, encoding, header and rows.

This is the first step of an import (see :mod:`tracker.transfer.plan`): :func:`open_table` checks the
file's real type (by its first bytes, not its name), its size and its encoding, reads its header and
returns its rows keyed by column name (:mod:`tracker.transfer.columns`) one at a time, as they are
read from the file: a CSV file is decoded as it is read, an XLSX file through openpyxl's read-only
mode, so that a file of 200,000 rows is never held in memory whole (its rows are, once typed, by
the planner). :func:`read_table` reads every row at once, for small files.

A CSV cell that starts with ``=`` is a formula and is refused, never evaluated; so is a formula cell of an
XLSX file (text cells of an XLSX file are text, whatever they start with). One leading ``'`` is removed
from every cell: exports put one before text that starts with = + - @ (or their full-width forms),
tab, CR or ``'`` (against CSV injection, :func:`tracker.transfer.export.neutralise`), so an export
imports back unchanged.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

from flask import current_app
from flask_babel import force_locale, ngettext
from flask_babel import gettext as _

from tracker.transfer.columns import COLUMN_LABELS, COLUMNS, EXPORT_EXTRAS

log = logging.getLogger(__name__)


_CONTROL_OR_BREAK = re.compile(r"[\x00-\x1f\x7f]")
#: Bytes no text file holds (tab, line feed, form feed, carriage return and Ctrl-Z are allowed).
_BINARY = re.compile(r"[\x00-\x08\x0e-\x19\x1b-\x1f]")
_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: A workbook may expand to this many times the upload limit (a "zip bomb" expands far more).
_XLSX_EXPANSION = 20
#: Bytes read at a time when a CSV file's encoding is checked.
_BLOCK = 1 << 20


class ImportFileError(ValueError):
    """The file as a whole is refused (type, size, encoding, layout); ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Formula:
    """A cell holding a formula: refused, never evaluated."""

    text: str


@dataclass(slots=True)
class Row:
    """One row of data: its number as a spreadsheet shows it (the header is row 1), and its cells."""

    number: int
    cells: dict[str, Any]


@dataclass(frozen=True)
class Layout:
    """The columns one kind of import reads: their identifiers, their labels (read in every interface
    language too), the column the header must name, and read-only columns it ignores silently."""

    columns: tuple[str, ...]
    labels: Mapping[str, Any]
    required: str
    extras: tuple[str, ...] = ()


#: The import of recommendations and actions (tracker/transfer/columns.py).
ACTIONS = Layout(COLUMNS, COLUMN_LABELS, "recommendation_code", EXPORT_EXTRAS)


@dataclass
class Table:
    """A file read and checked: the known columns it has, its rows, and warnings about it.

    ``rows`` is a list (:func:`read_table`) or an iterator over the file, read once
    (:func:`open_table`); iterating it may raise ImportFileError (too many rows, a damaged file).
    """

    filename: str
    kind: str
    columns: list[str]
    rows: Iterable[Row]
    warnings: list[str] = field(default_factory=list)


def clean_filename(name: str | None) -> str:
    """The last part of an uploaded file's name, without control characters, at most 200 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    return _CONTROL_OR_BREAK.sub("", base).strip()[:200] or "upload"


def read_table(
    source: bytes | IO[bytes], filename: str, *, max_bytes: int, max_rows: int, layout: Layout = ACTIONS
) -> Table:
    """Check and read a whole CSV or XLSX file (every row in a list); raise ImportFileError when it
    cannot be used."""
    table = open_table(source, filename, max_bytes=max_bytes, max_rows=max_rows, layout=layout)
    table.rows = list(table.rows)
    return table


def open_table(
    source: bytes | IO[bytes], filename: str, *, max_bytes: int, max_rows: int, layout: Layout = ACTIONS
) -> Table:
    """Check a CSV or XLSX file (``source``: its bytes, or a seekable binary file) and read its header
    (the columns of ``layout``);
    its rows are read from the file as ``table.rows`` is iterated, once. Raises ImportFileError when
    the file cannot be used (now, or while its rows are read: too many, damaged)."""
    name = clean_filename(filename)
    file = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    file.seek(0, io.SEEK_END)
    if file.tell() > max_bytes:
        raise ImportFileError(
            _(
                "%(name)s is larger than %(size)s: split it into smaller files.",
                name=name,
                size=_mb(max_bytes),
            ),
            413,
        )
    file.seek(0)
    if _blank_file(file):
        raise ImportFileError(_("%(name)s is empty.", name=name))
    file.seek(0)
    kind = _kind_of(file.read(8), name, file, max_bytes)
    raw = _xlsx_rows(file, name) if kind == "xlsx" else _csv_rows(file, name, layout)
    table = Table(filename=name, kind=kind, columns=[], rows=[])
    rows = _guarded(_tabulate(raw, table, max_rows, layout), raw, name)
    next(rows)  # reads the header (or raises): the table's columns and warnings are known
    table.rows = rows
    return table


def count_rows(table: Table, most: int) -> int:
    """Read ``table``'s rows (from :func:`open_table`) until more than ``most``; how many were read.

    Checks the file as far as it reads it (ImportFileError); closes the reader either way.
    """
    rows = iter(table.rows)
    count = 0
    try:
        for _row in rows:
            count += 1
            if count > most:
                break
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    return count


def _guarded(rows: Iterator[Row | None], raw: Iterator[list[Any]], name: str) -> Iterator[Row | None]:
    """``rows``, with what a damaged file raises turned into ImportFileError; closes the file's reader."""
    try:
        yield from rows
    except ImportFileError:
        raise
    except csv.Error as exc:
        raise ImportFileError(
            _("%(name)s is not a well-formed CSV file (%(error)s).", name=name, error=exc)
        ) from None
    except Exception:  # a damaged workbook raises anything from zipfile, XML parsers or openpyxl
        log.info("unreadable import file %s", name, exc_info=True)
        raise ImportFileError(_("%(name)s could not be read as an Excel workbook.", name=name)) from None
    finally:
        raw.close()


def _blank_file(file: IO[bytes]) -> bool:
    """True if the file holds nothing but spaces, line breaks and a byte order mark."""
    while block := file.read(_BLOCK):
        if block.strip(b" \t\r\n\xef\xbb\xbf"):
            return False
    return True


def _mb(size: int) -> str:
    return f"{size / 2**20:g} MB"


def _kind_of(data: bytes, name: str, file: IO[bytes], max_bytes: int) -> str:
    """'csv' or 'xlsx', from the name and the first bytes (``data``), which must agree."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension == "xlsx":
        if not data.startswith(_ZIP):
            raise ImportFileError(_("%(name)s is not an Excel workbook (.xlsx).", name=name))
        _check_workbook(file, name, max_bytes)
        return "xlsx"
    if extension in ("csv", "txt", "tsv"):
        if data.startswith((_ZIP, _OLE)):
            raise ImportFileError(
                _(
                    "%(name)s is a spreadsheet, not a CSV file: save it as CSV, or upload it as .xlsx.",
                    name=name,
                )
            )
        return "csv"
    if extension == "xls" or data.startswith(_OLE):
        raise ImportFileError(_("Excel 97–2003 files (.xls) cannot be read: save the file as .xlsx or CSV."))
    raise ImportFileError(_("%(name)s: upload a .csv or .xlsx file.", name=name))


def _check_workbook(file: IO[bytes], name: str, max_bytes: int) -> None:
    """A real XLSX: a ZIP archive holding xl/workbook.xml that does not expand out of proportion."""
    try:
        file.seek(0)
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ImportFileError(_("%(name)s is not an Excel workbook (.xlsx).", name=name)) from None
    if "xl/workbook.xml" not in {i.filename for i in infos}:
        raise ImportFileError(_("%(name)s is not an Excel workbook (.xlsx).", name=name))
    if sum(i.file_size for i in infos) > _XLSX_EXPANSION * max_bytes:
        raise ImportFileError(
            _(
                "%(name)s expands to more than %(size)s: it cannot be read.",
                name=name,
                size=_mb(_XLSX_EXPANSION * max_bytes),
            ),
            413,
        )


def _encoding(file: IO[bytes], name: str) -> str:
    """The encoding of a CSV file: UTF-8 (with or without a BOM), UTF-16 with a BOM, else
    Windows-1252/Latin-1: the first that decodes the whole file, read a block at a time."""
    file.seek(0)
    head = file.read(4)
    if head.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "cp1252", "latin-1"]
    for encoding in candidates:
        decoded = _decodes(file, encoding)
        if decoded is None:
            continue
        if decoded:
            raise ImportFileError(_("%(name)s is not a text (CSV) file.", name=name))
        return encoding
    raise ImportFileError(_("%(name)s is not a text (CSV) file.", name=name))


def _decodes(file: IO[bytes], encoding: str) -> bool | None:
    """None if the file does not decode; else whether its text holds bytes no text file holds."""
    decoder = codecs.getincrementaldecoder(encoding)()
    binary = False
    file.seek(0)
    try:
        while True:
            block = file.read(_BLOCK)
            text = decoder.decode(block, final=not block)
            binary = binary or bool(_BINARY.search(text))
            if not block:
                return binary
    except UnicodeDecodeError:
        return None


def _text(file: IO[bytes], encoding: str) -> io.TextIOWrapper:
    """The file as text from its start (detach it after use: closing it would close the file)."""
    file.seek(0)
    return io.TextIOWrapper(file, encoding=encoding, newline="")


def _delimiter(first: str, layout: Layout) -> str:
    """The delimiter (comma, semicolon or tab) that splits the first line into the most known columns."""
    best, best_score = ",", (-1, -1)
    for candidate in (",", ";", "\t"):
        cells = next(csv.reader([first], delimiter=candidate), [])
        known = sum(1 for c in cells if _header(c, layout) in layout.columns + layout.extras)
        score = (known, len(cells))
        if score > best_score:
            best, best_score = candidate, score
    return best


def _first_line(file: IO[bytes], encoding: str) -> str:
    text = _text(file, encoding)
    try:
        for line in text:
            if line.strip():
                return line.rstrip("\r\n")
        return ""
    finally:
        text.detach()


def _csv_rows(file: IO[bytes], name: str, layout: Layout) -> Iterator[list[Any]]:
    """The rows of a CSV file, decoded as they are read; cells as text, or Formula."""
    encoding = _encoding(file, name)
    delimiter = _delimiter(_first_line(file, encoding), layout)
    text = _text(file, encoding)
    try:
        for cells in csv.reader(text, delimiter=delimiter):
            yield [_formula_or_text(c) for c in cells]
    finally:
        text.detach()


def _formula_or_text(value: str) -> Any:
    """A CSV cell: a formula if it starts with '=', else its text."""
    if "=" in value and value.lstrip().startswith("="):
        return Formula(value)
    return value


def _xlsx_rows(file: IO[bytes], name: str) -> Iterator[list[Any]]:
    """The rows of the first worksheet, read as they come (read-only mode); formula cells as Formula."""
    from openpyxl import load_workbook  # imported here: only imports need it

    with warnings.catch_warnings():  # openpyxl warns about features it skips; they do not matter here
        warnings.simplefilter("ignore")
        try:
            file.seek(0)
            workbook = load_workbook(file, read_only=True, data_only=False)
        except Exception:
            log.info("unreadable workbook %s", name, exc_info=True)
            raise ImportFileError(_("%(name)s could not be read as an Excel workbook.", name=name)) from None
    try:
        if not workbook.worksheets:
            raise ImportFileError(_("%(name)s has no worksheet.", name=name))
        for row in workbook.worksheets[0].iter_rows():
            yield [_xlsx_value(cell) for cell in row]
    finally:
        workbook.close()


def _xlsx_value(cell: Any) -> Any:
    if getattr(cell, "data_type", None) == "f":
        return Formula(str(cell.value))
    value = cell.value
    if isinstance(value, str) and value.startswith("="):
        return "'" + value  # text typed as '=… in a spreadsheet: keep it as text
    return value


def _normal(text: str) -> str:
    return re.sub(r"[\s-]+", "_", text.replace("\ufeff", "").strip().lower())


def _header_aliases(layout: Layout) -> dict[str, str]:
    """Normalised label in every interface language → column identifier."""
    aliases = {}
    for language in current_app.config["TRACKER_LANGUAGES"]:
        with force_locale(language):
            for column, label in layout.labels.items():
                aliases.setdefault(_normal(str(label)), column)
    return aliases


def _header(value: Any, layout: Layout) -> str:
    text = "" if value is None or isinstance(value, Formula) else str(value)
    name = _normal(text)
    known = name in layout.columns or name in layout.extras
    return name if known else _header_aliases(layout).get(name, name)


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _tabulate(
    raw_rows: Iterator[list[Any]], table: Table, max_rows: int, layout: Layout
) -> Iterator[Row | None]:
    """The rows of data, after a None once the first non-blank row has named the columns."""
    name = table.filename
    index: dict[str, int] | None = None
    count = 0
    for number, cells in enumerate(raw_rows, start=1):
        if _blank(cells):
            continue
        if index is None:
            index = _read_header(cells, table, layout)
            yield None
            continue
        if count >= max_rows:
            raise ImportFileError(
                _(
                    "%(name)s has more than %(num)s rows: split it into smaller files.",
                    name=name,
                    num=f"{max_rows:,}",
                ),
                413,
            )
        count += 1
        yield Row(
            number, {column: _cell(cells[i]) if i < len(cells) else None for column, i in index.items()}
        )
    if index is None:
        raise ImportFileError(_("%(name)s is empty.", name=name))
    if not count:
        raise ImportFileError(_("%(name)s has column names but no rows to import.", name=name))


def _read_header(cells: list[Any], table: Table, layout: Layout) -> dict[str, int]:
    names = [_header(c, layout) for c in cells]
    seen: set[str] = set()
    for n in names:
        if n and n in seen:
            raise ImportFileError(_("The column %(column)s appears twice.", column=n))
        seen.add(n)
    if layout.required not in seen:
        raise ImportFileError(
            _(
                "The first row must name the columns, and %(column)s is not among them. "
                "Download the template to see them.",
                column=layout.required,
            )
        )
    unknown = [n for n in names if n and n not in layout.columns and n not in layout.extras]
    if unknown:
        table.warnings.append(
            ngettext(
                "This column is not used and was ignored: %(columns)s.",
                "These columns are not used and were ignored: %(columns)s.",
                len(unknown),
                columns=", ".join(unknown),
            )
        )
    index = {n: i for i, n in enumerate(names) if n in layout.columns}
    table.columns = [c for c in layout.columns if c in index]
    return index


def _cell(value: Any) -> Any:
    """A cell's value: None when empty; one leading ' removed from text (the export's escape)."""
    if value is None or isinstance(value, Formula | bool | int | float | date):
        return value
    text = str(value)
    if text.startswith("'"):
        text = text[1:]
    text = text.strip()
    return text or None
