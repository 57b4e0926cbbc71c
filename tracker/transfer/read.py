"""Reading an uploaded CSV or XLSX file into a Table: its real type, size, encoding, header and rows.

This is the first step of an import (see :mod:`tracker.transfer.plan`): :func:`read_table` checks the
file's real type (by its first bytes, not its name), its size and its number of rows, decodes it and
returns its rows keyed by column name (:mod:`tracker.transfer.columns`).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

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


@dataclass
class Row:
    """One row of data: its number as a spreadsheet shows it (the header is row 1), and its cells."""

    number: int
    cells: dict[str, Any]


@dataclass
class Table:
    """A file read and checked: the known columns it has, its rows, and warnings about it."""

    filename: str
    kind: str
    columns: list[str]
    rows: list[Row]
    warnings: list[str] = field(default_factory=list)


def clean_filename(name: str | None) -> str:
    """The last part of an uploaded file's name, without control characters, at most 200 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    return _CONTROL_OR_BREAK.sub("", base).strip()[:200] or "upload"


def read_table(data: bytes, filename: str, *, max_bytes: int, max_rows: int) -> Table:
    """Check and read an uploaded CSV or XLSX file; raise ImportFileError when it cannot be used."""
    name = clean_filename(filename)
    if len(data) > max_bytes:
        raise ImportFileError(
            _(
                "%(name)s is larger than %(size)s: split it into smaller files.",
                name=name,
                size=_mb(max_bytes),
            ),
            413,
        )
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise ImportFileError(_("%(name)s is empty.", name=name))
    kind = _kind_of(data, name, max_bytes)
    rows = _xlsx_rows(data, name) if kind == "xlsx" else _csv_rows(_decode(data, name))
    try:
        return _tabulate(rows, name, kind, max_rows)
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
        rows.close()


def _mb(size: int) -> str:
    return f"{size / 2**20:g} MB"


def _kind_of(data: bytes, name: str, max_bytes: int) -> str:
    """'csv' or 'xlsx', from the name and the first bytes, which must agree."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension == "xlsx":
        if not data.startswith(_ZIP):
            raise ImportFileError(_("%(name)s is not an Excel workbook (.xlsx).", name=name))
        _check_workbook(data, name, max_bytes)
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


def _check_workbook(data: bytes, name: str, max_bytes: int) -> None:
    """A real XLSX: a ZIP archive holding xl/workbook.xml that does not expand out of proportion."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
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


def _decode(data: bytes, name: str) -> str:
    """The text of a CSV file: UTF-8 (with or without a BOM), UTF-16 with a BOM, else Windows-1252/Latin-1."""
    try:
        if data.startswith(codecs.BOM_UTF8):
            text = data[len(codecs.BOM_UTF8) :].decode("utf-8")
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                try:
                    text = data.decode("cp1252")
                except UnicodeDecodeError:
                    text = data.decode("latin-1")
    except UnicodeDecodeError:
        raise ImportFileError(_("%(name)s is not a text (CSV) file.", name=name)) from None
    if _BINARY.search(text):
        raise ImportFileError(_("%(name)s is not a text (CSV) file.", name=name))
    return text


def _delimiter(text: str) -> str:
    """The delimiter (comma, semicolon or tab) that splits the first line into the most known columns."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    best, best_score = ",", (-1, -1)
    for candidate in (",", ";", "\t"):
        cells = next(csv.reader([first], delimiter=candidate), [])
        known = sum(1 for c in cells if _header(c) in COLUMNS or _header(c) in EXPORT_EXTRAS)
        score = (known, len(cells))
        if score > best_score:
            best, best_score = candidate, score
    return best


def _csv_rows(text: str) -> Iterator[list[Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    for cells in reader:
        yield [_formula_or_text(c) for c in cells]


def _formula_or_text(value: str) -> Any:
    """A CSV cell: a formula if it starts with '=', else its text."""
    if value.lstrip().startswith("="):
        return Formula(value)
    return value


def _xlsx_rows(data: bytes, name: str) -> Iterator[list[Any]]:
    """The rows of the first worksheet, cells as values; formula cells as Formula."""
    from openpyxl import load_workbook  # imported here: only imports need it

    with warnings.catch_warnings():  # openpyxl warns about features it skips; they do not matter here
        warnings.simplefilter("ignore")
        try:
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
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


def _header_aliases() -> dict[str, str]:
    """Normalised label in every interface language → column identifier."""
    aliases = {}
    for language in current_app.config["TRACKER_LANGUAGES"]:
        with force_locale(language):
            for column, label in COLUMN_LABELS.items():
                aliases.setdefault(_normal(str(label)), column)
    return aliases


def _header(value: Any) -> str:
    text = "" if value is None or isinstance(value, Formula) else str(value)
    name = _normal(text)
    return name if name in COLUMNS or name in EXPORT_EXTRAS else _header_aliases().get(name, name)


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _tabulate(raw_rows: Iterator[list[Any]], name: str, kind: str, max_rows: int) -> Table:
    """Turn raw rows into a Table: the first non-blank row names the columns."""
    index: dict[str, int] | None = None
    table = Table(filename=name, kind=kind, columns=[], rows=[])
    for number, cells in enumerate(raw_rows, start=1):
        if _blank(cells):
            continue
        if index is None:
            index = _read_header(cells, table)
            continue
        if len(table.rows) >= max_rows:
            raise ImportFileError(
                _(
                    "%(name)s has more than %(num)s rows: split it into smaller files.",
                    name=name,
                    num=f"{max_rows:,}",
                ),
                413,
            )
        values = {column: _cell(cells[i]) if i < len(cells) else None for column, i in index.items()}
        table.rows.append(Row(number, values))
    if index is None:
        raise ImportFileError(_("%(name)s is empty.", name=name))
    if not table.rows:
        raise ImportFileError(_("%(name)s has column names but no rows to import.", name=name))
    return table


def _read_header(cells: list[Any], table: Table) -> dict[str, int]:
    names = [_header(c) for c in cells]
    seen: set[str] = set()
    for n in names:
        if n and n in seen:
            raise ImportFileError(_("The column %(column)s appears twice.", column=n))
        seen.add(n)
    if "recommendation_code" not in seen:
        raise ImportFileError(
            _(
                "The first row must name the columns, and recommendation_code is not among them. "
                "Download the template to see them."
            )
        )
    unknown = [n for n in names if n and n not in COLUMNS and n not in EXPORT_EXTRAS]
    if unknown:
        table.warnings.append(
            ngettext(
                "This column is not used and was ignored: %(columns)s.",
                "These columns are not used and were ignored: %(columns)s.",
                len(unknown),
                columns=", ".join(unknown),
            )
        )
    index = {n: i for i, n in enumerate(names) if n in COLUMNS}
    table.columns = [c for c in COLUMNS if c in index]
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
