"""SyncNet audio features: MFCC and 5-frame windows against the official-convention golden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from latentsync.errors import InputError
from latentsync.sync.mfcc import audio_windows, compute_mfcc, num_windows, to_int16_scale


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    return load_file(reference_dir / "syncnet_scoring_golden.safetensors")


def test_mfcc_equals_golden_from_int16_audio(golden: dict[str, np.ndarray]) -> None:
    mfcc = compute_mfcc(golden["audio_int16"])
    assert mfcc.shape == (13, 408)
    # Same library, same float64 maths; only the FFT/BLAS build's rounding may differ (~1e-14).
    np.testing.assert_allclose(mfcc, golden["mfcc"], rtol=1e-10, atol=1e-9)


def test_float_audio_decoded_from_int16_gives_the_same_mfcc(golden: dict[str, np.ndarray]) -> None:
    as_float = (golden["audio_int16"] / 32768).astype(np.float32)  # what a media reader returns
    np.testing.assert_allclose(compute_mfcc(as_float), golden["mfcc"], rtol=1e-10, atol=1e-9)


def test_window_count_and_values_equal_golden(golden: dict[str, np.ndarray]) -> None:
    n = num_windows(n_video_frames=100, n_samples=len(golden["audio_int16"]))
    assert n == 95
    windows = audio_windows(golden["mfcc"], n)
    assert windows.shape == (95, 1, 13, 20) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows, golden["audio_windows"])
    np.testing.assert_array_equal(windows[7, 0], golden["mfcc"][:, 28:48].astype(np.float32))


def test_window_count_is_limited_by_the_audio() -> None:
    assert num_windows(n_video_frames=100, n_samples=640 * 30 + 639) == 25
    assert num_windows(n_video_frames=5, n_samples=640 * 30) == 0


def test_too_few_mfcc_steps_raise_input_error() -> None:
    with pytest.raises(InputError, match="MFCC steps"):
        audio_windows(np.zeros((13, 30)), n_windows=4)  # needs 4 * 3 + 20 = 32 steps
    with pytest.raises(InputError):
        audio_windows(np.zeros((13, 30)), n_windows=0)


def test_int16_scaling_rounds_and_clips_like_ffmpeg() -> None:
    audio = np.array([0.5, -1.0, 1.0, 2.0, 1e-5, -0.7], dtype=np.float32)
    expected = [16384, -32768, 32767, 32767, 0, round(-0.7 * 32768)]
    np.testing.assert_array_equal(to_int16_scale(audio), np.array(expected, dtype=np.float64))
    np.testing.assert_array_equal(to_int16_scale(np.array([3, -4], dtype=np.int16)), [3.0, -4.0])


def test_bad_audio_raises_input_error() -> None:
    with pytest.raises(InputError, match="1-D"):
        compute_mfcc(np.zeros((2, 1600), dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        compute_mfcc(np.full(1600, np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="no samples"):
        compute_mfcc(np.zeros(0, dtype=np.float32))
