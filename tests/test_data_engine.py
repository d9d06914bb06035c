"""Records, resumption rules, error capture and the report, on small files (no model stage)."""

from __future__ import annotations

import json

import pytest

from latentsync import media
from latentsync.data import engine, stages_media
from latentsync.data.options import DataOptions
from latentsync.data.records import Record, mp4_name, read_record, stem_of
from latentsync.data.report import format_table, summarise
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
