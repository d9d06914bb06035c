"""Which weights a model stage decides with, as part of the settings its records are checked against.

A record made with other weights is not current: pointing ``--checkpoints`` at another folder (or replacing a file in
it) redoes the model stages. A file is identified by its name, size and modification time (hashing the ~100 MB
files of every run would cost more than it saves); identical files copied with their times kept count as the same.
"""

from __future__ import annotations

from pathlib import Path

from latentsync.data.options import DataOptions

MODEL_STAGES = ("faces", "sync", "quality")


def _face_weight_files(backend: str, face_dir: Path | None) -> list[Path]:
    """The files the landmark backend loads: face-alignment's detector and the landmark network it prefers (its
    1.5 plain file over the 1.4 TorchScript archive: the backend's own :func:`weight_files`); dlib's model ships
    inside a PyPI package (its version is part of the environment, not of the checkpoints)."""
    if backend != "face_alignment" or face_dir is None:
        return []
    from latentsync.faces.backend_face_alignment import weight_files

    return list(weight_files(face_dir))


def stage_weight_files(stage: str, options: DataOptions) -> tuple[str | None, list[Path]]:
    """(face backend name or None, weight files) that ``stage`` loads with ``options``; CheckpointError when they
    cannot be found (the message names each missing file)."""
    if stage not in MODEL_STAGES:
        return None, []
    if stage == "quality":
        from latentsync.checkpoints import resolve_auxiliary

        return None, [resolve_auxiliary("hyperiqa", options.checkpoints)]
    from latentsync.checkpoints import resolve_sync_scoring

    backend, face_dir, syncnet = resolve_sync_scoring(checkpoints_dir=options.checkpoints)
    files = _face_weight_files(backend, face_dir)
    return backend, files + [syncnet] if stage == "sync" else files


def weights_identity(stage: str, options: DataOptions) -> dict:
    """``{"face_backend": ..., "files": {name: [size, mtime_ns]}}`` of the weights ``stage`` uses ({} for the CPU
    stages). Raises CheckpointError when a file is missing: the run stops before the stage, with the message."""
    backend, files = stage_weight_files(stage, options)
    if not files and backend is None:
        return {}
    identity: dict = {"files": {}}
    if backend is not None:
        identity["face_backend"] = backend
    for path in files:
        stat = path.stat()
        identity["files"][path.name] = [stat.st_size, stat.st_mtime_ns]
    return identity
