"""Spreadsheets in and out: importing recommendations and action items from CSV or XLSX, exporting
the action list and the dashboard's matrix, and the figures of the printable reports.

An import goes through three steps, each usable alone (the web preview, the confirmation, the CLI):

1. :func:`read_table` checks the file's real type (by its first bytes, not its name), its size and
   its number of rows, decodes it and returns its rows keyed by column name;
2. :func:`plan_import` validates every row against the database and decides, for each
   recommendation and each action, whether it is created, updated or left alone, listing every
   problem with its row and column; it writes nothing;
3. :func:`apply_import` writes a plan without problems and flushes; the caller commits once, so
   that all rows are written or none.

Decisions (see also the README of the feature in the report templates):

- Columns are fixed identifiers (:data:`COLUMNS`; the template uses them). Exports head them with
  labels in the reader's language (:data:`COLUMN_LABELS`), and an import accepts the identifiers or
  the labels of any interface language, so a file exported in any language imports back; case,
  spaces and dashes do not matter. Columns that are not used are ignored, with a warning unless
  they are the read-only columns of an export.
- Recommendations are keyed by code; their source must already exist (matched by its exact title,
  else case-insensitively): an unknown source is a problem, not a new source, because sources carry
  dates and places that an import cannot give.
- Actions are keyed by ``action_id`` when it is given (it must belong to that office and
  recommendation), else by (recommendation, office, action title).
- Import is a bulk tool for admins and reviewers (``Perm.IMPORT_DATA``): it may set any known
  status, progress and deadline, without the workflow's moves. Every change to an action writes a
  history row in the same transaction (author: the importing user; note: "Imported from <file>").
- A CSV cell that starts with ``=`` is a formula and is refused, never evaluated; so is a formula
  cell of an XLSX file (text cells of an XLSX file are text, whatever they start with). One leading
  ``'`` is removed from every cell: exports put one before text that starts with = + - @ tab, CR or
  ``'`` (against CSV injection), so an export imports back unchanged.
- An empty cell, or a column that is absent, leaves the value as it is: a file may carry only the
  columns it changes, and a template filled in part clears nothing. Clearing a description or a
  deputy is done on the action's page, not by import.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import secrets
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import joinedload

from tracker.actions.services import due_soon_clause, overdue_clause, visible_actions
from tracker.dashboard import services as dashboard
from tracker.extensions import db
from tracker.labels import PRIORITY_LABELS, STATUS_LABELS, priority_label, status_label
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    ActionUpdate,
    Office,
    Priority,
    Recommendation,
    Source,
    Status,
    User,
    normalise_email,
)
from tracker.notifications import account
from tracker.offices.services import may_be_assigned
from tracker.permissions import Perm, require

log = logging.getLogger(__name__)

# --- the columns -----------------------------------------------------------------------------

#: What an import reads, in the order of the template and of exports. Fixed English identifiers,
#: never translated, so that a file exported in any language imports back.
COLUMNS: tuple[str, ...] = (
    "recommendation_code",
    "recommendation_title",
    "recommendation_text",
    "theme",
    "priority",
    "source",
    "office_code",
    "action_id",
    "action_title",
    "description",
    "owner_email",
    "deputy_email",
    "deadline",
    "status",
    "progress",
)
#: Read-only columns an export adds after COLUMNS; an import ignores them without a warning.
EXPORT_EXTRAS: tuple[str, ...] = ("office_name", "owner_name", "overdue", "updated_at")
#: What a person reads at the top of an export's columns, in their language. An import reads these
#: in any of the interface's languages, as well as the identifiers, so any export imports back.
COLUMN_LABELS: dict[str, Any] = {
    "recommendation_code": _l("Recommendation code"),
    "recommendation_title": _l("Recommendation title"),
    "recommendation_text": _l("Recommendation text"),
    "theme": _l("Theme"),
    "priority": _l("Priority"),
    "source": _l("Source"),
    "office_code": _l("Office code"),
    "action_id": _l("Action ID"),
    "action_title": _l("Action title"),
    "description": _l("Description"),
    "owner_email": _l("Owner email"),
    "deputy_email": _l("Deputy email"),
    "deadline": _l("Deadline"),
    "status": _l("Status"),
    "progress": _l("Progress"),
    "office_name": _l("Office name"),
    "owner_name": _l("Owner name"),
    "overdue": _l("Overdue"),
    "updated_at": _l("Last updated"),
}


def column_labels(columns: Iterable[str]) -> list[str]:
    """The headers of ``columns`` in the current language."""
    return [str(COLUMN_LABELS[column]) for column in columns]


def _header_aliases() -> dict[str, str]:
    """Normalised label in every interface language → column identifier."""
    aliases = {}
    for language in current_app.config["TRACKER_LANGUAGES"]:
        with force_locale(language):
            for column, label in COLUMN_LABELS.items():
                aliases.setdefault(_normal(str(label)), column)
    return aliases


#: A row with any of these filled describes an action; without, it only defines its recommendation.
ACTION_COLUMNS: tuple[str, ...] = COLUMNS[6:]

#: What each column holds, for the upload page and the template's second sheet.
COLUMN_HELP: dict[str, Any] = {
    "recommendation_code": _l("Required. The recommendation's code, e.g. R-2023-04: letters, digits, . _ -."),
    "recommendation_title": _l("Required for a new recommendation."),
    "recommendation_text": _l("Required for a new recommendation."),
    "theme": _l("Required for a new recommendation."),
    "priority": _l("high, medium or low (default: medium)."),
    "source": _l("Required for a new recommendation: the exact title of an existing source."),
    "office_code": _l("Required on a row with an action: the office's code, e.g. SG."),
    "action_id": _l(
        "Empty for a new action; filled by exports. Else actions are matched by office and title."
    ),
    "action_title": _l("Required for a new action."),
    "description": _l("Optional."),
    "owner_email": _l("Optional: an active focal point or manager of the office."),
    "deputy_email": _l("Optional: like the owner, and someone else."),
    "deadline": _l("Required for a new action: YYYY-MM-DD, or a date cell."),
    "status": _l("not_started (default), in_progress, blocked, completed, verified or cancelled."),
    "progress": _l("A whole number from 0 to 100 (default 0)."),
}

CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"
KINDS = (CREATE, UPDATE, UNCHANGED)

#: Recommendation codes, as the recommendation form accepts them.
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Longest value per column (the form's limits); longer is a problem.
MAX_LENGTHS = {
    "recommendation_code": 32,
    "recommendation_title": 300,
    "recommendation_text": 20000,
    "theme": 100,
    "priority": 50,
    "source": 300,
    "office_code": 8,
    "action_title": 300,
    "description": 5000,
    "owner_email": 254,
    "deputy_email": 254,
    "deadline": 40,
    "status": 100,
    "progress": 10,
    "action_id": 12,
}
#: Columns whose text may hold line breaks and tabs.
MULTILINE = frozenset({"recommendation_text", "description"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_BREAK = re.compile(r"[\x00-\x1f\x7f]")
#: Bytes no text file holds (tab, line feed, form feed, carriage return and Ctrl-Z are allowed).
_BINARY = re.compile(r"[\x00-\x08\x0e-\x19\x1b-\x1f]")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Characters an export puts a ``'`` before (OWASP CSV injection), and ``'`` itself so that an
#: import can always remove one.
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r", "'")
#: Statements with IN lists stay below every database's limit of parameters.
_CHUNK = 5000
_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: A workbook may expand to this many times the upload limit (a "zip bomb" expands far more).
_XLSX_EXPANSION = 20
#: How long an uploaded file waits for its confirmation.
UPLOAD_MAX_AGE = timedelta(days=1)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")


class ImportFileError(ValueError):
    """The file as a whole is refused (type, size, encoding, layout); ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --- reading a file --------------------------------------------------------------------------


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


# --- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why a row cannot be imported: its row number (None for the whole file), column and message."""

    row: int | None
    column: str | None
    message: str


@dataclass
class RecommendationChange:
    """What the import does to one recommendation (defined by one or more rows)."""

    row: int
    code: str
    kind: str
    title: str
    recommendation: Recommendation | None = None
    #: Attribute → new value: every attribute for a creation, the changed ones for an update.
    values: dict[str, Any] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)


@dataclass
class ActionChange:
    """What the import does to one action (one row)."""

    row: int
    code: str
    office: Office
    kind: str
    title: str
    item: ActionItem | None = None
    values: dict[str, Any] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    #: Changes for the history note (title, description, owner, deputy); the rest has columns.
    plan_changes: list[str] = field(default_factory=list)


@dataclass
class ImportPlan:
    """Everything an import would do, and every problem that stops it."""

    filename: str
    rows: int
    recommendations: list[RecommendationChange] = field(default_factory=list)
    actions: list[ActionChange] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, what: str, kind: str) -> int:
        """How many recommendations or actions (``what``) are created, updated or unchanged."""
        return sum(1 for c in getattr(self, what) if c.kind == kind)

    def sample(self, what: str, kind: str, limit: int) -> list[Any]:
        """The first ``limit`` recommendations or actions of one kind, for the preview."""
        return [c for c in getattr(self, what) if c.kind == kind][:limit]

    @property
    def changes_anything(self) -> bool:
        """True if applying the plan would write something."""
        return any(c.kind != UNCHANGED for c in [*self.recommendations, *self.actions])


@dataclass
class _Parsed:
    """One row's values, typed; ``raw`` keeps the text of what is looked up in the database."""

    row: Row
    code: str | None = None
    is_action: bool = False
    rec: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)


def plan_import(table: Table) -> ImportPlan:
    """Validate every row and decide what to create, update or leave alone; writes nothing."""
    return _Planner(table).plan()


def _load_recommendations(codes: Iterable[str]) -> list[Recommendation]:
    """The recommendations with these codes, with their sources (a few statements at most)."""
    found: list[Recommendation] = []
    for chunk in _chunks(sorted(codes)):
        found.extend(
            db.session.scalars(
                sa.select(Recommendation)
                .where(Recommendation.code.in_(chunk))
                .options(joinedload(Recommendation.source))
            )
        )
    return found


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _norm(value: Any) -> Any:
    """Text compared the way an import writes it: line breaks unified, outer spaces trimmed."""
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n").strip()
    return value


def _key(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", text.strip().casefold())


def _choices(labels: Mapping[Any, Any]) -> dict[str, str]:
    """Accepted spellings → stored value: the values, and the labels in English and the current language."""
    accepted: dict[str, str] = {}
    for member, label in labels.items():
        accepted[_key(member.value)] = member.value
        accepted[_key(str(label))] = member.value
    with force_locale("en"):
        for member, label in labels.items():
            accepted[_key(str(label))] = member.value
    return accepted


def _person(user: User | None) -> str:
    return user.name if user is not None else _("nobody")


class _Planner:
    """Validates rows and plans the changes; holds the lookups loaded for the file."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.problems: list[Problem] = []
        self.statuses = _choices(STATUS_LABELS)
        self.priorities = _choices(PRIORITY_LABELS)

    def problem(self, parsed: _Parsed | None, column: str | None, message: str) -> None:
        """Record a problem at a row and column."""
        self.problems.append(Problem(parsed.row.number if parsed else None, column, message))
        if parsed is not None and column:
            parsed.bad.add(column)

    def plan(self) -> ImportPlan:
        """Parse every row, load what they refer to in a few statements, and decide."""
        parsed = [self._parse(row) for row in self.table.rows]
        self._load(parsed)
        plan = ImportPlan(filename=self.table.filename, rows=len(parsed), warnings=list(self.table.warnings))
        plan.recommendations = self._plan_recommendations(parsed)
        plan.actions = self._plan_actions(parsed)
        order = {c: i for i, c in enumerate(COLUMNS)}
        plan.problems = sorted(
            self.problems, key=lambda p: (p.row or 0, order.get(p.column or "", -1), p.message)
        )
        return plan

    # -- typed values of one row --

    def _text(self, p: _Parsed, column: str) -> str | None:
        value = p.row.cells.get(column)
        if value is None:
            return None
        if isinstance(value, Formula):
            self.problem(p, column, _("Formulas are not accepted: type the value itself."))
            return None
        if isinstance(value, datetime):
            text = value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat(" ")
        elif isinstance(value, date):
            text = value.isoformat()
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value).strip()
        if (_CONTROL if column in MULTILINE else _CONTROL_OR_BREAK).search(text):
            self.problem(p, column, _("Contains control characters or line breaks."))
            return None
        limit = MAX_LENGTHS.get(column)
        if limit and len(text) > limit:
            self.problem(p, column, _("Longer than %(num)d characters.", num=limit))
            return None
        return text or None

    def _whole(self, p: _Parsed, column: str, low: int, high: int, message: str) -> int | None:
        value = p.row.cells.get(column)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            text = self._text(p, column)
            if text is None:
                return None
            text = text.removesuffix("%").strip() if column == "progress" else text
            if not re.fullmatch(r"[+-]?\d{1,10}", text):
                self.problem(p, column, message)
                return None
            value = int(text)
        if not low <= value <= high:
            self.problem(p, column, message)
            return None
        return value

    def _date(self, p: _Parsed, column: str) -> date | None:
        value = p.row.cells.get(column)
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        text = self._text(p, column) if isinstance(value, str | Formula) else str(value)
        if text is None:
            return None
        if _DATE.match(text):
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
        self.problem(
            p, column, _("%(value)s is not a date: write it YYYY-MM-DD, e.g. 2026-11-24.", value=text)
        )
        return None

    def _choice(
        self, p: _Parsed, column: str, accepted: dict[str, str], message: Callable[[str], str]
    ) -> str | None:
        text = self._text(p, column)
        if text is None:
            return None
        value = accepted.get(_key(text))
        if value is None:
            self.problem(p, column, message(text))
        return value

    def _parse(self, row: Row) -> _Parsed:
        """Type every cell of a row, recording format problems; look-ups come later."""
        p = _Parsed(row)
        p.is_action = any(row.cells.get(c) is not None for c in ACTION_COLUMNS)
        code = self._text(p, "recommendation_code")
        if code is None:
            if "recommendation_code" not in p.bad:
                self.problem(p, "recommendation_code", _("Give the recommendation's code."))
        elif not CODE_PATTERN.match(code):
            self.problem(
                p, "recommendation_code", _("A code has letters, digits, dots, dashes and underscores.")
            )
        else:
            p.code = code
        for column in ("recommendation_title", "recommendation_text", "theme", "source"):
            value = self._text(p, column)
            if value is not None:
                p.rec[column] = value
        priority = self._choice(
            p,
            "priority",
            self.priorities,
            lambda value: _("Unknown priority %(value)s: use high, medium or low.", value=value),
        )
        if priority is not None:
            p.rec["priority"] = priority
        if not p.is_action:
            return p
        values = p.values
        office_code = self._text(p, "office_code")
        values["office_code"] = office_code.upper() if office_code else None
        values["action_id"] = self._whole(
            p, "action_id", 1, 2**31 - 1, _("action_id must be the number of an existing action, or empty.")
        )
        values["title"] = self._text(p, "action_title")
        values["description"] = self._text(p, "description")
        for column in ("owner_email", "deputy_email"):
            email = self._text(p, column)
            values[column] = normalise_email(email) if email else None
        values["deadline"] = self._date(p, "deadline")
        statuses = ", ".join(s.value for s in Status)
        values["status"] = self._choice(
            p,
            "status",
            self.statuses,
            lambda value: _(
                "Unknown status %(value)s: use one of %(statuses)s.", value=value, statuses=statuses
            ),
        )
        values["progress"] = self._whole(
            p, "progress", 0, 100, _("Progress is a whole number from 0 to 100.")
        )
        return p

    # -- looking things up --

    def _load(self, parsed: list[_Parsed]) -> None:
        """Load the offices, sources, recommendations, people and actions the rows refer to."""
        self.offices = {o.code: o for o in db.session.scalars(sa.select(Office))}
        self.sources = list(db.session.scalars(sa.select(Source)))
        self.recommendations = {r.code: r for r in _load_recommendations({p.code for p in parsed if p.code})}
        emails = sorted(
            {
                p.values[c]
                for p in parsed
                if p.is_action
                for c in ("owner_email", "deputy_email")
                if p.values[c]
            }
        )
        self.users: dict[str, User] = {}
        for chunk in _chunks(emails):
            self.users.update(
                (u.email, u) for u in db.session.scalars(sa.select(User).where(User.email.in_(chunk)))
            )
        ids = sorted({p.values["action_id"] for p in parsed if p.is_action and p.values["action_id"]})
        rec_ids = sorted(r.id for r in self.recommendations.values())
        self.items: dict[int, ActionItem] = {}
        for column, values in ((ActionItem.id, ids), (ActionItem.recommendation_id, rec_ids)):
            for chunk in _chunks(values):
                for item in db.session.scalars(
                    sa.select(ActionItem)
                    .where(column.in_(chunk))
                    .options(
                        joinedload(ActionItem.owner),
                        joinedload(ActionItem.deputy),
                        joinedload(ActionItem.recommendation),
                    )
                ):
                    self.items[item.id] = item
        self.by_key: dict[tuple[int, int, str], list[ActionItem]] = {}
        for item in sorted(self.items.values(), key=lambda i: i.id):
            self.by_key.setdefault((item.recommendation_id, item.office_id, _norm(item.title)), []).append(
                item
            )

    def _source(self, p: _Parsed, title: str) -> Source | None:
        exact = [s for s in self.sources if s.title == title]
        close = exact or [s for s in self.sources if s.title.casefold() == title.casefold()]
        if len(close) == 1:
            return close[0]
        self.problem(
            p, "source", _("Unknown source %(title)s: add it on the sources page first.", title=title)
        )
        return None

    # -- recommendations --

    def _plan_recommendations(self, parsed: list[_Parsed]) -> list[RecommendationChange]:
        groups: dict[str, list[_Parsed]] = {}
        for p in parsed:
            if p.code:
                groups.setdefault(p.code, []).append(p)
        changes = []
        for code, group in groups.items():
            merged: dict[str, Any] = {}
            origin: dict[str, int] = {}
            defined_in: int | None = None
            for p in group:
                if not p.is_action:
                    if defined_in is not None:
                        self.problem(
                            p,
                            "recommendation_code",
                            _(
                                "Duplicate: recommendation %(code)s is already defined in row %(row)d.",
                                code=code,
                                row=defined_in,
                            ),
                        )
                    else:
                        defined_in = p.row.number
                if "source" in p.rec:
                    source = self._source(p, p.rec.pop("source"))
                    if source is not None:
                        p.rec["source"] = source
                for column, value in p.rec.items():
                    if column not in merged:
                        merged[column], origin[column] = value, p.row.number
                    elif _norm(merged[column]) != _norm(value):
                        self.problem(
                            p,
                            column,
                            _(
                                "Differs from row %(row)d for the same recommendation %(code)s.",
                                row=origin[column],
                                code=code,
                            ),
                        )
            changes.append(self._recommendation_change(code, group, merged))
        return changes

    def _recommendation_change(
        self, code: str, group: list[_Parsed], merged: dict[str, Any]
    ) -> RecommendationChange:
        first = group[0]
        existing = self.recommendations.get(code)
        attributes = {
            "recommendation_title": "title",
            "recommendation_text": "text",
            "theme": "theme",
            "priority": "priority",
            "source": "source",
        }
        if existing is None:
            for column in ("recommendation_title", "recommendation_text", "theme", "source"):
                if column not in merged and not any(column in p.bad for p in group):
                    self.problem(first, column, _("Required for a new recommendation (%(code)s).", code=code))
            values = {attributes[c]: v for c, v in merged.items()}
            values.setdefault("priority", Priority.MEDIUM.value)
            return RecommendationChange(
                first.row.number, code, CREATE, merged.get("recommendation_title", ""), None, values
            )
        values: dict[str, Any] = {}
        changes: list[str] = []
        for column, value in merged.items():
            attribute = attributes[column]
            if column == "source":
                if value.id != existing.source_id:
                    values["source"] = value
                    changes.append(_("Source: %(old)s → %(new)s", old=existing.source.title, new=value.title))
                continue
            current = getattr(existing, attribute)
            if _norm(current) == _norm(value):
                continue
            values[attribute] = value
            if column == "priority":
                changes.append(
                    _("Priority: %(old)s → %(new)s", old=priority_label(current), new=priority_label(value))
                )
            elif column == "theme":
                changes.append(_("Theme: %(old)s → %(new)s", old=current, new=value))
            elif column == "recommendation_title":
                changes.append(_("Title: %(old)s → %(new)s", old=current, new=value))
            else:
                changes.append(_("Text changed"))
        kind = UPDATE if values else UNCHANGED
        return RecommendationChange(first.row.number, code, kind, existing.title, existing, values, changes)

    # -- actions --

    def _plan_actions(self, parsed: list[_Parsed]) -> list[ActionChange]:
        seen: dict[tuple[Any, ...], int] = {}
        changes = []
        for p in parsed:
            if not p.is_action or p.code is None:
                continue
            change = self._action_change(p, seen)
            if change is not None:
                changes.append(change)
        return changes

    def _office(self, p: _Parsed) -> Office | None:
        code = p.values["office_code"]
        if code is None:
            if "office_code" not in p.bad:
                self.problem(p, "office_code", _("Give the office code of the action."))
            return None
        office = self.offices.get(code)
        if office is None:
            self.problem(p, "office_code", _("Unknown office code %(code)s.", code=code))
        return office

    def _match(
        self, p: _Parsed, office: Office | None, seen: dict[tuple[Any, ...], int]
    ) -> ActionItem | None:
        """The existing action the row is about, None for a new one; problems if it cannot be told."""
        values, recommendation = p.values, self.recommendations.get(p.code or "")
        item: ActionItem | None = None
        key: tuple[Any, ...] | None = None
        column = "action_id"
        if values["action_id"] is not None:
            item = self.items.get(values["action_id"])
            if item is None:
                self.problem(p, column, _("No action has the id %(id)d.", id=values["action_id"]))
            elif office is not None and item.office_id != office.id:
                self.problem(p, column, _("Action %(id)d belongs to another office.", id=item.id))
            elif recommendation is None or item.recommendation_id != recommendation.id:
                self.problem(
                    p,
                    column,
                    _(
                        "Action %(id)d belongs to recommendation %(code)s.",
                        id=item.id,
                        code=item.recommendation.code,
                    ),
                )
            else:
                key = ("item", item.id)
        elif values["title"] is not None and office is not None:
            column = "action_title"
            found = (
                self.by_key.get((recommendation.id, office.id, _norm(values["title"])), [])
                if recommendation
                else []
            )
            if len(found) > 1:
                self.problem(
                    p,
                    column,
                    _(
                        "Several actions of %(office)s for %(code)s have this title: "
                        "give the action_id of the one to change.",
                        office=office.code,
                        code=p.code,
                    ),
                )
            item = found[0] if len(found) == 1 else None
            key = ("item", item.id) if item else ("new", p.code, office.id, _norm(values["title"]))
        elif values["title"] is None and not {"action_title", "action_id"} & p.bad:
            self.problem(p, "action_title", _("Give the action's title, or its action_id."))
        if key is not None:
            if key in seen:
                self.problem(
                    p, column, _("Duplicate: the same action is already in row %(row)d.", row=seen[key])
                )
            else:
                seen[key] = p.row.number
        return item if key is not None else None

    def _user(self, p: _Parsed, column: str, office: Office | None, current_id: int | None) -> User | None:
        email = p.values[column]
        if email is None:
            return None
        user = self.users.get(email)
        if user is None:
            self.problem(p, column, _("Unknown email: no user has the email %(email)s.", email=email))
            return None
        if office is not None and user.id != current_id and not may_be_assigned(user, office):
            self.problem(
                p,
                column,
                _(
                    "%(email)s is not an active focal point or manager of %(office)s.",
                    email=email,
                    office=office.code,
                ),
            )
            return None
        return user

    def _action_change(self, p: _Parsed, seen: dict[tuple[Any, ...], int]) -> ActionChange | None:
        office = self._office(p)
        item = self._match(p, office, seen)
        owner = self._user(p, "owner_email", office, item.owner_id if item else None)
        deputy = self._user(p, "deputy_email", office, item.deputy_id if item else None)
        before = (item.owner_id, item.deputy_id) if item else (None, None)
        after = (owner.id if owner else before[0], deputy.id if deputy else before[1])
        if after != before and after[1] is not None and after[0] == after[1]:
            column = "deputy_email" if deputy is not None else "owner_email"
            self.problem(p, column, _("The deputy must be someone other than the owner."))
        if office is None or any(c in p.bad for c in ("action_id", "action_title")):
            return None
        if item is None:
            return self._creation(p, office, owner, deputy)
        return self._update(p, office, item, owner, deputy)

    def _creation(self, p: _Parsed, office: Office, owner: User | None, deputy: User | None) -> ActionChange:
        values = p.values
        if not office.active:
            self.problem(
                p,
                "office_code",
                _("Office %(code)s is inactive: no action can be added to it.", code=office.code),
            )
        if values["deadline"] is None and "deadline" not in p.bad:
            self.problem(p, "deadline", _("Required for a new action."))
        title = values["title"] or ""
        return ActionChange(
            p.row.number,
            p.code or "",
            office,
            CREATE,
            title,
            None,
            {
                "title": title,
                "description": values["description"],
                "owner": owner,
                "deputy": deputy,
                "deadline": values["deadline"],
                "status": values["status"] or Status.NOT_STARTED.value,
                "progress": values["progress"] if values["progress"] is not None else 0,
            },
        )

    def _update(
        self, p: _Parsed, office: Office, item: ActionItem, owner: User | None, deputy: User | None
    ) -> ActionChange:
        values, new, changes, plan_changes = p.values, {}, [], []
        if values["title"] is not None and _norm(values["title"]) != _norm(item.title):
            new["title"] = values["title"]
            plan_changes.append(_("Title: %(old)s → %(new)s", old=item.title, new=values["title"]))
        if values["description"] is not None and _norm(values["description"]) != _norm(
            item.description or ""
        ):
            new["description"] = values["description"]
            plan_changes.append(_("Description changed"))
        if owner is not None and owner.id != item.owner_id:
            new["owner"] = owner
            plan_changes.append(_("Owner: %(old)s → %(new)s", old=_person(item.owner), new=_person(owner)))
        if deputy is not None and deputy.id != item.deputy_id:
            new["deputy"] = deputy
            plan_changes.append(_("Deputy: %(old)s → %(new)s", old=_person(item.deputy), new=_person(deputy)))
        if values["deadline"] is not None and values["deadline"] != item.deadline:
            new["deadline"] = values["deadline"]
            changes.append(
                _(
                    "Deadline: %(old)s → %(new)s",
                    old=item.deadline.isoformat(),
                    new=values["deadline"].isoformat(),
                )
            )
        if values["status"] is not None and values["status"] != item.status:
            new["status"] = values["status"]
            changes.append(
                _(
                    "Status: %(old)s → %(new)s",
                    old=status_label(item.status),
                    new=status_label(values["status"]),
                )
            )
        if values["progress"] is not None and values["progress"] != item.progress:
            new["progress"] = values["progress"]
            changes.append(_("Progress: %(old)d → %(new)d", old=item.progress, new=values["progress"]))
        return ActionChange(
            p.row.number,
            p.code or "",
            office,
            UPDATE if new else UNCHANGED,
            item.title,
            item,
            new,
            plan_changes + changes,
            plan_changes,
        )


def describe_plan(plan: ImportPlan) -> list[str]:
    """The plan as lines of text (for the command line): counts, each change, warnings, problems."""
    lines = [
        _("%(name)s: %(num)d rows.", name=plan.filename, num=plan.rows),
        _(
            "Recommendations: %(create)d to create, %(update)d to update, %(same)d unchanged.",
            create=plan.count("recommendations", CREATE),
            update=plan.count("recommendations", UPDATE),
            same=plan.count("recommendations", UNCHANGED),
        ),
        _(
            "Actions: %(create)d to create, %(update)d to update, %(same)d unchanged.",
            create=plan.count("actions", CREATE),
            update=plan.count("actions", UPDATE),
            same=plan.count("actions", UNCHANGED),
        ),
    ]
    for r in plan.recommendations:
        if r.kind == CREATE:
            lines.append(_("  row %(row)d: create recommendation %(code)s", row=r.row, code=r.code))
        elif r.kind == UPDATE:
            lines.append(
                _(
                    "  row %(row)d: update recommendation %(code)s: %(changes)s",
                    row=r.row,
                    code=r.code,
                    changes="; ".join(r.changes),
                )
            )
    for a in plan.actions:
        if a.kind == CREATE:
            lines.append(
                _(
                    "  row %(row)d: create action “%(title)s” of %(office)s for %(code)s",
                    row=a.row,
                    title=a.title,
                    office=a.office.code,
                    code=a.code,
                )
            )
        elif a.kind == UPDATE and a.item is not None:
            lines.append(
                _(
                    "  row %(row)d: update action %(id)d “%(title)s”: %(changes)s",
                    row=a.row,
                    id=a.item.id,
                    title=a.title,
                    changes="; ".join(a.changes),
                )
            )
    lines.extend(_("Warning: %(text)s", text=w) for w in plan.warnings)
    for p in plan.problems:
        where = _("row %(row)d", row=p.row) if p.row else _("file")
        lines.append(f"{_('Problem')}: {where}, {p.column or '–'}: {p.message}")
    return lines


# --- applying --------------------------------------------------------------------------------


def apply_import(plan: ImportPlan, actor: User | None, now: datetime, note: str) -> dict[str, int]:
    """Write a plan without problems and flush (the caller commits); returns the counts by kind.

    ``actor`` is the importing user (None from the command line); ``note`` starts every history
    row it writes. A concurrent change fails the flush (StaleDataError, IntegrityError): the caller
    rolls back, and nothing is written.
    """
    if plan.problems:
        raise ValueError("a plan with problems cannot be applied")
    if actor is not None:
        require(actor, Perm.IMPORT_DATA)
    author_id = actor.id if actor is not None else None
    recommendations: dict[str, Recommendation] = {}
    for change in plan.recommendations:
        if change.kind == CREATE:
            recommendation = Recommendation(code=change.code, created_at=now, updated_at=now, **change.values)
            db.session.add(recommendation)
        else:
            recommendation = change.recommendation  # type: ignore[assignment]
            if change.kind == UPDATE:
                for attribute, value in change.values.items():
                    setattr(recommendation, attribute, value)
                recommendation.updated_at = now
        recommendations[change.code] = recommendation

    assigned: dict[tuple[int, str], tuple[User, list[ActionItem]]] = {}

    def assign(user: User | None, role: str, item: ActionItem) -> None:
        if user is not None:
            assigned.setdefault((user.id, role), (user, []))[1].append(item)

    for change in plan.actions:
        if change.kind == CREATE:
            item = _create_item(change, recommendations[change.code], author_id, now, note)
            assign(change.values["owner"], "owner", item)
            assign(change.values["deputy"], "deputy", item)
        elif change.kind == UPDATE:
            item = _update_item(change, author_id, now, note)
            if "owner" in change.values:
                assign(change.values["owner"], "owner", item)
            if "deputy" in change.values:
                assign(change.values["deputy"], "deputy", item)
    db.session.flush()
    # One mail per person and role for the whole import, not one per action.
    for (_user_id, role), (user, items) in assigned.items():
        account.notify_assignment(items, user, role, now)
    return {
        f"{what}_{kind}": plan.count(what, kind) for what in ("recommendations", "actions") for kind in KINDS
    }


def _create_item(
    change: ActionChange, recommendation: Recommendation, author_id: int | None, now: datetime, note: str
) -> ActionItem:
    values = change.values
    item = ActionItem(
        recommendation=recommendation,
        office=change.office,
        title=values["title"],
        description=values["description"],
        owner=values["owner"],
        deputy=values["deputy"],
        deadline=values["deadline"],
        status=values["status"],
        progress=values["progress"],
        created_at=now,
        updated_at=now,
    )
    db.session.add(item)
    db.session.add(
        ActionUpdate(
            action_item=item,
            author_id=author_id,
            created_at=now,
            item_version=1,  # a new row starts at version 1
            new_status=item.status,
            new_progress=item.progress,
            new_deadline=item.deadline,
            note=f"{note}. {_('Action added to the plan.')}",
        )
    )
    return item


def _update_item(change: ActionChange, author_id: int | None, now: datetime, note: str) -> ActionItem:
    item, values = change.item, change.values
    assert item is not None
    status, progress, deadline = values.get("status"), values.get("progress"), values.get("deadline")
    db.session.add(
        ActionUpdate(
            action_item_id=item.id,
            author_id=author_id,
            created_at=now,
            # The version counter moves by one when the item's row is flushed.
            item_version=item.version + 1,
            old_status=item.status if status else None,
            new_status=status,
            old_progress=item.progress if progress is not None else None,
            new_progress=progress,
            old_deadline=item.deadline if deadline else None,
            new_deadline=deadline,
            note="; ".join([note, *change.plan_changes]) if change.plan_changes else note,
        )
    )
    for attribute in ("title", "description", "deadline", "status", "progress"):
        if attribute in values:
            setattr(item, attribute, values[attribute])
    if "owner" in values:
        item.owner_id = values["owner"].id if values["owner"] else None
    if "deputy" in values:
        item.deputy_id = values["deputy"].id if values["deputy"] else None
    item.updated_at = now
    return item


# --- files waiting between the preview and the confirmation ------------------------------------


@dataclass
class StoredUpload:
    """An uploaded file kept on disk until it is confirmed, cancelled or a day old."""

    token: str
    filename: str
    user_id: int
    created_at: datetime
    data: bytes


def import_dir() -> Path:
    """Where uploads wait (TRACKER_IMPORT_DIR, default <TRACKER_UPLOAD_DIR>/imports, shared by hosts)."""
    configured = current_app.config.get("TRACKER_IMPORT_DIR")
    return Path(configured) if configured else Path(current_app.config["TRACKER_UPLOAD_DIR"]) / "imports"


def store_upload(data: bytes, filename: str, user_id: int, now: datetime) -> str:
    """Keep an uploaded file under a random name for its owner; returns the token naming it."""
    folder = import_dir()
    folder.mkdir(parents=True, exist_ok=True)
    sweep_uploads(now)
    token = secrets.token_urlsafe(24)
    (folder / f"{token}.data").write_bytes(data)
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
        data = (folder / f"{token}.data").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return StoredUpload(token, str(meta["filename"]), user_id, created_at, data)


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


# --- exports ---------------------------------------------------------------------------------


class FilterError(ValueError):
    """A filter of the query string is malformed (too long, control characters, absurd numbers)."""


@dataclass(frozen=True)
class ActionFilters:
    """The action list's filters (those of the home page, and the owner's email)."""

    office_code: str | None = None
    status: str | None = None
    overdue_only: bool = False
    recommendation_code: str | None = None
    source_id: int | None = None
    theme: str | None = None
    owner_email: str | None = None


def action_filters(args: Mapping[str, str]) -> ActionFilters:
    """The filters from a query string, read as the home page reads them; FilterError if malformed."""

    def text(name: str, limit: int) -> str | None:
        value = args.get(name) or ""
        if len(value) > limit or _CONTROL_OR_BREAK.search(value):
            raise FilterError(_("The filter “%(name)s” is not valid.", name=name))
        return value.strip() or None

    status = text("status", 40)
    raw_source = text("source", 20)
    source_id = None
    if raw_source and re.fullmatch(r"-?\d+", raw_source):
        source_id = int(raw_source)
        if not -(2**31) < source_id < 2**31:
            raise FilterError(_("The filter “%(name)s” is not valid.", name="source"))
    owner = text("owner", 254)
    return ActionFilters(
        office_code=text("office", 8),
        status=status if status in {s.value for s in Status} else None,  # as the list: unknown is ignored
        overdue_only=args.get("overdue") == "1",
        recommendation_code=text("recommendation", 32),
        source_id=source_id or None,
        theme=text("theme", 100),
        owner_email=normalise_email(owner) if owner else None,
    )


_CLOSED = sorted(s.value for s in CLOSED_STATUSES)


def filtered_actions(user: User, now: datetime, filters: ActionFilters) -> sa.Select[tuple[ActionItem]]:
    """The items the user may see that pass the filters, ordered as the home list: open first, by deadline."""
    query = visible_actions(user).options(
        joinedload(ActionItem.deputy), joinedload(ActionItem.recommendation).joinedload(Recommendation.source)
    )
    if filters.office_code:
        query = query.where(Office.code == filters.office_code.upper())
    if filters.status:
        query = query.where(ActionItem.status == filters.status)
    if filters.recommendation_code:
        query = query.where(Recommendation.code == filters.recommendation_code)
    if filters.source_id:
        query = query.where(Recommendation.source_id == filters.source_id)
    if filters.theme:
        query = query.where(Recommendation.theme == filters.theme)
    if filters.owner_email:
        query = query.where(
            ActionItem.owner_id.in_(sa.select(User.id).where(User.email == filters.owner_email))
        )
    if filters.overdue_only:
        query = query.where(overdue_clause(now))
    return query.order_by(
        sa.case((ActionItem.status.in_(_CLOSED), 1), else_=0), ActionItem.deadline, ActionItem.id
    )


#: The header of an action export: the import's columns, then read-only extras.
EXPORT_HEADER: tuple[str, ...] = COLUMNS + EXPORT_EXTRAS


def export_rows(query: sa.Select[tuple[ActionItem]], now: datetime) -> Iterator[list[Any]]:
    """One row per item in EXPORT_HEADER's order, read in batches (yield_per) so that memory stays flat."""
    for item in db.session.scalars(query.execution_options(yield_per=500)):
        recommendation, owner, deputy = item.recommendation, item.owner, item.deputy
        yield [
            recommendation.code,
            recommendation.title,
            recommendation.text,
            recommendation.theme,
            recommendation.priority,
            recommendation.source.title,
            item.office.code,
            item.id,
            item.title,
            item.description,
            owner.email if owner else None,
            deputy.email if deputy else None,
            item.deadline,
            item.status,
            item.progress,
            item.office.name,
            owner.name if owner else None,
            "yes" if item.is_overdue(now) else "no",
            item.updated_at.astimezone(UTC).isoformat(timespec="seconds"),
        ]


def neutralise(text: str) -> str:
    """Text made safe for a spreadsheet: a ' before text that starts with = + - @ tab, CR or '."""
    return "'" + text if text.startswith(DANGEROUS_START) else text


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    return neutralise(str(value))


def csv_stream(header: Iterable[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """A CSV file (UTF-8 with a BOM, so that spreadsheets read it as UTF-8) in chunks of about 64 KB."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([_csv_value(v) for v in row])
        if buffer.tell() > 65536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _xlsx_cell(value: Any) -> Any:
    """A value as an XLSX cell takes it: text neutralised and without the characters XML forbids."""
    if isinstance(value, str):
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        return neutralise(ILLEGAL_CHARACTERS_RE.sub("", value))
    return value


@dataclass
class Sheet:
    """One worksheet to write: its title, header, rows and column widths (in characters)."""

    title: str
    header: list[str]
    rows: Iterable[list[Any]]
    widths: list[int] = field(default_factory=list)


def write_workbook(sheets: list[Sheet]) -> tuple[io.BytesIO, int]:
    """Write sheets row by row and return the XLSX file, in memory, with its size.

    openpyxl's write-only mode streams each sheet's rows into a temporary file of its own as they
    come (memory stays flat however many rows); only the finished, compressed workbook (a few MB
    for tens of thousands of actions) is held in memory, and send_file streams it out.
    """
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    for sheet in sheets:
        worksheet = workbook.create_sheet(title=sheet.title[:31])
        for i, width in enumerate(sheet.widths, start=1):
            worksheet.column_dimensions[get_column_letter(i)].width = width
        worksheet.freeze_panes = "A2"
        worksheet.append([_xlsx_cell(h) for h in sheet.header])
        for row in sheet.rows:
            worksheet.append([_xlsx_cell(v) for v in row])
    out = io.BytesIO()
    workbook.save(out)
    size = out.tell()
    out.seek(0)
    return out, size


#: Column widths of an action export, in characters.
EXPORT_WIDTHS = [16, 40, 50, 18, 10, 30, 10, 10, 40, 40, 30, 30, 12, 14, 10, 30, 24, 9, 26]


def matrix_rows(matrix: dashboard.Matrix) -> Iterator[list[Any]]:
    """The matrix as rows: code, title, then per office "n actions · worst status · n overdue"."""
    for recommendation in matrix.recommendations:
        row: list[Any] = [recommendation.code, recommendation.title]
        for office in matrix.offices:
            cell = matrix.cell(recommendation.id, office.id)
            if cell is None:
                row.append(None)
                continue
            parts = [
                ngettext("%(num)d action", "%(num)d actions", cell.count),
                status_label(cell.worst.value),
            ]
            if cell.overdue:
                parts.append(ngettext("%(num)d overdue", "%(num)d overdue", cell.overdue))
            row.append(" · ".join(parts))
        yield row


def matrix_sheet(matrix: dashboard.Matrix) -> Sheet:
    """The dashboard's matrix as one worksheet: recommendations down, offices across."""
    return Sheet(
        title=_("Matrix"),
        header=[_("Code"), _("Recommendation")] + [o.code for o in matrix.offices],
        rows=matrix_rows(matrix),
        widths=[16, 50] + [28] * len(matrix.offices),
    )


# --- the template ----------------------------------------------------------------------------


def template_row(today: date) -> list[Any]:
    """The template's example row, in COLUMNS order (its deadline: the end of next year)."""
    return [
        "R-2026-01",
        _("Publish an e-filing guide"),
        _("Publish a step-by-step guide to filing applications online."),
        _("Digital services"),
        Priority.HIGH.value,
        _("Strategic dialogue 2026"),
        "SG",
        None,
        _("Write and publish the guide"),
        _("In English and the national languages."),
        "focal.point@office.example",
        None,
        date(today.year + 1, 12, 31),
        Status.NOT_STARTED.value,
        0,
    ]


def template_help_rows() -> list[list[Any]]:
    """The template's second sheet: each column and what it holds."""
    return [[column, str(COLUMN_HELP[column])] for column in COLUMNS]


# --- reports ---------------------------------------------------------------------------------

#: Overdue actions listed in a report (a meeting reads the oldest first; the rest are counted).
REPORT_OVERDUE_LIMIT = 500


@dataclass(frozen=True)
class Report:
    """What a printable report shows: the summary, progress per office, the matrix, overdue items."""

    office: Office | None
    totals: dashboard.Totals
    offices: list[dashboard.OfficeProgress]
    matrix: dashboard.Matrix
    overdue_items: list[ActionItem]

    @property
    def done(self) -> int:
        """Completed or verified items."""
        return sum(self.totals.by_status[s] for s in dashboard.DONE_STATUSES)

    @property
    def counted(self) -> int:
        """Items that are not cancelled: the base of the completion rate."""
        return self.totals.total - self.totals.by_status[Status.CANCELLED.value]

    @property
    def completion_rate(self) -> float | None:
        """Share (0–1) of the items not cancelled that are completed or verified."""
        return self.done / self.counted if self.counted else None


def build_report(
    user: User, now: datetime, filters: dashboard.Filters, offices: list[Office], office: Office | None = None
) -> Report:
    """The report's figures for ``user`` (the dashboard's queries: a fixed number of statements)."""
    overdue = overdue_clause(now)
    progress = dashboard.office_progress(user, filters, offices, overdue)
    return Report(
        office=office,
        totals=dashboard.totals(user, filters, overdue, due_soon_clause(now, dashboard.DUE_SOON_DAYS)),
        offices=progress,
        matrix=dashboard.matrix(user, filters, progress, overdue),
        overdue_items=dashboard.overdue_items(user, filters, overdue, limit=REPORT_OVERDUE_LIMIT),
    )
