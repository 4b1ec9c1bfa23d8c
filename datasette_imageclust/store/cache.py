"""The one way a process remembers something it read from a database: until the
database changes (:func:`~datasette_imageclust.store.collection.change_token`).

Every cache of the package (index status, cluster centroids, the map's arrays...) is a
:class:`TokenCache`, so "has the database changed" is decided in one place.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")


class TokenCache:
    """A bounded, thread-safe map ``key -> value`` where each value is kept only while the
    database's change token is the one it was computed under. Concurrent callers of the
    same key wait for one computation instead of repeating it."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: "OrderedDict[Hashable, tuple[Hashable, object]]" = OrderedDict()
        self._lock = threading.Lock()
        self._busy: dict[Hashable, threading.Lock] = {}

    def get(self, token: tuple | None, key: Hashable, compute: Callable[[], T]) -> T:
        """The value for ``key`` under ``token`` (a ``change_token``, whose first element
        names the database, so several databases' entries live side by side), computed
        once if absent or stale. ``token`` None (changes cannot be told) means: never cache."""
        if token is None:
            return compute()
        key = (token[0], key)
        with self._lock:
            hit = self._fresh(token, key)
            if hit is not None:
                return hit[0]  # type: ignore[return-value]
            busy = self._busy.setdefault(key, threading.Lock())
        with busy:  # one computation per key; the others wait for it, then find it
            with self._lock:
                hit = self._fresh(token, key)
            if hit is not None:
                return hit[0]  # type: ignore[return-value]
            value = compute()
            with self._lock:
                self._store(key, token, value)
                self._busy.pop(key, None)
            return value

    def peek(self, token: tuple | None, key: Hashable) -> tuple[object] | None:
        """``(value,)`` if ``key`` is cached under ``token``, else None (for callers that
        compute asynchronously; they then :meth:`put` the value)."""
        if token is None:
            return None
        with self._lock:
            return self._fresh(token, (token[0], key))

    def put(self, token: tuple | None, key: Hashable, value: object) -> None:
        if token is None:
            return
        with self._lock:
            self._store((token[0], key), token, value)

    def _store(self, key: Hashable, token: tuple, value: object) -> None:
        self._items[key] = (token, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def _fresh(self, token: Hashable, key: Hashable) -> tuple[object] | None:
        got = self._items.get(key)
        if got is None or got[0] != token:
            return None
        self._items.move_to_end(key)
        return (got[1],)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
