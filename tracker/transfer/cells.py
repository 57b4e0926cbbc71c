"""Typing the cells of one imported row (text, whole numbers, dates, choices) and checking their form.

Dates: a date cell of a spreadsheet as it is; text in ISO form (2027-03-31), or with the day, month
and year in the order of the importing person's locale (:func:`reader_locale`), separated by ``/``,
``.`` or ``-``: 31/03/2027 for fr, es or en-GB, 03/31/2027 for en or en-US. Without a locale (the
command line), either order is read when only one of them gives a date; when both do and differ
(04/05/2027), the cell is refused with both readings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from babel import Locale, UnknownLocaleError
from flask import has_request_context, request
from flask_babel import force_locale, format_date, get_locale
from flask_babel import gettext as _

from tracker.labels import PRIORITY_LABELS, STATUS_LABELS
from tracker.models import Status, normalise_email
from tracker.transfer.columns import COLUMNS
from tracker.transfer.read import _CONTROL_OR_BREAK, Formula, Row

#: A row with any of these filled describes an action; without, it only defines its recommendation.
ACTION_COLUMNS: tuple[str, ...] = COLUMNS[6:]

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
    "agreed_deadline": 40,
    "status": 100,
    "progress": 10,
    "action_id": 12,
    "note": 5000,
}
#: Columns whose values the rows of a file repeat (each row names its recommendation in full).
REPEATED = frozenset(
    {
        "recommendation_code",
        "recommendation_title",
        "recommendation_text",
        "theme",
        "source",
        "office_code",
        "owner_email",
        "deputy_email",
    }
)
#: Columns whose text may hold line breaks and tabs.
MULTILINE = frozenset({"recommendation_text", "description", "note"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Day, month and year (in some order) with one kind of separator: 31/03/2027, 31.03.2027, 3-31-2027.
_NUMERIC_DATE = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4})$")
#: How each order is written in a message (the letters of ISO 8601, in every language).
_ORDER_PATTERNS = {"dmy": "DD/MM/YYYY", "mdy": "MM/DD/YYYY"}
_STATUSES = ", ".join(s.value for s in Status)


def reader_locale() -> Locale | None:
    """The locale whose dates the person importing writes: the page's language, with the region their
    browser names for that language (en, and Accept-Language en-GB → en_GB); None outside a request."""
    if not has_request_context():
        return None
    language = get_locale()
    for tag in request.accept_languages.values():
        try:
            wanted = Locale.parse(tag, sep="-")
        except (ValueError, TypeError, UnknownLocaleError):
            continue
        if language is not None and wanted.language == language.language and wanted.territory:
            return wanted
    return language


def date_order(locale: Locale | str | None) -> str | None:
    """ "dmy" or "mdy": the order of day and month in the locale's short date format (Babel's CLDR
    data); None without a locale, or for one that writes the year first (both orders are tried)."""
    if not locale:
        return None
    try:
        pattern = Locale.parse(locale).date_formats["short"].pattern
    except (ValueError, TypeError, UnknownLocaleError):
        return None
    pattern = re.sub(r"'[^']*'", "", pattern)  # quoted literal text
    order = "".join(dict.fromkeys(c for c in pattern if c in "dMy"))
    return {"dMy": "dmy", "Mdy": "mdy"}.get(order)


def _day(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


@dataclass(slots=True)
class _Parsed:
    """One row's values, typed; ``raw`` keeps the text of what is looked up in the database."""

    row: Row
    code: str | None = None
    is_action: bool = False
    rec: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)


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


class _RowParser:
    """Types the cells of a row and records what is wrong through ``problem`` (the planner's)."""

    def __init__(self, date_locale: Locale | str | None = None) -> None:
        #: "dmy", "mdy" or None (either, unless both give a date): how to read 04/05/2027.
        self.date_order = date_order(date_locale)
        self.statuses = _choices(STATUS_LABELS)
        self.priorities = _choices(PRIORITY_LABELS)
        self.shared: dict[str, str] = {}
        # Translated once, not once per row (a translation costs more than typing a row's cells).
        self.bad_action_id = _("action_id must be the number of an existing action, or empty.")
        self.bad_progress = _("Progress is a whole number from 0 to 100.")

    def problem(self, parsed: _Parsed | None, column: str | None, message: str) -> None:
        """Record a problem at a row and column."""
        raise NotImplementedError

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
        if column in REPEATED:  # one copy of a value the rows repeat, not one per row
            text = self.shared.setdefault(text, text)
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
        elif match := _NUMERIC_DATE.match(text):
            first, second, year = int(match[1]), int(match[3]), int(match[4])
            readings = {"dmy": _day(year, second, first), "mdy": _day(year, first, second)}
            if self.date_order is not None:
                if readings[self.date_order] is not None:
                    return readings[self.date_order]
            else:
                found = sorted({d for d in readings.values() if d is not None})
                if len(found) == 1:
                    return found[0]
                if len(found) == 2:
                    self.problem(p, column, self._ambiguous(text, *found))
                    return None
        if self.date_order is None:
            message = _("%(value)s is not a date: write it YYYY-MM-DD, e.g. 2026-11-24.", value=text)
        else:
            message = _(
                "%(value)s is not a date: write it YYYY-MM-DD or %(pattern)s, e.g. 2026-11-24.",
                value=text,
                pattern=_ORDER_PATTERNS[self.date_order],
            )
        self.problem(p, column, message)
        return None

    @staticmethod
    def _ambiguous(text: str, one: date, other: date) -> str:
        return _(
            "%(value)s could be %(first)s or %(second)s: write it YYYY-MM-DD (%(first_iso)s or "
            "%(second_iso)s).",
            value=text,
            first=format_date(one, "long"),
            second=format_date(other, "long"),
            first_iso=one.isoformat(),
            second_iso=other.isoformat(),
        )

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
        values["action_id"] = self._whole(p, "action_id", 1, 2**31 - 1, self.bad_action_id)
        values["title"] = self._text(p, "action_title")
        values["description"] = self._text(p, "description")
        for column in ("owner_email", "deputy_email"):
            email = self._text(p, column)
            values[column] = normalise_email(email) if email else None
        values["deadline"] = self._date(p, "deadline")
        values["agreed_deadline"] = self._date(p, "agreed_deadline")
        statuses = _STATUSES
        values["status"] = self._choice(
            p,
            "status",
            self.statuses,
            lambda value: _(
                "Unknown status %(value)s: use one of %(statuses)s.", value=value, statuses=statuses
            ),
        )
        values["progress"] = self._whole(p, "progress", 0, 100, self.bad_progress)
        values["note"] = self._text(p, "note")
        return p
