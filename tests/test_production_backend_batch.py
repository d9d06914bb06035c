"""Batch dubbing (one local worker) on the production face backend: the twin of test_batch_run.py's reference
run (which finds faces with dlib), here with face-alignment's SFD and 2D-FAN-4 (random weights in the Hub's
formats, the session's shared folder), with a conversation's row (a speakers column) beside the one-face ones.

The random detector reports a face per 128 px anchor and the landmarks are random, so this asserts what does
not depend on where they fall: the exit code, each row's status, output, frames and error, and that no row
ends in an internal error (an exception's type in the summary instead of a message about the input)."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess

import pytest

from latentsync import media
from latentsync.batch.__main__ import EXIT_ROWS_FAILED, main
from latentsync.batch.summary import SUMMARY_NAME, read_summary

from .conftest import DEMO_AUDIO, DEMO_VIDEO
from .two_faces import write_two_face_video

pytestmark = pytest.mark.slow
SIDE = 128  # px: one anchor of the random detector, so one landmark pass per frame
# worker.describe_error writes an unexpected exception as "Type: message" (an input problem as its message)
INTERNAL_ERROR = re.compile(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b")


def test_rows_outputs_and_summary_on_face_alignment(tiny_checkpoints_face_alignment, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v", "8",
                    "-vf", f"scale={SIDE}:{SIDE}", "-c:v", "libx264", "-crf", "12", str(clips / "v1.mp4")],
                   check=True)  # fmt: skip
    speech = media.load_audio(DEMO_AUDIO)
    media.write_wav(clips / "a1.wav", speech[: int(0.3 * media.SAMPLE_RATE)])
    second = media.SAMPLE_RATE  # a2: 0.2 s from the speech's second second, as test_batch_run's
    media.write_wav(clips / "a2.wav", speech[second : second + int(0.2 * media.SAMPLE_RATE)])
    (clips / "bad.wav").write_text("this is not audio")
    # a conversation on the two-face clip at one anchor per face (256x128: the faces 128 px wide side by side)
    write_two_face_video(tmp_path / "two.mp4", seconds=0.4)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(tmp_path / "two.mp4"), "-vf",
                    f"scale={2 * SIDE}:{SIDE}", "-c:v", "libx264", "-crf", "12", str(clips / "two.mp4")],
                   check=True)  # fmt: skip
    (clips / "turns.csv").write_text("start,end,speaker\n0,0.16,0\n0.16,0.32,1\n")
    jobs = clips / "jobs.csv"  # test_batch_run's first three rows, and the conversation
    jobs.write_text("video,audio,output,steps,guidance,seed,speakers\nv1.mp4,a1.wav,,1,1.0,\n"
                    "v1.mp4,a2.wav,sub/two.mp4,1,1.0,3\nv1.mp4,bad.wav,,1,1.0,\n"
                    "two.mp4,a1.wav,talk.mp4,1,1.0,,turns.csv\n")  # fmt: skip
    out = tmp_path / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(jobs), str(out), "--checkpoints", str(tiny_checkpoints_face_alignment),
                     "--device", "cpu", "--dtype", "float32", "--no-progress"])  # fmt: skip
    assert code == EXIT_ROWS_FAILED, stderr.getvalue()
    summary = read_summary(out / SUMMARY_NAME)
    assert [(r["row"], r["line"], r["status"]) for r in summary[:3]] == [
        ("1", "2", "ok"), ("2", "3", "ok"), ("3", "4", "failed")]  # fmt: skip
    assert not [r["error"] for r in summary if INTERNAL_ERROR.match(r["error"])]
    for r, (name, frames) in zip(summary, [("v1__a1.mp4", 8), ("sub/two.mp4", 5)]):
        info = media.probe(out / name)
        assert r["output"] == str(out / name) and r["error"] == "" and int(r["frames"]) == frames
        assert info.num_frames == frames and (info.width, info.height) == (SIDE, SIDE) and info.has_audio
        assert 0 <= int(r["frames_with_face"]) <= frames and r["silent_audio"] == "false"
    assert "bad.wav is not a readable video or audio file" in summary[2]["error"]
    assert summary[2]["frames"] == ""
    # the conversation: lip-synced by its turns, or (if the random detector does not find two faces) an input error
    talk = summary[3]
    assert talk["line"] == "5" and talk["status"] in ("ok", "failed"), talk
    if talk["status"] == "ok":
        assert int(talk["frames"]) == media.probe(out / "talk.mp4").num_frames == 8
        assert talk["speaker_turns"].startswith("0.00-0.16 s face 0, 0.16-0.32 s face 1")
        assert (out / "talk.speakers.csv").is_file() and (out / "talk.faces.png").is_file()
    else:
        assert "timeline row" in talk["error"] and not (out / "talk.mp4").exists(), talk["error"]
    ok = 2 + (talk["status"] == "ok")
    assert f"4 rows: {ok} ok, 0 skipped, {4 - ok} failed" in stdout.getvalue()
