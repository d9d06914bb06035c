"""Training samples from data-toolchain-style clips: windows, masks, audio features, mel, index seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentsync.inference.audio_features import audio_windows
from latentsync.media.mel import mel_window, wav2lip_mel
from latentsync.faces.mask import mouth_mask
from latentsync.training.data import (
    FRAMES_PER_WINDOW,
    SyncNetWindows,
    UNetWindows,
    to_pixels,
)
from latentsync.training.inputs import check_fileslist
from latentsync.training.tiny import write_synthetic_dataset

RES = 32


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from latentsync.models.whisper import tiny_whisper_dims, write_random_whisper_checkpoint

    folder = tmp_path_factory.mktemp("clips")
    fileslist = write_synthetic_dataset(folder, n_clips=2, seconds=2.4, resolution=RES)
    whisper = write_random_whisper_checkpoint(folder / "tiny.pt", tiny_whisper_dims(), seed=0)
    return fileslist, whisper


def test_file_list_and_clip_format(dataset_dir):
    from latentsync import media

    fileslist, _ = dataset_dir
    clips = check_fileslist("data.train_fileslist", fileslist)
    assert [c.name for c in clips] == ["clip000.mp4", "clip001.mp4"]
    info = media.probe(clips[0])
    assert (info.width, info.height, info.has_audio, info.frames_at_model_fps) == (RES, RES, True, 60)


def test_unet_items(dataset_dir):
    from latentsync.models.whisper import WhisperAudioEncoder
    from latentsync.training.data import read_clip

    fileslist, whisper = dataset_dir
    clips = check_fileslist("data.train_fileslist", fileslist)
    data = UNetWindows(clips, seed=5, resolution=RES, whisper_path=whisper, with_mel=True, samples_per_epoch=6)
    assert len(data) == 6
    encoder = WhisperAudioEncoder.from_checkpoint(whisper)
    starts = set()
    for index in range(6):
        item = data[index]
        start, ref_start = int(item["start"]), int(item["ref_start"])
        starts.add(start)
        assert abs(start - ref_start) >= FRAMES_PER_WINDOW
        assert item["gt"].shape == item["ref"].shape == (16, 3, RES, RES)
        assert item["gt"].min() >= -1 and item["gt"].max() <= 1
        torch.testing.assert_close(item["masked"], item["gt"] * torch.from_numpy(mouth_mask(RES)))
        # Which clip: the one whose frames these are.
        path = next(p for p in clips if torch.equal(to_pixels(read_clip(str(p), RES).frames[start:start + 16]), item["gt"]))
        clip = read_clip(str(path), RES)
        assert torch.equal(item["ref"], to_pixels(clip.frames[ref_start:ref_start + 16]))
        torch.testing.assert_close(item["audio"], audio_windows(encoder.encode(clip.audio), start, 16))
        torch.testing.assert_close(item["mel"], mel_window(wav2lip_mel(clip.audio), start))
    assert len(starts) > 1
    again = data[3]
    assert torch.equal(again["gt"], data[3]["gt"]) and again["seed"] == data[3]["seed"]  # a function of the index
    data.epoch = 1
    assert data[3]["seed"] != again["seed"]  # a new epoch draws new samples ...
    data.fixed_samples = True
    assert data[3]["seed"] == again["seed"]  # ... unless they are fixed


def test_syncnet_items_pair_audio_with_its_own_or_other_frames(dataset_dir):
    from latentsync.training.data import read_clip

    fileslist, _ = dataset_dir
    clips = check_fileslist("data.train_fileslist", fileslist)
    data = SyncNetWindows(clips, seed=0, resolution=RES, samples_per_epoch=24)
    labels = []
    for index in range(24):
        item = data[index]
        assert item["frames"].shape == (48, RES // 2, RES) and item["mel"].shape == (1, 80, 52)
        in_sync = bool(item["y"].item())
        labels.append(in_sync)
        assert (int(item["frames_start"]) == int(item["start"])) == in_sync
        frames_start = int(item["frames_start"])
        matches = [p for p in clips if torch.equal(
            to_pixels(read_clip(str(p), RES).frames[frames_start:frames_start + 16])[:, :, RES // 2:].flatten(0, 1),
            item["frames"])]
        assert matches
    assert 0.2 < np.mean(labels) < 0.8
