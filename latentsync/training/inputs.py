"""A training run's own inputs, checked before any model loads or the run folder is made: the file lists and the
clips they name, the output folder, the validation clips. Each problem is an :class:`~latentsync.errors.InputError`
naming the config key, which ``python -m latentsync.training`` prints as one line (exit 2).

A leaf: the standard library, :mod:`latentsync.errors`, :mod:`latentsync.cli_common` and the data toolchain's
file-list reader.
"""

from __future__ import annotations

from pathlib import Path

from latentsync.cli_common import check_output_folder
from latentsync.errors import InputError

MISSING_SHOWN = 3  # missing clips named in the message; the rest are counted


def check_fileslist(key: str, fileslist: str | Path | None) -> list[Path]:
    """The clips of the file list at config key ``key`` (e.g. ``data.train_fileslist``); InputError when the list is
    not given or not found, names no clips, or names clips that do not exist."""
    from latentsync.data.fileslist import read_fileslist  # the data toolchain's reader (one format for both)

    if not fileslist:
        raise InputError(f"{key} is not set: give the file list the data toolchain wrote (OUT_DIR/fileslist.txt)")
    path = Path(fileslist)
    if path.is_dir():
        raise InputError(f"{key}: {path} is a folder; give the file list in it (e.g. {path / 'fileslist.txt'})")
    if not path.is_file():
        raise InputError(f"{key}: file list not found: {path}")
    clips = read_fileslist(path)
    if not clips:
        raise InputError(f"{key}: the file list {path} names no clips")
    missing = [clip for clip in clips if not clip.is_file()]
    if missing:
        shown = ", ".join(str(clip) for clip in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        raise InputError(f"{key}: {len(missing)} of the {len(clips)} clips listed in {path} are missing: "
                         f"{shown}{more} (relative entries are read from the list's folder)")
    return clips


def check_output_dir(output_dir: str | Path) -> None:
    """``train.output_dir`` may be missing (it is created) or a folder, not a file."""
    check_output_folder(output_dir, f"train.output_dir: {output_dir}")


def check_validation_clips(validate_every: int, video: str | None, audio: str | None) -> None:
    """UNet validation (``train.validate_every`` > 0) needs ``data.val_video_path`` and ``data.val_audio_path``."""
    given = {"val_video_path": video, "val_audio_path": audio}
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise InputError(f"train.validate_every = {validate_every} needs "
                         f"{' and '.join('data.' + m for m in missing)} (a talking-face video and a speech file); "
                         f"set them, or validate_every: 0")
    for name, value in given.items():
        if not Path(value).is_file():
            raise InputError(f"data.{name}: no such file {value!r}")
