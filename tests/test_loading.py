"""load_pipeline: the tiny official-format directory loads through the real code; mismatches fail loudly."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from latentsync import CheckpointError, InputError, load_pipeline
from latentsync.checkpoints import LOCAL_CONFIG_NAME
from latentsync.devices import parse_dtype
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


def test_devices_that_cannot_work_here_are_input_errors():
    from latentsync.devices import parse_device

    assert parse_device("cpu") == torch.device("cpu") and parse_device(None).type in ("cpu", "cuda")
    with pytest.raises(InputError, match="unknown device 'foo'; use cpu, cuda"):
        parse_device("foo")
    with pytest.raises(InputError, match="device type 'meta' is not supported"):
        parse_device("meta")
    if torch.cuda.is_available():
        with pytest.raises(InputError, match="does not exist"):
            parse_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(InputError, match="CUDA is not available"):
            parse_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(InputError, match="MPS is not available"):
            parse_device("mps")


def test_dtype_without_kernels_on_the_device_is_an_input_error(monkeypatch):
    cpu = torch.device("cpu")
    real_conv2d = torch.nn.functional.conv2d

    def conv2d(x, *args, **kwargs):  # fault injection: a build without half-precision CPU convolutions
        if x.dtype == torch.float16:
            raise RuntimeError("\"slow_conv2d_cpu\" not implemented for 'Half'")
        return real_conv2d(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", conv2d)
    with pytest.raises(InputError, match="float16 does not run on cpu .*slow_conv2d_cpu.*use float32"):
        parse_dtype("float16", cpu)
    with pytest.raises(InputError, match="float16 does not run on cpu"):
        parse_dtype(torch.float16, cpu)
    assert parse_dtype("bfloat16", cpu) == torch.bfloat16 and parse_dtype("float32", cpu) == torch.float32


def test_device_is_checked_before_the_weights(tmp_path):
    with pytest.raises(InputError, match="unknown device"):
        load_pipeline("1.5", device="foo", checkpoints_dir=tmp_path)  # an empty folder: weights would fail too


@pytest.fixture(scope="module")
def face_alignment_checkpoints(tiny_checkpoints_face_alignment):
    return tiny_checkpoints_face_alignment


def test_default_tiny_directory_has_no_face_alignment_files(tiny_checkpoints):
    assert not (tiny_checkpoints / "auxiliary" / "s3fd-619a316812.pth").exists()
    assert not (tiny_checkpoints / "auxiliary" / "2DFAN4-cd938726ad.zip").exists()
    assert sum(f.stat().st_size for f in tiny_checkpoints.rglob("*") if f.is_file()) < 100e6


@pytest.mark.slow
def test_tiny_directory_with_face_alignment_files_loads_that_backend(face_alignment_checkpoints):
    from latentsync.faces.backend_face_alignment import FaceAlignmentBackend

    aux = face_alignment_checkpoints / "auxiliary"
    settings = json.loads((face_alignment_checkpoints / LOCAL_CONFIG_NAME).read_text())
    assert settings["face_backend"] == "face_alignment"
    # The Hub's formats: a plain state_dict for the detector, a TorchScript archive (face-alignment 1.4) for 2D-FAN-4.
    detector_state = torch.load(aux / "s3fd-619a316812.pth", map_location="cpu", weights_only=True)
    fan_state = torch.jit.load(str(aux / "2DFAN4-cd938726ad.zip"), map_location="cpu").state_dict()
    assert not (aux / "2DFAN4-11f355bf06.pth.tar").exists()  # so the TorchScript branch is the one that loads

    pipeline = load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=face_alignment_checkpoints)
    backend = pipeline.face_backend
    assert isinstance(backend, FaceAlignmentBackend) and backend.name == "face_alignment"
    for loaded, stored in ((backend.detector, detector_state), (backend.fan, fan_state)):
        state = loaded.state_dict()
        assert state.keys() == {key.removeprefix("module.") for key in stored}
        for key, value in stored.items():
            assert torch.equal(state[key.removeprefix("module.")], value), key
    # The random networks run through the backend's code (a "face" per coarse anchor, random landmarks).
    frame = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    faces = backend.detect(frame)
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2) and np.isfinite(faces[0].landmarks).all()
