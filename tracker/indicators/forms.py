"""The forms of reporting and reviewing indicator values.

The report page has one row per active indicator; its fields are named ``<field>-<indicator id>``
(value, note, evidence_url, file, version) and read by :func:`read_rows`, so that the page holds
any number of indicators. The form classes carry the CSRF token and the fixed fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import FileStorage
from wtforms import HiddenField, SubmitField, TextAreaField
from wtforms.validators import Length

from tracker import params
from tracker.indicators.models import Indicator, Unit
from tracker.indicators.services import BOUNDS

#: Longest note and evidence link a row accepts (the link's column holds 2,000 characters).
NOTE_MAX = 5000
URL_MAX = 2000
#: The row fields a refusal may name; any other field is shown at the row's value.
ROW_FIELDS = ("value", "note", "evidence_url", "file")


class ReportForm(FlaskForm):
    """The report page's CSRF token and button; the rows are read by read_rows."""

    submit = SubmitField(_l("Save the values"))


class ReviewForm(FlaskForm):
    """Validate a reported value, or send it back with a note (the queue's buttons post here)."""

    version = HiddenField()
    note = TextAreaField(_l("Note to the office"), validators=[Length(max=NOTE_MAX)])


def input_bounds(unit: str) -> dict[str, str]:
    """The number input's min, max and step for a unit (the server checks the same bounds)."""
    low, high = BOUNDS[unit]
    bounds = {"min": f"{low:g}", "step": "any"}
    if high is not None:
        bounds["max"] = f"{high:g}"
    return bounds


def shown_value(unit: str, value: float | None) -> str:
    """A stored value as the input shows it: ``87.5``, ``120``; yes/no as ``1``/``0``."""
    if value is None:
        return ""
    if unit == Unit.YES_NO:
        return "1" if value >= 1 else "0"
    return f"{value:f}".rstrip("0").rstrip(".")


@dataclass
class Row:
    """One indicator's fields as sent; ``errors`` maps a field to its messages."""

    indicator: Indicator
    value: str = ""
    note: str = ""
    evidence_url: str = ""
    file: FileStorage | None = None
    #: The version of the value the page showed; 0 when there was none (a first report).
    version: int = 0
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def filled(self) -> bool:
        """An empty value means the indicator is not reported now (not an error)."""
        return bool(self.value.strip())

    def refuse(self, name: str, message: str) -> None:
        """Put ``message`` beside the field ``name`` (the value's place for any other field)."""
        self.errors.setdefault(name if name in ROW_FIELDS else "value", []).append(message)


def read_rows(
    indicators: list[Indicator], form: Mapping[str, str], files: Mapping[str, FileStorage]
) -> list[Row]:
    """The rows sent for ``indicators``, with the length limits checked (errors kept on the rows)."""
    rows = []
    for indicator in indicators:
        key = str(indicator.id)
        upload = files.get(f"file-{key}")
        row = Row(
            indicator=indicator,
            value=form.get(f"value-{key}", "").strip(),
            note=form.get(f"note-{key}", "").strip(),
            evidence_url=form.get(f"evidence_url-{key}", "").strip(),
            file=upload if upload is not None and upload.filename else None,
            version=params.whole_number(form.get(f"version-{key}")) or 0,
        )
        if len(row.note) > NOTE_MAX:
            row.refuse("note", _("Keep the note under %(num)d characters.", num=NOTE_MAX))
        if len(row.evidence_url) > URL_MAX:
            row.refuse("evidence_url", _("Keep the link under %(num)d characters.", num=URL_MAX))
        rows.append(row)
    return rows
