"""Batch jobs sources (CSV, JSONL, folder) → typed rows with line numbers and per-row errors; options mapping."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Literal

import pytest

from latentsync.batch.jobs import Job, RowError, default_output_name, read_jobs
from latentsync.batch.options import build_options, coerce, known_columns, option_types, parse_assignment
from latentsync.errors import InputError
from latentsync.inference.pipeline import DEFAULT_GUIDANCE, DEFAULT_SEED, DEFAULT_STEPS, LipSyncOptions


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def by_row(rows):
    return {row.row: row for row in rows}


# ------------------------------------------------------------------------------------------------ options


def test_every_lipsync_option_field_is_a_column():
    names = [field.name for field in dataclasses.fields(LipSyncOptions)]
    assert list(option_types()) == names
    assert known_columns() == ["version", *names]
    assert {"steps", "guidance_scale", "seed", "score_sync"} <= set(names)


def test_csv_strings_become_the_fields_types():
    version, options = build_options({"steps": "7", "guidance_scale": "2.5", "seed": "42", "score_sync": "yes"})
    assert version == "1.5"
    assert options == LipSyncOptions(steps=7, guidance_scale=2.5, seed=42, score_sync=True)
    assert type(options.steps) is int and type(options.guidance_scale) is float


def test_empty_values_take_the_defaults_and_rows_override_them():
    _, options = build_options({"steps": "", "seed": None}, defaults={"steps": "9", "score_sync": True})
    assert options == LipSyncOptions(steps=9, seed=DEFAULT_SEED, score_sync=True)
    _, options = build_options({"steps": 3}, defaults={"steps": "9"})
    assert options.steps == 3 and options.guidance_scale == DEFAULT_GUIDANCE


@pytest.mark.parametrize(
    "values, message",
    [
        ({"steps": "2.5"}, "steps must be a whole number, got '2.5'"),
        ({"steps": True}, "steps must be a whole number"),
        ({"guidance_scale": "lots"}, "guidance_scale must be a number, got 'lots'"),
        ({"score_sync": "maybe"}, "score_sync must be true or false"),
        ({"steps": "0"}, "steps must be an integer from 1 to 1000"),  # LipSyncOptions.check, through the same path
        ({"version": "2.0"}, "version must be one of 1.5, 1.6, got '2.0'"),
    ],
)
def test_bad_values_name_the_column(values, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_options(values)


def test_unknown_column_names_the_known_ones():
    with pytest.raises(InputError) as err:
        build_options({"stpes": "3"})
    text = str(err.value)
    assert "unknown column 'stpes'" in text
    for name in ("video", "audio", "output", "version", "steps", "guidance_scale", "seed", "score_sync"):
        assert name in text


class Mode(enum.Enum):  # the kinds of field a future option may have: an enum, a literal, a point, an optional
    LOOP = "loop"
    CUT = "cut"


@pytest.mark.parametrize(
    "value, tp, expected",
    [
        ("cut", Mode, Mode.CUT),
        ("LOOP", Mode, Mode.LOOP),
        ("pingpong", Literal["pingpong", "cut"], "pingpong"),
        ("0.5,0.25", tuple[float, float], (0.5, 0.25)),
        ("[0.5, 0.25]", tuple[float, float], (0.5, 0.25)),
        ([1, 2], tuple[float, float], (1.0, 2.0)),
        ("none", tuple[float, float] | None, None),
        ("0.5 0.25", tuple[float, float] | None, (0.5, 0.25)),
        ("3", int | None, 3),
        ("1,2,3", tuple[int, ...], (1, 2, 3)),
    ],
)
def test_coerce_handles_the_types_a_future_option_may_have(value, tp, expected):
    assert coerce("x", value, tp) == expected


@pytest.mark.parametrize(
    "value, tp, message",
    [
        ("sideways", Mode, "x must be one of loop, cut"),
        ("other", Literal["pingpong", "cut"], "x must be one of 'pingpong', 'cut'"),
        ("0.5", tuple[float, float], "x must have 2 values"),
        ("a,b", tuple[float, float], "x must be a number"),
    ],
)
def test_coerce_rejects_with_the_rule(value, tp, message):
    with pytest.raises(InputError, match=message):
        coerce("x", value, tp)


def test_set_assignments():
    assert parse_assignment(" Guidance = 2 ") == ("guidance_scale", "2")
    assert parse_assignment("score-sync=true") == ("score_sync", "true")
    with pytest.raises(InputError, match="NAME=VALUE"):
        parse_assignment("steps")


# ------------------------------------------------------------------------------------------------ sources


def test_csv_rows_with_line_numbers_paths_and_outputs(tmp_path):
    (tmp_path / "in").mkdir()
    jobs = write(
        tmp_path / "in" / "jobs.csv",
        "Video,Audio,Output,Steps,guidance,seed\n"
        "clips/anna.mp4,dub/anna.wav,,30,,\n"
        "\n"  # blank lines are skipped but still counted
        "clips/ben.mp4,dub/ben_fr.wav,fr/ben.mp4,,2.0,42\n"
        "/abs/carl.mp4,/abs/carl.wav,,,,\n"
        "clips/dora.mp4,dub/dora.wav,,,,,surplus\n"
        "clips/eve.mp4,,,,,\n"
        "clips/fay.mp4,dub/fay.wav,fay.mov,,,\n"
        "clips/anna.mp4,dub/anna.wav,,5,,\n",  # same default output as row 1
    )
    out = tmp_path / "out"
    rows = by_row(read_jobs(jobs, out))
    assert len(rows) == 7
    one = rows[1]
    assert isinstance(one, Job) and one.line == 2
    assert one.video == tmp_path / "in" / "clips" / "anna.mp4" and one.audio == tmp_path / "in" / "dub" / "anna.wav"
    assert one.output == out / "anna.mp4"  # same stem: the pair's name
    assert one.options == LipSyncOptions(steps=30) and one.version == "1.5"
    two = rows[2]
    assert two.line == 4 and two.output == out / "fr" / "ben.mp4"
    assert two.options == LipSyncOptions(steps=DEFAULT_STEPS, guidance_scale=2.0, seed=42)
    three = rows[3]
    assert three.line == 5 and three.video == Path("/abs/carl.mp4") and three.output == out / "carl.mp4"
    assert isinstance(rows[4], RowError) and rows[4].line == 6
    assert "7 cells but the header (line 1) names 6" in rows[4].message
    assert isinstance(rows[5], RowError) and rows[5].line == 7 and "the audio column is empty" in rows[5].message
    assert isinstance(rows[6], RowError) and rows[6].line == 8 and "output must be an .mp4 file" in rows[6].message
    assert isinstance(rows[7], RowError) and rows[7].line == 9
    assert f"output {out / 'anna.mp4'} is already the output of row 1 (line 2)" in rows[7].message


def test_quoted_cell_spanning_lines_keeps_its_text(tmp_path):
    jobs = write(tmp_path / "jobs.csv", 'video,audio,output\n"a.mp4",b.wav,"x\ny.mp4"\nc.mp4,d.wav,\n')
    rows = by_row(read_jobs(jobs, tmp_path / "out"))
    assert rows[1].line == 2 and rows[1].output == tmp_path / "out" / "x\ny.mp4"
    assert rows[2].line == 4 and rows[2].output == tmp_path / "out" / "c__d.mp4"


def test_csv_problems_that_stop_the_whole_file(tmp_path):
    with pytest.raises(InputError, match="no audio column"):
        read_jobs(write(tmp_path / "a.csv", "video,output\nx.mp4,y.mp4\n"), tmp_path)
    with pytest.raises(InputError, match="is empty"):
        read_jobs(write(tmp_path / "b.csv", "\n\n"), tmp_path)
    with pytest.raises(InputError, match="steps appears more than once"):
        read_jobs(write(tmp_path / "c.csv", "video,audio,steps,Steps\n"), tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_jobs(tmp_path / "none.csv", tmp_path)
    with pytest.raises(InputError, match="not a jobs file"):
        read_jobs(write(tmp_path / "jobs.txt", "video,audio\n"), tmp_path)
    with pytest.raises(InputError, match="d.csv lists no jobs"):
        read_jobs(write(tmp_path / "d.csv", "video,audio\n\n"), tmp_path)
    with pytest.raises(InputError, match="e.jsonl lists no jobs"):
        read_jobs(write(tmp_path / "e.jsonl", "\n  \n"), tmp_path)


def test_jsonl_rows(tmp_path):
    lines = [
        json.dumps({"video": "a.mp4", "audio": "a.wav", "steps": 3, "score_sync": True, "seed": None}),
        "",
        "{not json",
        json.dumps(["a.mp4", "a.wav"]),
        json.dumps({"video": "b.mp4", "audio": "c.wav", "stepz": 3}),
        json.dumps({"video": "b.mp4", "audio": "c.wav", "version": 1.6, "guidance": 2}),
    ]
    rows = by_row(read_jobs(write(tmp_path / "jobs.jsonl", "\n".join(lines) + "\n"), tmp_path / "o"))
    assert rows[1].line == 1 and rows[1].options == LipSyncOptions(steps=3, score_sync=True)
    assert rows[2].line == 3 and rows[2].message.startswith("not valid JSON")
    assert rows[3].line == 4 and "must be a JSON object" in rows[3].message
    assert rows[4].line == 5 and "unknown column 'stepz'" in rows[4].message and rows[4].video == "b.mp4"
    assert rows[5].line == 6 and rows[5].version == "1.6" and rows[5].options.guidance_scale == 2.0
    assert rows[5].output == tmp_path / "o" / "b__c.mp4"


def test_folder_of_pairs(tmp_path):
    for name in ("anna.mp4", "anna.wav", "ben.mov", "ben.mp3", "carl.mp4", "dora.mp4", "dora.wav", "dora.flac",
                 "eve.wav", "notes.txt", ".hidden.mp4"):  # fmt: skip
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.mp4").write_bytes(b"")
    rows = read_jobs(tmp_path, tmp_path / "out", defaults={"steps": "4"})
    jobs = [row for row in rows if isinstance(row, Job)]
    errors = [row for row in rows if isinstance(row, RowError)]
    assert [(j.video.name, j.audio.name, j.output.name, j.options.steps) for j in jobs] == [
        ("anna.mp4", "anna.wav", "anna.mp4", 4),
        ("ben.mov", "ben.mp3", "ben.mp4", 4),
    ]
    assert [row.line for row in rows] == [None] * 5 and [row.row for row in rows] == [1, 2, 3, 4, 5]
    messages = [e.message for e in errors]
    assert "carl.mp4 has no audio of the same name" in messages[0]
    assert "dora.mp4 has several audio files: dora.flac, dora.wav" in messages[1]
    assert "eve.wav has no video of the same name" in messages[2]


def test_default_output_names():
    assert default_output_name(Path("a/x.mp4"), Path("b/x.wav")) == "x.mp4"
    assert default_output_name(Path("a/x.mov"), Path("b/y.wav")) == "x__y.mp4"


# ------------------------------------------------------------------------------------------------ conversations

TURNS = "start,end,speaker\n0,1.2,0\n1.2,2,1"  # (the text is stripped like every text option)


def test_speakers_column_reads_timeline_files_relative_to_the_jobs_file(tmp_path):
    folder = tmp_path / "in"
    (folder / "turns").mkdir(parents=True)
    write(folder / "turns" / "talk.csv", TURNS)
    write(folder / "talk.json", '[{"start": 0, "end": 1, "speaker": "0.25,0.5"}]')
    (folder / "bom.csv").write_bytes(("\ufeff" + TURNS).encode("utf-8"))  # as a spreadsheet saves it
    write(folder / "bad.csv", "start,end,speaker\n1,0.5,0\n")
    write(folder / "blank.csv", " \n")
    (folder / "latin.csv").write_bytes("début,fin,orateur\n".encode("latin-1"))
    jobs = write(folder / "jobs.csv", "video,audio,output,speakers,speaker\n"
                 "a.mp4,a.wav,1.mp4,turns/talk.csv,\n"
                 "a.mp4,a.wav,2.mp4,,\n"  # empty: one face
                 "a.mp4,a.wav,3.mp4, Auto ,\n"
                 "a.mp4,a.wav,4.mp4,talk.json,\n"
                 "a.mp4,a.wav,5.mp4,bom.csv,\n"
                 "a.mp4,a.wav,6.mp4,missing.csv,\n"
                 "a.mp4,a.wav,7.mp4,turns,\n"  # a folder
                 "a.mp4,a.wav,8.mp4,bad.csv,\n"
                 "a.mp4,a.wav,9.mp4,blank.csv,\n"
                 "a.mp4,a.wav,10.mp4,latin.csv,\n"
                 "a.mp4,a.wav,11.mp4,turns/talk.csv,\"0.5,0.5\"\n")  # fmt: skip
    rows = by_row(read_jobs(jobs, tmp_path / "out"))
    assert [type(rows[n]).__name__ for n in range(1, 12)] == ["Job"] * 5 + ["RowError"] * 6
    assert rows[1].options == LipSyncOptions(speakers=TURNS)  # the file's text, not its name
    assert rows[2].options.speakers == "" and rows[3].options.speakers == "auto"
    assert rows[4].options.speakers.startswith('[{"start": 0') and rows[5].options.speakers == TURNS
    assert rows[6].line == 7 and rows[6].message.startswith("speakers: no timeline file missing.csv (looked for ")
    assert str(folder / "missing.csv") in rows[6].message and rows[6].video == "a.mp4"
    assert rows[7].message.startswith("speakers: no timeline file turns ")
    assert rows[8].line == 9
    assert rows[8].message == "speakers: bad.csv: timeline row 1: end (0.5 s) must be after start (1 s)"
    assert rows[9].message.startswith("speakers: the timeline file blank.csv is empty")
    assert rows[10].message.startswith("speakers: could not read the timeline file latin.csv as text")
    assert rows[11].message == "give either speaker (one face) or speakers (a conversation's turns), not both"


def test_speakers_from_jsonl_and_from_defaults(tmp_path):
    write(tmp_path / "talk.csv", TURNS)
    write(tmp_path / "other.csv", "0,2,1\n")
    lines = [json.dumps({"video": "a.mp4", "audio": "a.wav", "output": "1.mp4", "speakers": "talk.csv"}),
             json.dumps({"video": "a.mp4", "audio": "a.wav", "output": "2.mp4", "speakers": None}),
             json.dumps({"video": "a.mp4", "audio": "a.wav", "output": "3.mp4", "speakers": [0, 1, 0]}),
             json.dumps({"video": "a.mp4", "audio": "a.wav", "output": "4.mp4", "speakers": "  "})]  # fmt: skip
    jobs = write(tmp_path / "jobs.jsonl", "\n".join(lines) + "\n")
    rows = by_row(read_jobs(jobs, tmp_path / "out"))
    assert rows[1].options.speakers == TURNS and rows[2].options.speakers == rows[4].options.speakers == ""
    assert rows[3].message == "speakers must be auto or the path of a timeline file (CSV or JSON), got [0, 1, 0]"
    # a default (--set speakers=...) fills the rows that leave the column empty; a row's own value wins
    rows = by_row(read_jobs(jobs, tmp_path / "out", defaults={"speakers": str(tmp_path / "other.csv")}))
    assert rows[1].options.speakers == TURNS and rows[2].options.speakers == rows[4].options.speakers == "0,2,1"
    rows = by_row(read_jobs(jobs, tmp_path / "out", defaults={"speakers": "auto", "steps": "3"}))
    assert rows[2].options == LipSyncOptions(steps=3, speakers="auto")


def test_a_conversation_job_carries_its_timeline_as_plain_text(tmp_path):
    """Jobs travel to worker processes and Ray actors by pickle: the timeline goes with them, the file stays here."""
    import pickle

    write(tmp_path / "talk.csv", TURNS)
    jobs = write(tmp_path / "jobs.csv", "video,audio,speakers\na.mp4,a.wav,talk.csv\n")
    job = read_jobs(jobs, tmp_path / "out")[0]
    (tmp_path / "talk.csv").unlink()
    copy = pickle.loads(pickle.dumps(job))
    assert copy == job and type(copy.options.speakers) is str and copy.options.speakers == TURNS
