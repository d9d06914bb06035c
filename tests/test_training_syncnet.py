"""StableSyncNet training on constructed clips: the loop, validation, and a checkpoint in the official format."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from latentsync.training.config import load_syncnet_train_config
from latentsync.training.syncnet_trainer import train_syncnet
from latentsync.training.tiny import (
    SYNC_RUN_FRAMES,
    TINY_SYNCNET_RESOLUTION,
    mouth_box,
    write_sync_clip,
    write_synthetic_dataset,
    write_tiny_syncnet_yaml,
)

STEPS = 4


@pytest.mark.slow
def test_syncnet_training_validates_and_writes_an_official_checkpoint(tmp_path):
    from latentsync.models.stable_syncnet import StableSyncNetConfig, load_stable_syncnet

    train = write_synthetic_dataset(tmp_path / "train", n_clips=2, seconds=2.4, resolution=TINY_SYNCNET_RESOLUTION)
    val = write_synthetic_dataset(tmp_path / "val", n_clips=1, seconds=2.4, resolution=TINY_SYNCNET_RESOLUTION,
                                  first_seed=100)
    path = write_tiny_syncnet_yaml(tmp_path / "syncnet.yaml", train, tmp_path / "run", max_train_steps=STEPS,
                                   validate_every=STEPS, log_every=1)
    config = load_syncnet_train_config(path)
    config = dataclasses.replace(config, val_samples=16, data=dataclasses.replace(config.data, val_fileslist=str(val)))
    result = train_syncnet(config)
    assert sorted(result.losses) == list(range(1, STEPS + 1))
    assert all(0 < loss < 100 for loss in result.losses.values())
    scores = result.validations[STEPS]
    assert 0 <= scores["val_accuracy"] <= 1 and scores["val_loss"] > 0
    checkpoint = torch.load(result.checkpoints[-1], map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == STEPS
    model = load_stable_syncnet(result.checkpoints[-1], StableSyncNetConfig.from_dict(config.model))
    initial_seeded = torch.manual_seed(config.train.seed)  # the trainer's initialisation, to show the weights moved
    from latentsync.models.stable_syncnet import StableSyncNet

    fresh = StableSyncNet(StableSyncNetConfig.from_dict(config.model))
    del initial_seeded
    moved = sum(not torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
    assert moved > 0


@pytest.mark.slow
def test_learning_rate_warm_up_runs_in_the_trainer_and_resumes_exactly(tmp_path):
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig

    train = write_synthetic_dataset(tmp_path / "train", n_clips=2, seconds=2.4, resolution=TINY_SYNCNET_RESOLUTION)

    def run(name, steps, resume=False):  # lr 0, 1/4, 2/4, 3/4 of 1e-3 at steps 1-4, then 1e-3
        path = write_tiny_syncnet_yaml(tmp_path / f"{name}.yaml", train, tmp_path / name, max_train_steps=steps,
                                       optimizer={"lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 4},
                                       save_every=3, log_every=1)
        config = load_syncnet_train_config(path)
        return train_syncnet(config, resume=resume), config

    # Step 1 runs at lr 0: the weights after it are the initial ones.
    one, config = run("one", 1)
    torch.manual_seed(config.train.seed)  # the trainer's initialisation
    initial = StableSyncNet(StableSyncNetConfig.from_dict(config.model)).state_dict()
    after_one = torch.load(one.checkpoints[-1], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(initial[k], v) for k, v in after_one.items())

    # The schedule's position is part of the saved state: 3 steps, then resumed to 5, equal 5 in one go.
    whole, _ = run("whole", 5)
    first, _ = run("parts", 3)
    second, _ = run("parts", 5, resume=True)
    assert list(first.losses) == [1, 2, 3] and list(second.losses) == [4, 5]
    assert {**first.losses, **second.losses} == pytest.approx(whole.losses, abs=1e-6)
    a, b = (torch.load(r.checkpoints[-1], map_location="cpu", weights_only=True)["state_dict"] for r in (whole, second))
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, atol=1e-6, rtol=1e-5)


def _mouth_and_sound(path):
    """Per frame of a decoded clip: the mouth bar's mean grey level and the mean over the 80 bins of the mel column
    nearest the frame's centre."""
    from latentsync.media.mel import MEL_COLUMNS_PER_SECOND
    from latentsync.media import VIDEO_FPS
    from latentsync.training.data import clip_mel, read_clip

    clip, mel = read_clip(str(path), TINY_SYNCNET_RESOLUTION), clip_mel(str(path), TINY_SYNCNET_RESOLUTION)
    rows, cols = mouth_box(TINY_SYNCNET_RESOLUTION)
    mouth = clip.frames[:, rows, cols].mean(axis=(1, 2, 3))
    centres = [round(MEL_COLUMNS_PER_SECOND * (k + 0.5) / VIDEO_FPS) for k in range(len(mouth))]
    return mouth, mel[:, centres].mean(0).numpy()


def _runs(flags):
    edges = np.flatnonzero(np.diff(flags.astype(int))) + 1
    return np.diff(np.concatenate([[0], edges, [len(flags)]]))


def test_sync_clip_mouth_opens_exactly_while_the_burst_sounds(tmp_path):
    mouth, sound = _mouth_and_sound(write_sync_clip(tmp_path / "sync.mp4", seed=5))
    talking = mouth > 135  # open 240, closed 30 (H.264 moves them by a few levels)
    assert np.all((mouth > 220) | (mouth < 45)), mouth
    # A burst lights the whole mel column (~+0.9 on [-4, 4]); silence sits at the floor (-4), except that the 50 ms
    # STFT window of a silent frame next to a burst catches a few of its samples (up to ~-0.5 on the log scale).
    np.testing.assert_array_equal(sound > 0.4, talking)
    quiet = ~talking & ~np.roll(talking, 1) & ~np.roll(talking, -1)
    assert quiet.sum() > 5 and sound[quiet].max() < -3.0, sound[quiet]
    inner = _runs(talking)[1:-1]  # the first and last runs are cut by the clip's ends
    assert inner.min() >= SYNC_RUN_FRAMES[0] and inner.max() <= SYNC_RUN_FRAMES[1], inner

    control_mouth, control_sound = _mouth_and_sound(write_sync_clip(tmp_path / "control.mp4", seed=5,
                                                                    independent_audio=True))
    np.testing.assert_array_equal(control_mouth > 135, talking)  # same face and mouth, unrelated sound
    assert 0.3 < np.mean((control_sound > -2) == talking) < 0.8
