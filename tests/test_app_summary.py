"""The app tells the user what was decided for them (issue 29, §4): which of several faces was lip-synced, frames
passed through without a face, a small face; and its first paragraph says what to upload and what comes back."""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before gradio is imported: no calls home

import cv2
import numpy as np
import pytest

import app
from latentsync import media
from latentsync.app_support import AppSettings, LipSyncJob, count_faces, decisions, describe_result
from latentsync.inference.pipeline import LipSyncOptions, LipSyncResult

from .conftest import DEMO_VIDEO
from .test_app import client, inputs, lipsync_args, private_face_cache, server  # noqa: F401 -- fixtures shared

FACE_FRAMES, EMPTY_FRAMES = 2, 6  # more empty frames in a row than the tracker bridges (5): passed through
SEVERAL_FACES = "2 faces found; the largest was lip-synced. To choose another, open Speaker and click it."


def result(**fields) -> LipSyncResult:
    values = {"output": Path("o.mp4"), "num_frames": 100, "audio_seconds": 4.0, "source_frames": 100,
              "frames_with_face": 100, "looped": False, "seconds": 2.0, **fields}  # fmt: skip
    return LipSyncResult(**values)


def test_decisions_say_which_face_what_was_passed_through_and_a_small_face():
    assert decisions(result(), faces_in_first_frame=1) == []
    assert decisions(result(), faces_in_first_frame=None) == []  # a speaker point was given: nothing was decided
    assert decisions(result(), faces_in_first_frame=2) == [SEVERAL_FACES]
    assert decisions(result(frames_with_face=88)) == [
        ("12 of 100 frames had no usable face and were passed through unchanged (a face turned away, covered, too "
         "small or out of the picture).")
    ]  # fmt: skip
    assert decisions(result(small_face_frames=30)) == [
        ("The face is smaller than 50x80 px in 30 of 100 frames, so the mouth may look softer there; a closer shot "
         "or a higher-resolution video helps.")
    ]  # fmt: skip
    job = LipSyncJob("v.mp4", "a.wav", "o.mp4", "1.5", LipSyncOptions(), 4.0, 4.0)
    lines = describe_result(result(frames_with_face=88, small_face_frames=30), job, 3).splitlines()
    assert lines[1].startswith("3 faces found; the largest") and lines[2].startswith("12 of 100 frames")
    assert lines[3].startswith("The face is smaller") and lines[4].startswith("Settings: ")
    assert "smaller than" not in lines[0]  # said once, in its own sentence
    for line in lines:
        assert not line[0].islower() and line.endswith(".")  # "3 faces found" starts with a digit


def two_faces_then_none(path: Path) -> Path:
    """The demo face and a smaller copy beside it for FACE_FRAMES frames, then EMPTY_FRAMES grey frames."""
    frames = media.read_video_frames(DEMO_VIDEO, max_frames=FACE_FRAMES)
    n, h, w, _ = frames.shape
    video = np.full((n + EMPTY_FRAMES, h, 2 * w, 3), 128, np.uint8)
    small_h, small_w = h * 3 // 4, w * 3 // 4
    for i, frame in enumerate(frames):
        video[i, :, :w] = frame
        video[i, h - small_h :, w : w + small_w] = cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_AREA)
    media.write_video(path, [video])
    return path


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory) -> Path:
    return two_faces_then_none(tmp_path_factory.mktemp("two-faces") / "two_faces.mp4")


def test_count_faces_counts_the_faces_the_speaker_picker_shows(tiny_pipeline, two_faces):
    assert count_faces(tiny_pipeline.face_backend, two_faces) == 2
    assert count_faces(tiny_pipeline.face_backend, DEMO_VIDEO) == 1


def test_first_paragraph_says_what_to_upload_and_what_comes_back():
    paragraphs = [p for p in app.INTRO.strip().split("\n\n") if not p.startswith("#")]
    first = " ".join(paragraphs[0].split())
    assert first == ("Upload a video of a face (or a photo) and a speech recording: you get the same video back, as "
                     "long as the speech, with the mouth re-drawn to say it.")  # fmt: skip
    assert len(re.findall(r"[.!?](\s|$)", first)) == 1 and "diffusion" not in app.INTRO
    demo = app.build_demo(AppSettings(smoke=True))
    texts = [b.value.strip() for b in demo.blocks.values() if type(b).__name__ == "Markdown"]
    position = {name: texts.index(getattr(app, name).strip()) for name in ("INTRO", "TIPS", "ABOUT")}
    assert position["INTRO"] == 0 and position["ABOUT"] > position["TIPS"]  # the model below the app
    assert "A result stays downloadable for\n1 to 2 hours" in app.ABOUT


@pytest.mark.slow
def test_served_summary_says_several_faces_and_passed_through_frames(server, tmp_path, inputs, two_faces):  # noqa: F811
    app.PIPELINES.get("1.5", smoke=True)
    video, text, _ = client(server, tmp_path).predict(**lipsync_args(two_faces, inputs["audio"]))
    assert media.probe(video).num_frames == FACE_FRAMES + EMPTY_FRAMES == 8
    lines = text.splitlines()
    assert lines[0].startswith("LatentSync 1.5: 8 frames (0.32 s at 25 fps) for 0.30 s of audio; 2 frames lip-synced")
    assert lines[1:3] == [
        SEVERAL_FACES,
        ("6 of 8 frames had no usable face and were passed through unchanged (a face turned away, covered, too small "
         "or out of the picture)."),
    ]  # fmt: skip
    # with the speaker chosen, nothing is said about the other face
    _, text, _ = client(server, tmp_path).predict(**lipsync_args(two_faces, inputs["audio"], speaker="0.25,0.5"))
    assert SEVERAL_FACES not in text and "6 of 8 frames had no usable face" in text
