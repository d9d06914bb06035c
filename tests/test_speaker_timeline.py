"""Speaker timelines (latentsync.inference.speaker_timeline): parsing, checks naming row and rule, writing back, and
resolving turns to the face tracks of a two-person clip (real dlib detections)."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.errors import InputError
from latentsync.inference.speaker_timeline import (
    Turn,
    format_timeline,
    parse_timeline,
    read_timeline,
    resolve_turns,
    write_timeline,
)
from tests.two_faces import two_face_frames

CSV = 'start,end,speaker\n0,0.8,"160,150"\n0.8,1.6,1\n1.4,2,"0.75,0.5"\n'


@pytest.fixture(scope="module")
def tracks():
    from latentsync.faces import load_landmark_backend
    from latentsync.faces.multi_track import track_all_faces

    frames = two_face_frames()
    frames[30:35, :, 320:] = 128  # the right face hidden in frames 30-34
    return track_all_faces(load_landmark_backend("dlib"), [frames])


def test_csv_and_json_give_the_same_turns():
    turns = parse_timeline(CSV)
    assert turns == [Turn(0, 0.8, point=(160, 150)), Turn(0.8, 1.6, face_id=1), Turn(1.4, 2, point=(0.75, 0.5))]
    json_text = '[{"start": 0, "end": 0.8, "speaker": [160, 150]}, {"start": 0.8, "end": 1.6, "speaker": 1},' \
                ' {"start": 1.4, "end": 2, "speaker": "0.75,0.5"}]'  # fmt: skip
    assert parse_timeline(json_text) == turns
    assert parse_timeline(CSV.split("\n", 1)[1]) == turns  # the header is optional


@pytest.mark.parametrize("fmt, suffix", [("csv", ".csv"), ("json", ".json")])
def test_written_timeline_reads_back(tmp_path, fmt, suffix):
    turns = parse_timeline(CSV)
    assert parse_timeline(format_timeline(turns, fmt)) == turns
    assert read_timeline(write_timeline(turns, tmp_path / f"t{suffix}")) == turns


@pytest.mark.parametrize("text, message", [
    ("0,1", "row 1: expected 3 columns"),
    ("0,1,0\n2,1,0", "row 2: end (1 s) must be after start (2 s)"),
    ("x,1,0", "row 1: start must be a number"),
    ("-1,1,0", "row 1: start must be a finite number of seconds >= 0"),
    ("0,nan,0", "row 1: end must be a finite"),
    ("0,1,left", "row 1: speaker must be a face id"),
    ('[{"start": 0, "end": 1}]', "row 1: missing speaker"),
    ('{"start": 0}', "must be a list"),
    ("[1,", "not valid JSON"),
    ("  ", "timeline is empty"),
])  # fmt: skip
def test_bad_rows_name_row_and_rule(text, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_timeline(text)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="timeline file not found: none.csv"):
        read_timeline(tmp_path / "none.csv")


def test_turns_resolve_to_tracks_by_point_fraction_and_id(tracks):
    resolved = resolve_turns(parse_timeline(CSV), tracks)
    assert [r.track_id for r in resolved] == [0, 1, 1]  # (160, 150) px on the left face; id 1; 75 % across: right
    assert [(r.first_frame, r.end_frame) for r in resolved] == [(0, 20), (20, 40), (35, 50)]
    assert resolved[0].missing_frames == ()
    assert resolved[1].missing_frames == tuple(range(30, 35))  # the hidden frames are reported, not refused
    assert resolved[2].missing_frames == ()


def test_turn_past_the_end_is_clipped_and_beyond_is_refused(tracks):
    assert resolve_turns([Turn(1.5, 9.0, face_id=0)], tracks)[0].end_frame == 50
    with pytest.raises(InputError, match="row 1: the turn 3-4 s lies outside the video"):
        resolve_turns([Turn(3, 4, face_id=0)], tracks)


def test_unknown_id_and_point_off_faces_name_the_row(tracks):
    with pytest.raises(InputError, match="row 2: no face 5 in the video; face ids: 0, 1"):
        resolve_turns([Turn(0, 1, face_id=0), Turn(0, 1, face_id=5)], tracks)
    with pytest.raises(InputError, match=r"row 1: the point \(320, 5\) px is on no face in frame 25.*face 0: \("):
        resolve_turns([Turn(1, 2, point=(320, 5))], tracks)
    with pytest.raises(InputError, match="is on no face in frame 30"):  # the right face is hidden at the turn's start
        resolve_turns([Turn(1.2, 2, point=(480, 150))], tracks)
    assert np.isnan(tracks.track(1).boxes[30]).all()
