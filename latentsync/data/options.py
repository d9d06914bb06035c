"""User settings of the data toolchain (README §6 gives the reference's values)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RESOLUTIONS = (256, 512)  # LatentSync 1.5 trains at 256 px faces, 1.6 at 512
SYNC_CONFIDENCE_THRESHOLD = 3.0  # keep iff SyncNet confidence >= 3 (reference --sync_conf_threshold 3)
MAX_SYNC_OFFSET = 6  # keep iff |offset| <= 6 frames (reference sync_av.py)
QUALITY_THRESHOLD = 40.0  # keep iff the mean hyperIQA score of 3 frames >= 40 (reference filter_visual_quality.py)


@dataclass(frozen=True)
class DataOptions:
    """What a run does. Thresholds default to the reference's."""

    resolution: int = 256  # side of the aligned face video
    sync_threshold: float = SYNC_CONFIDENCE_THRESHOLD
    max_offset: int = MAX_SYNC_OFFSET
    quality_threshold: float = QUALITY_THRESHOLD
    high_resolution_filter: bool = True  # faces must be at least `resolution` px wide and tall in every frame
    checkpoints: Path | None = None  # local checkpoints directory (None: $LATENTSYNC_CHECKPOINTS, else the Hub)
    device: str | None = None  # torch device of the model stages (None: CUDA when available, else CPU)

    def check(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution!r}")
        if self.max_offset < 0:
            raise ValueError(f"max_offset must be >= 0 frames, got {self.max_offset!r}")

    def stage_params(self, stage: str) -> dict:
        """The settings that change what ``stage`` produces (a finished record is reused only when they match)."""
        if stage == "faces":
            return {"resolution": self.resolution, "high_resolution_filter": self.high_resolution_filter}
        if stage == "sync":
            return {"sync_threshold": self.sync_threshold, "max_offset": self.max_offset}
        if stage == "quality":
            return {"quality_threshold": self.quality_threshold}
        return {}
