"""Per stage: clips in, clips out, dropped by reason; printed as a table and written as JSON next to the output."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from latentsync.data.records import REPORT_NAME, Record, write_text_atomic


@dataclass
class StageReport:
    stage: str
    clips_in: int
    clips_out: int  # outputs (a clip split into shots or segments counts once per piece)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> clips (or pieces) dropped
    seconds: float = 0.0  # wall time of this run's stage (0 when everything was already done)
    processed: int = 0  # clips actually processed in this run (the rest were done before)
    retried: int = 0  # of those, clips whose previous record was an internal error ("error (...)")


def summarise(stage: str, records: list[Record], seconds: float = 0.0, processed: int = 0,
              retried: int = 0) -> StageReport:  # fmt: skip
    dropped: Counter[str] = Counter()
    for record in records:
        if record.dropped is not None:
            dropped[record.dropped] += 1
        dropped.update(record.pieces_dropped)
    clips_out = sum(len(r.outputs) for r in records)
    return StageReport(stage, len(records), clips_out, dict(sorted(dropped.items())), round(seconds, 2), processed,
                       retried)  # fmt: skip


def format_table(reports: list[StageReport]) -> str:
    rows = [("stage", "in", "out", "dropped (reason: count)")]
    for r in reports:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in r.dropped.items()) or "-"
        rows.append((r.stage, str(r.clips_in), str(r.clips_out), reasons))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}" for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    retried = [f"{r.stage} {r.retried}" for r in reports if r.retried]
    if retried:
        lines.append(f"retried after an internal error: {', '.join(retried)}")
    return "\n".join(lines)


def write_report(out_dir: Path, reports: list[StageReport], extra: dict | None = None) -> Path:
    path = out_dir / REPORT_NAME
    write_text_atomic(path, json.dumps({"stages": [asdict(r) for r in reports], **(extra or {})}, indent=1))
    return path
