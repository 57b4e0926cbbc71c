"""How pages and mail write a moment: the date as the locale writes it, the time in hours and minutes.

Babel's own ``medium`` datetime carries seconds ("Nov 24, 2026, 3:00:00 AM"), which nobody reads in
a history or an outbox. :func:`format_datetime` replaces Flask-Babel's ``datetimeformat`` filter:
the locale's own glue ("{1}, {0}", "{1} 'at' {0}") joins the date of the width asked for and the
locale's short time, so every language keeps its order and words. Machine-readable values
(``<time datetime>``, exports, the API) do not pass through here.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import flask_babel
from babel import Locale
from babel.dates import get_date_format, get_datetime_format, get_time_format

_WIDTHS = ("short", "medium", "long", "full")


@lru_cache(maxsize=64)
def datetime_pattern(locale: str, width: str) -> str:
    """The CLDR pattern of a ``width`` date and a short time, joined as ``locale`` joins them."""
    parsed = Locale.parse(locale)
    glue = str(get_datetime_format(width, locale=parsed))
    date = get_date_format(width, locale=parsed).pattern
    time = get_time_format("short", locale=parsed).pattern
    return glue.replace("{1}", date).replace("{0}", time)


def format_datetime(value: datetime | None = None, format: str | None = None, rebase: bool = True) -> str:
    """A moment in the reader's language and zone, to the minute: the ``datetimeformat`` filter.

    ``format`` is a width (short, medium, long, full; medium by default) or a Babel pattern, used as
    given.
    """
    format = format or "medium"
    if format in _WIDTHS:
        format = datetime_pattern(str(flask_babel.get_locale() or "en"), format)
    return flask_babel.format_datetime(value, format, rebase)
