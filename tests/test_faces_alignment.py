"""Affine alignment against the official AlignRestore goldens (README §4.5, §10.3)."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from latentsync.faces import (
    alignment,
    anchor_points,
    estimate_affines,
    estimate_affines_with_bias,
    geometry_for,
    resize_crops,
    warp_faces,
    warp_to_crop,
)


@pytest.fixture(scope="module")
def golden(reference_dir):
    return load_file(reference_dir / "affine_golden.safetensors")


@pytest.fixture(params=["per-frame", "batched"])
def warp_path(request, monkeypatch):
    """Run a test with warp_to_crop's per-frame path (the CPU default) and with the batched path (the
    default on other devices), both on the CPU."""
    monkeypatch.setattr(alignment, "WARP_BATCHED_ON_CPU", request.param == "batched")
    return request.param


def _within_one_level(ours: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of values within one grey level of the reference."""
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == np.uint8
    return float((np.abs(ours.astype(np.int16) - ref.astype(np.int16)) <= 1).mean())


def test_geometry_matches_reference_template_and_crop():
    g256, g512 = geometry_for(256), geometry_for(512)
    np.testing.assert_allclose(g256.template, [[47.6, 56.0], [162.4, 56.0], [105.0, 112.0]], atol=1e-5)
    np.testing.assert_allclose(g512.template, 2 * g256.template, atol=1e-5)
    assert g256.crop_size == (210, 280) and (g256.crop_width, g256.crop_height) == (210, 280)
    assert g512.crop_size == (420, 560)
    with pytest.raises(ValueError, match="multiple of 8"):
        geometry_for(250)


@pytest.mark.parametrize("resolution", [256, 512])
def test_affine_matrices_and_bias_match_golden(golden, resolution):
    matrices, biases = estimate_affines_with_bias(golden["input.landmarks3"], resolution)
    assert matrices.shape == (3, 2, 3) and matrices.dtype == np.float32
    np.testing.assert_allclose(
        matrices, golden[f"output.fp32.res{resolution}.affine_matrices"], rtol=0, atol=1e-4
    )
    np.testing.assert_allclose(
        biases, golden[f"output.fp32.res{resolution}.p_bias_after_frame"], rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(estimate_affines(golden["input.landmarks3"], resolution), matrices)


def test_bias_state_is_fresh_per_call_and_can_be_continued(golden):
    points = golden["input.landmarks3"]
    expected = golden["output.fp32.res256.affine_matrices"]
    # A fresh call on frame 2 alone is not the golden frame 2 (which carries frames 0–1's bias) ...
    alone = estimate_affines(points[2:], 256)
    assert np.abs(alone[0] - expected[2]).max() > 1e-3
    # ... but continuing from the state after frame 1 is.
    _, biases = estimate_affines_with_bias(points[:2], 256)
    continued, _ = estimate_affines_with_bias(points[2:], 256, initial_bias=biases[-1])
    np.testing.assert_allclose(continued[0], expected[2], atol=1e-4)


def test_frames_without_points_get_nan_and_keep_the_state(golden):
    points = golden["input.landmarks3"]
    with_gap = np.concatenate([points[:1], np.full((1, 3, 2), np.nan, np.float32), points[1:]])
    matrices, biases = estimate_affines_with_bias(with_gap, 256)
    assert np.isnan(matrices[1]).all()
    np.testing.assert_allclose(matrices[[0, 2, 3]], golden["output.fp32.res256.affine_matrices"], atol=1e-4)
    np.testing.assert_array_equal(biases[1], biases[0])


def test_mirrored_points_still_give_a_proper_rotation(golden):
    points = golden["input.landmarks3"][:1].copy()
    points[..., 0] *= -1  # mirror the face: least squares would want a reflection
    linear = estimate_affines(points, 256)[0, :, :2]
    assert np.linalg.det(linear) > 0


def test_anchor_points_average_brows_and_nose():
    landmarks = np.zeros((2, 68, 2), np.float32)
    landmarks[:, 17:22] = [10.0, 20.0]
    landmarks[:, 22:27] = [50.0, 22.0]
    landmarks[0, 27:36, 0] = np.arange(9)  # mean 4
    landmarks[:, 27:36, 1] = 40.0
    landmarks[1] = np.nan
    points = anchor_points(landmarks)
    assert points.shape == (2, 3, 2) and points.dtype == np.float32
    np.testing.assert_array_equal(points[0], [[10, 20], [50, 22], [4, 40]])
    assert np.isnan(points[1]).all()
    with pytest.raises(ValueError, match="68"):
        anchor_points(np.zeros((2, 5, 2)))


def test_crops_match_golden(golden, warp_path):
    frames = np.repeat(golden["input.image_rgb_u8"][None], 3, axis=0)
    matrices = golden["output.fp32.res256.affine_matrices"]
    crops = warp_to_crop(frames, matrices, 256)
    assert crops.shape == (3, 280, 210, 3)
    assert _within_one_level(crops, golden["output.fp32.res256.aligned_faces_u8"]) >= 0.999
    faces = warp_faces(frames, matrices, 256)
    assert faces.shape == (3, 256, 256, 3)
    assert _within_one_level(faces, golden["output.fp32.res256.aligned_faces_resized_u8"]) >= 0.999
    # Lanczos of the golden's own crops reproduces its resized faces exactly: the resize step is the same.
    np.testing.assert_array_equal(
        resize_crops(golden["output.fp32.res256.aligned_faces_u8"], 256),
        golden["output.fp32.res256.aligned_faces_resized_u8"],
    )


def test_crop_outside_the_frame_is_grey(golden, warp_path):
    frame = golden["input.image_rgb_u8"][None]
    shift = np.array([[[1.0, 0.0, 5000.0], [0.0, 1.0, 5000.0]]], np.float32)  # the frame lands far off-crop
    assert (warp_to_crop(frame, shift, 256) == 127).all()
    assert warp_faces(frame, golden["output.fp32.res512.affine_matrices"][:1], 512).shape == (1, 512, 512, 3)


def test_warp_rejects_nan_matrices(golden):
    frame = golden["input.image_rgb_u8"][None]
    with pytest.raises(ValueError, match="not finite"):
        warp_faces(frame, np.full((1, 2, 3), np.nan), 256)


def test_batched_and_per_frame_warps_agree_on_a_mixed_chunk(golden, monkeypatch):
    # Different matrices per frame (so the batch pads windows of different sizes), one crop half off the
    # frame's edge and one entirely off it.
    frames = np.stack(
        [golden["input.image_rgb_u8"], golden["input.image_rgb_u8"][:, ::-1], golden["input.image_rgb_u8"]]
    )
    frames = np.concatenate([frames, frames[:2]])
    matrices = np.concatenate(
        [golden["output.fp32.res256.affine_matrices"], golden["output.fp32.res256.affine_matrices"][:2]]
    ).copy()
    matrices[1, :, :2] *= 0.7  # a larger source window
    matrices[3, 0, 2] += 120.0  # the crop reads past the frame's left edge
    matrices[4, :, 2] += 5000.0  # entirely off the frame
    results = {}
    for batched in (False, True):
        monkeypatch.setattr(alignment, "WARP_BATCHED_ON_CPU", batched)
        results[batched] = warp_to_crop(frames, matrices, 256)
    assert _within_one_level(results[True], results[False]) >= 0.999
    assert (results[True][4] == 127).all() and (results[True][3] == 127).any()
    assert warp_to_crop(frames[:0], matrices[:0], 256).shape == (0, 280, 210, 3)


def test_coincident_anchor_points_raise_a_clear_error(golden):
    points = golden["input.landmarks3"].astype(np.float32).copy()
    points[1] = points[1, 0]  # all three points of frame 1 on one pixel
    with pytest.raises(ValueError, match=r"frames \[1\] .*coincide"):
        estimate_affines(points, 256)
    points[1] = points[0, 0] + np.array(
        [[0.0, 0.0], [0.3, 0.0], [0.0, 0.3]], np.float32
    )  # sub-pixel triangle
    with pytest.raises(ValueError, match="coincide"):
        estimate_affines(points, 256)
    points[1] = np.nan  # no face: not an error, a NaN matrix
    assert np.isnan(estimate_affines(points, 256)[1]).all()
