"""The procedural mouth mask against the official mask (README §4.6, §10.4); the official pixels are read
here only to measure overlap, never shipped."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from latentsync.faces import latent_mask, mouth_mask

MIN_IOU = 0.98


@pytest.fixture(scope="module")
def reference_masks(reference_dir):
    return load_file(reference_dir / "mask_reference.safetensors")


def _iou_of_generated_region(ours: np.ndarray, ref_generate: np.ndarray) -> float:
    ours_generate = ours < 0.5
    return float((ours_generate & ref_generate).sum() / (ours_generate | ref_generate).sum())


@pytest.mark.parametrize("resolution", [256, 512])
def test_mask_shape_range_and_layout(resolution):
    mask = mouth_mask(resolution)
    assert mask.shape == (resolution, resolution) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() == 1.0
    scale = resolution // 256
    # Kept: forehead, eyes, the nose between the side bands, the corners below the chin.
    assert mask[: 90 * scale].min() == 1.0
    assert mask[110 * scale, 128 * scale] == 1.0
    assert mask[250 * scale, 5 * scale] == 1.0
    # Generated: the cheeks beside the nose and the mouth/chin.
    assert mask[110 * scale, 40 * scale] == 0.0 and mask[110 * scale, 210 * scale] == 0.0
    assert mask[170 * scale, 128 * scale] == 0.0 and mask[230 * scale, 128 * scale] == 0.0
    assert mask[:, : resolution // 2].sum() == pytest.approx(mask[:, resolution // 2 :].sum(), rel=0.01)


def test_mask_256_is_binary_and_matches_reference(reference_masks):
    mask = mouth_mask(256)
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}
    assert _iou_of_generated_region(mask, reference_masks["mask_png_u8_256"] < 128) >= MIN_IOU
    assert mask.mean() == pytest.approx(0.593, abs=0.01)  # reference: 59.3 % of pixels are kept


def test_mask_512_is_soft_lanczos_and_matches_reference(reference_masks):
    mask = mouth_mask(512)
    assert len(np.unique(mask)) > 20  # soft Lanczos edges, like the reference at 512
    assert _iou_of_generated_region(mask, reference_masks["mask_lanczos4_u8_512"] < 128) >= MIN_IOU


@pytest.mark.parametrize("resolution, key", [(256, "mask_latent_32"), (512, "mask_latent_64")])
def test_latent_mask_matches_reference(reference_masks, resolution, key):
    latent = latent_mask(resolution)
    assert latent.shape == (resolution // 8, resolution // 8) and latent.dtype == np.float32
    np.testing.assert_array_equal(latent, mouth_mask(resolution)[::8, ::8])
    assert _iou_of_generated_region(latent, reference_masks[key] < 0.5) >= MIN_IOU


def test_mask_rejects_bad_resolution():
    with pytest.raises(ValueError, match="multiple of 8"):
        mouth_mask(100)
