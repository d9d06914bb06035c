"""face-alignment 1.5 landmark backend (production default): SFD face detector + 2D-FAN-4, 68 points.

``face_alignment.FaceAlignment`` downloads its weights in the constructor and has no way to point the
landmark network at a local file, so this module builds the same two networks from the package's own
classes (``s3fd``, ``FAN``), loads local files with ``strict=True`` and runs the package's own pre- and
post-processing (``batch_detect``, ``nms``, ``crop``, ``get_preds_fromhm``) with ``flip_input=False`` and
no ``torch.compile``. Nothing is downloaded and no process-global state (TORCH_HOME, hub dir) is touched.

Accepted weight files in ``weights_dir``:

* ``s3fd-619a316812.pth``: the SFD detector (plain state_dict; same file in face-alignment 1.4 and 1.5);
* ``2DFAN4-11f355bf06.pth.tar``: face-alignment 1.5's landmark network (plain state_dict), or
* ``2DFAN4-cd938726ad.zip``: the 1.4-era TorchScript archive that LatentSync's Hub repo ships in
  ``auxiliary/``; its state_dict is copied into the 1.5 network (same architecture, same names).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from latentsync.checkpoints import FACE_ALIGNMENT_DETECTOR_FILE, FACE_ALIGNMENT_FAN_FILES
from latentsync.errors import CheckpointError
from latentsync.faces.detection import REFERENCE_MIN_SCORE, Face, check_frame, detection_scale

# The file names, owned by the checkpoint registry (face-alignment's cache names; the Hub's auxiliary/ uses the same).
DETECTOR_FILE = FACE_ALIGNMENT_DETECTOR_FILE
FAN_FILE, FAN_TORCHSCRIPT_FILE = FACE_ALIGNMENT_FAN_FILES  # 1.5's plain state_dict, 1.4's TorchScript archive
FAN_NETWORK_SIZE = 4  # 2D-FAN-4: four stacked hourglasses
NMS_IOU = 0.3  # face-alignment's SFD non-maximum-suppression overlap
DEFAULT_MAX_DETECT_SIDE = 640  # SFD on a shrunk copy (InsightFace in the reference detects at 512 px)
MAX_FAN_BATCH = 16  # face crops per landmark-network call
SCALE_FACTOR = 200.0  # face-alignment: a face of "scale" s is framed in a square of side 200·s pixels


def _default_weights_dir() -> Path:
    """Where face-alignment itself caches its downloads (read only here)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is a checkpoint problem
        raise CheckpointError(f"could not read weights file {path}: {error}") from error


def _fan_state_dict_from_torchscript(path: Path) -> dict[str, torch.Tensor]:
    """State dict of a face-alignment 1.4 TorchScript FAN archive, names as in the 1.5 ``FAN`` module."""
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise CheckpointError(f"could not read TorchScript archive {path}: {error}") from error
    state = scripted.state_dict()
    return {key.removeprefix("module."): value for key, value in state.items()}


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path} does not match face-alignment's {type(module).__name__}: {error}"
        ) from error


def heatmaps_to_frame(heatmaps: np.ndarray, centers: np.ndarray, crop_sides: np.ndarray) -> np.ndarray:
    """FAN heatmaps (k, 68, r, r) → landmarks (k, 68, 2) float32 in frame pixels.

    The same decoding as face-alignment's ``get_preds_fromhm``: the arg-max cell, nudged a quarter cell
    towards its larger neighbour (interior cells only), cell centre at +0.5, then mapped from the
    heatmap square back to the frame square of side ``crop_sides`` (k,) centred on ``centers`` (k, 2).
    Vectorised, and without that function's final truncation to whole pixels (which biases points by
    about half a pixel towards the origin) or its numba compilation.
    """
    k, n, rows, cols = heatmaps.shape
    flat = heatmaps.reshape(k, n, rows * cols)
    best = flat.argmax(axis=-1)  # (k, 68)
    px, py = best % cols, best // cols
    interior = (px > 0) & (px < cols - 1) & (py > 0) & (py < rows - 1)
    cx, cy = np.clip(px, 1, cols - 2), np.clip(py, 1, rows - 2)
    kk, nn = np.meshgrid(np.arange(k), np.arange(n), indexing="ij")
    dx = heatmaps[kk, nn, cy, cx + 1] - heatmaps[kk, nn, cy, cx - 1]
    dy = heatmaps[kk, nn, cy + 1, cx] - heatmaps[kk, nn, cy - 1, cx]
    x = px + 0.5 + np.where(interior, 0.25 * np.sign(dx), 0.0)  # (k, 68) in heatmap cells
    y = py + 0.5 + np.where(interior, 0.25 * np.sign(dy), 0.0)
    cells_to_px = (np.asarray(crop_sides, np.float64) / cols)[:, None]  # (k, 1)
    frame_x = x * cells_to_px + centers[:, :1] - crop_sides[:, None] / 2
    frame_y = y * cells_to_px + centers[:, 1:] - crop_sides[:, None] / 2
    return np.stack([frame_x, frame_y], axis=-1).astype(np.float32)


class FaceAlignmentBackend:
    """SFD detection + 2D-FAN-4 landmarks on ``device`` (float32)."""

    name = "face_alignment"
    min_score = REFERENCE_MIN_SCORE  # SFD scores are probabilities, like the reference's detector

    def __init__(
        self,
        detector: torch.nn.Module,
        fan: torch.nn.Module,
        device: str | torch.device = "cpu",
        max_detect_side: int | None = DEFAULT_MAX_DETECT_SIDE,
    ):
        self.device = torch.device(device)
        self.detector = detector.to(self.device).eval()
        self.fan = fan.to(self.device).eval()
        self.max_detect_side = max_detect_side

    @classmethod
    def from_weights_dir(
        cls,
        weights_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        max_detect_side: int | None = DEFAULT_MAX_DETECT_SIDE,
    ) -> FaceAlignmentBackend:
        from face_alignment.detection.sfd.net_s3fd import s3fd
        from face_alignment.models import FAN

        folder = Path(weights_dir) if weights_dir is not None else _default_weights_dir()
        detector_path = folder / DETECTOR_FILE
        fan_path = folder / FAN_FILE
        torchscript_path = folder / FAN_TORCHSCRIPT_FILE
        missing = []
        if not detector_path.is_file():
            missing.append(DETECTOR_FILE)
        if not fan_path.is_file() and not torchscript_path.is_file():
            missing.append(f"{FAN_FILE} (or {FAN_TORCHSCRIPT_FILE})")
        if missing:
            raise CheckpointError(
                f"face_alignment weights missing in {folder}: {', '.join(missing)}. "
                "They are never downloaded here; put the files there "
                "(LatentSync's Hub repo ships them in auxiliary/)."
            )

        detector = s3fd()
        _load_strict(detector, _load_state_dict(detector_path), detector_path)
        fan = FAN(FAN_NETWORK_SIZE)
        if fan_path.is_file():
            _load_strict(fan, _load_state_dict(fan_path), fan_path)
        else:
            _load_strict(fan, _fan_state_dict_from_torchscript(torchscript_path), torchscript_path)
        return cls(detector, fan, device=device, max_detect_side=max_detect_side)

    @torch.no_grad()
    def detect_boxes(self, frame_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB → SFD boxes (k, 5): x1, y1, x2, y2 in frame pixels and score (≥ min_score)."""
        from face_alignment.detection.sfd.bbox import nms
        from face_alignment.detection.sfd.detect import batch_detect

        frame_rgb = check_frame(frame_rgb)
        scale = detection_scale(frame_rgb.shape, self.max_detect_side)
        small = frame_rgb
        if scale < 1.0:
            size = (round(frame_rgb.shape[1] * scale), round(frame_rgb.shape[0] * scale))
            small = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
        batch = torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1)))[None]  # (1, 3, h, w) RGB
        candidates = np.asarray(batch_detect(self.detector, batch, device=str(self.device)))
        if candidates.size == 0:
            return np.zeros((0, 5), dtype=np.float32)
        candidates = candidates[0]  # (k, 5) of the one image
        candidates = candidates[nms(candidates, NMS_IOU)]
        candidates = candidates[candidates[:, 4] >= self.min_score]
        candidates[:, :4] /= scale
        return candidates.astype(np.float32)

    @torch.no_grad()
    def landmarks_for_boxes(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """2D-FAN-4 landmarks for given face boxes (k, ≥4) → (k, 68, 2) float32 in frame pixels."""
        from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE, crop

        frame_rgb = check_frame(frame_rgb)
        boxes = np.asarray(boxes, dtype=np.float64)[..., :4].reshape(-1, 4)
        if boxes.shape[0] == 0:
            return np.zeros((0, 68, 2), dtype=np.float32)
        # face-alignment's own framing: centre shifted up by 12 % of the box height, scale (w + h) / 195.
        centers = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
        centers[:, 1] -= (boxes[:, 3] - boxes[:, 1]) * CENTER_Y_OFFSET
        scales = ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / REFERENCE_SCALE
        crops = np.stack(
            [crop(frame_rgb, c, s).transpose(2, 0, 1) for c, s in zip(centers, scales)]
        )  # (k, 3, 256, 256)
        inputs = torch.from_numpy(crops.astype(np.float32) / 255.0)
        heatmaps = []
        for start in range(0, len(inputs), MAX_FAN_BATCH):
            out = self.fan(inputs[start : start + MAX_FAN_BATCH].to(self.device))
            out = out[-1] if isinstance(out, (list, tuple)) else out  # last hourglass: (b, 68, 64, 64)
            heatmaps.append(out.float().cpu())
        heatmaps = torch.cat(heatmaps).numpy()  # (k, 68, 64, 64)
        return heatmaps_to_frame(heatmaps, centers, scales * SCALE_FACTOR)

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        boxes = self.detect_boxes(frame_rgb)
        landmarks = self.landmarks_for_boxes(frame_rgb, boxes[:, :4])
        return [
            Face(box=box[:4].copy(), score=float(box[4]), landmarks=lm) for box, lm in zip(boxes, landmarks)
        ]
