"""The face restorer after paste-back (issue 30 §1): five-point FFHQ alignment, the blend inside the generated region
only, the weights' registry entry, the option through the pipeline, and no flicker on a still face."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

from latentsync import checkpoints, media
from latentsync.errors import CheckpointError, InputError
from latentsync.faces import anchor_points, estimate_affines, mouth_mask
from latentsync.faces.restore import (
    FFHQ_TEMPLATE_512,
    FaceRestorer,
    LazyRestorer,
    ffhq_affines,
    five_points,
    region_in_face,
)
from latentsync.inference.loading import load_face_restorer
from latentsync.inference.pipeline import LipSyncOptions
from latentsync.tiny import write_random_gfpgan

from .conftest import DEMO_VIDEO, REPO_ROOT

RESOLUTION = 256  # the tiny pipeline's face resolution (LatentSync 1.5's)
GFPGAN_FILE = checkpoints.RELEASE_FILES["gfpgan_v1.4"].local_path


class FreshNoiseRestorer(FaceRestorer):
    """The reference helper's behaviour (randomize_noise=True): new StyleGAN noise on every call."""

    def noise_for_call(self):
        return [torch.randn_like(n) for n in self.model.stored_noise()]


@pytest.fixture(scope="module")
def restorer_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("restorer")
    write_random_gfpgan(directory / GFPGAN_FILE, seed=5)
    return directory


@pytest.fixture(scope="module")
def restorer(restorer_dir) -> FaceRestorer:
    return load_face_restorer(restorer_dir)


@pytest.fixture(scope="module")
def demo_face():
    """The demo video's first frame, its 68 landmarks (dlib) and its LatentSync alignment at 256."""
    from latentsync.inference.face_pass import track_photo
    from latentsync.faces import load_landmark_backend

    frame = media.read_video_frames(DEMO_VIDEO, max_frames=1)[0]
    track = track_photo(load_landmark_backend("dlib"), frame, None)
    assert track.valid[0]
    landmarks = track.landmarks[:1]
    return frame, landmarks, estimate_affines(anchor_points(landmarks), RESOLUTION)


GENERATED = 1.0 - mouth_mask(RESOLUTION)  # (res, res), 1 where the lip-sync model generates


# ------------------------------------------------------------------------------------------------ alignment


def test_five_points_and_the_similarity_onto_the_ffhq_template():
    landmarks = np.zeros((1, 68, 2), np.float32)
    angle, scale, shift = np.deg2rad(12.0), 0.4, np.array([37.0, 81.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = FFHQ_TEMPLATE_512 @ rotation.T + shift  # the template seen in a frame: rotated, smaller, moved
    landmarks[0, 36:42], landmarks[0, 42:48] = points[0] + [[-3, 0], [3, 0]] * 3, points[1]  # eye centres = means
    landmarks[0, 30], landmarks[0, 48], landmarks[0, 54] = points[2], points[3], points[4]
    np.testing.assert_allclose(five_points(landmarks)[0], points, atol=1e-4)
    (matrix,) = ffhq_affines(five_points(landmarks), 512)
    np.testing.assert_allclose(points @ matrix[:, :2].T + matrix[:, 2], FFHQ_TEMPLATE_512, atol=1e-2)
    np.testing.assert_allclose(np.linalg.det(matrix[:, :2]), 1 / scale**2, rtol=1e-4)  # a similarity: 2.5x
    # at the tiny restorer's 64 px the template scales with the size
    (small,) = ffhq_affines(five_points(landmarks), 64)
    np.testing.assert_allclose(small, matrix / 8, atol=1e-4)
    # points that define no transform give NaN (the frame is left alone)
    assert np.isnan(ffhq_affines(np.zeros((1, 5, 2), np.float32), 512)).all()
    with pytest.raises(ValueError, match=r"landmarks must be \(n, 68, 2\)"):
        five_points(np.zeros((1, 5, 2)))


def test_generated_region_lands_on_the_lower_face(demo_face):
    _frame, landmarks, matrices = demo_face
    (ffhq,) = ffhq_affines(five_points(landmarks), 512)
    region = region_in_face(GENERATED, matrices[0], ffhq, 512)
    assert region.shape == (512, 512) and region.max() == pytest.approx(1.0, abs=1e-3) and region.min() == 0
    mouth_y, eyes_y = FFHQ_TEMPLATE_512[3:, 1].mean(), FFHQ_TEMPLATE_512[:2, 1].mean()
    assert region[int(mouth_y), 200:310].min() > 0.99  # the mouth is generated
    assert region[: int(eyes_y)].max() == 0  # eyes and above are not


# ------------------------------------------------------------------------------------------------ blend


def test_restorer_changes_only_the_generated_region_with_the_given_strength(restorer, demo_face):
    frame, landmarks, matrices = demo_face
    frames = frame[None]
    half = restorer(frames, landmarks, matrices, GENERATED, strength=0.5)
    full = restorer(frames, landmarks, matrices, GENERATED, strength=1.0)
    assert half.shape == frames.shape and half.dtype == np.uint8
    assert np.array_equal(restorer(frames, landmarks, matrices, GENERATED, strength=0.0), frames)
    changed = np.abs(full.astype(np.int16) - frames).max(axis=-1) > 0  # (1, H, W)
    lm = landmarks[0]
    eyes_bottom = int(lm[36:48, 1].max())
    mouth_x0, mouth_y0, mouth_x1, mouth_y1 = (*lm[48:68].min(0).astype(int), *lm[48:68].max(0).astype(int))
    assert changed[0, mouth_y0:mouth_y1, mouth_x0:mouth_x1].mean() > 0.9  # the mouth is restored
    assert not changed[0, :eyes_bottom].any()  # eyes, brows, hair, background above: the original bytes
    assert not changed[0, :, : int(lm[:, 0].min()) - 20].any() and not changed[0, :, int(lm[:, 0].max()) + 20 :].any()
    # the blend is linear in the strength (up to rounding to uint8)
    delta_half = (half.astype(np.float32) - frames)[changed]
    delta_full = (full.astype(np.float32) - frames)[changed]
    assert np.abs(delta_full).mean() > 10
    assert np.abs(delta_full - 2 * delta_half).max() <= 2.0


def test_frames_without_a_fitted_face_are_untouched(restorer, demo_face):
    frame, landmarks, matrices = demo_face
    frames = np.stack([frame, frame])
    flat = np.concatenate([landmarks, np.full_like(landmarks, 50.0)])  # the second: all 68 points on one pixel
    out = restorer(frames, flat, np.concatenate([matrices, matrices]), GENERATED)
    assert not np.array_equal(out[0], frame) and np.array_equal(out[1], frame)


# ------------------------------------------------------------------------------------------------ weights


def test_registry_entry_local_folder_and_checksummed_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    spec = checkpoints.RELEASE_FILES["gfpgan_v1.4"]
    assert spec.local_path == "auxiliary/GFPGANv1.4.pth" and spec.urls[0].startswith("https://github.com/TencentARC/")
    with pytest.raises(ValueError, match="unknown release file 'x'; available: gfpgan_v1.4"):
        checkpoints.resolve_release_file("x")
    # a local checkpoints folder: the file there, or an error naming its path and URL
    (tmp_path / "ck").mkdir()
    with pytest.raises(CheckpointError, match=r"(?s)missing model file .*ck/auxiliary/GFPGANv1.4.pth.*releases/download"):
        checkpoints.resolve_release_file("gfpgan_v1.4", tmp_path / "ck")
    write_random_gfpgan(tmp_path / "ck" / spec.local_path)
    assert checkpoints.resolve_release_file("gfpgan_v1.4", tmp_path / "ck") == tmp_path / "ck" / spec.local_path
    # no folder: downloaded once into the Hugging Face cache folder, checked against its SHA-256
    monkeypatch.delenv(checkpoints.CHECKPOINTS_ENV, raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    published = tmp_path / "release.pth"
    published.write_bytes(b"weights of a release")
    good = dataclasses.replace(spec, urls=(published.as_uri(),), sha256=hashlib.sha256(b"weights of a release").hexdigest())
    bad = dataclasses.replace(good, sha256="0" * 64)
    monkeypatch.setitem(checkpoints.RELEASE_FILES, "gfpgan_v1.4", bad)
    with pytest.raises(CheckpointError, match=f"(?s)SHA-256 {good.sha256} instead of {'0' * 64}.*Download it while online"):
        checkpoints.resolve_release_file("gfpgan_v1.4")
    assert not any((tmp_path / "hf").rglob("*GFPGAN*"))  # no partial or unchecked file left behind
    monkeypatch.setitem(checkpoints.RELEASE_FILES, "gfpgan_v1.4", good)
    path = checkpoints.resolve_release_file("gfpgan_v1.4")
    assert path == tmp_path / "hf" / "latentsync" / "releases" / spec.local_path and path.read_bytes() == published.read_bytes()
    published.unlink()  # a second call does not download again
    assert checkpoints.resolve_release_file("gfpgan_v1.4") == path


def test_offline_without_the_file_says_how_to_get_it(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    env.pop(checkpoints.CHECKPOINTS_ENV, None)
    code = textwrap.dedent("""
        from latentsync.checkpoints import resolve_release_file
        from latentsync.errors import CheckpointError
        try:
            resolve_release_file("gfpgan_v1.4")
        except CheckpointError as err:
            print(err)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert "HF_HUB_OFFLINE is set" in proc.stdout and "GFPGANv1.4.pth" in proc.stdout, proc.stderr
    assert "https://github.com/TencentARC/GFPGAN/releases/download/" in proc.stdout


# ------------------------------------------------------------------------------------------------ the option


def test_restore_option_is_checked():
    for bad in (True, -0.1, 1.5, "0.5", None):
        with pytest.raises(InputError, match="restore must be a number from 0 \\(off\\) to 1"):
            LipSyncOptions(restore=bad).check()
    LipSyncOptions(restore=0).check()
    LipSyncOptions(restore=1.0).check()


def test_missing_restorer_weights_fail_before_any_work(tiny_pipeline, tmp_path):
    pipeline = copy.copy(tiny_pipeline)
    (tmp_path / "empty").mkdir()
    pipeline.face_restorer = LazyRestorer(functools.partial(load_face_restorer, tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="missing model file .*GFPGANv1.4.pth"):
        pipeline("no-such-video.mp4", "no-such-audio.wav", tmp_path / "o.mp4", LipSyncOptions(restore=0.5))


def frame_to_frame(frames: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute change between consecutive frames inside ``region`` (H, W) bool."""
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0))[:, region].mean())


@pytest.mark.slow
def test_no_flicker_on_a_still_photo_driven_by_silence(tiny_pipeline, tmp_path):
    """A still face and silence: the lip-sync output barely moves; restoring it with fixed noise moves it no more,
    while the reference helper's fresh noise per frame makes the restored mouth shimmer."""
    frame = media.read_video_frames(DEMO_VIDEO, max_frames=1)[0]
    cv2.imwrite(str(tmp_path / "face.png"), frame[:, :, ::-1])
    media.write_wav(tmp_path / "silence.wav", np.zeros(round(0.24 * media.SAMPLE_RATE), np.float32))
    lossless = LipSyncOptions(steps=1, guidance_scale=1.0, crf=0)
    plain = tiny_pipeline(tmp_path / "face.png", tmp_path / "silence.wav", tmp_path / "plain.mp4", lossless)
    restored = tiny_pipeline(tmp_path / "face.png", tmp_path / "silence.wav", tmp_path / "restored.mp4",
                             dataclasses.replace(lossless, restore=0.5))  # fmt: skip
    assert plain.num_frames == restored.num_frames == 6 and restored.frames_with_face == 6
    before = media.read_video_frames(plain.output)
    after = media.read_video_frames(restored.output)
    region = np.abs(after.astype(np.int16) - before).max(axis=(0, 3)) > 8  # where the restorer changed the face
    assert region.sum() > 2000  # the restored lower face (the demo face is ~100 px wide)
    assert np.abs(after[:, : region.nonzero()[0].min() - 4].astype(np.int16) - before[:, : region.nonzero()[0].min() - 4]).max() <= 2
    steady, plain_motion = frame_to_frame(after, region), frame_to_frame(before, region)
    print(f"frame-to-frame in the restored region: plain {plain_motion:.3f}, restored {steady:.3f}")
    assert steady <= plain_motion
    # the contrast: the same restorer drawing fresh noise for each frame, applied to the same lip-sync output
    landmarks, matrices = _photo_alignment(tiny_pipeline, frame, len(before))
    fresh = FreshNoiseRestorer(tiny_pipeline.face_restorer.get().model)
    flickering = fresh(before, landmarks, matrices, GENERATED, strength=0.5)
    print(f"fresh noise per frame: {frame_to_frame(flickering, region):.3f}")
    assert frame_to_frame(flickering, region) > 2 * plain_motion


def _photo_alignment(pipeline, frame, count):
    from latentsync.inference.face_pass import track_photo

    track = track_photo(pipeline.face_backend, frame, None)
    landmarks = np.repeat(track.landmarks[:1], count, axis=0)
    return landmarks, estimate_affines(anchor_points(landmarks), pipeline.resolution)


# ------------------------------------------------------------------------------------------------ command line


def test_cli_restore_flag_takes_an_optional_strength(tmp_path, capsys):
    from latentsync.inference.cli import EXIT_FAILURE, EXIT_INPUT, build_parser, main

    from .conftest import DEMO_AUDIO

    base = ["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4")]
    parser = build_parser()
    assert parser.parse_args(base).restore == 0.0
    assert parser.parse_args([*base, "--restore"]).restore == 0.5
    assert parser.parse_args([*base, "--restore", "0.8"]).restore == 0.8
    assert main([*base, "--restore", "2", "--checkpoints", str(tmp_path)]) == EXIT_INPUT
    assert "restore must be a number from 0 (off) to 1" in capsys.readouterr().err
    # the restorer's file is looked for before the models load: an empty folder names it, not the UNet
    assert main([*base, "--restore", "--checkpoints", str(tmp_path)]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "GFPGANv1.4.pth" in err and "latentsync_unet.pt" not in err


@pytest.mark.slow
def test_cli_restore_end_to_end(tmp_path, tiny_checkpoints, demo_face, capsys, monkeypatch):
    from latentsync.inference.cli import EXIT_OK, main

    from .conftest import DEMO_AUDIO

    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path / "face-tracks"))
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(0.24 * media.SAMPLE_RATE)])
    video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(DEMO_VIDEO), "-frames:v", "6", str(video)], check=True)
    outputs = {}
    for name, extra in (("plain", []), ("restored", ["--restore", "1"])):
        out = tmp_path / f"{name}.mp4"
        code = main(["--video", str(video), "--audio", str(audio), "--output", str(out), "--steps", "1",
                     "--guidance", "1.0", "--crf", "0", "--checkpoints", str(tiny_checkpoints), "--device", "cpu",
                     *extra])  # fmt: skip
        assert code == EXIT_OK, capsys.readouterr().err
        outputs[name] = media.read_video_frames(out).astype(np.int16)
    plain, restored = outputs["plain"], outputs["restored"]
    assert plain.shape == restored.shape and len(plain) == 6
    changed = np.abs(restored - plain).max(axis=(0, 3)) > 8  # (H, W)
    rows = changed.any(axis=1).nonzero()[0]
    eyes_bottom = int(demo_face[1][0, 36:48, 1].max())
    assert changed.sum() > 2000 and rows.min() > eyes_bottom  # the generated lower face only
    assert np.abs(restored[:, :eyes_bottom] - plain[:, :eyes_bottom]).max() <= 2  # eyes and above: unchanged


def test_native_rate_batches_are_restored_where_the_track_has_a_face(restorer, demo_face):
    """The native-fps path restores its output batches after the fact (schedule order, own landmarks per frame)."""
    from latentsync.faces import FaceTrack
    from latentsync.inference.pipeline import _restored_native

    frame, landmarks, matrices = demo_face
    track = FaceTrack(landmarks=np.concatenate([landmarks, np.full_like(landmarks, np.nan)]),
                      boxes=np.zeros((2, 4), np.float32), valid=np.array([True, False]))  # fmt: skip
    both = np.concatenate([matrices, np.full_like(matrices, np.nan)])
    schedule = np.array([0, 1, 0])  # output frames: the face, a frame without one, the face again
    restore = functools.partial(restorer, generated=GENERATED, strength=0.5)
    batches = list(_restored_native(iter([np.stack([frame, frame]), frame[None]]), schedule, track, both, restore))
    expected = restorer(frame[None], landmarks, matrices, GENERATED, strength=0.5)[0]
    assert [len(b) for b in batches] == [2, 1]
    assert np.array_equal(batches[0][0], expected) and np.array_equal(batches[1][0], expected)
    assert np.array_equal(batches[0][1], frame)  # no face in the track: untouched
