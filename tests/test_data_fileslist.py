"""The training file list: relative paths, comments, blank lines, absolute paths, atomic write."""

from __future__ import annotations

from pathlib import Path

from latentsync.data.fileslist import read_fileslist, write_fileslist


def test_round_trip_relative_to_list_folder(tmp_path):
    out = tmp_path / "out"
    clips = [out / "quality" / "a_000.mp4", out / "quality" / "sub" / "b_001.mp4", Path("/elsewhere/c.mp4")]
    path = write_fileslist(out / "fileslist.txt", clips, header="two lines\nof header")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ["# two lines", "# of header", "quality/a_000.mp4", "quality/sub/b_001.mp4", "/elsewhere/c.mp4"]
    assert read_fileslist(path) == clips
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_reader_ignores_blank_lines_and_comments(tmp_path):
    (tmp_path / "lists").mkdir()
    path = tmp_path / "lists" / "train.txt"
    path.write_text("# comment\n\n  clips/x.mp4  \n#clips/skipped.mp4\n/abs/y.mp4\n", encoding="utf-8")
    assert read_fileslist(path) == [tmp_path / "lists" / "clips" / "x.mp4", Path("/abs/y.mp4")]
