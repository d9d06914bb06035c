"""The face restorer in batch dubbing: a ``restore`` column (a strength, 0 = off) per row, checked like every option,
and a batch whose rows differ only in it."""

from __future__ import annotations

import contextlib
import io
import subprocess

import numpy as np
import pytest

from latentsync import media
from latentsync.batch.jobs import read_jobs
from latentsync.batch.options import build_options, known_columns
from latentsync.errors import InputError

from .conftest import DEMO_AUDIO, DEMO_VIDEO


def test_restore_is_a_column_with_a_strength():
    assert "restore" in known_columns()
    assert build_options({"restore": "0.5"})[1].restore == 0.5
    assert build_options({"restore": ""})[1].restore == 0.0  # empty: the default, off
    assert build_options({}, defaults={"restore": "1"})[1].restore == 1.0  # --set restore=1 for every row
    with pytest.raises(InputError, match="restore must be a number"):
        build_options({"restore": "sharp"})
    with pytest.raises(InputError, match=r"restore must be a number from 0 \(off\) to 1"):
        build_options({"restore": "3"})


def test_rows_with_a_bad_strength_are_reported_and_others_kept(tmp_path):
    (tmp_path / "jobs.csv").write_text("video,audio,restore\na.mp4,a.wav,0.7\nb.mp4,b.wav,2\n")
    rows = {row.row: row for row in read_jobs(tmp_path / "jobs.csv", tmp_path / "out")}
    assert rows[1].options.restore == 0.7
    assert "restore must be a number from 0 (off) to 1 (the face restorer's strength), got 2.0" in rows[2].message and rows[2].line == 3


@pytest.mark.slow
def test_batch_rows_with_and_without_restoration(tiny_checkpoints, tmp_path, monkeypatch):
    from latentsync.batch.__main__ import main
    from latentsync.inference.cli import EXIT_OK

    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path / "face-tracks"))
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(DEMO_VIDEO), "-frames:v", "6", str(tmp_path / "v.mp4")],
                   check=True)  # fmt: skip
    media.write_wav(tmp_path / "a.wav", media.load_audio(DEMO_AUDIO)[: int(0.24 * media.SAMPLE_RATE)])
    (tmp_path / "jobs.csv").write_text("video,audio,output,steps,guidance,crf,restore\n"
                                       "v.mp4,a.wav,plain.mp4,1,1.0,0,\n"
                                       "v.mp4,a.wav,restored.mp4,1,1.0,0,1\n")  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([str(tmp_path / "jobs.csv"), str(tmp_path / "out"), "--checkpoints", str(tiny_checkpoints),
                     "--device", "cpu", "--dtype", "float32", "--no-progress"])  # fmt: skip
    assert code == EXIT_OK and "2 rows: 2 ok" in out.getvalue()
    plain = media.read_video_frames(tmp_path / "out" / "plain.mp4").astype(np.int16)
    restored = media.read_video_frames(tmp_path / "out" / "restored.mp4").astype(np.int16)
    assert plain.shape == restored.shape and len(plain) == 6
    changed = np.abs(restored - plain).max(axis=(0, 3)) > 8
    assert changed.sum() > 2000 and not changed[:100].any()  # the lower face changed; the top of the frame did not
