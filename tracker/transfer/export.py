"""Exports: the action list as CSV or XLSX rows, the dashboard's matrix, and the import template."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import ngettext

from tracker.dashboard import services as dashboard
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import ActionItem, Priority, Status
from tracker.transfer.columns import COLUMN_HELP, COLUMNS, EXPORT_EXTRAS

#: Characters an export puts a ``'`` before (OWASP CSV injection), and ``'`` itself so that an
#: import can always remove one. The full-width forms too (U+FF1D, U+FF0B, U+FF0D, U+FF20): some
#: spreadsheets, with an East Asian input method, read them as the ASCII ones and start a formula.
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r", "'", "\uff1d", "\uff0b", "\uff0d", "\uff20")


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
            item.agreed_deadline,
            item.status,
            item.progress,
            None,  # the note: for a change made in the file, read by an import
            item.office.name,
            owner.name if owner else None,
            "yes" if item.is_overdue(now) else "no",
            item.updated_at.astimezone(UTC).isoformat(timespec="seconds"),
        ]


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
