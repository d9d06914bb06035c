"""Batch dubbing end to end with the tiny checkpoints: outputs, summary, malformed rows, folders, resume,
conversations (a speakers column), Ray."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.batch.__main__ import EXIT_ROWS_FAILED, main
from latentsync.batch.progress import BatchProgress
from latentsync.batch.summary import SUMMARY_NAME, read_summary
from latentsync.inference.cli import EXIT_INPUT, EXIT_OK

from .conftest import DEMO_AUDIO, DEMO_VIDEO, REPO_ROOT
from .two_faces import write_two_face_video

pytestmark = pytest.mark.slow
FAST = ["--device", "cpu", "--dtype", "float32", "--no-progress"]
KILL_TIMEOUT_S = 300  # generous: the test machine is shared


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Short cuts of the demo assets: v1 (frames 0-7), v2 (frames 40-47), a1 0.3 s (8 frames), a2 0.2 s (5 frames),
    and bad.wav, which is not audio."""
    folder = tmp_path_factory.mktemp("batch-clips")
    ffmpeg("-i", str(DEMO_VIDEO), "-frames:v", "8", "-c:v", "libx264", "-crf", "12", str(folder / "v1.mp4"))
    ffmpeg("-i", str(DEMO_VIDEO), "-vf", "select=gte(n\\,40)", "-frames:v", "8", "-c:v", "libx264", "-crf", "12",
           str(folder / "v2.mp4"))  # fmt: skip
    speech = media.load_audio(DEMO_AUDIO)
    media.write_wav(folder / "a1.wav", speech[: int(0.3 * media.SAMPLE_RATE)])
    media.write_wav(folder / "a2.wav", speech[media.SAMPLE_RATE : media.SAMPLE_RATE + int(0.2 * media.SAMPLE_RATE)])
    (folder / "bad.wav").write_text("this is not audio")
    return folder


@pytest.fixture(scope="module")
def four_rows(clips) -> Path:
    return write_jobs(clips / "jobs.csv", [
        "video,audio,output,steps,guidance,seed",
        "v1.mp4,a1.wav,,1,1.0,",
        "v1.mp4,a2.wav,sub/two.mp4,1,1.0,3",
        "v2.mp4,bad.wav,,1,1.0,",  # broken on purpose
        "v2.mp4,a1.wav,,2,1.0,",
    ])  # fmt: skip


EXPECTED = {  # row -> (output relative to OUT_DIR, frames = ceil(audio seconds x 25))
    1: ("v1__a1.mp4", 8),
    2: ("sub/two.mp4", 5),
    4: ("v2__a1.mp4", 8),
}


def write_jobs(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def run_main(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def reference(four_rows, tiny_checkpoints, tmp_path_factory):
    """The four-row batch run once, uninterrupted, in this process; records the per-row progress it reported."""
    out = tmp_path_factory.mktemp("batch-reference")
    stages = []
    original = BatchProgress.row_stage
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BatchProgress, "row_stage", lambda self, *a: (stages.append(a), original(self, *a))[1])
        code, stdout, stderr = run_main([four_rows, out, "--checkpoints", tiny_checkpoints, *FAST])
    return {"out": out, "code": code, "stdout": stdout, "stderr": stderr, "stages": stages}


def frames_of(path: Path) -> np.ndarray:
    return media.read_video_frames(path)


# ------------------------------------------------------------------------------------------------ one machine


def test_four_rows_outputs_summary_and_the_broken_row(reference):
    out = reference["out"]
    assert reference["code"] == EXIT_ROWS_FAILED
    for row, (name, frames) in EXPECTED.items():
        info = media.probe(out / name)
        assert info.num_frames == frames and (info.width, info.height) == (320, 320) and info.has_audio
    summary = read_summary(out / SUMMARY_NAME)
    assert [(r["row"], r["line"], r["status"]) for r in summary] == [
        ("1", "2", "ok"), ("2", "3", "ok"), ("3", "4", "failed"), ("4", "5", "ok")]  # fmt: skip
    for r in summary:
        if r["status"] == "ok":
            name, frames = EXPECTED[int(r["row"])]
            assert r["output"] == str(out / name) and r["error"] == ""
            assert int(r["frames"]) == int(r["frames_with_face"]) == frames  # the demo face is in every frame
            assert float(r["seconds"]) > 0 and r["sync_c_before"] == r["sync_c_after"] == ""
            assert r["silent_audio"] == "false"  # the demo speech
    broken = summary[2]
    assert "bad.wav is not a readable video or audio file" in broken["error"] and broken["frames"] == ""
    assert not (out / "v2__bad.mp4").exists()
    # the printed table, the per-row lines and the closing message
    table = reference["stdout"]
    assert "sync-c before" in table and "bad.wav is not a readable" in table
    assert "4 rows: 3 ok, 0 skipped, 1 failed" in table
    assert "row 1 ok: 8 frames" in reference["stderr"] and "row 3 failed: bad.wav" in reference["stderr"]
    # per-row progress came from the pipeline's callback, row by row
    stages = reference["stages"]
    assert (1, "lip sync", 1, 1) in stages and (4, "done", 1, 1) in stages
    assert [row for row, *_ in stages] == sorted(row for row, *_ in stages)  # one row at a time with one worker


def test_malformed_rows_are_reported_with_line_numbers_and_the_rest_run(clips, tiny_checkpoints, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        json.dumps({"video": str(clips / "v1.mp4"), "audio": str(clips / "a1.wav"), "steps": 1, "guidance": 1.0,
                    "score_sync": True}),  # the pipeline is loaded with SyncNet because a row asks for scores
        "{\"video\": oops",
        json.dumps({"video": "v1.mp4", "audio": "a1.wav", "stepz": 2}),
        "",
        json.dumps({"video": "v1.mp4", "audio": "a1.wav", "steps": "many"}),
    ])  # fmt: skip
    code, stdout, _ = run_main([jobs, tmp_path / "out", "--checkpoints", tiny_checkpoints, *FAST])
    assert code == EXIT_ROWS_FAILED
    summary = read_summary(tmp_path / "out" / SUMMARY_NAME)
    assert [(r["row"], r["line"], r["status"]) for r in summary] == [
        ("1", "1", "ok"), ("2", "2", "failed"), ("3", "3", "failed"), ("4", "5", "failed")]  # fmt: skip
    assert summary[1]["error"].startswith("not valid JSON")
    assert "unknown column 'stepz'" in summary[2]["error"] and "guidance_scale" in summary[2]["error"]
    assert summary[3]["error"] == "steps must be a whole number, got 'many'"
    assert media.probe(tmp_path / "out" / "v1__a1.mp4").num_frames == int(summary[0]["frames"]) == 8
    assert summary[0]["sync_c_before"] != "" and summary[0]["sync_c_after"] != ""
    assert "sync-c after" in stdout


def test_folder_of_pairs_with_two_worker_processes(clips, tiny_checkpoints, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for video, audio, name in (("v1.mp4", "a2.wav", "anna"), ("v2.mp4", "a2.wav", "ben")):
        os.link(clips / video, folder / f"{name}.mp4")
        os.link(clips / audio, folder / f"{name}.wav")
    os.link(clips / "a1.wav", folder / "carl.wav")  # no video of that name
    code, _, stderr = run_main([folder, tmp_path / "out", "--checkpoints", tiny_checkpoints, "--workers", "2",
                                "--set", "steps=1", "--set", "guidance=1.0", *FAST])  # fmt: skip
    assert code == EXIT_ROWS_FAILED, stderr
    summary = read_summary(tmp_path / "out" / SUMMARY_NAME)
    assert [(r["row"], r["line"], r["status"], r["frames"]) for r in summary] == [
        ("1", "", "ok", "5"), ("2", "", "ok", "5"), ("3", "", "failed", "")]  # fmt: skip
    assert "carl.wav has no video of the same name" in summary[2]["error"]
    assert media.probe(tmp_path / "out" / "anna.mp4").num_frames == 5
    assert media.probe(tmp_path / "out" / "ben.mp4").num_frames == 5


def test_resume_after_a_killed_run_skips_done_rows_and_matches_an_uninterrupted_run(
        reference, four_rows, tiny_checkpoints, tmp_path):  # fmt: skip
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "latentsync.batch", str(four_rows), str(out), "--checkpoints", str(tiny_checkpoints),
           *FAST]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / EXPECTED[1][0]
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # a crash: no clean-up at all
    _, stderr = proc.communicate()
    assert first.exists(), stderr.decode()[-2000:]
    done_before = {name for name, _ in EXPECTED.values() if (out / name).exists()}
    assert len(done_before) < len(EXPECTED)  # the kill came mid-batch
    first_stat = first.stat()

    code, _, _ = run_main([four_rows, out, "--checkpoints", tiny_checkpoints, *FAST])
    assert code == EXIT_ROWS_FAILED
    summary = {int(r["row"]): r for r in read_summary(out / SUMMARY_NAME)}
    for row, (name, _) in EXPECTED.items():
        assert summary[row]["status"] == ("skipped" if name in done_before else "ok")
        np.testing.assert_array_equal(frames_of(out / name), frames_of(reference["out"] / name))
    assert summary[3]["status"] == "failed"
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == (first_stat.st_mtime_ns, first_stat.st_ino)

    code, stdout, _ = run_main([four_rows, out, "--checkpoints", tiny_checkpoints, *FAST])  # nothing left to do
    assert code == EXIT_ROWS_FAILED and "4 rows: 0 ok, 3 skipped, 1 failed" in stdout


def test_sigterm_stops_worker_processes_cleanly_and_the_summary_says_what_did_not_run(
        four_rows, tiny_checkpoints, tmp_path):  # fmt: skip
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "latentsync.batch", str(four_rows), str(out), "--checkpoints", str(tiny_checkpoints),
           "--workers", "2", *FAST]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not any(out.glob("*.mp4")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)  # the workers stop too: nothing hangs
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    summary = read_summary(out / SUMMARY_NAME)
    statuses = [r["status"] for r in summary]
    assert set(statuses) <= {"ok", "failed", "not run"} and "ok" in statuses and "not run" in statuses
    for r in summary:
        if r["status"] == "not run":
            assert r["error"] == "the batch was interrupted before this row finished" and not Path(r["output"]).exists()
    leftovers = [p.name for p in out.rglob(".*")]  # the rows in flight removed their temporary files
    assert leftovers == [], leftovers


def test_everything_ok_exits_0_and_bad_source_exits_2(clips, tiny_checkpoints, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.csv", ["video,audio", f"{clips / 'v1.mp4'},{clips / 'a2.wav'}"])
    out = tmp_path / "out"
    (out).mkdir()
    os.link(clips / "a2.wav", out / "v1__a2.mp4")  # "exists" means "done": the row is skipped without looking inside
    code, stdout, _ = run_main([jobs, out, "--checkpoints", tiny_checkpoints, *FAST])
    assert code == EXIT_OK and "1 rows: 0 ok, 1 skipped, 0 failed" in stdout
    code, _, stderr = run_main([tmp_path / "missing.csv", out, *FAST])
    assert code == EXIT_INPUT and "no such file" in stderr
    code, _, stderr = run_main([jobs, clips / "a2.wav", *FAST])
    assert code == EXIT_INPUT and "OUT_DIR a2.wav is a file" in stderr and "Errno" not in stderr


# ------------------------------------------------------------------------------------------------ conversations

TALK_TURNS = "0.00-0.16 s face 0, 0.16-0.32 s face 1"  # frames 0-3 the left face, frames 4-7 the right one


@pytest.fixture(scope="module")
def conversation(clips, tiny_checkpoints, tmp_path_factory):
    """Rows on the two-face clip (0.4 s, faces 0 left and 1 right) with a0.3 s of speech: a timeline file given
    relative to the jobs file, an empty cell (one face), a missing file and a malformed one; run once, locally."""
    write_two_face_video(clips / "two.mp4", seconds=0.4)
    (clips / "turns").mkdir()
    (clips / "turns" / "talk.csv").write_text("start,end,speaker\n0,0.16,0\n0.16,0.32,1\n")
    (clips / "turns" / "bad.json").write_text('[{"start": 0, "end": 0.2}]')
    jobs = write_jobs(clips / "conversation.csv", [
        "video,audio,output,steps,guidance,crf,speakers",
        "two.mp4,a1.wav,talk.mp4,1,1.0,0,turns/talk.csv",
        "two.mp4,a1.wav,one.mp4,1,1.0,0,",
        "two.mp4,a1.wav,lost.mp4,1,1.0,0,turns/lost.csv",
        "two.mp4,a1.wav,bad.mp4,1,1.0,0,turns/bad.json",
    ])  # fmt: skip
    out = tmp_path_factory.mktemp("batch-conversation")
    code, stdout, stderr = run_main([jobs, out, "--checkpoints", tiny_checkpoints, *FAST])
    # the first run's summary (a test re-runs the batch into the same folder, which rewrites summary.csv)
    return {"jobs": jobs, "out": out, "code": code, "stdout": stdout, "stderr": stderr,
            "summary": read_summary(out / SUMMARY_NAME)}


def test_conversation_rows_with_a_timeline_file_one_face_and_bad_timelines(conversation, clips):
    import cv2

    from latentsync.inference.speaker_timeline import Turn, parse_timeline

    out = conversation["out"]
    assert conversation["code"] == EXIT_ROWS_FAILED, conversation["stderr"]
    summary = read_summary(out / SUMMARY_NAME)
    assert [(r["row"], r["line"], r["status"], r["frames"]) for r in summary] == [
        ("1", "2", "ok", "8"), ("2", "3", "ok", "8"), ("3", "4", "failed", ""), ("4", "5", "failed", "")]  # fmt: skip
    talk, one, lost, bad = summary
    assert talk["speaker_turns"] == TALK_TURNS and one["speaker_turns"] == ""
    assert talk["output"] == str(out / "talk.mp4") and talk["error"] == ""
    assert lost["error"].startswith("speakers: no timeline file turns/lost.csv (looked for ")
    assert bad["error"] == "speakers: turns/bad.json: timeline row 1: missing speaker (each row needs start, end, speaker)"
    assert f"talk.mp4 (turns: {TALK_TURNS})" in conversation["stdout"]  # the printed table
    for name in ("talk.mp4", "one.mp4"):
        info = media.probe(out / name)
        assert info.num_frames == 8 and (info.width, info.height) == (640, 320) and info.has_audio
    # the timeline used (with face ids) and the numbered faces, beside the conversation's output only
    used = parse_timeline((out / "talk.speakers.csv").read_text())
    assert used == [Turn(0.0, 0.16, face_id=0), Turn(0.16, 0.32, face_id=1)]
    assert cv2.imread(str(out / "talk.faces.png")).shape == (320, 640, 3)
    assert sorted(p.name for p in out.iterdir()) == ["one.mp4", SUMMARY_NAME, "talk.faces.png", "talk.mp4",
                                                     "talk.speakers.csv"]  # fmt: skip
    # each face moves only in its turn: frame 0 is the left face's, frame 7 the right one's (no fade at either end);
    # the one-face row changes one face, the same one in every frame
    source = frames_of(clips / "two.mp4")[:8].astype(int)
    for name in ("talk.mp4", "one.mp4"):
        changed = np.abs(frames_of(out / name) - source).max(axis=3) > 16  # (frames, height, width)
        left, right = changed[:, :, :320].sum(axis=(1, 2)), changed[:, :, 320:].sum(axis=(1, 2))
        if name == "talk.mp4":
            assert left[0] > 2000 and right[0] < 100 and right[7] > 2000 and left[7] < 100, (left, right)
        else:
            assert (np.maximum(left, right) > 2000).all() and (np.minimum(left, right) < 100).all(), (left, right)
            assert len(set(left > right)) == 1, (left, right)

    # a re-run skips both finished rows (side files and all) and reports the bad timelines again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != SUMMARY_NAME}
    code, stdout, _ = run_main([conversation["jobs"], out, *FAST])
    assert code == EXIT_ROWS_FAILED and "4 rows: 0 ok, 2 skipped, 2 failed" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != SUMMARY_NAME} == stamps


# ------------------------------------------------------------------------------------------------ Ray


def test_ray_gives_the_same_outputs_and_summary(reference, conversation, local_ray, four_rows, tiny_checkpoints,
                                                tmp_path):  # fmt: skip
    """The four rows, and a conversation's row whose timeline travels to the actor as the job's text."""
    header, *rows = four_rows.read_text().splitlines()
    jobs = write_jobs(four_rows.parent / "ray_jobs.csv", [f"{header},crf,speakers", *(f"{row},," for row in rows),
                                                          "two.mp4,a1.wav,talk.mp4,1,1.0,,0,turns/talk.csv"])  # fmt: skip
    out = tmp_path / "out"
    code, _, stderr = run_main([jobs, out, "--checkpoints", tiny_checkpoints, "--ray", "--workers", "2",
                               "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == EXIT_ROWS_FAILED, stderr
    ray_rows = read_summary(out / SUMMARY_NAME)
    local_rows = read_summary(reference["out"] / SUMMARY_NAME) + conversation["summary"][:1]
    local_rows[4]["row"], local_rows[4]["line"] = "5", "6"
    same = ("row", "line", "status", "error", "frames", "frames_with_face", "speaker_turns")
    assert [{k: r[k] for k in same} for r in ray_rows] == [{k: r[k] for k in same} for r in local_rows]
    assert ray_rows[4]["speaker_turns"] == TALK_TURNS
    assert (out / "talk.speakers.csv").read_text() == (conversation["out"] / "talk.speakers.csv").read_text()
    assert (out / "talk.faces.png").is_file()
    pairs = [(out / name, reference["out"] / name, frames) for name, frames in EXPECTED.values()]
    pairs.append((out / "talk.mp4", conversation["out"] / "talk.mp4", 8))
    for ray_path, local_path, frames in pairs:
        ray_frames, local_frames = frames_of(ray_path), frames_of(local_path)
        assert ray_frames.shape == local_frames.shape and len(ray_frames) == frames
        # actors run torch on one thread each: sums may round differently, the pictures may not differ
        assert np.abs(ray_frames.astype(int) - local_frames).mean() < 0.5
