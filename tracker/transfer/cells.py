"""Typing the cells of one imported row (text, whole numbers, dates, choices) and checking their form."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from flask_babel import force_locale
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
_STATUSES = ", ".join(s.value for s in Status)


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

    def __init__(self) -> None:
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
