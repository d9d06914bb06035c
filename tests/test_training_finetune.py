"""Fine-tuning the released UNet: released weights by name, exactly the absent motion modules dropped for stage 1 and
the efficient stage, the file's global_step reported, the result loading into the inference pipeline."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pytest
import torch

from latentsync.checkpoints import CHECKPOINTS_ENV, LOCAL_CONFIG_NAME
from latentsync.errors import CheckpointError, InputError
from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
from latentsync.models.unet_checkpoint import MOTION_MODULES, load_unet_weights_, save_unet_checkpoint
from latentsync.models.unet_config import UNetConfig, tiny_unet_config
from latentsync.training.config import STAGE2_TRAINABLE_MODULES, unet_config_from_dict
from latentsync.training.models import resolve_init_unet

RELEASED_STEP = 1234  # the global_step written into the tiny "released" file


def motion_groups(names) -> dict[str, int]:
    """Motion-module tensor count per module group ("up_blocks.1.motion_modules"), computed independently."""
    groups: dict[str, int] = {}
    for name in names:
        match = re.match(r"(.*?motion_modules)\.", name)
        assert match, name
        groups[match.group(1)] = groups.get(match.group(1), 0) + 1
    return groups


def absent_names(full: UNetConfig, partial: UNetConfig) -> list[str]:
    with torch.device("meta"):
        have = set(LatentSyncUNet(partial).state_dict())
        return [name for name in LatentSyncUNet(full).state_dict() if name not in have]


@pytest.fixture(scope="module")
def released_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("released") / "latentsync_unet.pt"
    torch.manual_seed(0)
    unet = randomize_zero_init_(LatentSyncUNet(tiny_unet_config()), torch.Generator().manual_seed(0))
    save_unet_checkpoint(unet, path, global_step=RELEASED_STEP)
    return path, unet.state_dict()


@pytest.mark.parametrize("change", [{"use_motion_module": False}, {"motion_module_decoder_only": True}])
def test_released_weights_fill_a_net_lacking_motion_modules_dropping_exactly_those(released_file, change):
    path, released = released_file
    config = dataclasses.replace(tiny_unet_config(), **change)
    net = LatentSyncUNet(config)
    expected = absent_names(tiny_unet_config(), config)
    assert expected and all(MOTION_MODULES in name for name in expected)
    report = load_unet_weights_(net, path, allow_missing_motion_modules=config.use_motion_module,
                                drop_absent_motion_modules=True)
    assert report.dropped == motion_groups(expected) and report.dropped_count == len(expected)
    assert report.loaded == len(released) - len(expected) == len(net.state_dict()) and report.kept == ()
    assert report.global_step == RELEASED_STEP
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, released[name]), name
    if change.get("motion_module_decoder_only"):  # the decoder's motion modules are kept, the encoder's dropped
        assert all(group.startswith("down_blocks.") for group in report.dropped)
        assert any("up_blocks." in name and MOTION_MODULES in name for name in net.state_dict())
    assert f"{len(expected)} motion-module tensors dropped" in report.describe()
    assert f"global_step: {RELEASED_STEP}" in report.describe()


def test_released_weights_stay_strict_for_everything_but_absent_motion_modules(released_file, tmp_path):
    path, released = released_file
    stage1 = LatentSyncUNet(dataclasses.replace(tiny_unet_config(), use_motion_module=False))
    with pytest.raises(CheckpointError, match="unexpected.*training's init_unet drops them"):
        load_unet_weights_(stage1, path)  # dropping is asked for, never implied
    wider = LatentSyncUNet(dataclasses.replace(tiny_unet_config(), block_out_channels=(32, 32, 64, 128),
                                               use_motion_module=False))
    with pytest.raises(CheckpointError, match="mis-shaped"):  # another architecture is still an error
        load_unet_weights_(wider, path, drop_absent_motion_modules=True)
    partial = {name: t for name, t in released.items() if not name.startswith("conv_in")}
    torch.save({"state_dict": partial}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="2 missing: conv_in.weight, conv_in.bias"):
        load_unet_weights_(LatentSyncUNet(tiny_unet_config()), tmp_path / "partial.pt",
                           allow_missing_motion_modules=True, drop_absent_motion_modules=True)
    # A motion module the net has must match whole: an extra tensor inside one is not dropped.
    inner = {**released, "up_blocks.1.motion_modules.0.extra.weight": torch.zeros(1)}
    torch.save({"state_dict": inner}, tmp_path / "inner.pt")
    with pytest.raises(CheckpointError, match="1 unexpected: up_blocks.1.motion_modules.0.extra.weight"):
        load_unet_weights_(LatentSyncUNet(tiny_unet_config()), tmp_path / "inner.pt", drop_absent_motion_modules=True)
    extra = {**released, "down_blocks.0.extra.weight": torch.zeros(1)}
    torch.save({"state_dict": extra}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="1 unexpected: down_blocks.0.extra.weight"):
        load_unet_weights_(LatentSyncUNet(tiny_unet_config()), tmp_path / "extra.pt", drop_absent_motion_modules=True)


def test_released_unets_are_resolved_by_name_like_inference(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    (folder).mkdir()
    (folder / "latentsync_unet.pt").write_bytes(b"x")  # resolution only: the file is read later
    assert resolve_init_unet("released-1.5", str(folder), 256) == folder / "latentsync_unet.pt"
    monkeypatch.setenv(CHECKPOINTS_ENV, str(folder))
    assert resolve_init_unet("released-1.5", None, 256) == folder / "latentsync_unet.pt"
    with pytest.raises(InputError, match="released-1.6 was trained on 512 px faces, but data.resolution is 256; "
                                         "use released-1.5"):
        resolve_init_unet("released-1.6", str(folder), 256)
    with pytest.raises(InputError, match="unknown released UNet 'released-2.0'; available: released-1.5, released-1.6"):
        resolve_init_unet("released-2.0", str(folder), 256)
    assert resolve_init_unet("runs/stage1/checkpoints/checkpoint-10.pt", None, 256).name == "checkpoint-10.pt"
    (folder / LOCAL_CONFIG_NAME).write_text(json.dumps({"resolution": 32}))  # a folder's own training resolution
    assert resolve_init_unet("released-1.6", str(folder), 32) == folder / "latentsync_unet.pt"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="latentsync_unet.pt"):
        resolve_init_unet("released-1.5", str(empty), 256)


def test_trainable_modules_follow_the_motion_modules_unless_given():
    """As the reference: the patterns apply to a net with motion modules; without them the whole UNet trains."""
    assert unet_config_from_dict({"model": {"use_motion_module": False}}).trainable_modules == ()
    assert unet_config_from_dict({"model": {"use_motion_module": True}}).trainable_modules == STAGE2_TRAINABLE_MODULES
    given = {"model": {"use_motion_module": False}, "trainable_modules": ["attn2."]}
    assert unet_config_from_dict(given).trainable_modules == ("attn2.",)
    assert unet_config_from_dict({**given, "trainable_modules": []}).trainable_modules == ()
    with pytest.raises(ValueError, match="unknown keys \\['trainable_module'\\]"):
        unet_config_from_dict({"trainable_module": ["attn2."]})


# ---- end to end: the tiny released folder into each stage, one step, the result in the pipeline ----------------

@pytest.fixture(scope="module")
def released_setup(tmp_path_factory):
    from latentsync.tiny import write_tiny_checkpoints
    from latentsync.training.tiny import (
        TINY_TRAIN_RESOLUTION,
        write_synthetic_dataset,
        write_tiny_auxiliary,
        write_tiny_syncnet_yaml,
    )

    root = tmp_path_factory.mktemp("finetune")
    checkpoints = write_tiny_auxiliary(write_tiny_checkpoints(root / "checkpoints", seed=0))
    unet_file = checkpoints / "latentsync_unet.pt"
    saved = torch.load(unet_file, map_location="cpu", weights_only=True)
    torch.save({**saved, "global_step": RELEASED_STEP}, unet_file)  # a released file records its step
    # This folder's net was "trained" at the tiny training resolution (the released 1.5 says 256 px).
    settings = json.loads((checkpoints / LOCAL_CONFIG_NAME).read_text())
    inference_settings = dict(settings)
    (checkpoints / LOCAL_CONFIG_NAME).write_text(json.dumps({**settings, "resolution": TINY_TRAIN_RESOLUTION}))
    fileslist = write_synthetic_dataset(root / "data", n_clips=2, seconds=2.4, resolution=TINY_TRAIN_RESOLUTION)
    syncnet_yaml = write_tiny_syncnet_yaml(root / "syncnet.yaml", fileslist, root / "syncnet-run")
    return root, checkpoints, fileslist, syncnet_yaml, inference_settings, saved["state_dict"]


STAGES = {
    # stage 1: no motion modules, trainable_modules not given (the whole UNet), reconstruction only
    "stage1": ({"use_motion_module": False}, None,
               {"loss.pixel_space_supervise": False, "loss.use_syncnet": False}),
    # stage 2 as released (nothing dropped), reconstruction only here (its full losses: test_training_unet.py)
    "stage2": ({}, list(STAGE2_TRAINABLE_MODULES),
               {"loss.pixel_space_supervise": False, "loss.use_syncnet": False}),
    # efficient: decoder-only motion modules + audio cross-attention trained; LPIPS and sync, no TREPA
    "efficient": ({"motion_module_decoder_only": True}, ["motion_modules.", "attn2."],
                  {"loss.trepa_loss_weight": 0.0}),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_released_unet_initialises_each_stage_trains_a_step_and_loads_in_the_pipeline(released_setup, stage,
                                                                                       tmp_path):
    from latentsync import load_pipeline
    from latentsync.tiny import TINY_RESOLUTION
    from latentsync.training.tiny import tiny_unet_train_config
    from latentsync.training.unet_trainer import train_unet

    root, checkpoints, fileslist, syncnet_yaml, inference_settings, released = released_setup
    model_change, trainable, overrides = STAGES[stage]
    config = tiny_unet_train_config(checkpoints, fileslist, root / stage, syncnet_yaml, init_unet="released-1.5",
                                    enable_gradient_checkpointing=False, **overrides,
                                    **{"train.max_train_steps": 1})
    config["model"].update(model_change)
    if trainable is None:
        del config["trainable_modules"]
    else:
        config["trainable_modules"] = trainable
    parsed = unet_config_from_dict(config)
    result = train_unet(parsed)

    # Dropped: exactly the released motion modules the stage's net lacks.
    full = UNetConfig.from_dict(inference_settings["unet"])
    expected = absent_names(full, parsed.model)
    log = (root / stage / "train.log").read_text()
    kept = len(released) - len(expected)
    assert f"{kept} tensors loaded" in log and f"the file's global_step: {RELEASED_STEP}" in log
    if expected:
        assert f"{len(expected)} motion-module tensors dropped" in log
        for group, count in motion_groups(expected).items():
            assert f"{group} ({count})" in log
    else:
        assert "dropped" not in log
    assert "this run counts its own steps from 0" in log
    trainable_count, total = re.search(r"trainable UNet parameters: ([\d,]+) of ([\d,]+)", log).groups()
    assert (trainable_count == total) == (stage == "stage1")  # stage 1 trains the whole UNet

    # The run's own step count, the loaded weights where they were frozen, movement where trained.
    saved = torch.load(result.checkpoints[-1], map_location="cpu", weights_only=True)
    assert saved["global_step"] == 1 and len(saved["state_dict"]) == kept
    moved = [name for name, t in saved["state_dict"].items() if not torch.equal(t, released[name])]
    assert moved
    if trainable:
        assert all(any(p in name for p in trainable) for name in moved)

    # The result loads strictly into the inference pipeline (a folder describing the stage's architecture).
    folder = tmp_path / "checkpoints"
    shutil.copytree(checkpoints, folder, ignore=shutil.ignore_patterns("latentsync_unet.pt", "auxiliary"))
    shutil.copy(result.checkpoints[-1], folder / "latentsync_unet.pt")
    unet_settings = {**inference_settings["unet"], **model_change}
    (folder / LOCAL_CONFIG_NAME).write_text(json.dumps({**inference_settings, "unet": unet_settings,
                                                        "resolution": TINY_RESOLUTION}))
    pipeline = load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=folder)
    loaded = pipeline.unet.state_dict()
    assert list(loaded) == list(saved["state_dict"])
    assert all(torch.equal(loaded[name], tensor) for name, tensor in saved["state_dict"].items())
