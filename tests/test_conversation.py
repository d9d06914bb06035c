"""Conversations (LipSyncOptions.speakers): each face lip-synced only during its turns, with fades at turn edges.

The end-to-end runs use the two-face clip of tests/two_faces.py (face 0 left, face 1 right), written losslessly, and
output at CRF 0, so "untouched" is pixel equality with the same frames passed through the writer."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from latentsync import media
from latentsync.errors import InputError
from latentsync.inference import conversation
from latentsync.inference.conversation import fade_weights, parse_speakers, side_paths
from latentsync.inference.pipeline import LipSyncOptions, blend_frames
from latentsync.inference.speaker_detection import SpeakerDetectionConfig
from latentsync.inference.speaker_timeline import read_timeline
from tests.two_faces import ASSETS, FRAMES, write_two_face_video

HIDDEN = slice(42, 50)  # face 0 hidden in these frames (during its second turn): they pass through
# face 0, then the right face by a point (face 1) from 0.72 s (both speak in frames 18-19), then face 0 again
TIMELINE = "start,end,speaker\n0,0.8,0\n0.72,1.6,\"0.75,0.5\"\n1.6,2,0\n"
MOUTH_ROWS = slice(160, 300)  # the lower face of the demo face (320x320)
HALVES = {0: slice(0, 320), 1: slice(320, 640)}


# ---------------------------------------------------------------------------------------------------- pure parts


def test_fade_weights_ramp_inside_runs_and_not_at_the_video_edges():
    active = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1], bool)
    w = fade_weights(active, fade=2)
    ramp = [0.5 - 0.5 * math.cos(math.pi * k / 3) for k in (1, 2)]  # 0.25, 0.75
    # Run 0-5 starts at the video's first frame: no fade in, fade out over its last two frames.
    np.testing.assert_allclose(w[:6], [1, 1, 1, 1, ramp[1], ramp[0]], atol=1e-6)
    np.testing.assert_allclose(w[6:8], 0)
    np.testing.assert_allclose(w[8:16], [ramp[0], ramp[1], 1, 1, 1, 1, ramp[1], ramp[0]], atol=1e-6)
    np.testing.assert_allclose(w[17:], [ramp[0], ramp[1]], atol=1e-6)  # ends at the last frame: no fade out
    assert fade_weights(np.array([0, 1, 0], bool), fade=4)[1] == pytest.approx(0.5 - 0.5 * math.cos(math.pi / 5))
    np.testing.assert_array_equal(fade_weights(active, fade=0), active.astype(np.float32))


def test_blend_frames_is_exact_at_the_ends_and_where_nothing_changed():
    rng = np.random.default_rng(0)
    before = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    after = before.copy()
    after[:, :2] = rng.integers(0, 256, (3, 2, 5, 3), dtype=np.uint8)
    out = blend_frames(before, after, np.array([0.0, 0.5, 1.0], np.float32))
    np.testing.assert_array_equal(out[0], before[0])
    np.testing.assert_array_equal(out[2], after[2])
    np.testing.assert_array_equal(out[1, 2:], before[1, 2:])  # pixels the paste left alone stay exact
    expected = np.rint((before[1, :2].astype(float) + after[1, :2]) / 2)
    assert np.abs(out[1, :2] - expected).max() <= 1


def test_speakers_option_checks():
    assert parse_speakers("auto") is None and parse_speakers(" AUTO ") is None
    assert [t.face_id for t in parse_speakers("0,1,0\n1,2,1")] == [0, 1]
    with pytest.raises(InputError, match=r"speakers: timeline row 1: .*looks like a file name"):
        parse_speakers("turns.csv")
    with pytest.raises(InputError, match="speakers: timeline row 2: end"):
        parse_speakers('[{"start": 0, "end": 1, "speaker": 0}, {"start": 2, "end": 1, "speaker": 1}]')
    with pytest.raises(InputError, match="either speaker .* or speakers"):
        LipSyncOptions(speakers="auto", speaker="10,10").check()
    with pytest.raises(InputError, match="native_fps"):
        LipSyncOptions(speakers="auto", native_fps=True).check()
    with pytest.raises(InputError, match="score_sync"):
        LipSyncOptions(speakers="0,1,0", score_sync=True).check()
    LipSyncOptions(speakers="0,1,0").check()


def test_side_files_are_named_after_the_output(tmp_path):
    assert side_paths(tmp_path / "dub.mp4") == (tmp_path / "dub.speakers.csv", tmp_path / "dub.faces.png")


# ---------------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The two-face clip with face 0 hidden in HIDDEN frames (CRF 0, 4:4:4) and the demo speech as its own sound, and the same frames as the pipeline's
    writer passes them through (the output of a run in which nothing is lip-synced)."""
    folder = tmp_path_factory.mktemp("conversation")
    plain = write_two_face_video(folder / "plain.mp4")
    video = folder / "two.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-i", str(ASSETS / "demo_speech.wav"), "-vf",
                    f"drawbox=x=0:y=0:w=320:h=320:c=gray:t=fill:enable='between(n,{HIDDEN.start},{HIDDEN.stop - 1})'",
                    "-map", "0:v", "-map", "1:a", "-t", str(FRAMES / 25), "-c:v", "libx264", "-crf", "0",
                    "-pix_fmt", "yuv444p", "-c:a", "aac", str(video)], check=True, capture_output=True)  # fmt: skip
    untouched = folder / "untouched.mp4"
    with media.VideoWriter(untouched, width=640, height=320, fps=25, crf=0) as writer:
        writer.write(media.read_video_frames(video))
    return video, media.read_video_frames(untouched).astype(np.int16)


@pytest.fixture(scope="module")
def timeline_run(tiny_pipeline, clip, tmp_path_factory):
    video, _ = clip
    output = tmp_path_factory.mktemp("timeline-run") / "dub.mp4"
    options = LipSyncOptions(steps=2, crf=0, length_mode="video", speakers=TIMELINE)
    result = tiny_pipeline(video, ASSETS / "demo_speech.wav", output, options)
    return result, media.read_video_frames(output).astype(np.int16)


@pytest.mark.slow
def test_outside_its_turns_every_face_keeps_its_pixels(clip, timeline_run):
    _, untouched = clip
    result, frames = timeline_run
    assert frames.shape == (FRAMES, 320, 640, 3) and result.num_frames == FRAMES
    left, right = HALVES[0], HALVES[1]
    # Face 0 speaks in frames 0-19 and 40-49 (but is hidden in 42-49), face 1 in frames 18-39.
    np.testing.assert_array_equal(frames[20:40, :, left], untouched[20:40, :, left])
    np.testing.assert_array_equal(frames[:18, :, right], untouched[:18, :, right])
    np.testing.assert_array_equal(frames[40:, :, right], untouched[40:, :, right])
    np.testing.assert_array_equal(frames[HIDDEN], untouched[HIDDEN])  # the turn's face is missing: passed through
    # Inside a turn at full weight the mouth region is re-generated.
    change = np.abs(frames - untouched)[:, MOUTH_ROWS].mean(axis=(1, 3))  # (frames, width)
    assert change[:14, left].mean() > 1.0 and change[24:30, right].mean() > 1.0
    assert (change[18:20, left].mean(axis=1) > 0.1).all() and (change[18:20, right].mean(axis=1) > 0.1).all()  # both


@pytest.mark.slow
def test_handover_is_no_larger_than_the_mouths_own_motion(clip, timeline_run):
    """At a turn's edge the generated face fades: frame to frame, what the lip sync adds changes by less than the
    mouth region itself changes from frame to frame inside a turn (without fades it jumps by all of it at once)."""
    _, untouched = clip
    _, frames = timeline_run
    # Fades span 6 frames: face 0 is at full weight in frames 0-13, face 1 in 24-33.
    for face, (turn, handover) in {0: (slice(0, 14), slice(12, 22)), 1: (slice(24, 34), slice(16, 26))}.items():
        region = (slice(None), MOUTH_ROWS, HALVES[face])
        added = np.abs(frames[region] - untouched[region]).mean(axis=(1, 2, 3))  # the lip sync's share per frame
        motion = np.abs(np.diff(frames[region], axis=0)).mean(axis=(1, 2, 3))  # the mouth's frame-to-frame change
        jump = np.abs(np.diff(added))[handover].max()
        assert added[turn].min() > 3 * jump  # a real handover: the lip sync adds far more than one step of it
        assert jump < np.median(motion[turn]), (face, jump, np.median(motion[turn]))


@pytest.mark.slow
def test_the_result_lists_the_turns_and_writes_the_timeline_beside_the_output(timeline_run):
    result, _ = timeline_run
    assert [(t.start, t.end, t.face_id) for t in result.speaker_turns] == [(0.0, 0.8, 0), (0.72, 1.6, 1), (1.6, 2.0, 0)]
    assert result.speakers_detected is False
    assert result.turn_frames_without_face == {0: HIDDEN.stop - HIDDEN.start}
    assert result.frames_with_face == FRAMES - (HIDDEN.stop - HIDDEN.start)
    summary = result.summary()
    assert "speaker turns (from the timeline): 0.00-0.80 s face 0, 0.72-1.60 s face 1, 1.60-2.00 s face 0" in summary
    assert "face 0 was not found in 8 frames of its turns (passed through)" in summary
    assert result.speakers_file == result.output.with_name("dub.speakers.csv")
    assert read_timeline(result.speakers_file) == list(result.speaker_turns)  # re-usable as --speakers
    png = media.read_image(result.faces_image)
    assert png.shape == (320, 640, 3)
    boxes = np.all(png == (255, 255, 0), axis=-1)  # draw_tracks' colour: a box around each face
    assert boxes[:, :320].sum() > 100 and boxes[:, 320:].sum() > 100


@pytest.mark.slow
def test_automatic_speakers_write_the_detected_timeline(tiny_pipeline, clip, tmp_path, monkeypatch):
    """With random SyncNet weights every face scores alike: thresholds at 0 make every face a speaker (the decision
    logic itself, and the error that asks for a timeline when nobody is confident, are tested in
    test_speaker_detection); the run must lip-sync the turns it found and write them."""
    from latentsync.inference import pipeline as pipeline_module

    video, untouched = clip
    audio = ASSETS / "demo_speech.wav"
    monkeypatch.setattr(pipeline_module, "SPEAKER_DETECTION",
                        SpeakerDetectionConfig(on_threshold=0.0, off_threshold=0.0, min_turn_seconds=0.2))  # fmt: skip
    result = tiny_pipeline(video, audio, tmp_path / "auto.mp4",
                           LipSyncOptions(steps=1, crf=0, length_mode="video", speakers="auto"))  # fmt: skip
    assert result.speakers_detected and result.speaker_turns
    assert {t.face_id for t in result.speaker_turns} <= {0, 1}
    assert read_timeline(result.speakers_file) == list(result.speaker_turns)
    assert "speaker turns (found in the video's own soundtrack)" in result.summary()
    frames = media.read_video_frames(result.output).astype(np.int16)
    assert frames.shape == untouched.shape
    spoken = np.zeros(FRAMES, bool)
    for turn in result.speaker_turns:
        spoken[round(turn.start * 25) : round(turn.end * 25)] = True
    np.testing.assert_array_equal(frames[~spoken], untouched[~spoken])


@pytest.mark.slow
def test_conversation_inputs_that_cannot_work_are_refused_clearly(tiny_pipeline, clip, tmp_path):
    video, _ = clip
    audio = ASSETS / "demo_speech.wav"
    mute = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-an", "-c:v", "copy", str(mute)], check=True)
    photo = tmp_path / "photo.png"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-frames:v", "1", str(photo)], check=True)
    cases = [
        (video, "0,1,5", "timeline row 1: no face 5 in the video; face ids: 0, 1"),
        (video, "0,1,\"5,5\"", r"timeline row 1: the point \(5, 5\) px is on no face in frame 0"),
        (video, "3,4,0", "timeline row 1: the turn 3-4 s lies outside the video"),
        (mute, "auto", "finds who speaks from the video's own soundtrack, and mute.mp4 has none"),
        (photo, "0,1,0", "speakers: photo.png is a photo"),
    ]
    for source, speakers, message in cases:
        with pytest.raises(InputError, match=message):
            tiny_pipeline(source, audio, tmp_path / "out.mp4", LipSyncOptions(steps=1, speakers=speakers))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mute.mp4", "photo.png"]  # nothing half-written


def test_the_fade_length_is_what_the_lanes_use(monkeypatch):
    """A lane lip-syncs its turn's frames with the fade that FADE_FRAMES (read when called) gives."""
    from latentsync.faces import load_landmark_backend
    from latentsync.faces.multi_track import track_all_faces
    from latentsync.inference.speaker_timeline import ResolvedTurn, Turn
    from tests.two_faces import two_face_frames

    result = track_all_faces(load_landmark_backend("dlib"), [two_face_frames()[:20]])
    turn = ResolvedTurn(Turn(0.2, 0.6, face_id=0), 0, 5, 15, ())
    monkeypatch.setattr(conversation, "FADE_FRAMES", 3)
    (lane,) = conversation.build_lanes(result, [turn], 256)
    assert lane.active[5:15].all() and not lane.active[:5].any() and not lane.active[15:].any()
    np.testing.assert_allclose(lane.weight[5:15], fade_weights(lane.active, 3)[5:15])
    assert lane.weight[5] < lane.weight[6] < lane.weight[7] < lane.weight[8] == 1.0
    assert np.isfinite(lane.matrices[lane.track.valid]).all()


@pytest.mark.slow
def test_one_face_speaking_throughout_is_the_one_face_path_byte_for_byte(tiny_pipeline, tmp_path):
    """The conversation machinery adds nothing of its own: the demo face with one turn over the whole clip gives the
    very bytes of the one-face run (same track, same generator draws, no fade at the video's ends)."""
    video = tmp_path / "demo1s.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(ASSETS / "demo_video.mp4"), "-t", "1", "-c:v", "libx264",
                    "-crf", "0", str(video)], check=True)  # fmt: skip
    outputs = {}
    for speakers in ("", "0,1,0"):
        outputs[speakers] = tmp_path / f"out-{bool(speakers)}.mp4"
        options = LipSyncOptions(steps=1, length_mode="video", face_cache=False, speakers=speakers)
        result = tiny_pipeline(video, ASSETS / "demo_speech.wav", outputs[speakers], options)
        assert result.num_frames == 25 and result.frames_with_face == 25
    assert outputs[""].read_bytes() == outputs["0,1,0"].read_bytes()


def test_timeline_files_from_the_command_line(tmp_path):
    from latentsync.inference.cli import speakers_text

    assert speakers_text(None) == "" and speakers_text("AUTO") == "auto"
    saved = tmp_path / "turns.csv"
    saved.write_bytes("\ufeffstart,end,speaker\n0,1,0\n".encode())  # a spreadsheet's byte-order mark
    assert [t.face_id for t in parse_speakers(speakers_text(str(saved)))] == [0]
    (tmp_path / "empty.csv").write_text(" \n")
    with pytest.raises(InputError, match="--speakers: empty.csv is empty"):
        speakers_text(str(tmp_path / "empty.csv"))
    with pytest.raises(InputError, match="--speakers: no timeline file"):
        speakers_text(str(tmp_path / "missing.csv"))
