"""Checkpoint resolution: local directories, the Hugging Face cache offline, face-alignment's own cache as the fallback
for the face weights, pinned revisions, and clear errors naming what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from latentsync import checkpoints
from latentsync.errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMIT_A = "0123456789abcdef0123456789abcdef01234567"
COMMIT_B = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """Keep this machine's own face-alignment cache out of every test (tests that want one set TORCH_HOME)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))


@pytest.fixture(scope="module")
def face_alignment_torch_home(tmp_path_factory) -> Path:
    """A TORCH_HOME whose hub/checkpoints holds face-alignment 1.5's two files, with random weights written from the
    package's own model classes (so the backend really loads them)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch_home = tmp_path_factory.mktemp("torch-home")
    folder = torch_home / "hub" / checkpoints.FACE_ALIGNMENT_CACHE_SUBDIR
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), folder / checkpoints.FACE_ALIGNMENT_DETECTOR_FILE)
    torch.save(FAN(4).state_dict(), folder / checkpoints.FACE_ALIGNMENT_FAN_FILES[0])
    return torch_home


def populate(root: Path, files) -> None:
    for f in files:
        (root / f.local_path).parent.mkdir(parents=True, exist_ok=True)
        (root / f.local_path).write_bytes(b"x")


def test_registry_versions_and_unknown_name():
    assert checkpoints.get_version("1.5").resolution == 256
    assert checkpoints.get_version("1.6").resolution == 512
    assert checkpoints.get_version("1.6").unet.repo_id == "ByteDance/LatentSync-1.6"
    with pytest.raises(ValueError, match=r"unknown LatentSync version '2.0'; available: 1.5, 1.6"):
        checkpoints.get_version("2.0")


def test_local_directory_resolves_every_file(tmp_path):
    spec = checkpoints.get_version("1.6")
    populate(tmp_path, [spec.unet, spec.whisper, *spec.vae, *spec.face_alignment])
    paths = checkpoints.resolve_checkpoints("1.6", tmp_path)
    assert paths.unet == tmp_path / "latentsync_unet.pt"
    assert paths.whisper == tmp_path / "whisper" / "tiny.pt"
    assert paths.vae_dir == tmp_path / "vae"
    assert paths.face_weights_dir == tmp_path / "auxiliary"
    assert paths.resolution == 512 and paths.face_backend == "face_alignment"


def test_environment_variable_points_at_the_directory(tmp_path, monkeypatch):
    spec = checkpoints.get_version("1.5")
    populate(tmp_path, [spec.unet, spec.whisper, *spec.vae, *spec.face_alignment])
    monkeypatch.setenv(checkpoints.CHECKPOINTS_ENV, str(tmp_path))
    assert checkpoints.resolve_checkpoints("1.5").root == tmp_path


def test_missing_local_files_are_named(tmp_path):
    spec = checkpoints.get_version("1.5")
    populate(tmp_path, [spec.unet, *spec.vae])
    with pytest.raises(CheckpointError) as err:
        checkpoints.resolve_checkpoints("1.5", tmp_path)
    message = str(err.value)
    assert "whisper/tiny.pt" in message and "auxiliary/s3fd-619a316812.pth" in message
    assert "latentsync_unet.pt" not in message.split("\n", 1)[1]  # present files are not listed
    # ... and where else the face weights could have come from.
    assert str(checkpoints.face_alignment_cache_dir()) in message and "2DFAN4-11f355bf06.pth.tar" in message


def test_local_directory_without_face_weights_uses_face_alignment_cache(tmp_path, monkeypatch):
    spec = checkpoints.get_version("1.5")
    local = tmp_path / "local"
    populate(local, [spec.unet, spec.whisper, *spec.vae, spec.syncnet_v2])
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "s3fd-619a316812.pth").write_bytes(b"x")
    (cache / "2DFAN4-11f355bf06.pth.tar").write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert checkpoints.resolve_checkpoints("1.5", local).face_weights_dir == cache
    assert checkpoints.resolve_sync_scoring("1.5", local)[1] == cache
    populate(local, spec.face_alignment)  # the primary source wins when it has the files
    assert checkpoints.resolve_checkpoints("1.5", local).face_weights_dir == local / "auxiliary"


def test_face_alignment_cache_names_match_the_backend():
    from latentsync.faces import backend_face_alignment as backend

    assert checkpoints.FACE_ALIGNMENT_DETECTOR_FILE == backend.DETECTOR_FILE
    assert checkpoints.FACE_ALIGNMENT_FAN_FILES == (backend.FAN_FILE, backend.FAN_TORCHSCRIPT_FILE)


def test_nonexistent_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.resolve_checkpoints("1.5", tmp_path / "nope")


def test_local_settings_override_resolution_and_backend(tmp_path):
    spec = checkpoints.get_version("1.5")
    populate(tmp_path, [spec.unet, spec.whisper, *spec.vae])  # no face-alignment weights needed for dlib
    (tmp_path / checkpoints.LOCAL_CONFIG_NAME).write_text(json.dumps({"resolution": 128, "face_backend": "dlib"}))
    paths = checkpoints.resolve_checkpoints("1.5", tmp_path)
    assert paths.resolution == 128 and paths.face_backend == "dlib" and paths.face_weights_dir is None
    (tmp_path / checkpoints.LOCAL_CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid"):
        checkpoints.resolve_checkpoints("1.5", tmp_path)


def run_offline(cache: Path, code: str, torch_home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(REPO_ROOT)}
    env["TORCH_HOME"] = str(torch_home if torch_home is not None else cache / "empty-torch-home")
    env.pop(checkpoints.CHECKPOINTS_ENV, None)
    command = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def lay_out_hf_cache(cache: Path, files, commit: str = COMMIT_A, ref: str | None = "main") -> None:
    """Lay files out exactly as huggingface_hub's cache does (refs/<ref> -> snapshots/<commit>/<file>)."""
    for f in files:
        repo_dir = cache / ("models--" + f.repo_id.replace("/", "--"))
        if ref is not None:
            (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
            (repo_dir / "refs" / ref).write_text(commit)
        target = repo_dir / "snapshots" / commit / f.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"weights")


def test_offline_without_cache_says_what_is_missing(tmp_path):
    proc = run_offline(tmp_path, """
        from latentsync.checkpoints import resolve_syncnet_v2
        from latentsync.errors import CheckpointError
        try:
            resolve_syncnet_v2("1.5")
        except CheckpointError as err:
            print(err)
    """)
    assert "HF_HUB_OFFLINE is set" in proc.stdout, proc.stderr
    assert "ByteDance/LatentSync-1.5/auxiliary/syncnet_v2.model" in proc.stdout


def test_offline_uses_the_hugging_face_cache(tmp_path):
    spec = checkpoints.get_version("1.5")
    lay_out_hf_cache(tmp_path, [spec.unet, spec.whisper, *spec.vae, *spec.face_alignment])
    proc = run_offline(tmp_path, """
        from latentsync.checkpoints import resolve_checkpoints
        paths = resolve_checkpoints("1.5")
        print(paths.unet.name, paths.whisper.parent.name, paths.vae_dir.name, paths.face_weights_dir.name, paths.root)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["latentsync_unet.pt", "whisper", COMMIT_A, "auxiliary", "None"]


def test_offline_face_weights_fall_back_to_face_alignment_cache(tmp_path, face_alignment_torch_home):
    cache_dir = face_alignment_torch_home / "hub" / "checkpoints"
    # 1. An empty Hugging Face cache: the face weights are not among the missing files, everything else is.
    proc = run_offline(tmp_path / "empty-hf", """
        from latentsync.checkpoints import resolve_checkpoints
        from latentsync.errors import CheckpointError
        try:
            resolve_checkpoints("1.5")
        except CheckpointError as err:
            print(err)
    """, torch_home=face_alignment_torch_home)
    assert "HF_HUB_OFFLINE is set" in proc.stdout and "latentsync_unet.pt" in proc.stdout, proc.stderr
    assert "auxiliary/" not in proc.stdout and "2DFAN4" not in proc.stdout
    # 2. The Hub cache holds everything but the face weights: they come from face-alignment's cache and load.
    spec = checkpoints.get_version("1.5")
    lay_out_hf_cache(tmp_path / "hf", [spec.unet, spec.whisper, *spec.vae, spec.syncnet_v2])
    proc = run_offline(tmp_path / "hf", """
        from latentsync.checkpoints import resolve_checkpoints, resolve_sync_scoring
        from latentsync.faces import load_landmark_backend
        paths = resolve_checkpoints("1.5")
        backend = load_landmark_backend(paths.face_backend, weights_dir=paths.face_weights_dir)
        name, weights_dir, syncnet = resolve_sync_scoring("1.5")
        print(paths.face_weights_dir, backend.name, weights_dir, syncnet.name)
    """, torch_home=face_alignment_torch_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(cache_dir), "face_alignment", str(cache_dir), "syncnet_v2.model"]


def test_offline_face_weights_missing_everywhere_name_both_places(tmp_path):
    torch_home = tmp_path / "torch-home"
    proc = run_offline(tmp_path / "hf", """
        from latentsync.checkpoints import resolve_sync_scoring
        from latentsync.errors import CheckpointError
        try:
            resolve_sync_scoring("1.5")
        except CheckpointError as err:
            print(err)
    """, torch_home=torch_home)
    message = proc.stdout
    assert "ByteDance/LatentSync-1.5/auxiliary/2DFAN4-cd938726ad.zip" in message, proc.stderr  # the Hub's copy
    assert "ByteDance/LatentSync-1.5/auxiliary/s3fd-619a316812.pth" in message
    assert str(torch_home / "hub" / "checkpoints") in message  # face-alignment's own cache
    assert "2DFAN4-11f355bf06.pth.tar" in message and "TORCH_HOME" in message


def test_revision_reaches_hf_hub_download(tmp_path):
    spec15, spec16 = checkpoints.get_version("1.5"), checkpoints.get_version("1.6")
    # main -> COMMIT_A for every repo; COMMIT_B is a second snapshot of both LatentSync repos (no branch points at it).
    lay_out_hf_cache(tmp_path, [spec15.syncnet_v2, *spec15.face_alignment, *spec16.vae, spec16.unet, spec16.whisper])
    lay_out_hf_cache(
        tmp_path, [spec15.syncnet_v2, *spec15.face_alignment, spec16.unet, spec16.whisper], commit=COMMIT_B, ref=None
    )
    proc = run_offline(tmp_path, f"""
        import json
        from latentsync.checkpoints import resolve_checkpoints, resolve_sync_scoring, resolve_syncnet_v2
        from latentsync.errors import CheckpointError
        out = {{
            "default": resolve_syncnet_v2("1.5").parent.parent.name,
            "pinned": resolve_syncnet_v2("1.5", revision="{COMMIT_B}").parent.parent.name,
            "scoring": [p.parent.name for p in resolve_sync_scoring("1.5", revision="{COMMIT_B}")[1:]],
        }}
        paths = resolve_checkpoints("1.6", revision="{COMMIT_B}")
        out["1.6"] = [paths.unet.parent.name, paths.vae_dir.name, paths.version.vae[0].revision]
        try:
            resolve_syncnet_v2("1.5", revision="no-such-branch")
        except CheckpointError as err:
            out["error"] = str(err)
        print(json.dumps(out))
    """)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["default"], out["pinned"]) == (COMMIT_A, COMMIT_B)
    assert out["scoring"] == [COMMIT_B, "auxiliary"]  # <commit>/auxiliary and <commit>/auxiliary/syncnet_v2.model
    # The revision names a commit of the version's own repo; the VAE's repo keeps its pin.
    assert out["1.6"] == [COMMIT_B, COMMIT_A, checkpoints.DEFAULT_REVISION]
    assert "auxiliary/syncnet_v2.model (revision no-such-branch)" in out["error"]


def test_load_pipeline_passes_its_revision_to_the_hub(tmp_path):
    proc = run_offline(tmp_path, """
        from latentsync import load_pipeline
        from latentsync.errors import CheckpointError
        try:
            load_pipeline("1.5", device="cpu", revision="no-such-branch")
        except CheckpointError as err:
            print(err)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ByteDance/LatentSync-1.5/latentsync_unet.pt (revision no-such-branch)" in proc.stdout
    assert "stabilityai/sd-vae-ft-mse/config.json (revision main)" in proc.stdout  # the VAE repo keeps its pin
