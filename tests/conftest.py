"""Shared test fixtures: the reference folder (../shared/reference) and small generated media."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official-implementation fixtures; tests that need them skip with a reason on a bare clone."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE_DIR} (they live beside the repo in shared/)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES_DIR


ASSETS_DIR = REPO_ROOT / "assets"
DEMO_VIDEO = ASSETS_DIR / "demo_video.mp4"
DEMO_AUDIO = ASSETS_DIR / "demo_speech.wav"


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """A complete checkpoint directory in the official formats with tiny random networks (see latentsync.tiny)."""
    from latentsync.tiny import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny-checkpoints"), seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoints_face_alignment(tmp_path_factory) -> Path:
    """The tiny checkpoint directory with the production face backend: face-alignment's SFD detector and 2D-FAN-4
    with random weights in the Hub's formats (+180 MB, written once per session and shared by every production-backend
    twin). The random detector reports a face per coarse anchor and random landmarks, so a test on it asserts what does
    not depend on where the landmarks fall (frame counts, durations, no internal error)."""
    from latentsync.tiny import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny-checkpoints-fa"), seed=0, face_alignment=True)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_checkpoints):
    """The pipeline loaded from the tiny checkpoints through the same code path as the real weights (CPU, fp32)."""
    from latentsync import load_pipeline

    return load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=tiny_checkpoints)


@pytest.fixture(scope="session", autouse=True)
def private_face_track_cache(tmp_path_factory):
    """The pipeline caches face tracks on disk by default: keep every test's (and its subprocesses') cache out of the
    user's Hugging Face cache folder. Tests that check the cache itself set their own folder on top of this."""
    import os

    from latentsync.inference.track_cache import CACHE_DIR_ENV

    old = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("face-tracks-session"))
    yield
    if old is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = old


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: with tiny tensors on a shared 2-core machine, more threads mostly wait on
    each other (the tiny training tests run ~3x faster)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_unet_golden(reference_dir) -> dict:
    """The official UNet3DConditionModel's tiny golden: ``weights.*`` (float16-exact parameters, float32 position
    buffers), inputs and outputs."""
    from safetensors.torch import load_file

    return load_file(str(reference_dir / "tiny_unet_golden.safetensors"))


@pytest.fixture(scope="module")
def golden_unet(tiny_unet_golden):
    """Our UNet filled strictly with the tiny golden's weights, in float32 and eval mode (one per test module)."""
    from latentsync.models.unet import LatentSyncUNet
    from latentsync.models.unet_config import tiny_unet_config

    model = LatentSyncUNet(tiny_unet_config()).eval()
    model.load_state_dict({name.removeprefix("weights."): t.float() for name, t in tiny_unet_golden.items()
                           if name.startswith("weights.")}, strict=True)  # fmt: skip
    return model


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance on 2 CPUs for one test module, shut down after it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
