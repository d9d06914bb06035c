"""Paste-back against the official restore golden (README §4.10, §10.3) and an align → paste round trip."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from safetensors.numpy import load_file

from latentsync.faces import (
    anchor_points,
    estimate_affines,
    load_landmark_backend,
    paste_back,
    paste_crop_faces,
    warp_faces,
)
from latentsync.faces import paste as paste_module


@pytest.fixture(scope="module")
def golden(reference_dir):
    return load_file(reference_dir / "affine_golden.safetensors")


@pytest.fixture(params=["per-frame", "batched"])
def paste_path(request, monkeypatch):
    """Run a test with paste_crop_faces' per-frame warp (the CPU default) and with the batched warp (the
    default for faces on other devices), both on the CPU."""
    monkeypatch.setattr(paste_module, "PASTE_BATCHED_ON_CPU", request.param == "batched")
    return request.param


def _outside_warped_crop(matrix: np.ndarray, crop_w: int, crop_h: int, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels outside the bounding box of the crop rectangle mapped back into the frame
    (bilinear sampling reaches one crop pixel beyond the rectangle; one more frame pixel of slack)."""
    inverse = np.linalg.inv(np.vstack([matrix.astype(np.float64), [0, 0, 1]]))[:2]
    corners = (
        np.array([[-1, -1, 1], [crop_w, -1, 1], [-1, crop_h, 1], [crop_w, crop_h, 1]], np.float64) @ inverse.T
    )
    (x0, y0), (x1, y1) = np.floor(corners.min(0)) - 1, np.ceil(corners.max(0)) + 1
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xs < x0) | (xs > x1) | (ys < y0) | (ys > y1)


def test_paste_matches_golden_and_leaves_the_rest_untouched(golden, paste_path):
    frame = golden["input.image_rgb_u8"]
    frames = frame[None].copy()
    matrix = golden["output.fp32.res256.affine_matrices"][:1]
    face = golden["input.restore_face_chw"][None]  # (1, 3, 280, 210): already at crop size
    out = paste_crop_faces(frames, face, matrix)
    np.testing.assert_array_equal(frames[0], frame)  # input not modified in place
    ref = golden["output.fp32.res256.restored_frame0_u8"]
    assert out.shape == frames.shape and out.dtype == np.uint8
    close = np.abs(out[0].astype(np.int16) - ref.astype(np.int16)) <= 1
    assert close.mean() >= 0.999
    outside = _outside_warped_crop(matrix[0], 210, 280, frame.shape[:2])
    assert outside.sum() > 0.5 * outside.size
    np.testing.assert_array_equal(out[0][outside], frame[outside])
    assert (out[0] != frame).any(axis=-1).sum() > 20_000  # the face region really was replaced


def test_paste_back_resizes_model_faces_to_the_crop(golden, paste_path):
    frames = golden["input.image_rgb_u8"][None]
    matrix = golden["output.fp32.res256.affine_matrices"][:1]
    face = torch.nn.functional.interpolate(
        torch.from_numpy(golden["input.restore_face_chw"][None]), size=(256, 256), mode="bilinear"
    )
    out = paste_back(frames, face, matrix)
    assert out.shape == frames.shape
    outside = _outside_warped_crop(matrix[0], 210, 280, frames.shape[1:3])
    np.testing.assert_array_equal(out[0][outside], frames[0][outside])
    ref = golden["output.fp32.res256.restored_frame0_u8"]
    # Not the golden's input (it went 280×210 → 256² → 280×210), so only close to it on average.
    changed = (ref != frames[0]).any(axis=-1)
    assert np.abs(out[0][changed].astype(float) - ref[changed]).mean() < 3.0
    with pytest.raises(ValueError, match="res, res"):
        paste_back(frames, face[..., :200], matrix)


@pytest.fixture(scope="module")
def astronaut_alignment():
    frame = skimage.data.astronaut()
    faces = load_landmark_backend("dlib").detect(frame)
    assert len(faces) == 1
    matrices = estimate_affines(anchor_points(faces[0].landmarks[None]), 256)
    return frame, matrices


# Round trip of the astronaut: measured mean |Δ| over changed pixels 1.84 / 1.29 and 99th percentile 10 / 5
# grey levels at 256 / 512; the limits leave ~20 % of headroom.
ROUND_TRIP_LIMITS = {256: (2.2, 12), 512: (1.6, 7)}  # resolution: (mean, 99th percentile)


@pytest.mark.parametrize("resolution", [256, 512])
def test_align_then_paste_unchanged_face_round_trip(resolution):
    frame = skimage.data.astronaut()
    faces = load_landmark_backend("dlib").detect(frame)
    matrices = estimate_affines(anchor_points(faces[0].landmarks[None]), resolution)
    faces_u8 = warp_faces(frame[None], matrices, resolution)  # (1, res, res, 3)
    faces = (
        torch.from_numpy(faces_u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    )  # (1, 3, res, res) in [-1, 1]
    out = paste_back(frame[None], faces, matrices)[0]
    crop_w, crop_h = 210 * resolution // 256, 280 * resolution // 256
    outside = _outside_warped_crop(matrices[0], crop_w, crop_h, frame.shape[:2])
    np.testing.assert_array_equal(out[outside], frame[outside])
    changed = (out != frame).any(axis=-1)
    assert changed.sum() > 5_000
    diff = np.abs(out.astype(np.int16) - frame.astype(np.int16))[changed]
    # Two bilinear warps and a Lanczos/bicubic resize pair blur edges a little, nothing more.
    max_mean, max_p99 = ROUND_TRIP_LIMITS[resolution]
    assert diff.mean() < max_mean
    assert np.percentile(diff, 99) <= max_p99


def test_batched_and_per_frame_paste_agree_on_a_mixed_chunk(golden, monkeypatch):
    frame = golden["input.image_rgb_u8"]
    frames = np.stack([frame, frame[:, ::-1], frame, frame])
    matrices = np.repeat(golden["output.fp32.res256.affine_matrices"][:1], 4, axis=0).copy()
    matrices[1, :, :2] *= 1.3  # a smaller face: a smaller window in the padded batch
    matrices[2, 0, 2] += 150.0  # the face pasted half over the frame's left edge
    matrices[3, :, 2] += 5000.0  # entirely off the frame: that frame is copied unchanged
    rng = np.random.default_rng(0)
    faces = torch.from_numpy(rng.uniform(-1, 1, (4, 3, 280, 210)).astype(np.float32))
    results = {}
    for batched in (False, True):
        monkeypatch.setattr(paste_module, "PASTE_BATCHED_ON_CPU", batched)
        results[batched] = paste_crop_faces(frames, faces, matrices)
    close = np.abs(results[True].astype(np.int16) - results[False]) <= 1
    assert close.mean() >= 0.999
    np.testing.assert_array_equal(results[True][3], frames[3])
    assert all((results[True][i] != frames[i]).any() for i in range(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_paths_match_cpu(astronaut_alignment):
    frame, matrices = astronaut_alignment
    cpu = warp_faces(frame[None], matrices, 256)
    cuda = warp_faces(frame[None], matrices, 256, device="cuda")
    assert (np.abs(cpu.astype(np.int16) - cuda) <= 1).mean() >= 0.999
    faces = torch.from_numpy(cpu).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    out_cpu = paste_back(frame[None], faces, matrices)
    out_cuda = paste_back(frame[None], faces.cuda(), matrices)
    assert (np.abs(out_cpu.astype(np.int16) - out_cuda) <= 1).mean() >= 0.999
