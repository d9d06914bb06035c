"""StableSyncNet training on constructed clips: the loop, validation, and a checkpoint in the official format."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from latentsync.training.config import load_syncnet_train_config
from latentsync.training.syncnet_trainer import train_syncnet
from latentsync.training.tiny import TINY_SYNCNET_RESOLUTION, write_synthetic_dataset, write_tiny_syncnet_yaml

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
