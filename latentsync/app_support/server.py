"""What keeps a long-running Space flat: freed memory handed back to the OS after each request
(:func:`release_memory`, :func:`limit_malloc_arenas`) and served results removed on shutdown
(:class:`ServedResults`). Part of :mod:`latentsync.app_support`."""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------ a long-running server

logger = logging.getLogger("latentsync.app")

# glibc gives each thread that allocates concurrently its own arena (up to 8 per core), and memory freed in one is
# kept for reuse there: gradio runs requests on a thread pool, so without a cap the process keeps the high-water mark
# of several arenas. Two arenas: the request thread and the helper threads (overlap, ffmpeg pipes) rarely contend.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)
MALLOC_ARENA_MAX_ENV = "MALLOC_ARENA_MAX"  # set by the operator: glibc read it at start-up, leave it alone
# Served result paths kept to remove on shutdown; past this many, entries whose files the hourly sweep already
# deleted are dropped (a path is ~100 bytes: the set stays under ~100 kB).
SERVED_PRUNE_AT = 1024


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``malloc_trim`` and ``mallopt`` exist), else None (macOS, musl)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 -- only glibc has both
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS, environ: Mapping[str, str] | None = None) -> bool:
    """Cap glibc's malloc arenas (call before the server starts its threads); whether it was done.

    Left alone when ``MALLOC_ARENA_MAX`` is set (the operator's choice) or the C library is not glibc."""
    libc = _glibc()
    if libc is None or (os.environ if environ is None else environ).get(MALLOC_ARENA_MAX_ENV):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def release_memory() -> None:
    """After a request: collect reference cycles (a traceback keeps a request's frames and arrays alive), then hand
    the freed heap pages back to the OS (glibc keeps them otherwise, and RSS creeps up with fragmentation)."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


class ServedResults:
    """The result files the app handed to gradio's cache, so that shutdown removes them.

    gradio's cache sweep (``delete_cache``) removes files older than its age limit while the app runs; what is left
    when the process stops (SIGTERM, Ctrl-C) is removed by :meth:`remove_all`, with the per-file folders gradio made
    for them when they are empty. Thread-safe."""

    def __init__(self, prune_at: int = SERVED_PRUNE_AT):
        self._paths: set[Path] = set()
        self._lock = threading.Lock()
        self._prune_at = prune_at

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, path: str | os.PathLike) -> str:
        """Remember ``path`` (returned unchanged, as a string)."""
        with self._lock:
            if len(self._paths) >= self._prune_at:  # the sweep deleted these already
                self._paths = {p for p in self._paths if p.exists()}
            self._paths.add(Path(path))
        return str(path)

    def remove_all(self) -> int:
        """Delete every remembered file that still exists, and its folder when that is left empty; how many."""
        with self._lock:
            paths, self._paths = self._paths, set()
        removed = 0
        for path in paths:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass  # swept already (gradio's own shutdown sweep may run first): its folder may still be there
            except OSError as err:
                logger.warning("could not remove the served result %s: %s", path, err)
                continue
            try:
                path.parent.rmdir()  # gradio puts each file in a folder named by its hash
            except OSError:
                pass  # not empty (another file of the same hash) or already gone
        return removed
