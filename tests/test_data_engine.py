"""Records, resumption rules, error capture and the report, on small files (no model stage)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentsync import media
from latentsync.data import decisions, engine, process_dataset, stages_media
from latentsync.data.ffmpeg import run_ffmpeg
from latentsync.data.options import DataOptions
from latentsync.data.records import (
    Record,
    copy_atomic,
    file_stamp,
    mp4_name,
    read_record,
    stem_of,
    write_record,
)
from latentsync.data.report import format_table, summarise
from latentsync.data.runner_local import WORKER_CRASH_REASON
from latentsync.data.runner_ray import RAY_LOST_REASON
from latentsync.errors import CheckpointError
from tests.conftest import DEMO_AUDIO, DEMO_VIDEO


@pytest.fixture()
def context(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    (raw / "sub").mkdir(parents=True)
    (raw / ".hidden").mkdir()
    for name in ("b.mp4", "sub/a.MOV", ".hidden/x.mp4", "sub/.y.mp4", "notes.txt"):
        (raw / name).write_bytes(b"x")
    return engine.RunContext(raw, out, DataOptions())


def test_find_videos_skips_hidden_and_non_video_files(context):
    assert engine.find_videos(context.raw_dir) == ["b.mp4", "sub/a.MOV"]
    assert mp4_name("sub/a.MOV") == "sub/a.MOV.mp4" and mp4_name("b.mp4") == "b.mp4"
    assert stem_of("b.mp4") == "b" and stem_of("sub/a.MOV") == "sub/a.MOV"


def test_record_is_reused_until_the_input_or_the_settings_change(context):
    first = engine.process_clip("check", "b.mp4", context)
    assert first.dropped == stages_media.DROP_UNREADABLE
    path = context.out_dir / "records" / "check" / "b.mp4.json"
    assert json.loads(path.read_text())["dropped"] == stages_media.DROP_UNREADABLE
    stamp = path.stat().st_mtime_ns
    assert engine.process_clip("check", "b.mp4", context) == first and path.stat().st_mtime_ns == stamp
    (context.raw_dir / "b.mp4").write_bytes(b"changed")  # another file now: redone
    assert engine.pending(engine.get_stage("check"), ["b.mp4"], context) == ["b.mp4"]
    # Settings: a faces record made at 256 px is not current at 512 px.
    record = Record(stage="faces", input="b.mp4", input_stamp=[1, 2], params=DataOptions().stage_params("faces"))
    assert record.params == {"resolution": 256, "high_resolution_filter": True}
    assert DataOptions(resolution=512).stage_params("faces") != record.params


def test_an_exception_in_a_stage_is_recorded_not_raised(tmp_path, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    media.write_video(raw / "v.mp4", [media.read_video_frames(DEMO_VIDEO, max_frames=5)], audio=DEMO_AUDIO)
    context = engine.RunContext(raw, out, DataOptions())

    def broken_ffmpeg(*args):  # fault injection: the encoder dies
        raise RuntimeError("ffmpeg failed (exit 1): simulated")

    monkeypatch.setattr(stages_media, "run_ffmpeg", broken_ffmpeg)
    record = engine.process_clip("resample", "v.mp4", context)
    assert record.dropped == "error (RuntimeError)" and "simulated" in record.detail
    assert [p.name for p in (out / "resampled").iterdir()] == []  # the partial file is gone
    assert read_record(out, "resample", "v.mp4") == record


def test_stage_inputs_follow_the_records(context):
    engine.process_clip("check", "b.mp4", context)
    with pytest.raises(ValueError, match="run it first"):
        engine.stage_inputs(engine.get_stage("resample"), context)
    engine.process_clip("check", "sub/a.MOV", context)
    assert engine.stage_inputs(engine.get_stage("resample"), context) == []  # both unreadable


def test_partial_files_of_a_killed_run_are_removed(context):
    out = context.out_dir
    leftovers = [out / "shots" / ".tmp-1-a.mp4", out / "faces" / "sub" / ".a.xyz" / "partial.mp4",
                 out / "records" / "check" / ".tmp-2-b.mp4.json"]  # fmt: skip
    kept = context.out_dir / "shots" / "a_shot_001.mp4"
    for path in [*leftovers, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    engine.remove_partial_files(context)
    assert [p.exists() for p in leftovers] == [False, False, False] and kept.exists()
    assert not (context.out_dir / "faces" / "sub" / ".a.xyz").exists()


def test_report_counts_clips_pieces_and_reasons():
    records = [Record("segment", "a", outputs=["a_000", "a_001"], pieces_dropped={"too short": 1}),
               Record("segment", "b", dropped="too short", pieces_dropped={}),
               Record("segment", "c", outputs=["c_000"])]  # fmt: skip
    report = summarise("segment", records)
    assert (report.clips_in, report.clips_out, report.dropped) == (3, 3, {"too short": 2})
    table = format_table([report])
    assert table.splitlines()[0].split()[:3] == ["stage", "in", "out"]
    assert table.splitlines()[-1].split() == ["segment", "3", "3", "too", "short:", "2"]


# Issue 27 §3: re-runs heal.


def small_video(path, frames: int = 5, side: int = 64):
    """A short real video with sound: ``frames`` frames of ``side`` px."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    video = np.stack([np.broadcast_to(ramp[None, :, None] + 4 * i, (side, side, 3)) for i in range(frames)])
    tone = 0.2 * np.sin(np.arange(frames * decisions.SAMPLES_PER_FRAME, dtype=np.float32) / 5)
    path.parent.mkdir(parents=True, exist_ok=True)
    return media.write_video(path, [np.clip(video, 0, 255).astype(np.uint8)], audio=tone)


def test_internal_errors_are_retried_and_drops_about_the_clip_stay_done(tmp_path, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "out"
    small_video(raw / "v.mp4")
    (raw / "broken.mp4").write_bytes(b"not a video")
    real_ffmpeg = stages_media.run_ffmpeg

    def broken_ffmpeg(*args):  # fault injection: a transient failure of the encoder
        raise RuntimeError("ffmpeg failed (exit 1): simulated")

    monkeypatch.setattr(stages_media, "run_ffmpeg", broken_ffmpeg)
    first = {r.stage: r for r in process_dataset(raw, out, stages="check,resample", show_progress=False, quiet=True)}
    assert first["resample"].dropped == {"error (RuntimeError)": 1} and first["resample"].retried == 0
    assert first["check"].dropped == {stages_media.DROP_UNREADABLE: 1}
    monkeypatch.setattr(stages_media, "run_ffmpeg", real_ffmpeg)
    second = {r.stage: r for r in process_dataset(raw, out, stages="check,resample", show_progress=False, quiet=True)}
    assert (second["check"].processed, second["check"].retried) == (0, 0)  # "unreadable file" stays done
    assert (second["resample"].processed, second["resample"].retried) == (1, 1)
    assert (second["resample"].clips_out, second["resample"].dropped) == (1, {})
    assert media.probe(out / "resampled" / "v.mp4").num_frames == 5
    assert "retried after an internal error: resample 1" in format_table(list(second.values()))
    assert json.loads((out / "report.json").read_text())["stages"][1]["retried"] == 1


def test_every_internal_error_reason_is_redone(context):
    stage = engine.get_stage("check")
    source = context.raw_dir / "b.mp4"
    for reason, redone in [(WORKER_CRASH_REASON, True), (RAY_LOST_REASON, True), ("error (CheckpointError)", True),
                           (stages_media.DROP_UNREADABLE, False), (decisions.DROP_NO_FACE, False), (None, False)]:
        record = Record("check", "b.mp4", dropped=reason, input_stamp=file_stamp(source), params={})
        write_record(context.out_dir, record)
        assert engine.pending(stage, ["b.mp4"], context) == (["b.mp4"] if redone else []), reason
        assert engine.unrecorded(stage, ["b.mp4"], context) == []  # current, even when it is an error


def fake_checkpoints(folder, face_backend: str = "dlib", seed: int = 0):
    """A checkpoints folder with the data stages' files (contents never loaded here: only their identity counts)."""
    from latentsync.checkpoints import (
        FACE_ALIGNMENT_DETECTOR_FILE,
        FACE_ALIGNMENT_FAN_FILES,
        LOCAL_CONFIG_NAME,
    )

    names = ["syncnet_v2.model", "koniq_pretrained.pkl"]
    if face_backend == "face_alignment":
        names += [FACE_ALIGNMENT_DETECTOR_FILE, FACE_ALIGNMENT_FAN_FILES[1]]
    for name in names:
        (folder / "auxiliary").mkdir(parents=True, exist_ok=True)
        (folder / "auxiliary" / name).write_bytes(bytes([seed]) * 16)
    (folder / LOCAL_CONFIG_NAME).write_text(json.dumps({"face_backend": face_backend}))
    return folder


def test_swapping_the_checkpoints_redoes_the_model_stages(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    first = fake_checkpoints(tmp_path / "ckpt-a")
    clip = "c_shot_001_000.mp4"
    for folder in ("segments", "faces", "synced"):  # each model stage's input
        (out / folder).mkdir(parents=True)
        (out / folder / clip).write_bytes(b"clip")

    def pending_model_stages(checkpoints) -> list[str]:
        context = engine.with_weights(engine.RunContext(raw, out, DataOptions(checkpoints=checkpoints)),
                                      ["faces", "sync", "quality"])  # fmt: skip
        return [name for name in ("faces", "sync", "quality")
                if engine.pending(engine.get_stage(name), [clip], context)]  # fmt: skip

    context = engine.with_weights(engine.RunContext(raw, out, DataOptions(checkpoints=first)),
                                  ["faces", "sync", "quality"])  # fmt: skip
    assert set(context.weights["sync"]["files"]) == {"syncnet_v2.model"}
    assert context.weights["sync"]["face_backend"] == context.weights["faces"]["face_backend"] == "dlib"
    assert set(context.weights["quality"]["files"]) == {"koniq_pretrained.pkl"}
    for name in ("faces", "sync", "quality"):  # records made with the first folder's weights
        source = engine.source_folder(engine.get_stage(name), raw, out) / clip
        write_record(out, Record(name, clip, outputs=[clip], input_stamp=file_stamp(source),
                                 params=context.stage_params(name)))  # fmt: skip
    assert pending_model_stages(first) == []
    # Another folder, other face weights: every model stage is redone.
    other = fake_checkpoints(tmp_path / "ckpt-b", face_backend="face_alignment", seed=1)
    assert pending_model_stages(other) == ["faces", "sync", "quality"]
    assert set(engine.with_weights(engine.RunContext(raw, out, DataOptions(checkpoints=other)), ["faces"])
               .weights["faces"]["files"]) == {"s3fd-619a316812.pth", "2DFAN4-cd938726ad.zip"}  # fmt: skip
    # One file replaced in place: the stages that use it.
    (first / "auxiliary" / "koniq_pretrained.pkl").write_bytes(b"other weights")
    assert pending_model_stages(first) == ["quality"]
    (first / "auxiliary" / "syncnet_v2.model").write_bytes(b"other weights")
    assert pending_model_stages(first) == ["sync", "quality"]
    # Missing weights stop the run before the stage, naming the file.
    (first / "auxiliary" / "koniq_pretrained.pkl").unlink()
    with pytest.raises(CheckpointError, match="koniq_pretrained.pkl"):
        engine.with_weights(engine.RunContext(raw, out, DataOptions(checkpoints=first)), ["quality"])


def test_output_names_never_collide():
    names = ["a.mp4", "a.MP4", "x.mov", "x.mov.mp4", "x.MOV.mp4", "x.mov.mp4.mp4", "sub/a.mkv", "sub/a.mkv.mp4",
             "b.c.mp4", "d.mov/e.mp4"]  # fmt: skip
    outputs = [mp4_name(n) for n in names]
    assert len(set(outputs)) == len(names) and all(o.endswith(".mp4") for o in outputs)
    assert len({stem_of(o) for o in outputs}) == len(names)
    assert outputs[:4] == ["a.mp4", "a.MP4.mp4", "x.mov.mp4", "x.mov.mp4.mp4"]
    assert mp4_name("b.c.mp4") == "b.c.mp4" and mp4_name("d.mov/e.mp4") == "d.mov/e.mp4"  # names kept as they were


def test_inputs_differing_only_in_case_or_suffix_get_their_own_outputs(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    video = small_video(tmp_path / "src.mp4", frames=decisions.MIN_CLIP_FRAMES + 2)
    raw.mkdir()
    for name in ("a.mp4", "a.MP4", "x.mov.mp4"):
        copy_atomic(video, raw / name)
    run_ffmpeg("-i", str(video), "-c", "copy", "-f", "mov", str(raw / "x.mov"))
    reports = process_dataset(raw, out, stages="check,resample,shots,segment", show_progress=False, quiet=True)
    assert [(r.stage, r.clips_in, r.clips_out) for r in reports] == [("check", 4, 4), ("resample", 4, 4),
                                                                        ("shots", 4, 4), ("segment", 4, 4)]  # fmt: skip
    assert sorted(p.name for p in (out / "resampled").iterdir()) == ["a.MP4.mp4", "a.mp4", "x.mov.mp4",
                                                                     "x.mov.mp4.mp4"]  # fmt: skip
    segments = engine.stage_inputs(engine.get_stage("faces"), engine.RunContext(raw, out, DataOptions()))
    assert len(set(segments)) == 4 and sorted(p.name for p in (out / "segments").iterdir()) == sorted(segments)
