"""Every face through a video (latentsync.faces.multi_track) and ``python -m latentsync.faces``, on a two-person clip
(the demo face and its mirror side by side) with the real dlib detector."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.two_faces import FRAMES, two_face_frames, write_two_face_video

GREY = 128


@pytest.fixture(scope="module")
def dlib_backend():
    from latentsync.faces import load_landmark_backend

    return load_landmark_backend("dlib")


def track(backend, frames, **config):
    from latentsync.faces.multi_track import MultiTrackConfig, track_all_faces

    return track_all_faces(backend, [frames[:20], frames[20:]], MultiTrackConfig(**config))


def test_two_faces_two_tracks_left_first(dlib_backend):
    result = track(dlib_backend, two_face_frames())
    assert result.num_frames == FRAMES and result.frame_size == (640, 320)
    assert [t.track_id for t in result.tracks] == [0, 1]
    left, right = result.tracks
    assert left.present.all() and right.present.all()
    assert (left.first_frame, left.last_frame) == (0, FRAMES - 1)
    assert left.boxes[:, 2].max() <= 320 <= right.boxes[:, 0].min()  # face 0 on the left half, face 1 on the right
    # The mirror image: right box = left box reflected about x = 320 (within 15 px: dlib is not mirror-symmetric).
    np.testing.assert_allclose(640 - right.boxes[:, [2, 0]], left.boxes[:, [0, 2]], atol=15)


def test_short_occlusion_keeps_the_id(dlib_backend):
    frames = two_face_frames()
    frames[10:15, :, 320:] = GREY  # the right face hidden for 5 frames
    result = track(dlib_backend, frames)
    assert len(result.tracks) == 2
    assert np.flatnonzero(~result.tracks[1].present).tolist() == list(range(10, 15))


def test_long_absence_gives_a_new_id(dlib_backend):
    frames = two_face_frames()
    frames[10:40, :, 320:] = GREY  # 30 frames > max_gap 12
    result = track(dlib_backend, frames)
    assert [(t.track_id, t.first_frame, t.last_frame) for t in result.tracks] == [
        (0, 0, FRAMES - 1), (1, 0, 9), (2, 40, FRAMES - 1)]  # fmt: skip
    same = track(dlib_backend, frames, max_gap=40)  # a longer allowed gap bridges it
    assert len(same.tracks) == 2


def test_cut_with_faces_in_place_keeps_ids(dlib_backend):
    frames = two_face_frames()
    cut = np.concatenate([frames[:25], frames[25:][::-1]])  # a hard cut at frame 25 to another moment of the shot
    result = track(dlib_backend, cut)
    assert len(result.tracks) == 2 and all(t.present.all() for t in result.tracks)


def test_swapped_sides_after_a_cut_follow_the_place_not_the_look(dlib_backend):
    """Identity is by position: after a cut that swaps the halves, each id stays on its side of the frame."""
    frames = two_face_frames()
    frames[25:] = frames[25:, :, ::-1]
    result = track(dlib_backend, frames)
    assert len(result.tracks) == 2
    assert result.tracks[0].boxes[:, 2].max() <= 320


def test_config_rejects_bad_values():
    from latentsync.faces.multi_track import MultiTrackConfig

    with pytest.raises(ValueError, match="max_gap"):
        MultiTrackConfig(max_gap=-1)
    with pytest.raises(ValueError, match="min_iou"):
        MultiTrackConfig(min_iou=0)


def test_cli_prints_tracks_and_writes_numbered_frame(tmp_path, tiny_checkpoints, capsys):
    import cv2

    from latentsync.faces.cli import main

    video = write_two_face_video(tmp_path / "two.mp4", seconds=0.8)
    png = tmp_path / "faces.png"
    assert main([str(video), "--png", str(png), "--json", "--checkpoints", str(tiny_checkpoints)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frames"] == 20
    assert [(t["id"], t["first_frame"], t["last_frame"]) for t in data["tracks"]] == [(0, 0, 19), (1, 0, 19)]
    image = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    assert image.shape == (320, 640, 3)
    x1, y1, x2, _ = (round(v) for v in data["tracks"][1]["box"])
    assert (image[y1, x1 + 5 : x2 - 5] == (255, 255, 0)).all()  # the box's top edge is drawn in yellow
    from latentsync.media import read_video_frames

    first = read_video_frames(video, max_frames=1)[0]
    assert np.array_equal(image[260:], first[260:])  # below every box the frame is untouched
    assert main([str(video), "--checkpoints", str(tiny_checkpoints)]) == 0
    assert "face 1: frames 0-19" in capsys.readouterr().out


def test_cli_missing_video_is_an_input_error(tmp_path, capsys):
    from latentsync.faces.cli import main

    assert main([str(tmp_path / "nope.mp4")]) == 2
    assert "--video: file not found" in capsys.readouterr().err
