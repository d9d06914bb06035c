"""load_pipeline: the tiny official-format directory loads through the real code; mismatches fail loudly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from latentsync import CheckpointError, load_pipeline
from latentsync.checkpoints import LOCAL_CONFIG_NAME
from latentsync.loading import parse_dtype
from latentsync.tiny import write_tiny_checkpoints

from .conftest import REPO_ROOT


def test_import_is_cheap():
    code = "import sys, latentsync; print(sorted(m for m in ('torch', 'gradio', 'diffusers', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_tiny_directory_loads_every_component(tiny_pipeline):
    assert tiny_pipeline.resolution == 256 and tiny_pipeline.device == torch.device("cpu")
    assert tiny_pipeline.unet.config.cross_attention_dim == tiny_pipeline.audio_encoder.feature_dim == 16
    assert tiny_pipeline.face_backend.name == "dlib"
    assert tiny_pipeline.pixel_mask.shape == (256, 256) and tiny_pipeline.latent_mask.shape == (32, 32)
    assert not tiny_pipeline.unet.training


def test_config_that_does_not_match_the_weights_is_refused(tmp_path):
    directory = write_tiny_checkpoints(tmp_path / "ck")
    settings = json.loads((directory / LOCAL_CONFIG_NAME).read_text())
    settings["unet"]["cross_attention_dim"] = 24  # the file's attn2.to_k/to_v are 16-d
    (directory / LOCAL_CONFIG_NAME).write_text(json.dumps(settings))
    with pytest.raises(CheckpointError, match="attn2.to_k.weight"):
        load_pipeline("1.5", device="cpu", checkpoints_dir=directory)


def test_dtype_names():
    cpu = torch.device("cpu")
    assert parse_dtype("auto", cpu) == torch.float32 and parse_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'half'; available: auto, float32, float16, bfloat16"):
        parse_dtype("half", cpu)
