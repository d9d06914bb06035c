"""The on-disk face-track cache: keys by content, atomic writes, LRU eviction, unreadable files."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from latentsync.faces.tracking import TrackRecords
from latentsync.inference.track_cache import CACHE_DIR_ENV, CACHE_MAX_MB_ENV, TrackCache, default_cache_dir, track_key


def records(n: int, seed: int = 0) -> TrackRecords:
    rng = np.random.default_rng(seed)
    landmarks = rng.normal(size=(n, 68, 2)).astype(np.float32)
    landmarks[1] = np.nan
    return TrackRecords(landmarks, rng.normal(size=(n, 4)).astype(np.float32), rng.random(n) > 0.5)


def test_key_follows_the_content_and_the_settings(tmp_path):
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    c.write_bytes(b"other bytes")
    settings = {"backend": "dlib", "speaker": None}
    assert track_key(a, settings) == track_key(b, settings)  # renamed or copied: still a hit
    assert track_key(a, settings) != track_key(c, settings)
    assert track_key(a, settings) != track_key(a, {**settings, "speaker": [10.0, 20.0]})


def test_round_trip_is_exact_and_a_damaged_file_is_a_miss(tmp_path):
    cache = TrackCache(tmp_path / "tracks")
    saved = records(30)
    cache.store("k", saved, complete=True)
    hit = cache.load("k")
    assert hit.complete
    for name in ("landmarks", "boxes", "small"):
        np.testing.assert_array_equal(getattr(hit.records, name), getattr(saved, name))
    assert cache.load("missing") is None
    cache.path("k").write_bytes(b"not an npz")
    assert cache.load("k") is None and not cache.path("k").exists()
    assert [p.name for p in (tmp_path / "tracks").iterdir()] == []  # no temporary files left behind


def test_least_recently_used_files_go_first(tmp_path):
    one = records(50)
    cache = TrackCache(tmp_path, max_bytes=0)
    cache.store("size", one, complete=True)
    size = cache.path("size").stat().st_size if cache.path("size").exists() else None
    assert size is None  # a limit of 0 keeps nothing
    probe = TrackCache(tmp_path / "probe")
    probe.store("x", one, complete=True)
    size = probe.path("x").stat().st_size
    cache = TrackCache(tmp_path / "lru", max_bytes=int(2.5 * size))
    for i, key in enumerate(("a", "b")):
        cache.store(key, one, complete=True)
        os.utime(cache.path(key), (1000 + i, 1000 + i))
    assert cache.load("a") is not None  # a is now the most recently used
    cache.store("c", one, complete=True)  # three files do not fit: b, the least recently used, goes
    assert {p.stem for p in (tmp_path / "lru").glob("*.npz")} == {"a", "c"}


def test_concurrent_writers_never_leave_a_partial_file(tmp_path):
    cache = TrackCache(tmp_path)
    saved = records(400)
    errors = []

    def write():
        try:
            for _ in range(5):
                cache.store("same", saved, complete=False)
        except Exception as err:  # noqa: BLE001 -- collected and asserted below
            errors.append(err)

    def read():
        for _ in range(20):
            hit = cache.load("same")
            if hit is not None:
                assert len(hit.records) == 400
                np.testing.assert_array_equal(hit.records.boxes, saved.boxes)

    threads = [threading.Thread(target=write) for _ in range(3)] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and cache.load("same") is not None
    assert [p.name for p in tmp_path.iterdir()] == [cache.path("same").name]


def test_location_and_limit_come_from_the_environment(tmp_path):
    assert default_cache_dir({CACHE_DIR_ENV: str(tmp_path)}) == tmp_path
    assert default_cache_dir({}).parts[-2:] == ("latentsync", "face-tracks")
    assert TrackCache.from_env({CACHE_DIR_ENV: str(tmp_path), CACHE_MAX_MB_ENV: "1"}).max_bytes == 1024 * 1024
    with pytest.raises(ValueError, match=CACHE_MAX_MB_ENV):
        TrackCache.from_env({CACHE_MAX_MB_ENV: "lots"})
