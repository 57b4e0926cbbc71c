"""Exports: the action list as CSV or XLSX rows, the dashboard's matrix, and the import template."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import IO, Any

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy.orm import aliased

from tracker.actions.queries import overdue_clause
from tracker.dashboard import services as dashboard
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import ActionItem, Office, Priority, Recommendation, Source, Status, User
from tracker.transfer import xlsx
from tracker.transfer.columns import COLUMN_HELP, COLUMNS, EXPORT_EXTRAS
from tracker.transfer.xlsx import ILLEGAL_CHARACTERS

#: Characters an export puts a ``'`` before (OWASP CSV injection), and ``'`` itself so that an
#: import can always remove one. The full-width forms too (U+FF1D, U+FF0B, U+FF0D, U+FF20): some
#: spreadsheets, with an East Asian input method, read them as the ASCII ones and start a formula.
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r", "'", "\uff1d", "\uff0b", "\uff0d", "\uff20")


#: The header of an action export: the import's columns, then read-only extras.
EXPORT_HEADER: tuple[str, ...] = COLUMNS + EXPORT_EXTRAS


def _export_columns(query: sa.Select[tuple[ActionItem]], now: datetime) -> sa.Select[Any]:
    """The filtered query reduced to the columns an export writes, in EXPORT_HEADER's order.

    Plain columns instead of ORM objects (three times faster: no identity map, no eager-load
    bookkeeping, six converted datetimes fewer per row). The query keeps its filters, scope and
    order; the rows it names are joined again under aliases of their own, so this does not
    depend on which tables the query joins for its filters.
    """
    recommendation, source, office = aliased(Recommendation), aliased(Source), aliased(Office)
    owner, deputy = aliased(User), aliased(User)
    return (
        query.with_only_columns(
            recommendation.code,
            recommendation.title,
            recommendation.text,
            recommendation.theme,
            recommendation.priority,
            source.title,
            office.code,
            ActionItem.id,
            ActionItem.title,
            ActionItem.description,
            owner.email,
            deputy.email,
            ActionItem.deadline,
            ActionItem.agreed_deadline,
            ActionItem.status,
            ActionItem.progress,
            sa.null(),  # the note: for a change made in the file, read by an import
            office.name,
            owner.name,
            overdue_clause(now),
            ActionItem.updated_at,
            maintain_column_froms=False,
        )
        .join(recommendation, recommendation.id == ActionItem.recommendation_id)
        .join(source, source.id == recommendation.source_id)
        .join(office, office.id == ActionItem.office_id)
        .outerjoin(owner, owner.id == ActionItem.owner_id)
        .outerjoin(deputy, deputy.id == ActionItem.deputy_id)
    )


#: Where the overdue flag and the update time are in an export row.
_OVERDUE, _UPDATED = EXPORT_HEADER.index("overdue"), EXPORT_HEADER.index("updated_at")


def export_rows(
    query: sa.Select[tuple[ActionItem]], now: datetime, *, batch: int = 2000
) -> Iterator[list[Any]]:
    """One row per item in EXPORT_HEADER's order, read ``batch`` rows at a time (yield_per; a
    server-side cursor on PostgreSQL), so that memory stays flat however many there are."""
    statement = _export_columns(query, now).execution_options(yield_per=batch)
    for values in db.session.execute(statement):
        row = list(values)
        row[_OVERDUE] = "yes" if row[_OVERDUE] else "no"
        row[_UPDATED] = row[_UPDATED].astimezone(UTC).isoformat(timespec="seconds")
        yield row


def count_rows(query: sa.Select[tuple[ActionItem]], *, limit: int | None = None) -> int:
    """How many items the filtered query returns; with ``limit``, counting stops past it (so a
    large list costs no more than a small one to tell apart from it)."""
    ids = query.with_only_columns(ActionItem.id, maintain_column_froms=False).order_by(None)
    if limit is not None:
        ids = ids.limit(limit + 1)
    return db.session.scalar(sa.select(sa.func.count()).select_from(ids.subquery())) or 0


def neutralise(text: str) -> str:
    """Text made safe for a spreadsheet: a ' before text that starts with one of DANGEROUS_START."""
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


def _xlsx_text(value: str) -> str:
    """Text as an XLSX cell takes it: without the characters XML forbids, neutralised, and line
    ends as XML reads them (a line feed)."""
    value = neutralise(ILLEGAL_CHARACTERS.sub("", value))
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value


@dataclass
class Sheet:
    """One worksheet to write: its title, header, rows and column widths (in characters)."""

    title: str
    header: list[str]
    rows: Iterable[list[Any]]
    widths: list[int] = field(default_factory=list)


def xlsx_stream(sheets: list[Sheet]) -> Iterator[bytes]:
    """The sheets as an XLSX workbook, in pieces made while the rows are read (constant memory).

    tracker.transfer.xlsx writes each row into the zipped sheet as it comes. Text cells are always
    text (never formulas), without the characters XML forbids, and neutralised as in the CSV.
    """
    return xlsx.stream(
        [
            Sheet(_sheet_title(sheet.title), sheet.header, _xlsx_rows(sheet.rows), sheet.widths)
            for sheet in sheets
        ]
    )


def write_xlsx(out: IO[bytes], sheets: list[Sheet]) -> None:
    """Write the sheets (xlsx_stream) into the binary file ``out``."""
    for data in xlsx_stream(sheets):
        out.write(data)


def _sheet_title(title: str) -> str:
    """A worksheet name Excel accepts: ≤ 31 characters, none of []:*?/\\."""
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31].strip("'") or "Sheet"


def _xlsx_rows(rows: Iterable[list[Any]]) -> Iterator[list[Any]]:
    """Rows with their text neutralised (and a carriage return read as XML reads it: a line feed)."""
    for row in rows:
        yield [_xlsx_text(v) if type(v) is str else v for v in row]


def write_workbook(sheets: list[Sheet]) -> tuple[io.BytesIO, int]:
    """A small workbook (the import template, the dashboard's matrix) in memory, and its size.

    The action list, which grows with the data, is streamed instead (xlsx_stream).
    """
    out = io.BytesIO()
    write_xlsx(out, sheets)
    size = out.tell()
    out.seek(0)
    return out, size


#: Column widths of an action export, in characters.
EXPORT_WIDTHS = [16, 40, 50, 18, 10, 30, 10, 10, 40, 40, 30, 30, 12, 12, 14, 10, 40, 30, 24, 9, 26]


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
        None,  # the agreed deadline: the deadline unless given
        Status.NOT_STARTED.value,
        0,
        None,
    ]


def template_help_rows() -> list[list[Any]]:
    """The template's second sheet: each column and what it holds."""
    return [[column, str(COLUMN_HELP[column])] for column in COLUMNS]
