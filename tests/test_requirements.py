"""The Space's requirements, the CPU test requirements and pyproject.toml's [project] list the same packages."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_test_requirements_mirror_the_space_except_torch():
    space = requirement_lines("requirements.txt")
    test = requirement_lines("requirements-test.txt")
    assert space[0].startswith("torch==") and test[0] == "torch==2.13.0"
    missing = [req for req in space[1:] if req not in test]
    assert not missing, f"requirements-test.txt lacks {missing}"
    assert not any(req.startswith("torch") for req in test[1:])


def test_space_torch_is_one_zerogpu_supports():
    torch_pin = requirement_lines("requirements.txt")[0]
    major, minor = (int(x) for x in torch_pin.removeprefix("torch==").split(".")[:2])
    assert (major, minor) >= (2, 8) and (major, minor) <= (2, 11)


def test_readme_front_matter_matches_requirements():
    readme = (ROOT / "README.md").read_text()
    front = readme.split("---")[1]
    gradio_pin = next(r for r in requirement_lines("requirements.txt") if r.startswith("gradio=="))
    assert f"sdk_version: {gradio_pin.removeprefix('gradio==')}" in front
    for key in ("sdk: gradio", "app_file: app.py", "python_version:", "license:", "models:", "short_description:"):
        assert key in front
    short = next(line for line in front.splitlines() if line.startswith("short_description:"))
    assert len(short.removeprefix("short_description:").strip()) <= 60


def test_space_preloads_exactly_the_default_version_files():
    """The Space downloads the default model's files at build time (`preload_from_hub`, into the Hub cache that
    resolve_checkpoints reads), so the first request does not wait for them: each preloaded file is one the registry
    resolves for the default version with the production face backend, and none is missing."""
    import yaml

    from latentsync.app_support import DEFAULT_VERSION
    from latentsync.checkpoints import get_version

    front = yaml.safe_load((ROOT / "README.md").read_text().split("---")[1])
    preloaded = set()
    for line in front["preload_from_hub"]:
        repo, files, *revision = line.split()
        assert not revision or revision == ["main"], line
        preloaded |= {(repo, name) for name in files.split(",")}
    spec = get_version(DEFAULT_VERSION)
    needed = {(f.repo_id, f.filename) for f in (spec.unet, spec.whisper, *spec.vae, *spec.face_alignment)}
    assert preloaded == needed
    assert {repo for repo, _ in preloaded} <= set(front["models"])


def test_training_requirements_are_separate_and_installed_by_the_test_command():
    train = requirement_lines("requirements-train.txt")
    names = {req.split("[")[0].split("=")[0].split(">")[0].lower() for req in train}
    assert {"ray", "scenedetect", "pyyaml"} <= names
    assert not any(name.startswith("torch") for name in names), "torch comes from requirements(-test).txt"
    assert not names & {"ray", "scenedetect", "lpips"} & {r.split("=")[0].split("[")[0] for r in requirement_lines("requirements.txt")}
    readme = (ROOT / "README.md").read_text()
    command = readme.split("<!-- test-command -->")[1].split("```")[1]
    assert "-r requirements-train.txt" in command and "--no-deps lpips==" in command


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_dependencies_are_the_requirements_files():
    project = pyproject()["project"]
    space = requirement_lines("requirements.txt")
    extras = project["optional-dependencies"]
    # runtime: requirements.txt without its torch pin, split into the package's needs and the app extra
    assert space[0].startswith("torch==") and project["dependencies"][0] == "torch>=2.8"
    assert sorted(project["dependencies"][1:] + extras["app"]) == sorted(space[1:])
    assert set(extras["app"]) == {r for r in space if r.split("==")[0] in ("gradio", "spaces")}
    assert extras["train"] == requirement_lines("requirements-train.txt")
    test_only = [r for r in requirement_lines("requirements-test.txt") if r not in space and not r.startswith("torch")]
    assert extras["test"] == test_only
    assert project["requires-python"] == ">=3.10"


def test_pyproject_version_and_console_scripts():
    import importlib

    import latentsync

    project = pyproject()["project"]
    assert project["version"] == latentsync.__version__
    scripts = project["scripts"]
    assert set(scripts) == {"latentsync", "latentsync-sync", "latentsync-data", "latentsync-train", "latentsync-batch"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.slow
def test_pip_install_gives_working_console_scripts(tmp_path):
    """`pip install .` into a fresh virtual environment, then every console script's --help from outside the
    checkout. The venv sees this machine's site-packages (the dependencies, CPU torch included, are already
    installed, so only the build backend is fetched and torch stays the CPU build, which the constraint file pins
    anyway); the package itself and its scripts go into the venv only."""
    import shutil
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch==2.13.0\n")
    source = tmp_path / "source"
    source.mkdir()  # a copy: pip builds in the source tree (build/, *.egg-info), never in the checkout
    for name in ("pyproject.toml", "README.md", "latentsync"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if name == "latentsync" else {}))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), str(source)], check=True,
                   cwd=tmp_path)  # fmt: skip
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    located = subprocess.run([str(python), "-c", "import latentsync; print(latentsync.__file__)"], cwd=outside,
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert str(venv) in located and str(ROOT) not in located  # the installed copy, not the checkout
    for script in pyproject()["project"]["scripts"]:
        proc = subprocess.run([str(venv / "bin" / script), "--help"], cwd=outside, capture_output=True, text=True)
        assert proc.returncode == 0, (script, proc.stderr[-2000:])
        assert proc.stdout.startswith("usage:"), (script, proc.stdout[:200])
    mask = subprocess.run([str(python), "-c", "from latentsync.faces.mask import *; import latentsync.faces, pathlib;"
                           "print((pathlib.Path(latentsync.faces.__file__).parent / 'reference_mask.png').is_file())"],
                          cwd=outside, check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert mask.strip() == "True"
