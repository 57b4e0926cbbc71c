"""Statements that do not grow with the data: bulk inserts, updates and ``IN`` lists in bounded batches.

A database refuses a statement with too many parameters: PostgreSQL at 65,535, SQLite at 32,766
(999 before SQLite 3.32). A job that builds one statement from everything it found (every
escalation of a backlog, every key it looks up) works at 12,000 actions and fails at 120,000.
Callers cut their rows or values with :func:`chunks` into :func:`size` per statement and run the
statements in the same transaction, so a job stays all-or-nothing.

SQLAlchemy already cuts the executemany of an ORM flush or of ``session.execute(insert(T), rows)``
to its dialect's limit; what it cannot cut is a multi-row ``insert(T).values(rows)`` or an
``IN (…)`` list, which are the callers of this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from sqlalchemy.engine import Dialect

from tracker.extensions import db

T = TypeVar("T")

#: Rows (or ``IN`` values) per statement, at most: a few milliseconds of work each, and far below
#: the limits even with a dozen parameters per row.
ROWS = 1000
#: Parameters left to the rest of a batched statement (its WHERE conditions, SET values).
MARGIN = 100


def size(per_row: int = 1, dialect: Dialect | None = None) -> int:
    """Rows of ``per_row`` parameters that one statement may carry on this database (at most ROWS).

    The limit is the dialect's (SQLAlchemy knows an old SQLite's 999); ``dialect`` defaults to
    that of the session's database.
    """
    dialect = dialect or db.session.get_bind().dialect
    limit = int(dialect.insertmanyvalues_max_parameters)
    return max(1, min(ROWS, (limit - MARGIN) // max(1, per_row)))


def chunks(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """``values`` as consecutive lists of at most ``size`` items, in order (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"a batch holds at least one item, not {size}")
    iterator = iter(values)
    while batch := list(islice(iterator, size)):
        yield batch
