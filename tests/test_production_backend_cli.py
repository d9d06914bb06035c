"""The command line on the production face backend: the twin of test_cli.py's end-to-end run (which finds
faces with dlib), here with face-alignment's SFD and 2D-FAN-4 (random weights in the Hub's formats, the
session's shared folder).

The random detector reports a face per 128 px anchor and the landmarks are random, so this asserts what does
not depend on where they fall: the exit code, the output's frame count and audio length, no internal error."""

from __future__ import annotations

import subprocess

import pytest

from latentsync import media
from latentsync.inference.cli import EXIT_INPUT, EXIT_OK, main

from .conftest import DEMO_AUDIO, DEMO_VIDEO

pytestmark = pytest.mark.slow
SIDE = 128  # px: one anchor of the random detector, so one landmark pass per frame
SPEECH_SECONDS = 0.3  # as the dlib test: ceil(0.3 s x 25) = 8 output frames


def small_clip(path, frames: int) -> str:
    """The demo video's first ``frames`` frames at SIDE x SIDE (its face shrunk with it)."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v",
                    str(frames), "-vf", f"scale={SIDE}:{SIDE}", "-an", str(path)], check=True)  # fmt: skip
    return str(path)


def test_success_writes_the_video_on_face_alignment(tmp_path, tiny_checkpoints_face_alignment, capsys):
    video = small_clip(tmp_path / "v.mp4", 10)
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(SPEECH_SECONDS * media.SAMPLE_RATE)])
    out = tmp_path / "o.mp4"
    code = main(["--video", video, "--audio", str(audio), "--output", str(out), "--steps", "1",
                 "--guidance", "1.0", "--checkpoints", str(tiny_checkpoints_face_alignment),
                 "--device", "cpu"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    info = media.probe(out)
    assert info.num_frames == 8 and (info.width, info.height) == (SIDE, SIDE)
    assert abs(info.audio_duration - SPEECH_SECONDS) <= 0.04
    assert f"wrote {out}" in captured.out and "Traceback" not in captured.err


def test_a_conversation_on_face_alignment(tmp_path, tiny_checkpoints_face_alignment, capsys):
    """--speakers with a timeline on the production backend: the video with the timeline used beside it, or a clear
    input error (exit 2: e.g. the random detector found no face 0), never an internal error."""
    video = small_clip(tmp_path / "v.mp4", 10)
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(SPEECH_SECONDS * media.SAMPLE_RATE)])
    timeline = tmp_path / "turns.csv"
    timeline.write_text("start,end,speaker\n0,0.3,0\n")
    out = tmp_path / "o.mp4"
    code = main(["--video", video, "--audio", str(audio), "--output", str(out), "--steps", "1", "--guidance", "1.0",
                 "--checkpoints", str(tiny_checkpoints_face_alignment), "--device", "cpu",
                 "--speakers", str(timeline)])  # fmt: skip
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err.lower(), captured.err
    if code == EXIT_OK:
        assert media.probe(out).num_frames == 8 and "speaker turns (from the timeline): 0.00-0.32 s face 0" in captured.out
        assert out.with_suffix(".speakers.csv").is_file() and out.with_suffix(".faces.png").is_file()
    else:
        assert code == EXIT_INPUT and not out.exists() and "timeline row 1" in captured.err, captured.err
