"""A bounded in-process cache of the dashboard's figures, valid while the data version stands.

Every transaction that writes programme data raises ``DataVersion.version`` at its commit (see
tracker/models.py), on whichever host it runs. A request reads the version (one small statement)
and looks its figures up under a key that holds it, so figures computed before any write are
never served after it, on this host or another. The cache forgets everything when it sees another
version, and keeps at most ``ENTRIES`` entries (least recently used go first) between writes.
Values must be plain data: they outlive the request and its database session.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context

from tracker.extensions import db
from tracker.models import DATA_VERSION, DataVersion

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Entries kept per process: a few scopes × filters × languages; a rendered matrix is the largest.
ENTRIES = 64
_EXTENSION = "dashboard_cache"
_CREATE = threading.Lock()


class VersionedCache:
    """Least-recently-used entries, all computed at one data version; thread-safe."""

    def __init__(self, size: int = ENTRIES) -> None:
        self.size = size
        self.version: int | None = None
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        #: Lookups answered from the cache and computed, for tests and the curious.
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, version: int, key: Hashable, compute: Callable[[], T]) -> T:
        """The value of ``key`` at ``version``: from the cache, else computed (and kept if current)."""
        with self._lock:
            if version != self.version:
                # A write happened: nothing older holds. A version lower than ours (a reader that
                # started before a write) also starts again from it. A restore sets the version
                # above both the restored and the replaced one (tracker.backup), so a worker that
                # saw nothing during it cannot meet its old number again for other data.
                self._entries.clear()
                self.version = version
            if version == self.version and key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        # Computed outside the lock: a slow query must not hold up other threads' lookups. Two
        # threads may compute the same entry at once; both results are equal.
        value = compute()
        with self._lock:
            if version == self.version:  # an older reader's figures are served, not kept
                self._entries[key] = value
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry (the next lookup computes)."""
        with self._lock:
            self._entries.clear()
            self.version = None


def cache_of(app: Flask, name: str = _EXTENSION, size: int = ENTRIES) -> VersionedCache:
    """The app's cache called ``name``, created at first use (each app, and so each worker
    process, has its own)."""
    found = app.extensions.get(name)
    if found is None:
        with _CREATE:
            found = app.extensions.setdefault(name, VersionedCache(size))
    return found


def data_version() -> int:
    """The programme's data version, read once per request (one statement)."""
    if has_request_context() and "data_version" in g:
        return g.data_version
    version = db.session.scalar(sa.select(DataVersion.version).where(DataVersion.name == DATA_VERSION))
    if version is None:  # the row is created with the table; a missing row must not serve stale data
        log.warning("data_version row %r is missing: the dashboard is computed without a cache", DATA_VERSION)
        version = -1
    if has_request_context():
        g.data_version = version
    return version


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` for ``key`` at the current data version, computed once while it stands."""
    version = data_version()
    if version < 0:
        return compute()
    return cache_of(current_app).get_or_compute(version, key, compute)
