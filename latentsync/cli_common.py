"""What every ``python -m latentsync...`` command shares: exit codes, the input-file and output-folder checks, orderly stops on SIGINT /
SIGTERM, and one-line error reports (:func:`run_reporting_errors`).

A leaf (the standard library and :mod:`latentsync.errors` only): the main CLI (:mod:`latentsync.inference.cli`, which
re-exports these names), the Sync-C scorer's, the batch runner's and the data toolchain's all build on it without
importing each other.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from latentsync.errors import CheckpointError, InputError

EXIT_OK, EXIT_FAILURE, EXIT_INPUT = 0, 1, 2  # success; anything else; bad input or arguments (argparse's own 2)
EXIT_SIGNAL_BASE = 128  # killed-by-signal convention: 130 for SIGINT (Ctrl-C), 143 for SIGTERM (docker stop, timeout)
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def check_files_exist(args: argparse.Namespace, *names: str) -> None:
    """:class:`InputError` naming the option (``--video``) when the file one of ``args.<name>`` gives is missing or
    is a folder."""
    for name in names:
        path = getattr(args, name)
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise InputError(f"--{name}: {path.name or path} is a folder, not a file")  # "/" has no name
        if not path.is_file():
            raise InputError(f"--{name}: file not found: {path.name}")  # the base name, as everywhere


def check_output_folder(path: str | Path, shown_as: str) -> None:
    """:class:`InputError` when the output folder ``path`` (created if missing) is an existing file; ``shown_as``
    names it in the message the way its command does (``"OUT_DIR out"``, ``"train.output_dir: runs/x"``)."""
    if Path(path).exists() and not Path(path).is_dir():
        raise InputError(f"{shown_as} is a file; give a folder (it is created if missing)")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. A KeyboardInterrupt, so it unwinds like Ctrl-C: every ``with`` and ``finally`` on the
    way runs (temporary files and partial outputs are removed) and no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_interrupt(signums: tuple[int, ...] = INTERRUPT_SIGNALS) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (once: a second signal during the clean-up is
    ignored so that the clean-up finishes). Signals the parent set to be ignored (``nohup``, background jobs) stay
    ignored; the previous handlers come back afterwards. Only the main thread can handle signals: elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame) -> None:
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {}
    for signum in signums:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)  # None: a handler not set from Python


def run_reporting_errors(action: Callable[[], str], debug: bool) -> int:
    """Run ``action`` (which returns the success message) and map failures to exit codes with one-line messages.

    SIGINT / SIGTERM stop it in an orderly way (clean-up runs) with exit code 128 + the signal's number (130, 143).
    """
    try:
        with signals_interrupt():
            message = action()
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name}): stopped, temporary files removed", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signum
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except (CheckpointError, RuntimeError, OSError, ValueError) as err:
        if debug:
            raise
        print(f"failed: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(message)
    return EXIT_OK
