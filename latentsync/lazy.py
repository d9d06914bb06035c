"""A value built on first use, once per process, thread-safe: weights that may need a download (the face restorer,
the SyncNet that finds who speaks) are loaded only by the requests that need them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """``Lazy(load).get()`` calls ``load()`` the first time and returns that value from then on."""

    def __init__(self, load: Callable[[], T]):
        self._load = load
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._load()
            return self._value
