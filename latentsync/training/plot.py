"""A line plot written as PNG with OpenCV (already a dependency; matplotlib is not installed with the package).

Enough for a training run's loss curve (``output_dir/loss.png``): the values as a thin line, their running mean over
:data:`SMOOTH_FRACTION` of the steps as a thick one, the axes' ranges written at their ends.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 960, 540  # pixels
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 90, 30, 40, 50
SMOOTH_FRACTION = 0.02  # the running mean spans 2% of the points (at least 1)
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
RAW_COLOUR, SMOOTH_COLOUR = (230, 190, 150), (160, 60, 0)  # BGR: light blue, dark blue
FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def write_line_plot(path: str | Path, xs: list[float], ys: list[float], title: str, x_label: str) -> Path:
    """Plot ``ys`` against ``xs`` into the PNG ``path`` (written to a temporary name, then renamed)."""
    import cv2

    if len(xs) != len(ys) or not xs:
        raise ValueError(f"a plot needs as many x as y values, at least one: got {len(xs)} and {len(ys)}")
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    finite = np.isfinite(y)
    image = np.full((HEIGHT, WIDTH, 3), WHITE, dtype=np.uint8)
    left, right, top, bottom = MARGIN_LEFT, WIDTH - MARGIN_RIGHT, MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    cv2.rectangle(image, (left, top), (right, bottom), GREY, 1)
    x_lo, x_hi = float(x.min()), float(x.max())
    y_lo, y_hi = (float(y[finite].min()), float(y[finite].max())) if finite.any() else (0.0, 1.0)
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0

    def points(values: np.ndarray) -> np.ndarray:
        px = left + (x[finite] - x_lo) / x_span * (right - left)
        py = bottom - (values[finite] - y_lo) / y_span * (bottom - top)
        return np.stack([px, py], axis=1).round().astype(np.int32).reshape(-1, 1, 2)

    if finite.sum() > 1:
        cv2.polylines(image, [points(y)], False, RAW_COLOUR, 1, cv2.LINE_AA)
        window = max(1, round(SMOOTH_FRACTION * int(finite.sum())))
        smooth = y.copy()
        smooth[finite] = running_mean(y[finite], window)
        cv2.polylines(image, [points(smooth)], False, SMOOTH_COLOUR, 2, cv2.LINE_AA)
    elif finite.any():
        cv2.circle(image, tuple(int(v) for v in points(y)[0, 0]), 3, SMOOTH_COLOUR, -1)
    labels = [(f"{y_hi:.4g}", (5, top + 5)), (f"{y_lo:.4g}", (5, bottom)),
              (f"{x_lo:g}", (left, bottom + 20)), (f"{x_hi:g}", (right - 60, bottom + 20)),
              (x_label, ((left + right) // 2 - 20, bottom + 40)),
              (f"{title} (last {y[-1]:.4g}, {len(x)} points)", (left, top - 15))]
    for text, origin in labels:
        cv2.putText(image, text, origin, FONT, FONT_SCALE, BLACK, 1, cv2.LINE_AA)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")  # cv2 picks the encoder from the extension
    if not cv2.imwrite(str(tmp), image):
        raise OSError(f"could not write the plot {tmp}")
    os.replace(tmp, path)
    return path
