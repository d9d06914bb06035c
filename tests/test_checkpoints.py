"""Checkpoint resolution: local directories, the Hugging Face cache offline, and clear errors naming what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from latentsync import checkpoints
from latentsync.errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def run_offline(cache: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(REPO_ROOT)}
    env.pop(checkpoints.CHECKPOINTS_ENV, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)


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
    # Lay files out exactly as huggingface_hub's cache does (refs/<branch> -> snapshots/<commit>/<file>).
    spec = checkpoints.get_version("1.5")
    commit = "0123456789abcdef0123456789abcdef01234567"
    for f in [spec.unet, spec.whisper, *spec.vae, *spec.face_alignment]:
        repo_dir = tmp_path / ("models--" + f.repo_id.replace("/", "--"))
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
        target = repo_dir / "snapshots" / commit / f.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"weights")
    proc = run_offline(tmp_path, """
        from latentsync.checkpoints import resolve_checkpoints
        paths = resolve_checkpoints("1.5")
        print(paths.unet.name, paths.whisper.parent.name, paths.vae_dir.name, paths.face_weights_dir.name, paths.root)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["latentsync_unet.pt", "whisper", commit, "auxiliary", "None"]
