"""The shipped mouth mask against the official mask (README §4.6, §10.4): pixel for pixel at every resolution."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from latentsync.faces import latent_mask, mouth_mask



@pytest.fixture(scope="module")
def reference_masks(reference_dir):
    return load_file(reference_dir / "mask_reference.safetensors")


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
    # Nearly symmetric (the U is centred on column 128, one past the middle, so the left half keeps 1.2 % more).
    assert mask[:, : resolution // 2].sum() == pytest.approx(mask[:, resolution // 2 :].sum(), rel=0.02)


def test_mask_256_is_exactly_the_reference_mask(reference_masks):
    mask = mouth_mask(256)
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(mask, reference_masks["mask_png_u8_256"].astype(np.float32) / 255)
    assert mask.mean() == pytest.approx(0.593, abs=0.001)  # reference: 59.3 % of pixels are kept


def test_mask_512_is_exactly_the_reference_lanczos_resize(reference_masks):
    mask = mouth_mask(512)
    assert len(np.unique(mask)) == 136  # soft Lanczos edges: the reference's 136 distinct levels at 512
    np.testing.assert_array_equal(mask, reference_masks["mask_lanczos4_u8_512"].astype(np.float32) / 255)


def test_mask_ships_with_its_apache_notice():
    from importlib import resources

    folder = resources.files("latentsync.faces")
    notice = folder.joinpath("NOTICE").read_text()
    assert "reference_mask.png" in notice and "ByteDance" in notice and "Apache License, Version 2.0" in notice
    assert folder.joinpath("reference_mask.png").is_file()


@pytest.mark.parametrize("resolution, key", [(256, "mask_latent_32"), (512, "mask_latent_64")])
def test_latent_mask_matches_reference(reference_masks, resolution, key):
    latent = latent_mask(resolution)
    assert latent.shape == (resolution // 8, resolution // 8) and latent.dtype == np.float32
    np.testing.assert_array_equal(latent, mouth_mask(resolution)[::8, ::8])
    np.testing.assert_array_equal(latent, reference_masks[key])


def test_mask_rejects_bad_resolution():
    with pytest.raises(ValueError, match="multiple of 8"):
        mouth_mask(100)
