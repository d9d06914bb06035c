"""UNet training with validation on (issue #13): every ``validate_every`` steps a short clip is rendered with the
inference pipeline and its Sync-C / Sync-D logged, without disturbing the training."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from latentsync import media
from latentsync.errors import InputError
from latentsync.training.config import unet_config_from_dict
from latentsync.training.engine import VALIDATION_DIR
from latentsync.training.tiny import tiny_unet_train_config, write_synthetic_dataset, write_tiny_syncnet_yaml
from latentsync.training.unet_trainer import train_unet

from .conftest import DEMO_AUDIO, DEMO_VIDEO

VAL_FRAMES = 16  # the validation video: the demo's first 16 frames
VAL_SECONDS = 0.5  # the validation speech: ceil(0.5 s x 25 fps) = 13 output frames (not a whole number of frames)
STEPS = 2
# Reconstruction only: the loop's machinery at a fraction of the stage-2 cost (validation does not depend on it).
MSE_ONLY = {"loss.pixel_space_supervise": False, "loss.use_syncnet": False, "enable_gradient_checkpointing": False}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from latentsync.tiny import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("training-validation")
    checkpoints = write_tiny_checkpoints(root / "checkpoints", seed=0)
    fileslist = write_synthetic_dataset(root / "data", n_clips=2, seconds=2.4, resolution=32)
    syncnet_yaml = write_tiny_syncnet_yaml(root / "syncnet.yaml", fileslist, root / "unused")  # no sync loss here
    video = root / "val.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v", str(VAL_FRAMES),
                    "-c:v", "libx264", "-crf", "12", str(video)], check=True, capture_output=True)
    audio = root / "val.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: round(VAL_SECONDS * media.SAMPLE_RATE)])
    return root, checkpoints, fileslist, syncnet_yaml, video, audio


def config_for(setup, name: str, validate_every: int):
    root, checkpoints, fileslist, syncnet_yaml, video, audio = setup
    return unet_config_from_dict(tiny_unet_train_config(
        checkpoints, fileslist, root / name, syncnet_yaml, **MSE_ONLY,
        **{"train.max_train_steps": STEPS, "train.validate_every": validate_every, "data.samples_per_epoch": 2,
           "data.val_video_path": str(video), "data.val_audio_path": str(audio)}))


@pytest.mark.slow
def test_validation_renders_scores_and_logs_without_disturbing_training(setup, one_thread):
    root = setup[0]
    with_validation = train_unet(config_for(setup, "validated", validate_every=1))
    without = train_unet(config_for(setup, "plain", validate_every=0))

    # A render per validation step, at the documented place, as long as the speech.
    expected_frames = math.ceil(VAL_SECONDS * media.VIDEO_FPS)
    assert sorted(with_validation.validations) == [1, 2]
    log = (root / "validated" / "train.log").read_text()
    for step, scores in with_validation.validations.items():
        video = root / "validated" / VALIDATION_DIR / f"step-{step}.mp4"
        assert video.is_file() and media.probe(video).num_frames == expected_frames == 13
        assert set(scores) == {"sync_c", "sync_d"} and np.isfinite(list(scores.values())).all()
        assert scores["sync_d"] > 0  # a distance between real embeddings (Sync-C may be 0 on a random UNet's mouths)
        # The plain log carries the same numbers.
        assert f"validation step {step}: {video} Sync-C {scores['sync_c']:.3f} Sync-D {scores['sync_d']:.3f}" in log
    assert not (root / "plain" / VALIDATION_DIR).exists() and without.validations == {}

    # Validation left the UNet as it was: the step after it is the step of a run without validation.
    assert with_validation.losses == without.losses
    a = torch.load(with_validation.checkpoints[-1], map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(without.checkpoints[-1], map_location="cpu", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_validator_keeps_its_nets_restores_train_mode_and_leaves_the_weights_alone(setup, one_thread, monkeypatch):
    import logging

    from latentsync.models.vae import LatentVae
    from latentsync.models.whisper import WhisperAudioEncoder
    from latentsync.training.models import vae_folder
    from latentsync.training.unet_trainer import Validator, build_unet

    from latentsync.sync import SyncScorer

    loads, scored = [], []
    real_load = WhisperAudioEncoder.from_checkpoint.__func__
    monkeypatch.setattr(WhisperAudioEncoder, "from_checkpoint",
                        classmethod(lambda cls, *a, **k: loads.append(a) or real_load(cls, *a, **k)))
    real_score = SyncScorer.score
    monkeypatch.setattr(SyncScorer, "score", lambda self, *a: scored.append(a) or real_score(self, *a))
    config = config_for(setup, "direct", validate_every=1)
    log = logging.getLogger("test_training_validation")
    unet = build_unet(config, log)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    trainable = [p.requires_grad for p in unet.parameters()]
    assert 0 < sum(trainable) < len(trainable)  # motion modules and attentions only
    vae = LatentVae.from_pretrained(vae_folder(config.version, config.train.checkpoints_dir), "cpu")
    validator = Validator(config)
    first = validator(unet, vae, 7, log)
    pipeline, input_scores = validator.pipeline, validator.input_scores
    assert len(scored) == 2 and input_scores is not None  # the input video and the render
    second = validator(unet, vae, 8, log)
    assert len(scored) == 3 and validator.input_scores is input_scores  # the render only: the input is scored once

    # The frozen nets are loaded once per run, and reusing them changes nothing: the same UNet renders the same clip.
    assert len(loads) == 1 and validator.pipeline is pipeline and validator.pipeline.unet is unet
    assert validator.pipeline.vae is vae  # the caller's (the training's) VAE, not a second copy
    videos = [Path(config.train.output_dir) / VALIDATION_DIR / f"step-{step}.mp4" for step in (7, 8)]
    frames = [np.concatenate(list(media.iter_video_frames(video, 64))) for video in videos]
    assert frames[0].shape[0] == 13 and np.array_equal(frames[0], frames[1]) and first == second
    assert unet.training and np.isfinite(list(first.values())).all()
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    assert [p.requires_grad for p in unet.parameters()] == trainable


def test_validation_without_its_clips_is_refused_before_training(setup):
    config = config_for(setup, "missing", validate_every=1)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, val_audio_path=None))
    with pytest.raises(InputError, match=r"validate_every = 1 needs data.val_audio_path"):
        train_unet(config)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, val_audio_path="nowhere.wav"))
    with pytest.raises(InputError, match="data.val_audio_path: no such file 'nowhere.wav'"):
        train_unet(config)
    assert not (setup[0] / "missing").exists()  # refused before the run folder was made
