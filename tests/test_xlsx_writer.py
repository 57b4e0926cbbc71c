"""tracker.transfer.xlsx, the streaming writer of exports: what it writes reads back (openpyxl)
as the same values and types, well-formed, with text that never becomes a formula."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from xml.dom import minidom

from openpyxl import load_workbook

from tracker.transfer import xlsx


@dataclass
class Sheet:
    title: str
    header: list[str]
    rows: list[list[object]]
    widths: list[int] = field(default_factory=list)


def _write(*sheets: Sheet) -> bytes:
    out = io.BytesIO()
    xlsx.write(out, list(sheets))
    return out.getvalue()


def test_values_read_back_with_their_types():
    rows = [
        ["text", 42, 2.5, True, date(2026, 11, 30), datetime(2026, 11, 30, 12, 0), None, "end"],
        [" padded ", -1, 0.1, False, date(1900, 3, 1), None, "", "a & b < c > d \"q\" 'r'"],
        ["=1+1", "@x", "bell\x07and\x00null", "line\nbreak", "\ttab", "é 中文 😀", None, None],
    ]
    data = _write(Sheet('Act"ions & <more>', ["h1", "h2", "h3"], rows, [10, 20]))
    workbook = load_workbook(io.BytesIO(data))
    sheet = workbook.worksheets[0]
    assert sheet.title == 'Act"ions & <more>' and sheet.freeze_panes == "A2"
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][:3] == ["h1", "h2", "h3"] and sheet["A1"].font.b
    assert values[1] == [
        "text",
        42,
        2.5,
        True,
        datetime(2026, 11, 30),
        datetime(2026, 11, 30, 12, 0),
        None,
        "end",
    ]
    assert values[2][:6] == [" padded ", -1, 0.1, False, datetime(1900, 3, 1), None]
    assert values[2][7] == "a & b < c > d \"q\" 'r'"
    # Text stays text, whatever it starts with; characters XML forbids are dropped.
    assert values[3][:6] == ["=1+1", "@x", "bellandnull", "line\nbreak", "\ttab", "é 中文 😀"]
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    assert sheet["E2"].number_format == "yyyy\\-mm\\-dd" and sheet.column_dimensions["B"].width == 20


def test_every_part_is_well_formed_and_several_sheets_are_kept_in_order():
    data = _write(Sheet("One", ["a"], [[1]]), Sheet("Two", ["b"], [[2], [3]]))
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        names = package.namelist()
        assert names[0] == "[Content_Types].xml"
        for name in names:
            minidom.parseString(package.read(name))  # raises if not well-formed
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    assert workbook.sheetnames == ["One", "Two"]
    assert [list(r) for r in workbook["Two"].iter_rows(values_only=True)] == [["b"], [2], [3]]
    workbook.close()


def test_long_text_is_cut_to_what_a_cell_holds_and_wide_rows_get_their_letters():
    row = ["x" * 40000, *range(59)]
    workbook = load_workbook(io.BytesIO(_write(Sheet("Wide", ["h"], [row]))), read_only=True)
    values = next(workbook.worksheets[0].iter_rows(min_row=2, values_only=True))
    assert len(values[0]) == xlsx.MAX_TEXT and values[-1] == 58 and len(values) == 60
    workbook.close()
    assert [xlsx.column_letter(i) for i in (0, 25, 26, 51, 52, 701, 702)] == [
        "A",
        "Z",
        "AA",
        "AZ",
        "BA",
        "ZZ",
        "AAA",
    ]
