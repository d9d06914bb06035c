"""The same stage functions as a Ray Data pipeline: on a new local Ray instance, or on an existing cluster.

Each stage is one ``ray.data`` map over its pending clips: CPU stages as Ray tasks (one CPU each), model stages as an
actor pool (``concurrency`` actors, each loading its networks once, with a GPU share when the cluster has GPUs).
Workers write outputs and records straight to OUT_DIR, so RAW_DIR and OUT_DIR must be on a file system every node
sees (NFS, a mounted bucket...), at the same path; ``latentsync`` must be importable on every node.
"""

from __future__ import annotations

from latentsync.data.engine import RunContext, get_stage, process_clip


def _clip_row(record) -> dict:
    return {"rel": record.input, "dropped": record.dropped or ""}


def run_cpu_stage(row: dict, stage_name: str, context: RunContext) -> dict:
    """A CPU stage on one clip (a stateless Ray task)."""
    return _clip_row(process_clip(stage_name, row["rel"], context))


class ModelStage:
    """A model stage on one clip at a time (a Ray actor: the networks load once, in the constructor)."""

    def __init__(self, stage_name: str, context: RunContext):
        from latentsync.data.models import WorkerModels

        self.stage_name, self.context = stage_name, context
        self.models = WorkerModels(context.options)
        stage = get_stage(stage_name)
        if stage.name in ("faces", "sync"):  # load now, not inside the first clip
            self.models.face_backend
        if stage.name == "sync":
            self.models.sync_scorer
        if stage.name == "quality":
            self.models.hyperiqa

    def __call__(self, row: dict) -> dict:
        return _clip_row(process_clip(self.stage_name, row["rel"], self.context, self.models))


class RayRunner:
    def __init__(self, address: str | None = None, workers: int = 1, show_progress: bool = True):
        import logging

        import ray
        import ray.data

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = show_progress
        if not show_progress:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        gpus = ray.cluster_resources().get("GPU", 0)
        self.gpus_per_actor = 0 if not gpus else min(1.0, gpus / workers)

    def run_stage(self, stage_name: str, clips: list[str], context: RunContext, progress=None) -> None:
        import ray.data

        stage = get_stage(stage_name)
        ds = ray.data.from_items([{"rel": rel} for rel in clips], override_num_blocks=len(clips))
        if stage.uses_models:
            ds = ds.map(ModelStage, fn_constructor_args=(stage_name, context), concurrency=self.workers,
                        num_gpus=self.gpus_per_actor)  # fmt: skip
        else:
            ds = ds.map(run_cpu_stage, fn_kwargs={"stage_name": stage_name, "context": context}, num_cpus=1)
        for _ in ds.iter_rows():  # records are on disk; the rows only say that a clip is done
            if progress:
                progress(1)

    def close(self) -> None:
        import ray

        if self._started:
            ray.shutdown()
