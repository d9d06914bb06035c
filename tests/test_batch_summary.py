"""Batch pieces that need no model: the summary file and table, the worker's error handling and pipeline cache,
Ray actor sizing, the command line's help and argument errors."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from latentsync.batch.__main__ import EXIT_ROWS_FAILED, build_parser, main
from latentsync.batch.jobs import Job, RowError
from latentsync.batch.runner_ray import actor_resources
from latentsync.batch.summary import COLUMNS, SUMMARY_NAME, RowResult, count_by_status, format_table, read_summary
from latentsync.batch.summary import write_summary
from latentsync.batch.worker import PipelineCache, WorkerSettings, describe_error, output_exists, run_job
from latentsync.inference.cli import EXIT_INPUT
from latentsync.errors import CheckpointError, InputError
from latentsync.inference.pipeline import LipSyncOptions

RESULTS = [
    RowResult(2, 3, "failed", "steps must be a whole number, got 'x'", video="b.mp4", audio="b.wav"),
    RowResult(1, 2, "ok", frames=25, seconds=3.25, frames_with_face=24, sync_c_before=1.5, sync_c_after=7.125,
              silent_audio=False, video="/in/a.mp4", audio="/in/a.wav", output="/out/a.mp4"),  # fmt: skip
    RowResult(3, None, "skipped", output="/out/c.mp4"),
]


def test_summary_csv_in_row_order_with_every_column(tmp_path):
    path = write_summary(RESULTS, tmp_path / "out")
    assert path == tmp_path / "out" / SUMMARY_NAME
    rows = read_summary(path)
    assert list(rows[0]) == COLUMNS[:] and COLUMNS[:4] == ["row", "line", "status", "error"]
    assert [r["row"] for r in rows] == ["1", "2", "3"]
    assert rows[0] == {"row": "1", "line": "2", "status": "ok", "error": "", "frames": "25", "seconds": "3.250",
                       "frames_with_face": "24", "sync_c_before": "1.500", "sync_c_after": "7.125",
                       "silent_audio": "false", "speaker_turns": "", "video": "/in/a.mp4", "audio": "/in/a.wav",
                       "output": "/out/a.mp4"}  # fmt: skip
    assert rows[1]["error"] == "steps must be a whole number, got 'x'" and rows[1]["frames"] == ""
    assert rows[2]["line"] == "" and rows[2]["status"] == "skipped"
    assert os.listdir(tmp_path / "out") == [SUMMARY_NAME]  # the temporary name is gone
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_table_shows_outputs_errors_and_scores(tmp_path):
    lines = format_table(RESULTS).splitlines()
    assert lines[0].split() == ["row", "line", "status", "frames", "face", "seconds", "sync-c", "before", "sync-c",
                                "after", "output", "/", "error"]  # fmt: skip
    assert lines[1].split() == ["1", "2", "ok", "25", "24", "3.2", "1.50", "7.12", "a.mp4"]
    assert lines[2].split()[:3] == ["2", "3", "failed"] and lines[2].endswith("steps must be a whole number, got 'x'")
    assert lines[3].split() == ["3", "skipped", "c.mp4"]
    assert count_by_status(RESULTS) == {"ok": 1, "skipped": 1, "failed": 1}
    silent = dataclasses.replace(RESULTS[1], silent_audio=True)
    assert format_table([silent]).splitlines()[1].endswith("a.mp4 (silent audio)")
    assert read_summary(write_summary([silent], tmp_path))[0]["silent_audio"] == "true"
    turns = "0.00-1.20 s face 0, 1.20-2.00 s face 1"
    talk = dataclasses.replace(RESULTS[1], speaker_turns=turns)
    assert format_table([talk]).splitlines()[1].endswith(f"a.mp4 (turns: {turns})")
    assert read_summary(write_summary([talk], tmp_path))[0]["speaker_turns"] == turns


def test_results_from_rows():
    job = Job(4, 7, Path("/v.mp4"), Path("/a.wav"), Path("/o/v__a.mp4"), "1.5", LipSyncOptions())
    assert RowResult.for_job(job, "skipped") == RowResult(4, 7, "skipped", video="/v.mp4", audio="/a.wav",
                                                          output="/o/v__a.mp4")  # fmt: skip
    error = RowError(5, 8, "bad", video="x.mp4")
    assert RowResult.for_error(error) == RowResult(5, 8, "failed", "bad", video="x.mp4")


def test_a_failed_load_fails_every_row_of_that_version_without_loading_again(tmp_path):
    cache = PipelineCache(WorkerSettings(device="cpu", checkpoints_dir=str(tmp_path)))
    with pytest.raises(CheckpointError) as first:
        cache.get("1.5")
    with pytest.raises(CheckpointError) as second:
        cache.get("1.5")
    assert second.value is first.value
    jobs = [Job(n, n + 1, tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / f"{n}.mp4", "1.5", LipSyncOptions())
            for n in (1, 2)]  # fmt: skip
    results = [run_job(job, cache) for job in jobs]
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error == results[1].error == f"CheckpointError: {first.value}"
    assert "latentsync_unet.pt" in results[0].error


def test_errors_read_as_one_line_for_users_and_with_their_type_otherwise():
    assert describe_error(InputError("video file not found: x")) == "video file not found: x"
    assert describe_error(RuntimeError("CUDA out of memory")) == "RuntimeError: CUDA out of memory"
    try:
        raise ValueError("boom")
    except ValueError as err:
        assert "Traceback" in describe_error(err, debug=True) and "boom" in describe_error(err, debug=True)


@pytest.mark.parametrize(
    "cluster, workers, largest_node, expected",
    [
        ({"CPU": 64, "GPU": 8}, None, 64, (8, {"num_gpus": 1, "num_cpus": 1})),  # one actor per GPU
        ({"CPU": 64, "GPU": 8}, 2, 64, (2, {"num_gpus": 1, "num_cpus": 1})),
        ({"CPU": 64, "GPU": 8}, 12, 64, (8, {"num_gpus": 1, "num_cpus": 1})),  # never an actor that cannot be placed
        ({"CPU": 2}, None, 2, (1, {"num_cpus": 2})),  # no GPU: CPU actors sharing the CPUs
        ({"CPU": 2}, 2, 2, (2, {"num_cpus": 1})),
        ({"CPU": 2}, 4, 2, (2, {"num_cpus": 1})),
        ({"CPU": 5}, 2, 5, (2, {"num_cpus": 2})),
        ({"CPU": 16}, None, 8, (1, {"num_cpus": 8})),  # two 8-CPU nodes: an actor fits on one of them
    ],
)
def test_ray_actor_sizes(cluster, workers, largest_node, expected):
    assert actor_resources(cluster, workers, largest_node) == expected


def test_help_documents_the_format_options_and_exit_codes():
    text = build_parser().format_help()
    for word in ("JOBS", "OUT_DIR", "--workers", "--ray", "--sync-scores", "--set", "--checkpoints", "--device",
                 "--dtype", "CSV", "JSONL", "folder", "guidance_scale", "score_sync", "seed", "steps",
                 "summary.csv", "Exit codes", f"{EXIT_ROWS_FAILED} the batch ran but some rows failed"):  # fmt: skip
        assert word in text, word


def test_argument_errors_exit_2(tmp_path, capsys):
    (tmp_path / "jobs.csv").write_text("video,audio\na.mp4,a.wav\n")  # one row (its files need not exist)
    assert main([str(tmp_path / "jobs.csv"), str(tmp_path / "out"), "--workers", "0"]) == EXIT_INPUT
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    assert main([str(tmp_path / "jobs.csv"), str(tmp_path / "out"), "--set", "steps"]) == EXIT_INPUT
    assert "--set takes NAME=VALUE" in capsys.readouterr().err
    assert main([str(tmp_path / "jobs.csv"), str(tmp_path / "out"), "--device", "tpu"]) == EXIT_INPUT
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert main([str(tmp_path / "jobs.tsv"), str(tmp_path / "out")]) == EXIT_INPUT
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_interrupted_batch_counts_a_row_whose_output_landed_as_ok_and_the_rest_as_not_run(tmp_path, monkeypatch):
    """Fault injection: the worker renames row 1's output into place, then the batch is interrupted before that
    row's result comes back. The summary must agree with what a re-run would do (skip row 1, run row 2)."""
    from latentsync.batch import run as run_module

    for name in ("a.mp4", "a.wav", "b.mp4", "b.wav"):
        (tmp_path / name).write_bytes(b"x")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("video,audio\na.mp4,a.wav\nb.mp4,b.wav\n")
    out = tmp_path / "out"

    def runner(config, to_run, settings, progress):
        Path(to_run[0].output).write_bytes(b"finished")
        raise KeyboardInterrupt
        yield  # (a generator, like the real runners)

    monkeypatch.setattr(run_module, "_runner", runner)
    with pytest.raises(KeyboardInterrupt):
        run_module.run_batch(run_module.BatchConfig(jobs, out, show_progress=False))
    rows = read_summary(out / SUMMARY_NAME)
    assert [(r["row"], r["status"], r["error"]) for r in rows] == [
        ("1", "ok", ""), ("2", "not run", "the batch was interrupted before this row finished")]
    assert Path(rows[0]["output"]).is_file() and not Path(rows[1]["output"]).exists()


def test_a_conversation_row_is_done_when_its_output_and_side_files_exist(tmp_path):
    """The pipeline renames the output into place, then writes OUTPUT.speakers.csv and OUTPUT.faces.png beside it:
    a row stopped in between has no side files and runs again; a one-face row needs its output only."""
    out = tmp_path / "talk.mp4"
    talk = Job(1, 2, tmp_path / "v.mp4", tmp_path / "a.wav", out, "1.5", LipSyncOptions(speakers="0,1,0"))
    one_face = dataclasses.replace(talk, options=LipSyncOptions())
    assert not output_exists(talk) and not output_exists(one_face)
    out.write_bytes(b"finished")
    assert output_exists(one_face) and not output_exists(talk)
    (tmp_path / "talk.speakers.csv").write_text("start,end,speaker\n0,1,0\n")
    assert not output_exists(talk)
    (tmp_path / "talk.faces.png").write_bytes(b"png")
    assert output_exists(talk)


def test_set_speakers_is_a_path_from_the_current_folder(tmp_path, monkeypatch):
    """--set speakers=FILE is read from where the command runs (a row's own cell, from the jobs file's folder). Every
    row here is malformed, so nothing loads and the test needs no model."""
    (tmp_path / "here").mkdir()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "here" / "turns.csv").write_text("0,1,nobody\n")
    (tmp_path / "jobs" / "turns.csv").write_text("0,1,0\n")  # not this one
    (tmp_path / "jobs" / "jobs.csv").write_text("video,audio,output,speakers\na.mp4,a.wav,1.mp4,\n"
                                                "a.mp4,a.wav,2.mp4,missing.csv\n")  # fmt: skip
    monkeypatch.chdir(tmp_path / "here")
    code = main([str(tmp_path / "jobs" / "jobs.csv"), str(tmp_path / "out"), "--set", "speakers=turns.csv",
                 "--no-progress"])  # fmt: skip
    assert code == EXIT_ROWS_FAILED
    rows = read_summary(tmp_path / "out" / SUMMARY_NAME)
    assert rows[0]["error"].startswith(f"speakers: {tmp_path / 'here' / 'turns.csv'}: timeline row 1: speaker must be")
    assert rows[1]["line"] == "3" and rows[1]["error"].startswith("speakers: no timeline file missing.csv")
