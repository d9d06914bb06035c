"""A long run survives bad clips: corrupt and audio-less clips in a file list are skipped (logged once each), the run
stops only when most draws fail; Whisper features are cached on disk per clip and read back by later epochs."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
import torch
from torch.utils.data import DataLoader

from latentsync.errors import InputError
from latentsync.training.data import SKIP_WINDOW, SyncNetWindows, UNetWindows
from latentsync.training.inputs import check_fileslist
from latentsync.training.tiny import write_synthetic_dataset

RES = 32


def write_bad_clips(folder, good_clip):
    """A corrupt file (an mp4 header cut short) and a good clip with its audio stream removed."""
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(good_clip.read_bytes()[:2000])
    silent = folder / "no_audio.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(good_clip), "-an", "-c:v", "copy",
                    str(silent)], check=True)
    return corrupt, silent


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from latentsync.models.whisper import tiny_whisper_dims, write_random_whisper_checkpoint

    folder = tmp_path_factory.mktemp("bad-clips")
    fileslist = write_synthetic_dataset(folder, n_clips=2, seconds=2.4, resolution=RES)
    good = check_fileslist("data.train_fileslist", fileslist)
    corrupt, silent = write_bad_clips(folder, good[0])
    mixed = folder / "mixed.txt"
    mixed.write_text("\n".join(str(p.relative_to(folder)) for p in [good[0], corrupt, good[1], silent]) + "\n",
                     encoding="utf-8")
    whisper = write_random_whisper_checkpoint(folder / "tiny.pt", tiny_whisper_dims(), seed=0)
    return folder, good, corrupt, silent, mixed, whisper


@pytest.mark.parametrize("kind", ["syncnet", "unet"])
def test_corrupt_and_audio_less_clips_are_skipped_and_logged_once(clips, kind, caplog):
    _, good, corrupt, silent, mixed, whisper = clips
    listed = check_fileslist("data.train_fileslist", mixed)  # both exist: only reading them shows they are bad
    if kind == "syncnet":
        data = SyncNetWindows(listed, seed=0, resolution=RES, samples_per_epoch=24)
    else:
        data = UNetWindows(listed, seed=0, resolution=RES, whisper_path=whisper, with_mel=True, samples_per_epoch=24)
    with caplog.at_level(logging.WARNING, logger="latentsync.training.data"):
        items = [data[i] for i in range(24)]
    assert len(items) == 24
    assert set(data.skips.reasons) == {str(corrupt), str(silent)}
    assert "has no audio track" in data.skips.reasons[str(silent)]
    assert "no decodable video frames" in data.skips.reasons[str(corrupt)]
    skipped_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped clip")]
    assert len(skipped_lines) == 2  # each bad clip once, however often it was drawn
    assert sum(data.skips.recent) > 2  # ... and it was drawn more often than that
    # The items are those of the good clips: the frames of every window are in one of them.
    from latentsync.training.data import read_clip, to_pixels

    key = "gt" if kind == "unet" else None
    for item in items[:6]:
        start = int(item["start"] if kind == "unet" else item["frames_start"])
        frames = [to_pixels(read_clip(str(p), RES).frames[start:start + 16]) for p in good]
        if key:
            assert any(torch.equal(f, item[key]) for f in frames)
        else:
            assert any(torch.equal(f[:, :, RES // 2:].flatten(0, 1), item["frames"]) for f in frames)


def test_the_skip_record_logs_each_clip_once_across_processes_and_epochs(clips, tmp_path, caplog):
    """Worker processes get a fresh copy of the dataset every epoch: the run's record keeps the log to one line."""
    _, _, corrupt, silent, mixed, _ = clips
    listed = check_fileslist("data.train_fileslist", mixed)
    record = tmp_path / "skipped_clips.txt"
    with caplog.at_level(logging.WARNING, logger="latentsync.training.data"):
        for epoch in range(3):  # three "workers", or epochs
            data = SyncNetWindows(listed, seed=0, resolution=RES, samples_per_epoch=12, skip_record=record)
            data.epoch = epoch
            for i in range(12):
                data[i]
            assert set(data.skips.reasons) == {str(corrupt), str(silent)}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped clip")]
    assert len(lines) == 2
    rows = dict(line.split("\t") for line in record.read_text(encoding="utf-8").splitlines())
    assert set(rows) == {str(corrupt), str(silent)} and "has no audio track" in rows[str(silent)]


def test_the_items_do_not_depend_on_which_draws_were_skipped_before(clips):
    """Skips follow the item's own generator: item i is the same whether or not other items ran first."""
    _, _, _, _, mixed, _ = clips
    listed = check_fileslist("data.train_fileslist", mixed)
    first = SyncNetWindows(listed, seed=3, resolution=RES, samples_per_epoch=8)
    second = SyncNetWindows(listed, seed=3, resolution=RES, samples_per_epoch=8)
    forward = [first[i] for i in range(8)]
    backward = [second[i] for i in reversed(range(8))][::-1]
    for a, b in zip(forward, backward):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["mel"], b["mel"]) and a["seed"] == b["seed"]


def test_a_list_of_mostly_bad_clips_stops_with_an_error_naming_them(clips):
    folder, good, corrupt, silent, _, _ = clips
    copies = []
    for i in range(4):  # 6 bad clips of 7: about 86% of the draws fail
        for bad in (corrupt, silent):
            copy = folder / f"bad{i}-{bad.name}"
            if not copy.exists():
                os.link(bad, copy)
            copies.append(copy)
    data = SyncNetWindows([good[0], *copies[:6]], seed=0, resolution=RES, samples_per_epoch=200)
    with pytest.raises(InputError, match=rf"of the last {SKIP_WINDOW} clips drawn could not be used") as err:
        for i in range(200):
            data[i]
    assert "bad0-corrupt.mp4" in str(err.value) or "bad0-no_audio.mp4" in str(err.value)
    assert sum(data.skips.recent) > SKIP_WINDOW // 2


def test_whisper_features_are_cached_on_disk_and_read_back_by_the_second_epoch(clips, tmp_path):
    _, good, _, _, _, whisper = clips
    cache = tmp_path / "whisper_features"

    def batches(data, epoch):
        data.epoch = epoch
        return list(DataLoader(data, batch_size=2, num_workers=0))

    cached = UNetWindows(good, seed=1, resolution=RES, whisper_path=whisper, with_mel=False, samples_per_epoch=6,
                         feature_cache_dir=cache)
    first = batches(cached, 0)
    files = sorted(cache.glob("*.pt"))
    assert cached.features.computed == len(files) == 2  # one encoding per clip, each written once
    stamps = [f.stat().st_mtime_ns for f in files]
    cached.features._memory.clear()  # as a fresh worker process would start
    second = batches(cached, 1)
    assert cached.features.computed == 2 and [f.stat().st_mtime_ns for f in files] == stamps  # read, not recomputed
    # Identical to what the features computed afresh give (another dataset, no cache).
    fresh = UNetWindows(good, seed=1, resolution=RES, whisper_path=whisper, with_mel=False, samples_per_epoch=6)
    for mine, theirs in ((first, batches(fresh, 0)), (second, batches(fresh, 1))):
        for a, b in zip(mine, theirs):
            assert set(a) == set(b)
            for name in a:
                assert torch.equal(a[name], b[name]), name
    # A new process (a new dataset on the same folder) reads the files without ever loading Whisper.
    reader = UNetWindows(good, seed=1, resolution=RES, whisper_path=whisper, with_mel=False, samples_per_epoch=6,
                         feature_cache_dir=cache)
    again = batches(reader, 1)
    assert reader.features.computed == 0 and reader.features._encoder is None
    assert all(torch.equal(a["audio"], b["audio"]) for a, b in zip(again, second))


def test_the_feature_cache_key_follows_the_clip_and_the_whisper_file(clips, tmp_path):
    from latentsync.training.data import FeatureCache

    _, good, _, _, _, whisper = clips
    cache = FeatureCache(whisper, tmp_path / "cache")
    key = cache.key(str(good[0]))
    assert key == cache.key(str(good[0])) and key != cache.key(str(good[1]))
    stat = good[0].stat()
    os.utime(good[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # an edited clip
    try:
        assert cache.key(str(good[0])) != key
    finally:
        os.utime(good[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    other_whisper = tmp_path / "other.pt"
    other_whisper.write_bytes(whisper.read_bytes() + b"\0")
    assert FeatureCache(other_whisper, tmp_path / "cache").key(str(good[0])) != key
