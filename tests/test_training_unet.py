"""UNet training end to end on tiny networks: resume, two processes, the trained checkpoint in the pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from latentsync.training.config import unet_config_from_dict
from latentsync.training.tiny import (
    TINY_SYNCNET_LEARNING_EMBED,
    tiny_unet_train_config,
    write_synthetic_dataset,
    write_tiny_auxiliary,
    write_tiny_syncnet,
    write_tiny_syncnet_yaml,
    write_tiny_train_unet,
)
from latentsync.training.unet_trainer import train_unet

REPO_ROOT = Path(__file__).resolve().parents[1]
# Reconstruction only (stage-2 net and trainable set): the loop's machinery at a fraction of the cost.
MSE_ONLY = {"loss.pixel_space_supervise": False, "loss.use_syncnet": False, "enable_gradient_checkpointing": False}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from latentsync.tiny import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("training")
    checkpoints = write_tiny_auxiliary(write_tiny_checkpoints(root / "checkpoints", seed=0))
    fileslist = write_synthetic_dataset(root / "data", n_clips=4, seconds=2.4, resolution=32)
    syncnet_yaml = write_tiny_syncnet_yaml(root / "syncnet.yaml", fileslist, root / "syncnet-run")
    return root, checkpoints, fileslist, syncnet_yaml


def config_dict(setup, name, **overrides):
    root, checkpoints, fileslist, syncnet_yaml = setup
    return tiny_unet_train_config(checkpoints, fileslist, root / name, syncnet_yaml, **overrides)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def final_weights(result):
    return torch.load(result.checkpoints[-1], map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_resume_continues_exactly_like_an_uninterrupted_run(setup):
    common = {**MSE_ONLY, "data.samples_per_epoch": 2, "train.save_every": 3}  # 2 batches per epoch
    whole = train_unet(unet_config_from_dict(config_dict(setup, "whole", **common, **{"train.max_train_steps": 4})))
    part = config_dict(setup, "parts", **common, **{"train.max_train_steps": 3})
    first = train_unet(unet_config_from_dict(part))
    assert (setup[0] / "parts" / "state" / "progress.json").is_file()
    part["train"]["max_train_steps"] = 4
    second = train_unet(unet_config_from_dict(part), resume=True)  # step 4: epoch 1, after skipping 1 batch
    assert list(first.losses) == [1, 2, 3] and list(second.losses) == [4]
    assert {**first.losses, **second.losses} == pytest.approx(whole.losses, abs=1e-6)
    a, b = final_weights(whole), final_weights(second)
    assert a["global_step"] == b["global_step"] == 4
    changed = 0
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, atol=1e-6, rtol=1e-5)
    initial = torch.load(setup[1] / "latentsync_unet.pt", map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in a["state_dict"].items():
        changed += not torch.equal(initial[name], tensor)
        if not ("motion_modules." in name or "attentions." in name):
            assert torch.equal(initial[name], tensor), f"frozen {name} changed"
    assert changed > 0


@pytest.fixture(scope="module")
def wide_unet(setup):
    """The tiny training UNet (:data:`TINY_TRAIN_UNET_CHANNELS`: no degenerate 2-value GroupNorm groups) and its
    random initial weights."""
    path = setup[0] / "wide_unet.pt"
    return write_tiny_train_unet(setup[1], path), path


# Optimiser steps on the same 4 clips (batch 4). The total loss cannot fall much below ~0.13: LPIPS of the random
# tiny VAE's reconstruction (0.1 x 0.9) and the random StableSyncNet's sync loss (0.05 x ~0.8) stay. Measured on 2
# threads (AMD EPYC): 1.230 -> 0.403 / 0.353 / 0.313 / 0.209 after 20 / 25 / 30 / 60 steps (3.1x / 3.5x / 3.9x /
# 5.9x), falling steadily; one thread takes another float trajectory at 1.9 s per step instead of 1.3. 25 steps
# with a 3x bar keep the check (the loss falls on fixed samples) at ~35 s.
OVERFIT_STEPS = 25
OVERFIT_FACTOR = 3.0


@pytest.mark.slow
def test_stage2_overfits_four_clips(setup, wide_unet):
    """Stage 2 as configured (motion modules + attentions trained; MSE + LPIPS + TREPA + sync) on 4 fixed samples:
    ``data.fixed_samples`` fixes the clips, windows, VAE draws, noise and timesteps, so the loss can fall to ~0."""
    root, _, fileslist, _ = setup
    model, init = wide_unet
    # A StableSyncNet whose embedding GroupNorm is not degenerate (TINY_SYNCNET_LEARNING_EMBED): the golden-size one
    # flips between near-binary embeddings, and its gradient spikes disturb the UNet's optimisation.
    syncnet = write_tiny_syncnet(root / "overfit-syncnet.pt")
    syncnet_yaml = write_tiny_syncnet_yaml(root / "overfit-syncnet.yaml", fileslist, root / "unused",
                                           embed_channels=TINY_SYNCNET_LEARNING_EMBED)
    config = config_dict(setup, "overfit", model=model, init_unet=str(init), syncnet_checkpoint=str(syncnet),
                         syncnet_config=str(syncnet_yaml), enable_gradient_checkpointing=False,
                         **{"data.fixed_samples": True, "data.samples_per_epoch": 4, "data.batch_size": 4,
                            "optimizer.lr": 3e-3, "train.max_train_steps": OVERFIT_STEPS, "train.save_every": 1000})
    assert config["trainable_modules"] == ["motion_modules.", "attentions."] and config["loss"] == {}  # stage 2
    result = train_unet(unet_config_from_dict(config))
    first, last = result.losses[1], result.losses[OVERFIT_STEPS]
    assert first / last >= OVERFIT_FACTOR, (first, last, result.losses)


@pytest.mark.slow
def test_two_processes_make_the_update_of_one_process_on_the_global_batch(setup, wide_unet):
    root = setup[0]
    model, init = wide_unet
    # Plain SGD: the update is -lr x the clipped all-reduced gradient, so comparing updates compares the gradients
    # (Adam's first steps are sign-like: rounding-level gradients would flip whole updates).
    common = {**MSE_ONLY, "model": model, "init_unet": str(init), "data.samples_per_epoch": 4,
              "train.max_train_steps": 2, "optimizer.name": "sgd", "optimizer.lr": 0.1,
              "optimizer.weight_decay": 0.0}
    single = train_unet(unet_config_from_dict(config_dict(setup, "single", **common, **{"data.batch_size": 2})))
    path = root / "ddp.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config_dict(setup, "ddp", **common, **{"data.batch_size": 1}),
                                                         default=str))))
    # torchrun starts the processes; accelerate sees RANK / WORLD_SIZE and, told to stay on the CPU, uses gloo.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "latentsync.training", "unet", str(path)]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (root / "ddp" / "train.log").read_text()
    assert "2 processes" in log
    # The same samples reached the two processes, and the loss reduces to the global batch's mean.
    for step in (1, 2):
        assert f"step {step} loss {single.losses[step]:.5f}" in log
    # The same update, to float32 rounding: every trainable tensor, after two steps.
    initial = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
    ddp = torch.load(root / "ddp" / "checkpoints" / "checkpoint-2.pt", map_location="cpu", weights_only=True)
    single_state = final_weights(single)["state_dict"]
    names = [n for n in initial if "motion_modules." in n or "attentions." in n]
    moved = 0
    for name in names:
        single_update = single_state[name] - initial[name]
        moved += bool(single_update.abs().max() > 1e-6)
        torch.testing.assert_close(ddp["state_dict"][name] - initial[name], single_update, rtol=1e-4, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
    assert moved > len(names) // 2
    frozen = [n for n in initial if n not in names]
    assert all(torch.equal(ddp["state_dict"][n], initial[n]) for n in frozen)


@pytest.mark.slow
def test_trained_checkpoint_loads_strictly_in_the_pipeline_and_renders(setup, tmp_path):
    from latentsync import load_pipeline, media
    from latentsync.inference.pipeline import LipSyncOptions

    from .conftest import DEMO_AUDIO, DEMO_VIDEO

    checkpoints = setup[1]
    result = train_unet(unet_config_from_dict(config_dict(setup, "for-pipeline", **{"train.max_train_steps": 1})))
    trained = tmp_path / "checkpoints"
    shutil.copytree(checkpoints, trained)
    shutil.copy(result.checkpoints[-1], trained / "latentsync_unet.pt")  # the official {"global_step", "state_dict"}
    pipeline = load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=trained)
    state = final_weights(result)["state_dict"]
    for name, tensor in pipeline.unet.state_dict().items():
        assert torch.equal(tensor, state[name])
    video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v", "16", "-c:v",
                    "libx264", "-crf", "12", str(video)], check=True)
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(0.64 * media.SAMPLE_RATE)])
    out = pipeline(video, audio, tmp_path / "out.mp4", LipSyncOptions(steps=2))
    assert out.frames_with_face > 0 and media.probe(out.output).num_frames == 16
