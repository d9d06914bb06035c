"""The Wav2Lip mel StableSyncNet listens to, against the official golden (training/README §1b)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentsync.media.mel import MEL_WINDOW, mel_start, mel_window, wav2lip_mel


def test_mel_matches_the_official_golden(reference_dir):
    from safetensors.torch import load_file

    golden = load_file(reference_dir / "training" / "mel_golden.safetensors")
    mel = wav2lip_mel(golden["wav_f32"].numpy())
    assert mel.shape == (80, 81) and mel.dtype == torch.float32
    torch.testing.assert_close(mel.double(), golden["mel_f64"], atol=1e-4, rtol=0)
    assert mel.min() == -4.0 and mel.max() < 4.0


def test_windows_follow_the_reference_indexing(reference_dir):
    from safetensors.torch import load_file

    golden = load_file(reference_dir / "training" / "mel_golden.safetensors")
    mel = wav2lip_mel(golden["wav_f32"].numpy())
    assert MEL_WINDOW == 52
    assert [mel_start(k) for k in (0, 3, 6, 9)] == [0, 9, 19, 28]  # int(80 k / 25)
    assert torch.equal(mel_window(mel, 3)[0], mel[:, 9:61])
    with pytest.raises(ValueError, match="needs"):
        mel_window(mel, 10)  # 32 + 52 > 81 columns


def test_silence_is_the_floor_and_bad_input_is_refused():
    assert torch.all(wav2lip_mel(np.zeros(1600, np.float32)) == -4.0)
    with pytest.raises(ValueError, match="1-D"):
        wav2lip_mel(np.zeros((2, 100), np.float32))
