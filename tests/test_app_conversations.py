"""Conversations in the app (issue 31): the speaker panel's helpers (latentsync/app_support/speakers.py), the
``speakers`` value of ``/lipsync`` and what the summary says about turns.

Fast: the timeline editor's rows as timeline text and back, "Who speaks" as the one ``speakers`` value, the numbered
faces of the two-face clip (tests/two_faces.py), the GPU estimate, the summary lines. Served (slow): ``/lipsync``
with a timeline and with "auto" on the two-face clip, through ``gradio_client``, against a smoke-mode app in this
process.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before gradio is imported: no calls home

import numpy as np
import pytest

import app
from latentsync import media
from latentsync.app_support import (
    AUTO_SPEAKER_FACES,
    SPEAKER_MODES,
    SYNC_SCORE_SECONDS_PER_FRAME,
    AppSettings,
    LipSyncJob,
    check_api_values,
    describe_result,
    faces_preview,
    gpu_seconds,
    make_options,
    rows_from_timeline,
    speakers_value,
    timeline_from_rows,
)
from latentsync.errors import InputError
from latentsync.inference.pipeline import LipSyncOptions, LipSyncResult
from latentsync.inference.speaker_timeline import Turn, parse_timeline
from tests.two_faces import write_two_face_video

from .test_app import client, lipsync_args, private_face_cache, serve, speech  # noqa: F401 -- fixtures shared

SPEECH_SECONDS = 0.32  # 8 output frames: one lip-sync window
TURNS = "start,end,speaker\n0,0.16,0\n0.16,0.32,\"480,160\""  # face 0, then the right face by a point on it
TALK_FRAMES = 30  # the talking clip for "auto": 1.2 s, just over SyncNet's 1-s scoring window
USED = "Speaker turns from the timeline: 0.00-0.16 s face 0, 0.16-0.32 s face 1."


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory) -> Path:
    return write_two_face_video(tmp_path_factory.mktemp("conversation") / "two_faces.mp4")


@pytest.fixture(scope="module")
def two_faces_talking(tmp_path_factory) -> Path:
    """The two-face clip, 1.2 s, with the demo sentence as its own soundtrack (the demo video has none), for "auto"."""
    folder = tmp_path_factory.mktemp("conversation-sound")
    silent = write_two_face_video(folder / "two_faces.mp4", seconds=TALK_FRAMES / media.VIDEO_FPS)
    sound = speech(folder / "speech.wav", TALK_FRAMES / media.VIDEO_FPS)
    path = folder / "two_faces_talking.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(silent), "-i", str(sound), "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(path)], check=True)  # fmt: skip
    return path


# ------------------------------------------------------------------------------------------ fast: the panel


def test_editor_rows_become_timeline_text_and_back():
    rows = [[0, 1.5, "0"], [1.5, 3.0, "480,150"], ["", None, ""], [3, 4.25, 1]]  # a blank row, a number as speaker
    text = timeline_from_rows(rows)
    assert text == 'start,end,speaker\n0,1.5,0\n1.5,3,"480,150"\n3,4.25,1\n'
    assert parse_timeline(text) == [Turn(0, 1.5, 0), Turn(1.5, 3, point=(480, 150)), Turn(3, 4.25, 1)]
    assert rows_from_timeline(text) == [[0, 1.5, "0"], [1.5, 3, "480,150"], [3, 4.25, "1"]]
    assert timeline_from_rows(rows_from_timeline(text)) == text  # round trip
    json_text = '[{"start": 0, "end": 2, "speaker": [0.25, 0.5]}]'  # JSON as the pipeline reads it
    assert rows_from_timeline(json_text) == [[0, 2, "0.25,0.5"]]
    assert timeline_from_rows([["", "", ""]]) == timeline_from_rows(None) == ""


def test_who_speaks_becomes_the_one_speakers_value():
    rows = [[0, 1, "0"]]
    assert speakers_value("one", rows) == ""  # the timeline is ignored with one face
    assert speakers_value("auto", rows) == "auto"
    assert speakers_value("timeline", rows) == "start,end,speaker\n0,1,0\n"
    with pytest.raises(InputError, match=r"^speakers: the timeline is empty; add a row per turn"):
        speakers_value("timeline", [[None, "", ""]])
    with pytest.raises(InputError, match=r"^speakers: timeline row 2: end \(1 s\) must be after start \(2 s\)"):
        speakers_value("timeline", [[0, 1, "0"], [2, 1, "1"]])
    with pytest.raises(InputError, match=r"^speakers: timeline row 1: speaker must be a face id"):
        speakers_value("timeline", [[0, 1, "left"]])
    assert tuple(app.SPEAKER_MODE_LABELS) == SPEAKER_MODES  # the radio offers every mode


def test_speakers_reaches_the_options_and_the_api_check():
    assert make_options(20, 1.5, 1, speakers=" auto ").speakers == "auto"
    assert make_options(20, 1.5, 1).speakers == ""
    assert make_options(20, 1.5, 1, speakers=TURNS).speakers == TURNS
    with pytest.raises(InputError, match="give either speaker .* or speakers"):
        make_options(20, 1.5, 1, speaker="0.3,0.4", speakers="auto")
    with pytest.raises(InputError, match="turn native_fps off"):
        make_options(20, 1.5, 1, native_fps=True, speakers="auto")
    rules = app.api_rules((1, 50), (1.0, 3.0), (0, 35))
    names = app.API_PARAMETERS
    valid = ["v", "a", "1.5", 1, 1.0, 7, False, False, "largest", "pingpong", False, 18, None, True, True, False, 0.5]
    for speakers in ("", "auto", TURNS, None):
        check_api_values(names, [*valid, speakers], rules)
    with pytest.raises(InputError, match=r"^The parameter speakers must be a string: '' \(one face\), 'auto'"):
        check_api_values(names, [*valid, ["0,1,0"]], rules)
    with pytest.raises(InputError, match=r"^speakers: timeline row 1: expected 3 columns .*looks like a file name"):
        check_api_values(names, [*valid, "/etc/turns.csv"], rules)  # a path is text to parse, never a file to read


def test_numbered_faces_of_the_two_face_clip(tiny_pipeline, two_faces, tmp_path):
    preview = faces_preview(tiny_pipeline.face_backend, two_faces)
    frame = media.read_video_frames(two_faces, max_frames=1)[0]
    assert preview.image.shape == frame.shape == (320, 640, 3) and preview.face_ids == (0, 1)
    assert preview.note.startswith("Faces numbered in the first frame: 0, 1.")
    changed = np.abs(preview.image.astype(int) - frame).sum(-1) > 0  # the boxes and numbers drawn
    box_colour = (preview.image == (255, 255, 0)).all(-1)
    left, right = box_colour[:, :320].sum(), box_colour[:, 320:].sum()
    assert left > 200 and right > 200 and changed.sum() >= box_colour.sum()  # a box on each half
    assert (preview.image[~changed] == frame[~changed]).all()
    photo = tmp_path / "photo.png"
    import cv2

    cv2.imwrite(str(photo), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    still = faces_preview(tiny_pipeline.face_backend, photo)
    assert still.face_ids == () and "choose 'One face" in still.note and still.image.shape == frame.shape


def test_gpu_estimate_counts_the_automatic_syncnet_pass():
    options = LipSyncOptions(steps=20, guidance_scale=1.5, cache_interval=1)
    base = gpu_seconds("1.5", 10.0, 10.0, options)
    assert gpu_seconds("1.5", 10.0, 10.0, dataclasses.replace(options, speakers=TURNS)) == base  # as one face
    # "auto": SyncNet over 250 frames for each of 3 assumed faces: + 1.5 x 3 x 250 x 0.01 s = 11.25 s
    extra = 1.5 * AUTO_SPEAKER_FACES * 250 * SYNC_SCORE_SECONDS_PER_FRAME
    assert gpu_seconds("1.5", 10.0, 10.0, dataclasses.replace(options, speakers="auto")) == base + round(extra)


def test_summary_lists_turns_missing_faces_and_frames_outside_turns():
    result = LipSyncResult(output=Path("o.mp4"), num_frames=50, audio_seconds=2.0, source_frames=50,
                           frames_with_face=40, looped=False, seconds=3.0,
                           speaker_turns=(Turn(0.0, 1.2, 0), Turn(1.2, 1.6, 1)), speakers_detected=True,
                           turn_frames_without_face={1: 3}, speakers_file=Path("o.speakers.csv"),
                           faces_image=Path("o.faces.png"))  # fmt: skip
    job = LipSyncJob("v.mp4", "a.wav", "o.mp4", "1.5", LipSyncOptions(speakers="auto"), 2.0, 2.0)
    lines = describe_result(result, job).splitlines()
    assert lines[0] == ("LatentSync 1.5: 50 frames (2.00 s at 25 fps) for 2.00 s of audio; 40 frames lip-synced; took "
                        "3.0 s.")  # fmt: skip
    assert lines[1:4] == [
        ("Speaker turns found in the video's own soundtrack (to correct them, choose Timeline and enter them as rows "
         "start, end, face number): 0.00-1.20 s face 0, 1.20-1.60 s face 1."),
        "Face 1 was not found in 3 frames of its turns; they were passed through unchanged.",
        "10 of 50 frames are outside every turn (or their face was missing) and were passed through unchanged.",
    ]
    assert lines[4] == "Settings: 20 steps, guidance 1.5, seed 1247, speakers found automatically."
    assert "speakers.csv" not in "".join(lines)  # the side files stay in the request's folder: not offered
    by_hand = dataclasses.replace(result, speakers_detected=False, turn_frames_without_face={}, frames_with_face=50)
    job = dataclasses.replace(job, options=LipSyncOptions(speakers=TURNS))
    lines = describe_result(by_hand, job).splitlines()
    assert lines[1] == "Speaker turns from the timeline: 0.00-1.20 s face 0, 1.20-1.60 s face 1."
    assert lines[2] == "Settings: 20 steps, guidance 1.5, seed 1247, speakers from a timeline."


def test_page_has_the_speaker_panel():
    demo = app.build_demo(AppSettings(smoke=True))
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    mode, editor, value = by_id["speakers-mode"], by_id["speakers-timeline"], by_id["speakers"]
    assert [c[1] for c in mode.choices] == ["one", "timeline", "auto"] and mode.value == "one"
    assert editor.headers == ["start", "end", "speaker"] and not editor.visible  # shown in Timeline mode
    assert value.value == "" and not value.visible  # the /lipsync value the panel makes when "Lip sync" is clicked


# ------------------------------------------------------------------------------------------ served


@pytest.fixture(scope="module")
def conversation_server() -> Iterator[str]:
    with serve(AppSettings(max_seconds=60.0, smoke=True)) as url:
        yield url


@pytest.mark.slow
def test_lipsync_with_a_timeline_and_automatic_turns(conversation_server, two_faces, two_faces_talking, tmp_path,
                                                     monkeypatch):  # fmt: skip
    from gradio_client.exceptions import AppError

    from latentsync.inference import pipeline
    from latentsync.inference.speaker_detection import SpeakerDetectionConfig

    app.PIPELINES.get("1.5", smoke=True)
    api = client(conversation_server, tmp_path / "downloads")
    audio = speech(tmp_path / "speech.wav", SPEECH_SECONDS)
    video, text, seed = api.predict(**lipsync_args(two_faces, audio, speakers=TURNS))
    assert media.probe(video).num_frames == round(SPEECH_SECONDS * media.VIDEO_FPS) == 8
    lines = text.splitlines()
    assert lines[0].startswith("LatentSync 1.5: 8 frames (0.32 s at 25 fps) for 0.32 s of audio; 8 frames lip-synced")
    assert lines[1] == USED and "faces found; the largest" not in text  # no one-face note for a conversation
    assert lines[2] == "Settings: 1 step, guidance 1, seed 7, speakers from a timeline." and seed == 7
    # "auto" listens to the video's own soundtrack; 1.2 s of speech, the whole clip. With the tiny random SyncNet it
    # either finds no one (the usual thresholds) and asks for a timeline, or, with every threshold at 0, finds turns
    dub = speech(tmp_path / "dub.wav", TALK_FRAMES / media.VIDEO_FPS)
    try:
        api.predict(**lipsync_args(two_faces_talking, dub, speakers="auto"))
    except AppError as err:
        assert re.search("timeline", str(err)) and str(err).endswith("."), str(err)
    monkeypatch.setattr(pipeline, "SPEAKER_DETECTION",
                        SpeakerDetectionConfig(on_threshold=0.0, off_threshold=0.0, min_turn_seconds=0.2))  # fmt: skip
    video, text, _ = api.predict(**lipsync_args(two_faces_talking, dub, speakers="auto"))
    assert media.probe(video).num_frames == TALK_FRAMES
    found = re.search(r"^Speaker turns found in the video's own soundtrack \(.*\): (.*)\.$", text, re.MULTILINE)
    assert found, text
    turns = re.findall(r"(\d+\.\d\d)-(\d+\.\d\d) s face (\d)", found.group(1))
    assert turns and {face for _, _, face in turns} <= {"0", "1"}
    assert all(0 <= float(a) < float(b) <= TALK_FRAMES / media.VIDEO_FPS for a, b, _ in turns)
    assert "speakers found automatically" in text
