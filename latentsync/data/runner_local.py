"""One machine, N worker processes (spawned, so CUDA and torch threads are safe); no service needed.

Workers keep their networks between clips and stages (:func:`latentsync.data.models.models_for`). One worker runs
in this process. A worker that dies (out of memory, a crashing codec) takes its clip with it: the pool is rebuilt and
the clips without a record are retried once; a clip that kills a worker twice is recorded as dropped.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from latentsync.data.engine import RunContext, process_clip
from latentsync.data.outcome import Outcome
from latentsync.data.records import Record, file_stamp, read_record, write_record

WORKER_CRASH_REASON = "error (worker crashed)"
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
                todo = [rel for rel in todo if read_record(context.out_dir, stage_name, rel) is None]
        for rel in todo:  # killed a worker every time: record it so the run completes
            _record_crash(stage_name, rel, context)
            progress(1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _record_crash(stage_name: str, rel: str, context: RunContext) -> None:
    from latentsync.data.engine import get_stage, source_folder

    stage = get_stage(stage_name)
    source = source_folder(stage, context.raw_dir, context.out_dir) / rel
    outcome = Outcome(dropped=WORKER_CRASH_REASON, detail="the worker process died while processing this clip")
    write_record(context.out_dir, Record(stage=stage_name, input=rel, dropped=outcome.dropped, detail=outcome.detail,
                                         input_stamp=file_stamp(source),
                                         params=context.options.stage_params(stage_name)))  # fmt: skip
