"""The same stage functions as a Ray Data pipeline: on a new local Ray instance, or on an existing cluster.

Each stage is one ``ray.data`` map over its pending clips: CPU stages as Ray tasks (one CPU each, at most ``workers``
at a time), model stages as an actor pool (``workers`` actors, each loading its networks once, with a GPU share when
the cluster has GPUs). An actor whose networks do not load records its clips as ``error (...)``, and clips lost with
a Ray worker as ``error (Ray worker lost)``: the next run retries them; the stage itself always completes.
Workers write outputs and records straight to OUT_DIR, so RAW_DIR and OUT_DIR must be on a file system every node
sees (NFS, a mounted bucket...), at the same path; ``latentsync`` must be importable on every node.
"""

from __future__ import annotations

from latentsync.data.engine import (
    RunContext,
    get_stage,
    internal_error_reason,
    process_clip,
    record_failure,
    unrecorded,
)

RAY_LOST_REASON = internal_error_reason("Ray worker lost")


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
        self.load_error: Exception | None = None
        try:  # load now, not inside the first clip
            self.models.load_for(stage_name)
        except Exception as err:  # e.g. a corrupt file, out of GPU memory: every clip says so, the stage completes
            self.load_error = err

    def __call__(self, row: dict) -> dict:
        if self.load_error is not None:
            err = self.load_error
            return _clip_row(record_failure(self.stage_name, row["rel"], self.context,
                                            internal_error_reason(type(err).__name__),
                                            f"the stage's networks did not load: {err}"))  # fmt: skip
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

    def map_arguments(self, stage_name: str, context: RunContext) -> dict:
        """``Dataset.map`` arguments of a stage: ``workers`` actors (model stages) or at most ``workers`` tasks at a
        time (CPU stages)."""
        if get_stage(stage_name).uses_models:
            return {"fn": ModelStage, "fn_constructor_args": (stage_name, context), "concurrency": self.workers,
                    "num_gpus": self.gpus_per_actor}  # fmt: skip
        return {"fn": run_cpu_stage, "fn_kwargs": {"stage_name": stage_name, "context": context}, "num_cpus": 1,
                "concurrency": self.workers}  # fmt: skip

    def run_stage(self, stage_name: str, clips: list[str], context: RunContext, progress=None) -> None:
        import ray.data
        from ray.exceptions import RayError

        ds = ray.data.from_items([{"rel": rel} for rel in clips], override_num_blocks=len(clips))
        ds = ds.map(**self.map_arguments(stage_name, context))
        try:
            for _ in ds.iter_rows():  # records are on disk; the rows only say that a clip is done
                if progress:
                    progress(1)
        except RayError as err:  # a node or actor died (process_clip itself never raises for a clip)
            for rel in unrecorded(get_stage(stage_name), clips, context):
                record_failure(stage_name, rel, context, RAY_LOST_REASON, f"{type(err).__name__}: {err}")
                if progress:
                    progress(1)

    def close(self) -> None:
        import ray

        if self._started:
            ray.shutdown()
