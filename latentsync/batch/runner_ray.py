"""Run rows on a Ray cluster: actors that each hold their loaded pipelines (one per GPU when the cluster has GPUs,
``num_gpus=1`` each; CPU actors otherwise), fed one row at a time so a slow row never holds up the others.

Inputs and outputs are paths, so every node must see them at the same paths (a shared file system). The
``latentsync`` package travels with the actors (Ray's ``py_modules``); its dependencies must be installed on the nodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from latentsync.batch.jobs import Job
from latentsync.batch.summary import FAILED, RowResult
from latentsync.batch.worker import PipelineCache, RowProgress, WorkerSettings, describe_error, run_job

POLL_SECONDS = 0.2  # how often the driver looks for progress and finished rows


class LipSyncWorker:
    """The body of a Ray actor (wrapped with ``ray.remote`` at run time, so importing this module needs no Ray)."""

    def __init__(self, settings: WorkerSettings, progress_queue=None):
        self.pipelines = PipelineCache(settings)
        self.progress_queue = progress_queue
        self.stage: tuple[int, str] | None = None

    def run(self, job: Job) -> RowResult:
        return run_job(job, self.pipelines, self._relay if self.progress_queue is not None else None)

    def _relay(self, row: int, stage: str, done: int, total: int) -> None:
        try:
            self.progress_queue.put_nowait((row, stage, done, total))
        except Exception:  # progress is best effort: a full or lost queue never fails the row
            pass


def actor_resources(cluster: dict[str, float], workers: int | None,
                    largest_node_cpus: int | None = None) -> tuple[int, dict[str, float]]:  # fmt: skip
    """(number of actors, each one's resources) for a cluster with the total resources ``cluster``.

    With GPUs: one actor per GPU (or ``workers`` if fewer), each ``num_gpus=1`` and one CPU, so that a CPU-only head
    node does not keep them from being placed. Without: ``workers`` CPU actors (default 1, at most one per CPU)
    sharing the CPUs, none asking for more than the largest node has. Never more actors than the cluster can place:
    a row handed to an actor still waiting for resources would wait until the batch ends.
    """
    gpus, cpus = int(cluster.get("GPU", 0)), max(1, int(cluster.get("CPU", 1)))
    if gpus >= 1:
        return min(workers or gpus, gpus), {"num_gpus": 1, "num_cpus": 1}
    count = min(workers or 1, cpus)
    return count, {"num_cpus": max(1, min(cpus // count, largest_node_cpus or cpus))}


def _largest_node_cpus(ray) -> int:
    return max((int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")), default=1)


def run_on_ray(jobs: Sequence[Job], settings: WorkerSettings, address: str | None = None, workers: int | None = None,
               progress: RowProgress | None = None) -> Iterator[RowResult]:  # fmt: skip
    """Yield a :class:`RowResult` per job as rows finish. Connects to ``address`` (None: start a local Ray, or use
    the one this process already started) and shuts Ray down afterwards only if it started it."""
    import ray
    from ray.util.queue import Queue

    import latentsync

    started_here = not ray.is_initialized()
    if started_here:  # ship this package to the nodes (Ray allows that only here, for the whole job)
        ray.init(address=address, log_to_driver=False,
                 runtime_env={"py_modules": [str(Path(latentsync.__file__).parent)]})  # fmt: skip
    actors, progress_queue = [], None
    try:
        count, resources = actor_resources(ray.cluster_resources(), workers, _largest_node_cpus(ray))
        count = min(count, len(jobs)) or 1
        progress_queue = Queue(actor_options={"num_cpus": 0}) if progress else None
        actor_class = ray.remote(LipSyncWorker).options(**resources)
        actors = [actor_class.remote(settings, progress_queue) for _ in range(count)]
        idle = list(actors)
        waiting = list(reversed(jobs))
        running: dict = {}  # ObjectRef -> (job, actor)
        while waiting or running:
            while idle and waiting:
                actor, job = idle.pop(), waiting.pop()
                running[actor.run.remote(job)] = (job, actor)
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            _drain(progress_queue, progress)
            for ref in done:
                job, actor = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # the actor died (out of memory, node lost): this row fails
                    result = RowResult.for_job(job, FAILED, f"the Ray worker failed: {describe_error(err)}")
                    ray.kill(actor)
                    if not idle and not running and waiting:  # keep at least one actor going
                        actors.append(actor_class.remote(settings, progress_queue))
                        idle.append(actors[-1])
                else:
                    idle.append(actor)
                yield result
        _drain(progress_queue, progress)
    finally:
        for actor in actors:  # free their GPUs and memory now, also on an existing cluster
            ray.kill(actor)
        if progress_queue is not None:
            progress_queue.shutdown()
        if started_here:
            ray.shutdown()


def _drain(progress_queue, progress: RowProgress | None) -> None:
    if progress_queue is None or progress is None:
        return
    size = progress_queue.qsize()
    if size:
        for message in progress_queue.get_nowait_batch(size):
            progress(*message)
