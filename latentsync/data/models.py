"""The networks of the model stages, loaded once per worker process (or Ray actor) and kept."""

from __future__ import annotations

from functools import cached_property

from latentsync.data.options import DataOptions


class WorkerModels:
    """Lazily loaded: a worker that only runs CPU stages never loads a network."""

    def __init__(self, options: DataOptions):
        self.options = options

    @cached_property
    def device(self):
        from latentsync.devices import parse_device

        return parse_device(self.options.device)

    @cached_property
    def _sync_files(self) -> tuple[str, object, object]:
        from latentsync.checkpoints import resolve_sync_scoring

        return resolve_sync_scoring(checkpoints_dir=self.options.checkpoints)  # (backend, face dir, syncnet path)

    @cached_property
    def face_backend(self):
        from latentsync.faces import load_landmark_backend

        name, weights_dir, _ = self._sync_files
        return load_landmark_backend(name, device=self.device, weights_dir=weights_dir)

    @cached_property
    def sync_scorer(self):
        from latentsync.sync import SyncScorer

        return SyncScorer.from_checkpoint(self._sync_files[2], self.device)

    @cached_property
    def hyperiqa(self):
        from latentsync.checkpoints import resolve_auxiliary
        from latentsync.models.hyperiqa import load_hyperiqa

        return load_hyperiqa(resolve_auxiliary("hyperiqa", self.options.checkpoints), self.device)

    def load_for(self, stage_name: str) -> None:
        """Load the networks ``stage_name`` uses now (a Ray actor does it in its constructor)."""
        if stage_name in ("faces", "sync"):
            self.face_backend  # noqa: B018 (a cached property: reading it loads the network)
        if stage_name == "sync":
            self.sync_scorer  # noqa: B018
        if stage_name == "quality":
            self.hyperiqa  # noqa: B018


_PROCESS_MODELS: dict[DataOptions, WorkerModels] = {}


def models_for(options: DataOptions) -> WorkerModels:
    """This process's models for ``options`` (one set per process, built on first use)."""
    if options not in _PROCESS_MODELS:
        _PROCESS_MODELS[options] = WorkerModels(options)
    return _PROCESS_MODELS[options]
