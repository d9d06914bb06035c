"""Run CPU stages on worker threads around a main-thread stage, through bounded queues, in input order.

The lip-sync loop is read -> align/encode -> denoise -> paste -> write per 16-frame window. Done in turn, the
accelerator waits on the CPU stages. Here the stages before the denoiser run on threads that fill a bounded
queue (:func:`pipelined`, iterated by the main thread), and the stages after it run on threads that drain one
(:func:`drained`, fed by the main thread)::

    times = StageTimes()
    prepared = pipelined(read_windows(), [Stage("prepare", prepare, workers=1)], timer=times)
    with drained([Stage("paste", paste), Stage("write", writer.write)], timer=times) as sink:
        for window in prepared:
            with times.measure("denoise"):
                result = denoise(window)  # main thread
            sink.put(result)

Guarantees: items come out in input order (also with several workers per stage); at most ``maxsize`` items
wait in each queue, so memory does not grow with the input's length (:func:`max_items_in_flight`); the first
error of any stage (or of the source iterator) is raised in the main thread at its next ``next()`` /
``put()`` (the original exception, so an ``InputError`` stays one), the other threads stop at their next queue
operation, and every thread is joined before the error leaves; a consumer that stops early (``break``,
``close()``, Ctrl-C) stops and joins the threads too. A stage function that is running when the stop comes
finishes its item first.

Threads, not processes: the heavy stages (ffmpeg pipes, OpenCV, numpy, torch) release the GIL, and nothing has
to be pickled. A stage whose function draws from a shared random generator must keep ``workers=1`` so the
draws stay in input order (byte-identical output to the sequential loop).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

DEFAULT_MAXSIZE = 2  # items per queue: one being handed over, one ready; enough to hide jitter between stages
POLL_SECONDS = 0.05  # how often a blocked thread checks whether the pipeline is stopping
SOURCE = "source"  # StageTimes name of the time spent pulling items from the source iterator

_END = object()  # end-of-stream marker, passed down the queues after the last item


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: ``fn(item) -> item`` run by ``workers`` threads."""

    name: str
    fn: Callable[[Any], Any]
    workers: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"stage {self.name!r}: workers must be an integer >= 1, got {self.workers!r}")


class StageTimes:
    """Seconds each stage spent working (summed over its workers), items done, wall time since creation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.perf_counter()
        self.busy: dict[str, float] = {}
        self.items: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.busy[name] = self.busy.get(name, 0.0) + seconds
            self.items[name] = self.items.get(name, 0) + 1

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Time a block of main-thread work (the denoiser) under ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def wall_seconds(self) -> float:
        return time.perf_counter() - self._started

    def busy_fractions(self, wall: float | None = None) -> dict[str, float]:
        """Busy seconds / wall seconds per stage (above 1 for a stage with several busy workers)."""
        wall = self.wall_seconds() if wall is None else wall
        with self._lock:
            return {name: seconds / wall for name, seconds in self.busy.items()}


def max_items_in_flight(stages: Sequence[Stage], maxsize: int = DEFAULT_MAXSIZE) -> int:
    """Most items :func:`pipelined` holds at once: one at the feeder, ``maxsize`` per queue, one per worker"""
    return 1 + (len(stages) + 1) * maxsize + sum(stage.workers for stage in stages)


class _Cancelled(Exception):
    """Raised inside a worker thread when the pipeline stops: the thread just ends."""


class _Threads:
    """The queues, worker threads, ordering and error state shared by pipelined() and drained()."""

    def __init__(self, stages: Sequence[Stage | tuple], maxsize: int, timer: StageTimes | None,
                 keep_results: bool) -> None:  # fmt: skip
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an integer >= 1, got {maxsize!r}")
        self.stages = [stage if isinstance(stage, Stage) else Stage(*stage) for stage in stages]
        if not self.stages:
            raise ValueError("stages must name at least one stage")
        self.timer = timer or StageTimes()
        # queues[k] feeds stage k; queues[-1] holds the results (absent when nobody reads them).
        n_queues = len(self.stages) + (1 if keep_results else 0)
        self.queues: list[queue.Queue] = [queue.Queue(maxsize) for _ in range(n_queues)]
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._order = [threading.Condition() for _ in self.stages]  # hand results on in sequence order
        self._next_seq = [0] * len(self.stages)
        self._finished_workers = [0] * len(self.stages)
        self.threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------ lifecycle

    def start(self, source: Iterable | None) -> None:
        if source is not None:
            self._spawn(self._feed, "source", iter(source))
        for k, stage in enumerate(self.stages):
            for w in range(stage.workers):
                self._spawn(self._work, f"{stage.name}-{w}", k)

    def _spawn(self, target: Callable, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"overlap-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def shutdown(self) -> None:
        """Stop every thread at its next queue operation and join them all."""
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.stopping.set()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    # ------------------------------------------------------------------------ blocking queue operations

    def put(self, q: queue.Queue, item: Any) -> None:
        while not self.stopping.is_set():
            try:
                q.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue
        raise _Cancelled

    def get(self, q: queue.Queue) -> Any:
        while not self.stopping.is_set():
            try:
                return q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        raise _Cancelled

    # ------------------------------------------------------------------------ thread bodies

    def _feed(self, items: Iterator) -> None:
        try:
            seq = 0
            while True:
                started = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    break
                self.timer.add(SOURCE, time.perf_counter() - started)
                self.put(self.queues[0], (seq, item))
                seq += 1
            self.put(self.queues[0], _END)
        except _Cancelled:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self.fail(error)
        finally:
            close = getattr(items, "close", None)  # a generator source: run its cleanup (close its files)
            if close is not None:
                try:
                    close()
                except BaseException as error:  # noqa: BLE001
                    self.fail(error)

    def _work(self, k: int) -> None:
        stage, inbox = self.stages[k], self.queues[k]
        outbox = self.queues[k + 1] if k + 1 < len(self.queues) else None
        try:
            while True:
                item = self.get(inbox)
                if item is _END:
                    self._finish_worker(k, inbox, outbox)
                    return
                seq, value = item
                started = time.perf_counter()
                result = stage.fn(value)
                self.timer.add(stage.name, time.perf_counter() - started)
                self._hand_on(k, seq, result, outbox)
        except _Cancelled:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self.fail(error)

    def _hand_on(self, k: int, seq: int, result: Any, outbox: queue.Queue | None) -> None:
        """Pass ``result`` on once every earlier item of stage ``k`` has been passed on (input order)."""
        order = self._order[k]
        with order:
            while self._next_seq[k] != seq:
                if self.stopping.is_set():
                    raise _Cancelled
                order.wait(POLL_SECONDS)
        if outbox is not None:
            self.put(outbox, (seq, result))
        with order:
            self._next_seq[k] += 1
            order.notify_all()

    def _finish_worker(self, k: int, inbox: queue.Queue, outbox: queue.Queue | None) -> None:
        """End of stream for one worker; the stage's last worker passes the end marker on."""
        with self._lock:
            self._finished_workers[k] += 1
            last = self._finished_workers[k] == self.stages[k].workers
        if not last:
            self.put(inbox, _END)  # let a sibling worker see it too
        elif outbox is not None:
            self.put(outbox, _END)


def pipelined(source: Iterable, stages: Sequence[Stage | tuple], maxsize: int = DEFAULT_MAXSIZE,
              timer: StageTimes | None = None) -> Iterator:  # fmt: skip
    """Yield ``stages[-1].fn(... stages[0].fn(item))`` for each item of ``source``, in order.

    ``source`` is iterated on its own thread and each stage runs on ``workers`` threads, connected by queues
    of ``maxsize`` items. Stages are :class:`Stage` or ``(name, fn, workers)`` tuples. Threads start at the
    first ``next()``; closing the generator (or leaving the loop) stops and joins them.
    """
    threads = _Threads(stages, maxsize, timer, keep_results=True)
    results = threads.queues[-1]
    threads.start(source)
    try:
        while True:
            try:
                item = threads.get(results)
            except _Cancelled:  # a stage failed: raise its error (shutdown below joins the threads first)
                threads.raise_if_failed()
                raise
            if item is _END:
                break
            yield item[1]
    finally:
        threads.shutdown()
    threads.raise_if_failed()


class Sink:
    """The main thread's end of :func:`drained`: ``put`` items in order."""

    def __init__(self, threads: _Threads) -> None:
        self._threads = threads
        self._seq = 0
        self._closed = False

    def put(self, item: Any) -> None:
        """Queue ``item`` for the stages (blocks while the first queue is full); raises a stage's error."""
        if self._closed:
            raise ValueError("put() after the sink was closed")
        self._threads.raise_if_failed()
        try:
            self._threads.put(self._threads.queues[0], (self._seq, item))
        except _Cancelled:
            self._threads.raise_if_failed()
            raise
        self._seq += 1

    def close(self) -> None:
        """Signal the end, wait until the stages have handled every item, and raise the first error."""
        if self._closed:
            return
        self._closed = True
        try:
            self._threads.put(self._threads.queues[0], _END)
        except _Cancelled:
            pass
        for thread in self._threads.threads:
            while thread.is_alive():  # joined in slices so Ctrl-C reaches the main thread promptly
                thread.join(POLL_SECONDS)
        self._threads.raise_if_failed()


@contextmanager
def drained(stages: Sequence[Stage | tuple], maxsize: int = DEFAULT_MAXSIZE,
            timer: StageTimes | None = None) -> Iterator[Sink]:  # fmt: skip
    """A :class:`Sink` whose items go through ``stages`` on worker threads, in order (last results dropped).

    Leaving the block normally waits for every item to be handled and raises the first stage error; leaving it
    with an exception stops the stages (items still queued are dropped) and re-raises.
    """
    threads = _Threads(stages, maxsize, timer, keep_results=False)
    threads.start(None)
    sink = Sink(threads)
    try:
        yield sink
        sink.close()
    finally:
        threads.shutdown()
