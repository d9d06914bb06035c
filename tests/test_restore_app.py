"""The face restorer in the app: the checkbox and strength slider become LipSyncOptions.restore, the ZeroGPU
estimate counts it, the settings line names it, and a request with it runs in smoke mode (tiny restorer)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from latentsync import media
from latentsync.app_support import (
    RESTORE_SECONDS_PER_FRAME,
    LipSyncJob,
    PipelineCache,
    describe_result,
    gpu_seconds,
    make_options,
)
from latentsync.app_support.summary import _extra_settings
from latentsync.errors import InputError
from latentsync.inference.pipeline import LipSyncOptions

from .conftest import DEMO_AUDIO, DEMO_VIDEO


def test_checkbox_and_slider_become_the_restore_option():
    assert make_options(20, 1.5, 1).restore == 0.0  # off by default: old clients are unchanged
    assert make_options(20, 1.5, 1, restore=False, restore_strength=0.9).restore == 0.0  # unticked wins
    assert make_options(20, 1.5, 1, restore=True).restore == 0.5
    assert make_options(20, 1.5, 1, restore=True, restore_strength=0.75).restore == 0.75
    for bad in (0, 1.2, None):
        with pytest.raises(InputError, match="face restoration strength must be above 0 and at most 1"):
            make_options(20, 1.5, 1, restore=True, restore_strength=bad)
    assert _extra_settings(LipSyncOptions(restore=0.5)) == ", face restoration (strength 0.5)"
    assert _extra_settings(LipSyncOptions()) == ""


def test_gpu_estimate_counts_the_restorer():
    cfg20 = LipSyncOptions(steps=20, guidance_scale=1.5, cache_interval=1)
    plain = gpu_seconds("1.5", 10.0, 10.0, cfg20)
    restored = gpu_seconds("1.5", 10.0, 10.0, dataclasses.replace(cfg20, restore=0.5))
    # 250 output frames x 30 ms x the 1.5 margin = 11.25 s more
    assert plain == 58 and restored == int(np.ceil(57.75 + 1.5 * 250 * RESTORE_SECONDS_PER_FRAME)) == 69


@pytest.mark.slow
def test_a_smoke_request_with_restoration_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path / "face-tracks"))
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(0.24 * media.SAMPLE_RATE)])
    cache = PipelineCache()
    try:
        options = make_options(1, 1.0, 7, restore=True, restore_strength=1.0)
        job = LipSyncJob(str(DEMO_VIDEO), str(audio), str(tmp_path / "o.mp4"), "1.5", options, video_seconds=2.0,
                         audio_seconds=0.24, smoke=True)  # fmt: skip
        result = cache.run(job).result
        assert result.num_frames == 6 and media.probe(result.output).num_frames == 6
        assert "face restoration (strength 1)" in describe_result(result, job)
    finally:
        cache.close()
