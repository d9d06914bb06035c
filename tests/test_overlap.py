"""latentsync.inference.overlap: order, bounded queues, errors, early stops, Ctrl-C, no leaked threads, real overlap."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from latentsync.errors import InputError
from latentsync.inference.overlap import Stage, StageTimes, drained, max_items_in_flight, pipelined

SLEEP = 0.05  # seconds per item of the sleep stages (time.sleep releases the GIL, like ffmpeg, numpy, torch)


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Every test must end with the threads it started joined."""
    before = set(threading.enumerate())
    yield
    leaked = [t.name for t in threading.enumerate() if t not in before and t.name.startswith("overlap-")]
    assert leaked == []


def jittery(seconds_by_item, then=lambda x: x):
    """A stage function that sleeps a different time per item (so parallel workers finish out of order)."""
    return lambda x: (time.sleep(seconds_by_item(x)), then(x))[1]


def test_results_in_input_order_with_several_workers() -> None:
    stages = [Stage("square", jittery(lambda x: 0.001 * (7 * x % 5), lambda x: x * x), workers=3),
              ("plus_one", lambda x: x + 1, 1),
              Stage("neg", jittery(lambda x: 0.001 * (x % 3), lambda x: -x), workers=2)]
    assert list(pipelined(range(40), stages)) == [-(x * x + 1) for x in range(40)]


def test_sink_stages_see_items_in_order() -> None:
    written = []
    stages = [Stage("slow", jittery(lambda x: 0.001 * (x % 4)), workers=3), ("write", written.append, 1)]
    with drained(stages) as sink:
        for x in range(30):
            sink.put(x)
    assert written == list(range(30))  # all of them, in order, once the block is left


def test_memory_is_bounded_by_the_queues() -> None:
    """An endless source and a slow consumer: the source is read only as far as the queues allow."""
    pulled = [0]

    def source():
        for x in itertools.count():
            pulled[0] = x + 1
            yield x

    stages = [Stage("a", lambda x: x, 2), Stage("b", lambda x: x, 1)]
    maxsize = 2
    results = pipelined(source(), stages, maxsize=maxsize)
    for consumed in range(1, 6):
        next(results)
        time.sleep(0.1)  # let the threads fill every queue
        in_flight = pulled[0] - consumed  # items pulled from the source and not yet consumed
        assert maxsize <= in_flight <= max_items_in_flight(stages, maxsize)  # reads ahead, but only so far
    assert max_items_in_flight(stages, maxsize) == 1 + 3 * 2 + 3
    results.close()


def test_stage_error_is_raised_promptly_as_itself_and_threads_are_joined() -> None:
    def fail_on_5(x):
        if x == 5:
            raise InputError(f"no face in frame {x}")
        return x

    seen = []
    started = time.perf_counter()
    with pytest.raises(InputError, match="no face in frame 5"):
        stages = [("check", fail_on_5, 2), ("slow", jittery(lambda x: SLEEP), 1)]
        for x in pipelined(itertools.count(), stages):
            seen.append(x)
    assert seen == list(range(len(seen))) and len(seen) <= 5  # in order, and nothing from item 5 on
    assert time.perf_counter() - started < 2.0


def test_source_error_and_source_cleanup() -> None:
    closed = []

    def frames():
        try:
            yield 1
            yield 2
            raise OSError("ffmpeg died")
        finally:
            closed.append(True)

    with pytest.raises(OSError, match="ffmpeg died"):
        list(pipelined(frames(), [("id", lambda x: x, 1)]))
    assert closed == [True]


def test_consumer_stopping_early_closes_the_source_and_joins() -> None:
    closed = []

    def endless():
        try:
            yield from itertools.count()
        finally:
            closed.append(True)

    results = pipelined(endless(), [("id", lambda x: x, 2)])
    for x in results:
        if x == 3:
            break
    results.close()
    assert closed == [True]


def test_sink_stage_error_reaches_put_and_exit() -> None:
    def fail_on_2(x):
        if x == 2:
            raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        with drained([("write", fail_on_2, 1)], maxsize=1) as sink:
            for x in itertools.count():  # endless: only the error can stop it
                sink.put(x)


def test_error_in_main_thread_body_stops_the_sink() -> None:
    written = []
    with pytest.raises(KeyboardInterrupt):
        with drained([("write", jittery(lambda x: SLEEP), 1), ("keep", written.append, 1)]) as sink:
            sink.put(0)
            raise KeyboardInterrupt  # Ctrl-C while the main thread denoises
    assert len(written) <= 1  # queued items are dropped, not processed to the end


def test_keyboard_interrupt_while_waiting_for_results() -> None:
    """Ctrl-C reaches the main thread while it waits on a slow stage; the threads are joined."""
    main = threading.get_ident()
    timer = threading.Timer(0.2, lambda: _interrupt(main))
    timer.start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        for _ in pipelined(range(100), [("slow", jittery(lambda x: 0.5), 1)]):
            pass
    timer.join()
    assert time.perf_counter() - started < 2.0


def _interrupt(thread_id: int) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(KeyboardInterrupt))


def test_timing_shows_overlap() -> None:
    """Three sleep stages of SLEEP s per item overlap: wall ~ n * SLEEP, not 3 * n * SLEEP."""
    n = 12
    times = StageTimes()
    prepared = pipelined(range(n), [Stage("prepare", jittery(lambda x: SLEEP))], timer=times)
    with drained([Stage("write", jittery(lambda x: SLEEP))], timer=times) as sink:
        for x in prepared:
            with times.measure("denoise"):
                time.sleep(SLEEP)
            sink.put(x)
    wall = times.wall_seconds()
    busy = sum(times.busy.values())
    assert times.items == {"source": n, "prepare": n, "denoise": n, "write": n}
    assert busy >= 3 * n * SLEEP * 0.95
    assert wall < 0.6 * busy  # sequential would be wall == busy; perfect overlap wall ~ busy / 3
    assert times.busy_fractions(wall)["denoise"] > 0.6


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        Stage("x", lambda x: x, 0)
    with pytest.raises(ValueError, match="maxsize must be an integer >= 1, got 0"):
        list(pipelined(range(3), [("x", lambda x: x, 1)], maxsize=0))
