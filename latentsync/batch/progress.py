"""Progress on the terminal: an overall bar (rows done of rows to run), a status line with the stage of every row in
flight (fed by the pipeline's progress callback, relayed from workers), and one line per finished row."""

from __future__ import annotations

import sys

from latentsync.batch.summary import FAILED, RowResult


class BatchProgress:
    """Bars on stderr (drawn only on a terminal); the per-row lines are printed everywhere."""

    def __init__(self, total: int, enabled: bool = True):
        from tqdm import tqdm

        disable = None if enabled else True  # None: tqdm draws only when stderr is a terminal
        self.overall = tqdm(total=total, desc="rows", unit="row", file=sys.stderr, disable=disable, position=0)
        self.status = tqdm(total=0, bar_format="{desc}", file=sys.stderr, disable=disable, position=1)
        self.stages: dict[int, str] = {}

    def row_stage(self, row: int, stage: str, done: int, total: int) -> None:
        """The pipeline's ``progress(stage, done, total)`` for ``row``."""
        self.stages[row] = f"row {row}: {stage} {done}/{total}"
        self._show()

    def row_done(self, result: RowResult) -> None:
        self.stages.pop(result.row, None)
        if result.status == FAILED:
            text = f"row {result.row} failed: {result.error.splitlines()[0] if result.error else ''}"
        else:
            measures = f": {result.frames} frames in {result.seconds:.1f} s" if result.frames is not None else ""
            text = f"row {result.row} {result.status}{measures} -> {result.output}"
        self.overall.write(text, file=sys.stderr)
        self.overall.update(1)
        self._show()

    def _show(self) -> None:
        self.status.set_description_str(" | ".join(self.stages[row] for row in sorted(self.stages)))

    def close(self) -> None:
        self.status.close()
        self.overall.close()
