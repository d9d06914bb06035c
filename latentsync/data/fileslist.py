"""The training file list (stage 8): which aligned clips training reads.

Format: a UTF-8 text file, one clip path per line; relative paths are relative to the list file's folder (absolute
paths are allowed); blank lines and lines starting with ``#`` are ignored. Each clip is an aligned face video:
H.264, 25 fps, resolution x resolution pixels, with an AAC audio track (16 kHz mono).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

COMMENT_PREFIX = "#"


def read_fileslist(path: str | os.PathLike) -> list[Path]:
    """The clips listed in ``path``, as paths (relative entries resolved against the list's folder), in order."""
    path = Path(path)
    folder = path.parent
    clips = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if not entry or entry.startswith(COMMENT_PREFIX):
            continue
        clip = Path(entry)
        clips.append(clip if clip.is_absolute() else folder / clip)
    return clips


def write_fileslist(path: str | os.PathLike, clips: Iterable[str | os.PathLike], header: str = "") -> Path:
    """Write ``clips`` (paths under the list's folder are stored relative to it), atomically; returns ``path``.

    ``header``: optional comment lines (each written with a leading ``# ``). :func:`read_fileslist` skips them, but
    the reference trainer would read them as paths: :func:`latentsync.data.process_dataset` writes none.
    """
    path = Path(path)
    folder = path.parent.resolve()
    lines = [f"{COMMENT_PREFIX} {text}" for text in header.splitlines() if text.strip()]
    for clip in clips:
        clip = Path(clip)
        absolute = clip.resolve() if clip.is_absolute() or clip.exists() else (folder / clip)
        try:
            entry = absolute.relative_to(folder).as_posix()
        except ValueError:
            entry = str(absolute)
        if "\n" in entry or entry.startswith(COMMENT_PREFIX):
            raise ValueError(f"clip path {entry!r} cannot be written to a file list (newline or leading '#')")
        lines.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
    return path
