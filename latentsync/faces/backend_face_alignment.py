"""face-alignment 1.5 landmark backend (production default): SFD face detector + 2D-FAN-4, 68 points.

``face_alignment.FaceAlignment`` downloads its weights in the constructor and has no way to point the
landmark network at a local file, so this module builds the same two networks from the package's own
classes (``s3fd``, ``FAN``), loads local files with ``strict=True`` and runs the package's own pre- and
post-processing (``batch_detect``, ``nms``, ``crop``, ``get_preds_fromhm``) with ``flip_input=False`` and
no ``torch.compile``. Nothing is downloaded and no process-global state (TORCH_HOME, hub dir) is touched.

:meth:`FaceAlignmentBackend.detect_batch` analyses many frames of one size at once: the detector runs on
``detect_batch_size`` frames per call (8 on CUDA, 1 on CPU, where batching a convolutional net gains
nothing) and the landmark network on the faces of all frames together, ``MAX_FAN_BATCH`` crops per call. Its
SFD decoding is this module's own, vectorised per image (face-alignment's ``batch_detect`` gathers, for each
image, the anchors where *any* image of the batch scored, in a Python loop over them); the results equal
:meth:`~FaceAlignmentBackend.detect` frame by frame up to the float rounding of batch-shaped kernels.

Accepted weight files in ``weights_dir``:

* ``s3fd-619a316812.pth``: the SFD detector (plain state_dict; same file in face-alignment 1.4 and 1.5);
* ``2DFAN4-11f355bf06.pth.tar``: face-alignment 1.5's landmark network (plain state_dict), or
* ``2DFAN4-cd938726ad.zip``: the 1.4-era TorchScript archive that LatentSync's Hub repo ships in
  ``auxiliary/``; its state_dict is copied into the 1.5 network (same architecture, same names).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from latentsync.checkpoints import FACE_ALIGNMENT_DETECTOR_FILE, FACE_ALIGNMENT_FAN_FILES
from latentsync.errors import CheckpointError
from latentsync.faces.face_types import REFERENCE_MIN_SCORE, Face, check_frame, detection_scale

# The file names, owned by the checkpoint registry (face-alignment's cache names; the Hub's auxiliary/ uses the same).
DETECTOR_FILE = FACE_ALIGNMENT_DETECTOR_FILE
FAN_FILE, FAN_TORCHSCRIPT_FILE = FACE_ALIGNMENT_FAN_FILES  # 1.5's plain state_dict, 1.4's TorchScript archive
FAN_NETWORK_SIZE = 4  # 2D-FAN-4: four stacked hourglasses
NMS_IOU = 0.3  # face-alignment's SFD non-maximum-suppression overlap
DEFAULT_MAX_DETECT_SIDE = 640  # SFD on a shrunk copy (InsightFace in the reference detects at 512 px)
MAX_FAN_BATCH = 16  # face crops per landmark-network call
# Frames per detector call in detect_batch. SFD is VGG-16 (float32) at the detection size: at 640×360 its first
# layers hold 64 channels × 230 k pixels × 4 B ≈ 59 MB a tensor per frame (67 MB at 512²), ~0.2 GB a
# frame at the peak, so 8 frames ≈ 1.6 GB next to the resident UNet (2.5 GB): within the low-memory budget of 6.5 GB
# for 1.5. On CPU one frame per call is as fast.
CUDA_DETECT_BATCH = 8
CPU_DETECT_BATCH = 1
SFD_CANDIDATE_SCORE = 0.05  # face-alignment keeps anchors scoring above this before NMS
SFD_VARIANCES = (0.1, 0.2)  # SFD's box-regression scales: centre offsets, log sizes
SFD_FIRST_STRIDE = 4  # the first detection layer's anchor spacing; each next layer doubles it
SFD_ANCHOR_PER_STRIDE = 4  # anchor side = 4 × stride
SFD_BGR_MEAN = (104.0, 117.0, 123.0)  # the detector's input mean, BGR order
SCALE_FACTOR = 200.0  # face-alignment: a face of "scale" s is framed in a square of side 200·s pixels
WEIGHTS_HASH_BLOCK = 1 << 20  # bytes read at a time while hashing the weight files


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


def weight_files(folder: Path) -> tuple[Path, Path]:
    """(detector, landmark network) this backend loads from ``folder``: 2D-FAN-4 as face-alignment 1.5's plain file
    when it is there, else 1.4's TorchScript archive."""
    fan = folder / FAN_FILE
    return folder / DETECTOR_FILE, fan if fan.is_file() else folder / FAN_TORCHSCRIPT_FILE


def weights_digest(paths: list[Path]) -> str:
    """SHA-256 over the bytes of ``paths``, in order: which weights a face track came from (the face-track
    cache's key holds it, so random test weights and the real ones never share tracks; a copy still hits)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            while block := file.read(WEIGHTS_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


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


def decode_sfd_outputs(outputs: list[np.ndarray], image: int) -> np.ndarray:
    """Candidate boxes (k, 5) of batch item ``image`` from SFD's outputs, as face-alignment decodes them.

    ``outputs``: the detector's [scores, boxes] pairs per detection level, scores already softmaxed:
    (b, 2, h, w) and (b, 4, h, w). Levels in order, cells in row-major order, anchors scoring above
    ``SFD_CANDIDATE_SCORE``; columns x1, y1, x2, y2 (float64 pixels of the detector's input) and score.
    """
    found = []
    for level in range(len(outputs) // 2):
        scores, regression = outputs[2 * level][image, 1], outputs[2 * level + 1][image]  # (h, w), (4, h, w)
        rows, cols = np.nonzero(scores > SFD_CANDIDATE_SCORE)
        if rows.size == 0:
            continue
        stride = SFD_FIRST_STRIDE * 2**level
        centres = np.stack([stride / 2 + cols * stride, stride / 2 + rows * stride], axis=1).astype(np.float64)
        side = np.float64(stride * SFD_ANCHOR_PER_STRIDE)  # float64: products with float32 outputs are too
        loc = regression[:, rows, cols].T  # (k, 4): centre offsets, log sizes
        centre = centres + loc[:, :2] * SFD_VARIANCES[0] * side
        size = side * np.exp(loc[:, 2:] * SFD_VARIANCES[1])
        top_left = centre - size / 2
        found.append(np.concatenate([top_left, top_left + size, scores[rows, cols][:, None]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 5))


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
        weights_id: str | None = None,
    ):
        self.device = torch.device(device)
        self.weights_id = weights_id  # what the weights were (weights_digest), when known
        self.detector = detector.to(self.device).eval()
        self.fan = fan.to(self.device).eval()
        self.max_detect_side = max_detect_side
        # frames per detector call in detect_batch (settable; results do not depend on it)
        self.detect_batch_size = CUDA_DETECT_BATCH if self.device.type == "cuda" else CPU_DETECT_BATCH

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
        weights_id = weights_digest(list(weight_files(folder)))
        return cls(detector, fan, device=device, max_detect_side=max_detect_side, weights_id=weights_id)

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

    @torch.no_grad()
    def detect_boxes_batch(self, frames_rgb: np.ndarray) -> list[np.ndarray]:
        """(n, H, W, 3) uint8 RGB frames → per frame the SFD boxes (k, 5), as :meth:`detect_boxes` gives."""
        from face_alignment.detection.sfd.bbox import nms

        frames_rgb = np.asarray(frames_rgb)
        if frames_rgb.ndim != 4:
            shape = f"{frames_rgb.dtype} {frames_rgb.shape}"
            raise ValueError(f"frames must be (n, H, W, 3) uint8 RGB, got {shape}")
        scale = detection_scale(frames_rgb.shape[1:3], self.max_detect_side)
        mean = torch.tensor(SFD_BGR_MEAN, device=self.device).view(1, 3, 1, 1)
        results = []
        for start in range(0, len(frames_rgb), self.detect_batch_size):
            chunk = [check_frame(frame) for frame in frames_rgb[start : start + self.detect_batch_size]]
            if scale < 1.0:
                size = (round(chunk[0].shape[1] * scale), round(chunk[0].shape[0] * scale))
                chunk = [cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in chunk]
            batch = torch.from_numpy(np.stack(chunk).transpose(0, 3, 1, 2).copy())  # (b, 3, h, w) RGB
            batch = batch.to(self.device, dtype=torch.float32).flip(-3) - mean  # RGB → BGR, minus the mean
            outputs = list(self.detector(batch))
            for level in range(len(outputs) // 2):
                outputs[2 * level] = torch.softmax(outputs[2 * level], dim=1)
            outputs = [out.cpu().numpy() for out in outputs]
            for image in range(len(chunk)):
                candidates = decode_sfd_outputs(outputs, image)
                candidates = candidates[nms(candidates, NMS_IOU)] if len(candidates) else candidates
                candidates = candidates[candidates[:, 4] >= self.min_score]
                candidates[:, :4] /= scale
                results.append(candidates.astype(np.float32))
        return results

    @torch.no_grad()
    def landmarks_batch(self, frames_rgb: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        """Landmarks (k, 68, 2) per frame for each frame's boxes, the faces of all frames through the landmark
        network together (``MAX_FAN_BATCH`` crops per call)."""
        from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE, crop

        counts = [len(frame_boxes) for frame_boxes in boxes]
        if sum(counts) == 0:
            return [np.zeros((0, 68, 2), dtype=np.float32) for _ in counts]
        crops, centers, scales = [], [], []
        for frame, frame_boxes in zip(frames_rgb, boxes):
            frame_boxes = np.asarray(frame_boxes, dtype=np.float64)[..., :4].reshape(-1, 4)
            # face-alignment's own framing, as in landmarks_for_boxes
            frame_centers = np.stack([(frame_boxes[:, 0] + frame_boxes[:, 2]) / 2,
                                      (frame_boxes[:, 1] + frame_boxes[:, 3]) / 2], axis=1)  # fmt: skip
            frame_centers[:, 1] -= (frame_boxes[:, 3] - frame_boxes[:, 1]) * CENTER_Y_OFFSET
            frame_scales = ((frame_boxes[:, 2] - frame_boxes[:, 0]) + (frame_boxes[:, 3] - frame_boxes[:, 1]))
            frame_scales = frame_scales / REFERENCE_SCALE
            crops += [crop(frame, c, s).transpose(2, 0, 1) for c, s in zip(frame_centers, frame_scales)]
            centers.append(frame_centers)
            scales.append(frame_scales)
        inputs = torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0)  # (k, 3, 256, 256)
        heatmaps = []
        for start in range(0, len(inputs), MAX_FAN_BATCH):
            out = self.fan(inputs[start : start + MAX_FAN_BATCH].to(self.device))
            out = out[-1] if isinstance(out, (list, tuple)) else out  # last hourglass: (b, 68, 64, 64)
            heatmaps.append(out.float().cpu())
        centers, scales = np.concatenate(centers), np.concatenate(scales)
        landmarks = heatmaps_to_frame(torch.cat(heatmaps).numpy(), centers, scales * SCALE_FACTOR)
        return np.split(landmarks, np.cumsum(counts)[:-1])

    def detect_batch(self, frames_rgb: np.ndarray) -> list[list[Face]]:
        """:meth:`detect` for each of (n, H, W, 3) uint8 RGB frames (one size), analysed in batches."""
        boxes = self.detect_boxes_batch(frames_rgb)
        landmarks = self.landmarks_batch(frames_rgb, [frame_boxes[:, :4] for frame_boxes in boxes])
        return [
            [Face(box=box[:4].copy(), score=float(box[4]), landmarks=lm) for box, lm in zip(boxes_k, landmarks_k)]
            for boxes_k, landmarks_k in zip(boxes, landmarks)
        ]

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        boxes = self.detect_boxes(frame_rgb)
        landmarks = self.landmarks_for_boxes(frame_rgb, boxes[:, :4])
        return [
            Face(box=box[:4].copy(), score=float(box[4]), landmarks=lm) for box, lm in zip(boxes, landmarks)
        ]
