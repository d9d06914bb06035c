"""Face restoration after paste-back (GFPGAN v1.4), restricted to the pixels the model generated, without flicker.

Per frame with a face:

1. Five points from the 68 landmarks (eye centres, nose tip, mouth corners) are mapped onto the FFHQ template with a
   similarity transform (OpenCV's ``estimateAffinePartial2D``, LMEDS), and the pasted frame is warped to the
   restorer's square (512 px for v1.4) with the template's grey border (reference facts §16).
2. The network restores that face with fixed StyleGAN noise (its stored buffers): the same input gives the same
   output in every frame, so a still mouth stays still (fresh noise per frame makes restored lips shimmer).
3. The weight of the restored face is ``strength`` times the lower-face region the lip-sync model generated (its
   mouth mask, carried into the restorer's square through both alignments and softened), so eyes, hair and
   background keep their pixels exactly; the restored face and the weight are warped back to the frame (the
   inverse transform) and blended: ``frame + weight · (restored − frame)``.

``strength`` 0.5 (the default) keeps half of the lip-sync output: sharper teeth and lips without replacing the
generated mouth by GFPGAN's idea of one; 1.0 takes the restored face wholly inside the region.
"""

from __future__ import annotations


import cv2
import numpy as np
import torch

from latentsync.faces.alignment import geometry_for
from latentsync.lazy import Lazy

# The FFHQ five-point template for a 512 px face (image-left eye, image-right eye, nose tip, mouth corners), §16.
FFHQ_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
     [201.26117, 371.41043], [313.08905, 371.15118]],
    np.float32,
)  # fmt: skip
TEMPLATE_SIZE = 512  # the side FFHQ_TEMPLATE_512 is given for
BORDER_RGB = (132, 133, 135)  # the reference helper's grey (135, 133, 132) in BGR order, as RGB
# iBUG-68 indices of the five points (subject's right eye shows on the image's left).
EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT = slice(36, 42), slice(42, 48)
NOSE_TIP, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 30, 48, 54
DEFAULT_STRENGTH = 0.5
REGION_BLUR_FRACTION = 1 / 32  # the generated region's edge is softened over size/32 px (16 px at 512)
RESTORE_BATCH = 4  # faces per network call (bounds memory at 512 px: ~1 GB of activations per face on the CPU)
WINDOW_MARGIN = 2  # frame pixels kept around a face's back-warped square (bilinear reads one beyond)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(n, 68, 2) landmarks -> (n, 5, 2) float32: eye centres, nose tip, mouth corners (the template's order)."""
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (n, 68, 2), got {landmarks.shape}")
    return np.stack(
        [landmarks[:, EYE_IMAGE_LEFT].mean(1), landmarks[:, EYE_IMAGE_RIGHT].mean(1), landmarks[:, NOSE_TIP],
         landmarks[:, MOUTH_IMAGE_LEFT], landmarks[:, MOUTH_IMAGE_RIGHT]],
        axis=1,
    )  # fmt: skip


def ffhq_affines(points: np.ndarray, size: int) -> np.ndarray:
    """(n, 5, 2) frame points -> (n, 2, 3) frame-to-face similarity transforms onto the template at ``size`` px
    (NaN where no transform can be fitted, e.g. all points equal)."""
    template = FFHQ_TEMPLATE_512 * (size / TEMPLATE_SIZE)
    out = np.full((len(points), 2, 3), np.nan, np.float64)
    for i, p in enumerate(points):
        matrix, _ = cv2.estimateAffinePartial2D(p.astype(np.float32), template, method=cv2.LMEDS)
        if matrix is not None and np.isfinite(matrix).all() and abs(np.linalg.det(matrix[:, :2])) > 1e-9:
            out[i] = matrix
    return out


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def region_in_face(generated: np.ndarray, lipsync_matrix: np.ndarray, ffhq_matrix: np.ndarray,
                   size: int) -> np.ndarray:  # fmt: skip
    """The lip-sync model's generated region (res, res) float (1 = generated), seen in the restorer's square:
    (size, size) float32, its edge softened. ``lipsync_matrix``: frame to the model's crop (alignment);
    ``ffhq_matrix``: frame to the restorer's square."""
    res = generated.shape[0]
    crop_w, crop_h = geometry_for(res).crop_size
    # crop -> model face: the crop is squeezed to res x res (pixel centres at integer coordinates).
    crop_to_face = np.array([[res / crop_w, 0, 0.5 * res / crop_w - 0.5], [0, res / crop_h, 0.5 * res / crop_h - 0.5]])
    square_to_face = _homogeneous(crop_to_face) @ _homogeneous(lipsync_matrix) @ np.linalg.inv(_homogeneous(ffhq_matrix))
    region = cv2.warpAffine(generated.astype(np.float32), square_to_face[:2], (size, size),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)  # fmt: skip
    blur = max(3, int(size * REGION_BLUR_FRACTION) | 1)  # odd kernel
    return cv2.GaussianBlur(region, (blur, blur), 0) * (region > 0)  # softened inwards only: zero stays zero


def _back_window(ffhq_matrix: np.ndarray, size: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Frame box (x0, y0, x1, y1), end-exclusive and clipped, covering the restorer's square warped back."""
    inverse = np.linalg.inv(_homogeneous(ffhq_matrix))[:2]
    corners = np.array([[-1, -1, 1], [size, -1, 1], [-1, size, 1], [size, size, 1]], np.float64) @ inverse.T
    x0 = int(np.clip(np.floor(corners[:, 0].min()) - WINDOW_MARGIN, 0, width))
    y0 = int(np.clip(np.floor(corners[:, 1].min()) - WINDOW_MARGIN, 0, height))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()) + WINDOW_MARGIN + 1, 0, width))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()) + WINDOW_MARGIN + 1, 0, height))
    return x0, y0, x1, y1


def blend_back(frame: np.ndarray, restored: np.ndarray, weight: np.ndarray, ffhq_matrix: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with ``restored`` (size, size, 3) float [0, 255] blended in by ``weight``
    (size, size) in [0, 1], both warped back through the inverse of ``ffhq_matrix``; pixels of weight 0 unchanged."""
    size = restored.shape[0]
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = _back_window(ffhq_matrix, size, width, height)
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    window_to_square = ffhq_matrix.copy()
    window_to_square[:, 2] += ffhq_matrix[:, :2] @ np.array([x0, y0], np.float64)  # window pixel -> square pixel
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    face = cv2.warpAffine(restored, window_to_square, (x1 - x0, y1 - y0), flags=flags, borderValue=(0, 0, 0))
    w = cv2.warpAffine(weight, window_to_square, (x1 - x0, y1 - y0), flags=flags, borderValue=0.0)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = np.rint(region + w * (face - region))
    out[y0:y1, x0:x1] = np.where(w > 0, np.clip(blended, 0, 255), region).astype(np.uint8)
    return out


class FaceRestorer:
    """A GFPGAN network (:class:`latentsync.models.gfpgan.GFPGAN`) applied to pasted-back frames; thread-safe
    (it holds no per-call state). ``noise``: the StyleGAN noise maps; None uses the network's stored buffers."""

    def __init__(self, model: torch.nn.Module, noise: list[torch.Tensor] | None = None):
        self.model = model
        self.size = model.config.out_size
        self.device = next(model.parameters()).device
        self.noise = noise

    def noise_for_call(self) -> list[torch.Tensor] | None:
        """Noise for one network call: the same every call (a subclass that draws it afresh shows the flicker)."""
        return self.noise

    @torch.inference_mode()
    def restore_faces(self, faces: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 RGB faces on the template -> restored (n, size, size, 3) float32 in [0, 255]."""
        out = []
        for start in range(0, len(faces), RESTORE_BATCH):
            x = torch.from_numpy(faces[start : start + RESTORE_BATCH]).to(self.device).permute(0, 3, 1, 2)
            x = x.float() / 127.5 - 1.0  # (b, 3, size, size) in [-1, 1]
            y = self.model(x, noise=self.noise_for_call()).clamp(-1, 1)
            out.append(((y + 1.0) * 127.5).permute(0, 2, 3, 1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.size, self.size, 3), np.float32)

    def __call__(self, frames: np.ndarray, landmarks: np.ndarray, lipsync_matrices: np.ndarray,
                 generated: np.ndarray, strength: float = DEFAULT_STRENGTH) -> np.ndarray:  # fmt: skip
        """Frames (n, H, W, 3) uint8 after paste-back, their 68 landmarks (n, 68, 2), their lip-sync alignments
        (n, 2, 3), the model's generated region (res, res) (1 = generated) -> new frames, restored inside it."""
        matrices = ffhq_affines(five_points(landmarks), self.size)
        ok = np.isfinite(matrices).all(axis=(1, 2))
        out = frames.copy()
        if not ok.any() or strength <= 0:
            return out
        index = np.flatnonzero(ok)
        faces = np.stack([
            cv2.warpAffine(frames[i], matrices[i], (self.size, self.size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_RGB)
            for i in index
        ])  # fmt: skip
        restored = self.restore_faces(faces)
        for k, i in enumerate(index):
            weight = strength * region_in_face(generated, lipsync_matrices[i], matrices[i], self.size)
            out[i] = blend_back(frames[i], restored[k], weight, matrices[i])
        return out


class LazyRestorer(Lazy[FaceRestorer]):
    """Loads a :class:`FaceRestorer` on first use (the weights may need a download), once per process."""
