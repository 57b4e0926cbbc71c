"""Whole numbers from a URL, and pages of a list, checked in one place.

Ids are 32-bit integer columns: a larger number in a path (the ``int`` converter of
tracker/security.py), a query string (:func:`int_arg`) or a page number (:func:`paginate`) is
refused or ignored before it reaches the database, where SQLite would overflow and PostgreSQL
refuse the query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from math import ceil
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


class _CountedPagination(Pagination):
    """A page whose total is counted first, then only its rows are read (see :func:`counted_page`)."""

    def _query_items(self) -> list[Any]:
        total = self._total = self._query_args["counter"]()
        if self._query_args["last_if_beyond"]:
            self.page = min(self.page, max(1, ceil(total / self.per_page)))
        if self._query_offset >= total:
            return []  # nothing to read: past the end, or an empty list
        return self._query_args["fetch"](self._query_offset, self.per_page)

    def _query_count(self) -> int:
        return self._total


def counted_page(
    count: Callable[[], int],
    fetch: Callable[[int, int], list[Any]],
    *,
    page: int,
    per_page: int,
    last_if_beyond: bool = True,
) -> Pagination:
    """A page of a list from two callables: ``count()`` the total, then ``fetch(offset, limit)`` its rows.

    The count comes first, so a page past the end becomes the last page (``last_if_beyond``; else
    it is empty) without reading anything twice, and an empty page reads no rows.
    """
    return _CountedPagination(
        page=min(max(page, 1), MAX_INT),
        per_page=per_page,
        max_per_page=None,
        error_out=False,
        count=True,
        counter=count,
        fetch=fetch,
        last_if_beyond=last_if_beyond,
    )
