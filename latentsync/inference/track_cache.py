"""An on-disk cache of face tracks, so that lip-syncing the same video again (dubbing it into another language)
skips face analysis, the slowest part after the diffusion.

What is stored: the tracker's per-frame choices (:class:`~latentsync.faces.TrackRecords`: 68 landmarks, a box and a
"small face" flag per frame, about 600 bytes a frame, 1.5 MB for 100 s at 25 fps) in one ``.npz`` file per video
and setting. Gap filling and smoothing are recomputed from them (milliseconds), so a cached run gives exactly the
track, and therefore exactly the output, of an uncached one.

The key is a SHA-256 of the video file's *content* (renaming or copying the file still hits; a re-encoded file
misses) and of everything the records depend on: the landmark backend, its weights (the SHA-256 of
face-alignment's files) and its detection settings, the speaker choice, the frame rate the video is read at,
the tracker's settings, and this format's version.

Where: ``$LATENTSYNC_CACHE_DIR`` if set, else ``<Hugging Face cache>/latentsync/face-tracks`` (``$HF_HOME``,
by default ``~/.cache/huggingface``). Size: at most ``$LATENTSYNC_CACHE_MAX_MB`` megabytes (default 2048); after each
write the least recently used files (by modification time, which every read refreshes: ``atime`` is often
disabled) are deleted until the folder fits. Files are written under a temporary name and renamed into place
(``os.replace`` is atomic within a folder), so concurrent runs see a complete file or none; a file that cannot be
read is treated as a miss and removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentsync.faces.tracking import TrackRecords

CACHE_DIR_ENV = "LATENTSYNC_CACHE_DIR"
CACHE_MAX_MB_ENV = "LATENTSYNC_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048  # 2 GB: over a thousand hours of 25 fps video's face tracks
CACHE_SUBDIR = ("latentsync", "face-tracks")
FORMAT_VERSION = 1  # bump when what is stored or how it is computed changes
HASH_BLOCK = 1 << 20  # bytes read at a time while hashing a video
SUFFIX = ".npz"

logger = logging.getLogger("latentsync.inference.track_cache")


def default_cache_dir(environ: dict | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_DIR_ENV):
        return Path(environ[CACHE_DIR_ENV]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME).joinpath(*CACHE_SUBDIR)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def track_key(video: str | os.PathLike, settings: dict) -> str:
    """The cache key of ``video``'s face track under ``settings`` (JSON-serialisable: backend, speaker, rate...)."""
    text = json.dumps({"format": FORMAT_VERSION, "video": file_digest(video), **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedTrack:
    records: TrackRecords
    complete: bool  # the records reach the video's last frame (else the first len(records) frames only)


@dataclass(frozen=True)
class TrackCache:
    folder: Path
    max_bytes: int = DEFAULT_MAX_MB * 1024 * 1024

    @classmethod
    def from_env(cls, environ: dict | None = None) -> TrackCache:
        """Folder and size limit from ``$LATENTSYNC_CACHE_DIR`` and ``$LATENTSYNC_CACHE_MAX_MB`` (see the module)."""
        environ = os.environ if environ is None else environ
        raw = environ.get(CACHE_MAX_MB_ENV, "").strip()
        try:
            max_mb = float(raw) if raw else DEFAULT_MAX_MB
        except ValueError:
            max_mb = -1.0
        if not max_mb >= 0:
            raise ValueError(f"{CACHE_MAX_MB_ENV} must be a number of megabytes >= 0, got {raw!r}")
        return cls(default_cache_dir(environ), int(max_mb * 1024 * 1024))

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{SUFFIX}"

    def load(self, key: str) -> CachedTrack | None:
        """The stored records for ``key``, or None (missing or unreadable: then removed)."""
        path = self.path(key)
        try:
            with np.load(path) as data:
                records = TrackRecords(data["landmarks"], data["boxes"], data["small"].astype(bool))
                complete = bool(data["complete"])
            os.utime(path)  # mark as recently used
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            logger.warning("removing unreadable face-track cache file %s: %s", path, err)
            path.unlink(missing_ok=True)
            return None
        return CachedTrack(records, complete)

    def store(self, key: str, records: TrackRecords, complete: bool) -> None:
        """Write atomically (temporary name, then rename), then evict least recently used files over the limit.

        Failures to write (read-only folder, full disk) are logged, never raised: the cache only saves time."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as file:
                    np.savez(file, landmarks=records.landmarks, boxes=records.boxes, small=records.small,
                             complete=np.array(complete))  # fmt: skip
                os.replace(tmp, self.path(key))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            logger.warning("could not write the face-track cache in %s: %s", self.folder, err)
            return
        self.evict()

    def evict(self) -> None:
        """Delete the least recently used files until the folder holds at most ``max_bytes``."""
        entries = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed by a concurrent run
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
