"""The data toolchain on the production face backend (face-alignment: SFD + 2D-FAN-4 with random weights in the Hub's
formats, the session's ``tiny_checkpoints_face_alignment``), the twin of the dlib runs in test_data_stages.py and
test_data_run.py.

The random detector reports one face per coarse 128-px anchor (so a 128 x 128 frame shows one face and a 256 x 128
frame two) and random landmarks: these tests assert what does not depend on where the landmarks fall (frame
counts, faces per frame, durations) and that no clip ends in an internal error. Each landmark pass costs about a
second of CPU, so the clips are small and short.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.data import decisions, stages_models
from latentsync.data.engine import is_internal_error
from latentsync.data.models import WorkerModels
from latentsync.data.options import DataOptions
from latentsync.faces import FaceTracker

ANCHOR = 128  # px: the random SFD finds one face per anchor of this side


@pytest.fixture(scope="module")
def fa_models(tiny_checkpoints_face_alignment) -> WorkerModels:
    models = WorkerModels(DataOptions(checkpoints=tiny_checkpoints_face_alignment, device="cpu"))
    assert models.face_backend.name == "face_alignment" and hasattr(models.face_backend, "detect_batch")
    return models


def small_clip(path: Path, frames: int, width: int = ANCHOR, height: int = ANCHOR) -> Path:
    """``frames`` frames of a smooth moving gradient with a tone as audio."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    video = np.stack([np.broadcast_to((x + y) / 2 + 3 * i, (height, width, 3)) for i in range(frames)])
    seconds = frames / media.VIDEO_FPS
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * media.SAMPLE_RATE)) / media.SAMPLE_RATE)
    media.write_video(path, [np.clip(video, 0, 255).astype(np.uint8)], audio=tone.astype(np.float32))
    return path


def test_face_counter_counts_the_batched_path_and_passes_faces_through(fa_models):
    backend = fa_models.face_backend
    frames = np.stack([np.full((ANCHOR, 2 * ANCHOR, 3), 100, np.uint8), np.full((ANCHOR, 2 * ANCHOR, 3), 50, np.uint8)])
    counter = stages_models.FaceCounter(backend)
    counter.watch(frames)
    found = counter.detect_batch(frames)
    direct = backend.detect_batch(frames)
    assert counter.counts == [2, 2] == [len(f) for f in direct]  # two anchors: two faces in each frame
    assert [[f.box.tolist() for f in faces] for faces in found] == [[f.box.tolist() for f in faces] for faces in direct]
    assert np.array(counter.sizes).shape == (2, 2) and min(min(s) for s in counter.sizes) > 0
    # The tracker goes through the counter's batched path: every tracked frame is counted once.
    counter = stages_models.FaceCounter(backend)
    tracker = FaceTracker(counter)
    counter.watch(frames)
    tracker.update(frames)
    assert counter.counts == [2, 2] and tracker.num_frames == 2
    counter.detect(np.full((ANCHOR, ANCHOR, 3), 9, np.uint8))  # a frame of no watched chunk: not counted
    assert counter.counts == [2, 2]


def test_faces_stage_on_the_production_backend_counts_faces(fa_models, tmp_path):
    """Issue 27: FaceCounter forwarded detect_batch to face-alignment, counted nothing and every clip became
    'error (AssertionError)'."""
    options = DataOptions(high_resolution_filter=False)
    one = stages_models.faces(small_clip(tmp_path / "one.mp4", 3), "one.mp4", tmp_path / "out", options, fa_models)
    assert not is_internal_error(one.dropped), (one.dropped, one.detail)
    assert one.metrics["frames"] == 3 and one.metrics["min_face_size"] > 0
    if one.dropped is None:  # random landmarks may still fail the alignment; when they do not: a 3-frame face video
        assert media.probe(tmp_path / "out" / "one.mp4").num_frames == 3
    two = stages_models.faces(small_clip(tmp_path / "two.mp4", 2, width=2 * ANCHOR), "two.mp4", tmp_path / "out",
                              options, fa_models)  # fmt: skip
    assert two.dropped == decisions.DROP_SEVERAL_FACES and two.metrics["frames"] == 2


@pytest.fixture(scope="module")
def fa_checkpoints(tiny_checkpoints_face_alignment, tmp_path_factory) -> Path:
    """The session's face-alignment folder (linked, not copied) plus hyperIQA with random weights for the quality
    stage."""
    import torch

    from latentsync.checkpoints import AUXILIARY
    from latentsync.models.hyperiqa import random_hyperiqa_state_dict

    folder = tmp_path_factory.mktemp("fa-data-ckpt")
    for entry in tiny_checkpoints_face_alignment.iterdir():
        if entry.is_dir():
            (folder / entry.name).mkdir()
            for item in entry.iterdir():
                (folder / entry.name / item.name).symlink_to(item)
        else:
            (folder / entry.name).symlink_to(entry)
    torch.save(random_hyperiqa_state_dict(1), folder / AUXILIARY["hyperiqa"].local_path)
    return folder


@pytest.mark.slow  # about 100 landmark passes on CPU
def test_toolchain_on_the_production_backend_ends_without_internal_errors(fa_checkpoints, tmp_path):
    """The twin of test_data_run.py's local run: every stage on face-alignment; what does not depend on where random
    landmarks fall is asserted, and that no clip of any stage ends in an internal error."""
    from latentsync.data import process_dataset, read_fileslist
    from latentsync.data.engine import STAGE_NAMES, is_internal_error
    from latentsync.data.records import Record
    from tests.test_data_run import PERMISSIVE

    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    frames = decisions.MIN_CLIP_FRAMES + 2  # the shortest clip a training set keeps
    small_clip(raw / "talk.mp4", frames)
    (raw / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)))
    options = DataOptions(checkpoints=fa_checkpoints, device="cpu", **PERMISSIVE)
    reports = process_dataset(raw, out, options, workers=1, show_progress=False, quiet=True)
    records = [Record.from_json(p.read_text()) for p in sorted((out / "records").rglob("*.json"))]
    assert [(r.stage, r.input, r.dropped) for r in records if is_internal_error(r.dropped)] == []
    assert {r.stage for r in records} == set(STAGE_NAMES)  # the clip reached the last stage
    table = [(r.stage, r.clips_in, r.clips_out) for r in reports]
    assert table[:4] == [("check", 2, 1), ("resample", 1, 1), ("shots", 1, 1), ("segment", 1, 1)]
    assert reports[4].stage == "faces" and reports[4].clips_in == 1  # kept or dropped by the random landmarks
    faces = [r for r in records if r.stage == "faces"]
    pieces = next(r for r in records if r.stage == "segment").metrics["frames"]
    # Every decoded frame is counted. (The stream-copied piece decodes to 2 frames more than its probed count here:
    # a timestamp quirk of the segmenter's copy, not of the faces stage.)
    assert len(pieces) == 1 and pieces[0] >= frames and faces[0].metrics["frames"] >= pieces[0]
    listed = read_fileslist(out / "fileslist.txt")
    assert len(listed) == reports[-1].clips_out and len(set(listed)) == len(listed)
    assert not (out / "fileslist.txt").read_text().startswith("#")  # the reference trainer reads every line as a path
    for clip in listed:
        info = media.probe(clip)
        assert (info.width, info.height, info.num_frames) == (256, 256, faces[0].metrics["frames"])
    again = process_dataset(raw, out, options, workers=1, show_progress=False, quiet=True)
    assert sum(r.processed for r in again) == 0  # done means done, also with this backend
