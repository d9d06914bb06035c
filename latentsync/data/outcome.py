"""What a stage function returns for one clip."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """``outputs``: paths relative to the stage's output folder (empty when the clip is dropped)."""

    outputs: list[str] = field(default_factory=list)
    dropped: str | None = None
    detail: str = ""
    pieces_dropped: dict[str, int] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def drop(reason: str, detail: str = "", **metrics) -> Outcome:
    return Outcome(dropped=reason, detail=detail, metrics=metrics)


def keep(*outputs: str, **metrics) -> Outcome:
    return Outcome(outputs=list(outputs), metrics=metrics)
