"""UNet training's validation on the production face backend: the twin of test_training_validation.py's run
(whose checkpoints find faces with dlib), here with ``train.checkpoints_dir`` set to the session's tiny folder
with face-alignment's SFD and 2D-FAN-4 (random weights in the Hub's formats), which validation loads as
inference does.

The random detector reports a face per 128 px anchor and the landmarks are random, so this asserts what does
not depend on where they fall: a render per validation at the documented place, as long as the speech, finite
scores in the result and the log, and a training step identical to one without validation."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from latentsync import media
from latentsync.training.config import unet_config_from_dict
from latentsync.training.engine import VALIDATION_DIR
from latentsync.training.tiny import tiny_unet_train_config, write_synthetic_dataset, write_tiny_syncnet_yaml
from latentsync.training.unet_trainer import train_unet

from .conftest import DEMO_AUDIO, DEMO_VIDEO
from .test_training_validation import MSE_ONLY, VAL_SECONDS

pytestmark = pytest.mark.slow
SIDE = 128  # px: one anchor of the random detector, so one landmark pass per frame
# The validation video: 8 frames, played back and forth for the 13 frames of speech (the dlib test's 16 frames
# are cut to 13): the face pass, which dominates here, looks at 8 frames instead of 13.
VAL_FRAMES = 8


def test_validation_renders_and_scores_on_face_alignment(tiny_checkpoints_face_alignment, tmp_path,
                                                         one_thread):  # fmt: skip
    fileslist = write_synthetic_dataset(tmp_path / "data", n_clips=2, seconds=2.4, resolution=32)
    syncnet_yaml = write_tiny_syncnet_yaml(tmp_path / "syncnet.yaml", fileslist, tmp_path / "unused")
    video, audio = tmp_path / "val.mp4", tmp_path / "val.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v",
                    str(VAL_FRAMES), "-vf", f"scale={SIDE}:{SIDE}", "-c:v", "libx264", "-crf", "12",
                    str(video)], check=True)  # fmt: skip
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: round(VAL_SECONDS * media.SAMPLE_RATE)])

    def config(name: str, validate_every: int):
        return unet_config_from_dict(tiny_unet_train_config(
            tiny_checkpoints_face_alignment, fileslist, tmp_path / name, syncnet_yaml, **MSE_ONLY,
            **{"train.max_train_steps": 1, "train.validate_every": validate_every,
               "data.samples_per_epoch": 1, "data.val_video_path": str(video),
               "data.val_audio_path": str(audio)}))  # fmt: skip

    validated = train_unet(config("validated", validate_every=1))
    plain = train_unet(config("plain", validate_every=0))

    assert sorted(validated.validations) == [1]
    scores = validated.validations[1]
    render = tmp_path / "validated" / VALIDATION_DIR / "step-1.mp4"
    assert media.probe(render).num_frames == math.ceil(VAL_SECONDS * media.VIDEO_FPS) == 13
    assert set(scores) == {"sync_c", "sync_d"} and np.isfinite(list(scores.values())).all()
    log = (tmp_path / "validated" / "train.log").read_text()
    assert f"validation step 1: {render} Sync-C {scores['sync_c']:.3f} Sync-D {scores['sync_d']:.3f}" in log
    assert validated.losses == plain.losses  # validation left the UNet as it was
