"""End to end: the local process pool, resumption after a kill, the Ray runner, the report and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latentsync.data import DataOptions, process_dataset, read_fileslist
from latentsync.data.cli import main
from latentsync.data.synthetic import EXPECTED_DROPS, build_corpus, write_test_checkpoints
from tests.conftest import ASSETS_DIR, REPO_ROOT

# Random weights score nothing meaningful: let every clip through the sync and quality filters (their decisions are
# tested on constructed scores in test_data_decisions.py), so the end-to-end runs reach the file list.
PERMISSIVE = dict(high_resolution_filter=False, sync_threshold=0.0, max_offset=15, quality_threshold=-1e9)
PERMISSIVE_ARGS = ["--no-high-resolution-filter", "--sync-threshold", "0", "--max-offset", "15",
                   "--quality-threshold=-1e9"]  # fmt: skip
SURVIVORS = ["cut_shot_001_000.mp4", "cut_shot_002_000.mp4", "faceless_shot_001_000.mp4",
             "sub/talk_30fps.mov_shot_001_000.mp4", "talk_shot_001_000.mp4"]  # fmt: skip


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    build_corpus(folder, ASSETS_DIR, seconds=2)
    return folder


@pytest.fixture(scope="module")
def options(tmp_path_factory) -> DataOptions:
    checkpoints = write_test_checkpoints(tmp_path_factory.mktemp("ckpt"))
    return DataOptions(checkpoints=checkpoints, device="cpu", **PERMISSIVE)


def listing(raw: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(raw)): (p.stat().st_size, p.stat().st_mtime_ns) for p in raw.rglob("*")}


def summary(out: Path) -> tuple[list, list[str]]:
    """What a run produced: the per-stage (in, out, dropped) table and the file list, relative to OUT_DIR."""
    report = json.loads((out / "report.json").read_text())
    table = [(s["stage"], s["clips_in"], s["clips_out"], s["dropped"]) for s in report["stages"]]
    return table, sorted(p.relative_to(out).as_posix() for p in read_fileslist(out / "fileslist.txt"))


def hidden_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*")]


@pytest.fixture(scope="module")
def local_run(raw, options, tmp_path_factory) -> Path:
    before = listing(raw)
    out = tmp_path_factory.mktemp("out-local")
    process_dataset(raw, out, options, workers=2, show_progress=False, quiet=True)
    assert listing(raw) == before  # RAW_DIR untouched
    return out


@pytest.mark.slow
def test_local_run_keeps_and_drops_the_expected_clips(local_run):
    table, files = summary(local_run)
    assert files == [f"quality/{name}" for name in SURVIVORS]
    dropped = {stage: reasons for stage, _, _, reasons in table}
    for name, (stage, reason) in EXPECTED_DROPS.items():
        assert dropped[stage].get(reason, 0) >= 1, (name, stage, reason, dropped[stage])
    assert [row[:3] for row in table] == [("check", 9, 7), ("resample", 7, 7), ("shots", 7, 9), ("segment", 9, 8),
                                          ("faces", 8, 6), ("sync", 6, 5), ("quality", 5, 5)]  # fmt: skip
    assert dropped["faces"] == {"a frame with several faces": 1, "a frame without a face": 1}
    record = json.loads((local_run / "records/check/corrupt.mp4.json").read_text())
    assert record["dropped"] == "unreadable file" and "corrupt.mp4" in record["detail"]
    assert hidden_files(local_run) == []


@pytest.mark.slow
def test_rerun_is_a_no_op(raw, options, local_run):
    rewritten = ("report.json", "fileslist.txt")  # rewritten with the same content
    stamps = {p: t for p, t in listing(local_run).items() if p not in rewritten}
    before = summary(local_run)
    reports = process_dataset(raw, local_run, options, workers=2, show_progress=False, quiet=True)
    assert sum(r.processed for r in reports) == 0
    assert {p: t for p, t in listing(local_run).items() if p not in rewritten} == stamps
    assert summary(local_run) == before


@pytest.mark.slow
def test_run_killed_mid_stage_resumes_to_the_same_set(raw, options, local_run, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "latentsync.data", str(raw), str(out), "--workers", "1", "--no-progress",
           "--checkpoints", str(options.checkpoints), "--device", "cpu", *PERMISSIVE_ARGS]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any((out / "faces").glob("*.mp4")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up of any kind
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "fileslist.txt").exists()
    process_dataset(raw, out, options, workers=2, show_progress=False, quiet=True)
    assert summary(out) == summary(local_run)
    assert hidden_files(out) == []  # the killed run's partial files were cleared


@pytest.mark.slow
def test_ray_run_gives_the_same_set_as_the_local_run(raw, options, local_run, local_ray, tmp_path):
    out = tmp_path / "out-ray"
    process_dataset(raw, out, options, workers=2, use_ray=True, show_progress=False, quiet=True)
    assert local_ray.is_initialized()  # the runner used the existing instance and left it running
    assert summary(out) == summary(local_run)


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--resolution", "--workers", "--ray", "--sync-threshold", "--max-offset", "--quality-threshold",
                   "--checkpoints", "--device", "--stages", "--no-high-resolution-filter"):  # fmt: skip
        assert option in text


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    assert main([str(raw), str(tmp_path / "out"), "--stages", "faces,nope"]) == 2
    assert "--stages" in capsys.readouterr().err
    assert main([str(raw), str(raw / "out")]) == 2  # OUT_DIR inside RAW_DIR
    assert "outside RAW_DIR" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert not (raw / "out").exists()
    (raw / "notes.txt").write_text("no videos here")
    (raw / ".hidden").mkdir()
    (raw / ".hidden" / "a.mp4").write_bytes(b"skipped: hidden folder")
    capsys.readouterr()
    assert main([str(raw), str(tmp_path / "out")]) == 2
    assert "holds no video files" in capsys.readouterr().err
    (tmp_path / "taken").write_text("a file where OUT_DIR should go")
    assert main([str(raw), str(tmp_path / "taken")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written for a wrong RAW_DIR


def test_stages_subset_needs_earlier_stages(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.mp4").write_bytes(b"not a video")
    assert main([str(raw), str(tmp_path / "out"), "--stages", "check", "--no-progress"]) == 0
    assert "unreadable file: 1" in capsys.readouterr().out
    assert main([str(raw), str(tmp_path / "out2"), "--stages", "resample", "--no-progress"]) == 1
    assert "run it first" in capsys.readouterr().err
