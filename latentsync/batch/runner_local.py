"""Run rows on this machine: in this process (one worker), or in N spawned processes that each hold their own
pipelines. Either way results come back as rows finish, and the pipelines' progress is relayed to ``progress``."""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import signal
import threading
from collections.abc import Iterator, Sequence

from latentsync.batch.jobs import Job
from latentsync.batch.summary import RowResult
from latentsync.batch.worker import PipelineCache, RowProgress, WorkerSettings, run_job

POLL_SECONDS = 0.2  # how often the parent looks for progress and finished rows


def run_local(jobs: Sequence[Job], settings: WorkerSettings, workers: int = 1,
              progress: RowProgress | None = None) -> Iterator[RowResult]:  # fmt: skip
    """Yield a :class:`RowResult` per job, in the order they finish."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        pipelines = PipelineCache(settings)
        for job in jobs:
            yield run_job(job, pipelines, progress)
        return
    yield from _run_in_processes(jobs, settings, min(workers, len(jobs)), progress)


# ------------------------------------------------------------------------------------------------ worker processes

_pipelines: PipelineCache | None = None
_progress_queue = None
CLEANUP_GRACE_S = 20.0  # seconds a terminated worker may spend removing a row's temporary files
_in_row = False  # a row is running in this worker (SIGTERM then unwinds it instead of exiting at once)


def _stop(signum: int, frame) -> None:
    """SIGTERM in a worker (the parent's ``Pool.terminate``): during a row, unwind it so that its temporary files go;
    otherwise exit at once, as the pool expects (an exception in its idle loop could leave a shared lock held)."""
    from latentsync.cli_common import EXIT_SIGNAL_BASE, Interrupted

    if _in_row:
        # Unwind the row so its clean-up runs, but never outlive the parent's terminate(): if the clean-up is stuck
        # (e.g. joining a pipeline worker thread blocked in a native call), a watchdog ends the process anyway.
        watchdog = threading.Timer(CLEANUP_GRACE_S, os._exit, args=(EXIT_SIGNAL_BASE + signum,))
        watchdog.daemon = True
        watchdog.start()
        raise Interrupted(signum)
    os._exit(EXIT_SIGNAL_BASE + signum)


def _init_worker(settings: WorkerSettings, progress_queue, threads: int) -> None:
    """Runs once in each worker process. Ctrl-C is the parent's to handle (it reaches the whole process group)."""
    global _pipelines, _progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    import torch

    torch.set_num_threads(threads)  # the workers share the cores instead of each taking all of them
    _pipelines, _progress_queue = PipelineCache(settings), progress_queue


def _run_in_worker(job: Job) -> RowResult:
    global _in_row

    def relay(row: int, stage: str, done: int, total: int) -> None:
        _progress_queue.put((row, stage, done, total))

    try:
        _in_row = True
        result = run_job(job, _pipelines, relay)
        _in_row = False  # (a SIGTERM between these two lines is caught below like one during the row)
        return result
    except KeyboardInterrupt as err:  # SIGTERM during the row: its clean-up has run; leave now
        os._exit(128 + getattr(err, "signum", signal.SIGTERM))


def _run_in_processes(jobs: Sequence[Job], settings: WorkerSettings, workers: int,
                      progress: RowProgress | None) -> Iterator[RowResult]:  # fmt: skip
    context = multiprocessing.get_context("spawn")  # fork would copy this process's torch and threads
    progress_queue = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = context.Pool(workers, initializer=_init_worker, initargs=(settings, progress_queue, threads))
    finished = False
    try:
        pending = [pool.apply_async(_run_in_worker, (job,)) for job in jobs]
        while pending:
            _drain(progress_queue, progress)
            still = []
            for handle in pending:
                if handle.ready():
                    yield handle.get()
                else:
                    still.append(handle)
            pending = still
        _drain(progress_queue, progress)
        finished = True
    finally:
        if finished:
            pool.close()  # the workers see no more work and exit
        else:
            pool.terminate()  # interrupted: SIGTERM stops the rows in flight (their temporary files go)
        pool.join()


def _drain(progress_queue, progress: RowProgress | None) -> None:
    try:
        message = progress_queue.get(timeout=POLL_SECONDS)
        while True:
            if progress:
                progress(*message)
            message = progress_queue.get_nowait()
    except queue_module.Empty:
        pass
