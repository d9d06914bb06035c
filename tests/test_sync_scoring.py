"""Offset search and Sync-C / Sync-D arithmetic: official golden, constructed shifts, shift invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from latentsync.sync.scoring import MAX_OFFSET, offset_distances, score_embeddings


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(reference_dir / "syncnet_scoring_golden.safetensors")


def test_distances_equal_the_official_calc_pdist(golden: dict[str, torch.Tensor]) -> None:
    dists = offset_distances(golden["im_feat"], golden["cc_feat"])
    assert dists.shape == (31, 95)
    torch.testing.assert_close(dists, golden["dists"], rtol=0, atol=1e-4)


def test_score_equals_golden(golden: dict[str, torch.Tensor]) -> None:
    score = score_embeddings(golden["im_feat"], golden["cc_feat"])
    np.testing.assert_allclose(score.distances, golden["mean_dists"].numpy(), rtol=0, atol=1e-4)
    assert score.offset == int(golden["offset"]) == -3
    assert score.min_distance == pytest.approx(float(golden["sync_d"]), abs=1e-4)
    assert score.confidence == pytest.approx(float(golden["sync_c"]), abs=1e-4)
    assert score.offsets[np.argmin(score.distances)] == score.offset


@pytest.mark.parametrize("shift", [-9, -3, -1, 0, 2, 7])
def test_audio_leading_by_k_frames_reports_offset_k(shift: int) -> None:
    generator = torch.Generator().manual_seed(10 + shift)
    n, dim = 60, 64
    sequence = torch.randn(n + 40, dim, generator=generator)
    lip = sequence[20 : 20 + n]
    audio = sequence[20 + shift : 20 + shift + n]  # audio[t] = lip[t + shift]
    score = score_embeddings(lip, audio)
    assert score.offset == shift
    assert score.confidence > 1.0
    assert score.distances.shape == (31,)


def test_distances_of_a_shifted_pair_are_the_rolled_distances_in_the_interior() -> None:
    generator = torch.Generator().manual_seed(0)
    n, dim, k, margin = 80, 32, 4, 20
    lip = torch.randn(n, dim, generator=generator)
    sequence = torch.randn(n + 2 * margin, dim, generator=generator)
    base = offset_distances(lip, sequence[margin : margin + n])
    shifted = offset_distances(lip, sequence[margin + k : margin + k + n])  # audio'[j] = audio[j + k]
    interior = slice(MAX_OFFSET + k, n - MAX_OFFSET - k)  # columns whose look-ups stay inside both tracks
    rows = slice(0, 2 * MAX_OFFSET + 1 - k)  # rows i whose i + k is still a searched offset
    rolled = base.roll(-k, dims=0)  # rolled[i] = base[i + k]
    torch.testing.assert_close(shifted[rows, interior], rolled[rows, interior], rtol=0, atol=1e-5)
    assert not torch.allclose(shifted[:, interior], base[:, interior])  # the shift did change the distances


def test_zero_padding_past_the_ends() -> None:
    lip = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    audio = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    dists = offset_distances(lip, audio, max_offset=1)  # rows: shifts -1, 0, +1
    expected = torch.tensor([[5.0, 1.0], [5.0, 0.0], [20.0**0.5, 1.0]])
    torch.testing.assert_close(dists, expected, rtol=0, atol=1e-5)


def test_confidence_is_median_minus_minimum() -> None:
    generator = torch.Generator().manual_seed(5)
    lip, audio = torch.randn(40, 16, generator=generator), torch.randn(40, 16, generator=generator)
    score = score_embeddings(lip, audio)
    mean = offset_distances(lip, audio).mean(dim=1).numpy()
    assert score.min_distance == pytest.approx(float(mean.min()), abs=1e-6)
    assert score.confidence == pytest.approx(float(np.sort(mean)[15] - mean.min()), abs=1e-5)
    assert score.offset == 15 - int(np.argmin(mean))
