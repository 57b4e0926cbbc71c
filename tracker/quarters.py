"""Calendar quarters (``2026Q3``): the periods of the digest and of indicator measurements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter, e.g. 2026 Q3 (1 July to 30 September)."""

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """``2026Q3`` (also ``2026-Q3``, ``2026q3``) → Quarter; raises ValueError otherwise."""
        match = _QUARTER.match(text)
        if not match:
            raise ValueError(f"not a quarter: {text!r} (expected YYYYQn with n from 1 to 4, e.g. 2026Q3)")
        year = int(match.group(1))
        if not 1 <= year <= 9998:
            raise ValueError(f"not a quarter: {text!r}")
        return cls(year, int(match.group(2)))

    @classmethod
    def containing(cls, day: date) -> Quarter:
        """The quarter a date falls in."""
        return cls(day.year, (day.month - 1) // 3 + 1)

    @property
    def first_day(self) -> date:
        """The quarter's first date."""
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def last_day(self) -> date:
        """The quarter's last date."""
        return self.next.first_day - timedelta(days=1)

    @property
    def starts_at(self) -> datetime:
        """The quarter's first instant (UTC)."""
        return datetime.combine(self.first_day, time(0), tzinfo=UTC)

    @property
    def ends_at(self) -> datetime:
        """The first instant after the quarter (UTC): figures "at the end" count what came before it."""
        return self.next.starts_at

    @property
    def previous(self) -> Quarter:
        """The quarter before."""
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    @property
    def next(self) -> Quarter:
        """The quarter after."""
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}Q{self.number}"  # four digits, as the columns check

    @classmethod
    def last_ended(cls, day: date) -> Quarter:
        """The latest quarter that had ended by ``day``."""
        return cls.containing(day).previous

    def span(self, until: Quarter) -> list[Quarter]:
        """This quarter and the ones after it, up to ``until`` included (empty if it comes first)."""
        quarters, q = [], self
        while q <= until:
            quarters.append(q)
            q = q.next
        return quarters
