"""Batch dubbing: many (video, audio) rows from a CSV, a JSONL or a folder of pairs, resumable, locally or on Ray.

``python -m latentsync.batch JOBS OUT_DIR`` (see ``--help``); in Python, :func:`run_batch` with a
:class:`BatchConfig`. Modules: ``options`` (row values → LipSyncOptions), ``jobs`` (sources → rows), ``worker``
(one row on a loaded pipeline), ``runner_local`` / ``runner_ray`` (where rows run), ``summary``, ``progress``,
``run`` (the batch from start to end). Importing this package loads no torch and no Ray.
"""

from latentsync.batch.jobs import Job, RowError, read_jobs
from latentsync.batch.run import BatchConfig, BatchReport, run_batch
from latentsync.batch.summary import RowResult
from latentsync.batch.worker import WorkerSettings

__all__ = ["BatchConfig", "BatchReport", "Job", "RowError", "RowResult", "WorkerSettings", "read_jobs", "run_batch"]
