"""Whole numbers from a URL, and pages of a list, checked in one place.

Ids are 32-bit integer columns: a larger number in a path (the ``int`` converter of
tracker/security.py), a query string (:func:`int_arg`) or a page number (:func:`paginate`) is
refused or ignored before it reaches the database, where SQLite would overflow and PostgreSQL
refuse the query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import request
from flask_sqlalchemy.pagination import Pagination

from tracker.extensions import db

#: The largest id or page number accepted anywhere: the range of the Integer columns on PostgreSQL.
MAX_INT = 2**31 - 1

_WHOLE = re.compile(r"[+-]?[0-9]{1,20}")  # ASCII digits only: int() also reads "١٢" and "1_000"


def whole_number(text: str | None, *, minimum: int = 1, maximum: int = MAX_INT) -> int | None:
    """``text`` as a whole number from ``minimum`` to ``maximum``; None if it is not one."""
    if text is None:
        return None
    text = text.strip()
    if not _WHOLE.fullmatch(text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


def int_arg(
    name: str,
    default: int | None = None,
    *,
    minimum: int = 1,
    maximum: int = MAX_INT,
    args: Mapping[str, str] | None = None,
) -> int | None:
    """The query parameter ``name`` as a whole number; absent, malformed or out of range: ``default``."""
    value = whole_number((request.args if args is None else args).get(name), minimum=minimum, maximum=maximum)
    return default if value is None else value


def page_arg(name: str = "page") -> int:
    """The page number asked for in the query string; 1 unless it is a whole number from 1."""
    return int_arg(name, 1) or 1


def paginate(select: sa.Select[Any], *, page: int, per_page: int) -> Pagination:
    """One page of ``select``'s rows, with the total; a page number past the end gives the last page.

    (db.paginate itself keeps the number from 1 to MAX_INT: tracker/extensions.py.)
    """
    found = db.paginate(select, page=page, per_page=per_page, error_out=False, count=True)
    if not found.items and found.total and found.page > found.pages:
        found = db.paginate(select, page=found.pages, per_page=per_page, error_out=False, count=True)
    return found
