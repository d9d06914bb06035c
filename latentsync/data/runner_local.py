"""One machine, N worker processes (spawned, so CUDA and torch threads are safe); no service needed.

Workers keep their networks between clips and stages (:func:`latentsync.data.models.models_for`). One worker runs
in this process. A worker that dies (out of memory, a crashing codec) takes its clip with it: the pool is rebuilt and
the clips without a current record are retried once; a clip that kills a worker twice is recorded as
``error (worker crashed)``, which the next run retries again.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from latentsync.data.engine import (
    RunContext,
    get_stage,
    internal_error_reason,
    process_clip,
    record_failure,
    unrecorded,
)

WORKER_CRASH_REASON = internal_error_reason("worker crashed")  # an internal error: the next run retries the clip
CRASH_RETRIES = 1


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run(stage_name: str, rel: str, context: RunContext) -> str:
    process_clip(stage_name, rel, context)
    return rel


class LocalRunner:
    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))  # fmt: skip

    def run_stage(self, stage_name: str, clips: list[str], context: RunContext, progress=None) -> None:
        """Process ``clips`` (each writes its record); ``progress(n)`` is called as clips finish."""
        progress = progress or (lambda n: None)
        if self.workers == 1:
            for rel in clips:
                process_clip(stage_name, rel, context)
                progress(1)
            return
        todo = list(clips)
        for attempt in range(CRASH_RETRIES + 1):
            try:
                self._pool = self._pool or self._new_pool()
                futures = [self._pool.submit(_run, stage_name, rel, context) for rel in todo]
                for future in as_completed(futures):
                    future.result()
                    progress(1)
                return
            except BrokenProcessPool:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
                todo = unrecorded(get_stage(stage_name), todo, context)
        for rel in todo:  # killed a worker every time: record it so the run completes
            record_failure(stage_name, rel, context, WORKER_CRASH_REASON,
                           "the worker process died while processing this clip")
            progress(1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
