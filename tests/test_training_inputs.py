"""A training run's inputs are checked before any model loads: one-line errors naming the config key, exit 2, and no
run folder left behind."""

from __future__ import annotations

import pytest

from latentsync.errors import InputError
from latentsync.training.__main__ import main
from latentsync.training.inputs import check_fileslist, check_output_dir, check_validation_clips
from latentsync.training.tiny import write_tiny_syncnet_yaml

KEY = "data.train_fileslist"


def clips_list(folder, names, existing):
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for name in existing:
        (folder / "clips" / name).write_bytes(b"")  # only existence is checked here
    fileslist = folder / "fileslist.txt"
    fileslist.write_text("# clips\n\n" + "".join(f"clips/{name}\n" for name in names), encoding="utf-8")
    return fileslist


def test_file_list_clips_resolve_against_its_folder(tmp_path):
    fileslist = clips_list(tmp_path, ["a.mp4", "b.mp4"], existing=["a.mp4", "b.mp4"])
    assert check_fileslist(KEY, fileslist) == [tmp_path / "clips" / "a.mp4", tmp_path / "clips" / "b.mp4"]


def test_file_list_problems_name_the_key(tmp_path):
    with pytest.raises(InputError, match=f"^{KEY} is not set"):
        check_fileslist(KEY, None)
    with pytest.raises(InputError, match=f"^{KEY}: file list not found: .*none.txt"):
        check_fileslist(KEY, tmp_path / "none.txt")
    with pytest.raises(InputError, match=f"^{KEY}: .* is a folder; give the file list in it"):
        check_fileslist(KEY, tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="names no clips"):
        check_fileslist(KEY, empty)
    names = [f"c{i}.mp4" for i in range(6)]
    fileslist = clips_list(tmp_path, names, existing=["c0.mp4"])
    with pytest.raises(InputError, match=r"5 of the 6 clips listed in .* are missing: .*c1.mp4, .*c2.mp4, .*c3.mp4 "
                                         r"and 2 more"):
        check_fileslist(KEY, fileslist)


def test_output_dir_and_validation_clips(tmp_path):
    check_output_dir(tmp_path / "new")  # created later
    check_output_dir(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="train.output_dir: .* is a file"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(InputError, match="validate_every = 5 needs data.val_video_path and data.val_audio_path"):
        check_validation_clips(5, None, "")
    with pytest.raises(InputError, match="data.val_video_path: no such file"):
        check_validation_clips(5, str(tmp_path / "v.mp4"), str(tmp_path / "file"))


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("what", ["syncnet", "unet"])
def test_cli_refuses_bad_inputs_in_one_line_before_any_model_loads(what, tmp_path, capsys):
    fileslist = clips_list(tmp_path / "data", ["a.mp4", "b.mp4"], existing=["a.mp4"])
    run = tmp_path / "run"
    if what == "syncnet":
        config = write_tiny_syncnet_yaml(tmp_path / "config.yaml", fileslist, run)
    else:  # the shipped stage-2 defaults: no checkpoint exists here, so any model loading would fail otherwise
        config = tmp_path / "config.yaml"
        config.write_text(f"data: {{train_fileslist: {fileslist}}}\ntrain: {{output_dir: {run}, validate_every: 0}}\n",
                          encoding="utf-8")

    code, err = run_cli(capsys, what, config)
    assert code == 2 and err.startswith(f"error: {KEY}: 1 of the 2 clips listed in") and "b.mp4" in err
    assert len(err.strip().splitlines()) == 1 and not run.exists()

    (tmp_path / "data" / "clips" / "b.mp4").write_bytes(b"")
    code, err = run_cli(capsys, what, config, "--resume")
    assert code == 2 and err.startswith("error: --resume: no saved training state in") and not run.exists()

    run.write_text("a file where the run folder goes")
    code, err = run_cli(capsys, what, config)
    assert code == 2 and "train.output_dir: " in err and "is a file" in err
