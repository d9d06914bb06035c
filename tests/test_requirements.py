"""The Space's requirements and the CPU test requirements must list the same runtime packages."""

from pathlib import Path

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


def test_training_requirements_are_separate_and_installed_by_the_test_command():
    train = requirement_lines("requirements-train.txt")
    names = {req.split("[")[0].split("=")[0].split(">")[0].lower() for req in train}
    assert {"ray", "scenedetect", "pyyaml"} <= names
    assert not any(name.startswith("torch") for name in names), "torch comes from requirements(-test).txt"
    assert not names & {"ray", "scenedetect", "lpips"} & {r.split("=")[0].split("[")[0] for r in requirement_lines("requirements.txt")}
    readme = (ROOT / "README.md").read_text()
    command = readme.split("<!-- test-command -->")[1].split("```")[1]
    assert "-r requirements-train.txt" in command and "--no-deps lpips==" in command
