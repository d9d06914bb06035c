"""CPU benchmark of the data toolchain (``latentsync.data``): clips per minute per stage and peak memory, for the
test corpus and a corpus N times larger (default 10x).

The corpus is :func:`latentsync.data.synthetic.build_corpus` (9 raw files, one of every case the stages handle;
copies are hard links in numbered sub-folders); the model stages load random weights in the official formats
(:func:`latentsync.data.synthetic.write_test_checkpoints`; faces by dlib, or with ``--face-alignment`` by the
production backend with random weights, whose detector reports a face per 128-px anchor, so its clips mostly end
as "several faces" after paying for every landmark pass), with the sync and quality thresholds
opened so every clip reaches the last stage. Each corpus runs **in a fresh Python process** with a local pool of
``--workers`` processes, and a thread samples the RSS of that process tree (workers and ffmpeg included), so a peak
belongs to one corpus alone. Memory must not grow with the corpus: the check is peak(large) / peak(small) <= 1.3.

Usage (from the repository root)::

    python benchmarks/bench_data.py                       # 1x and 10x, 2 workers, 4 s parts
    python benchmarks/bench_data.py --scales 1 3 --workers 2 --results /tmp/bench_data.json
    python benchmarks/bench_data.py --scales 1 --face-alignment   # the production face backend

Timings are indicative: the machine may be shared, and random networks cost what real ones of the same size cost
except dlib (the test face backend) in place of face-alignment.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: import the package without installing it
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_SCALES = (1, 10)
RSS_GROWTH_LIMIT = 1.3  # peak RSS of the largest corpus / the smallest's
SAMPLE_PERIOD_S = 0.2
MIB = 2**20
PERMISSIVE = dict(high_resolution_filter=False, sync_threshold=0.0, max_offset=15, quality_threshold=-1e9)


def tree_rss() -> tuple[int, int]:
    """(sum, largest) RSS in bytes over this process and all its descendants."""
    import psutil

    root = psutil.Process()
    total = largest = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss = proc.memory_info().rss
        except psutil.Error:
            continue
        total, largest = total + rss, max(largest, rss)
    return total, largest


def child(raw: str, out: str, checkpoints: str, workers: int) -> None:
    """Run one corpus and print a JSON line: per-stage counts and seconds, peak RSS of the tree."""
    from latentsync.data import DataOptions, process_dataset

    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total, largest = tree_rss()
            peaks[0], peaks[1] = max(peaks[0], total), max(peaks[1], largest)
            time.sleep(SAMPLE_PERIOD_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    options = DataOptions(checkpoints=Path(checkpoints), device="cpu", **PERMISSIVE)
    reports = process_dataset(raw, out, options, workers=workers, show_progress=False, quiet=True)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    print(json.dumps({"seconds": seconds, "peak_tree_rss_mib": peaks[0] / MIB, "peak_process_rss_mib": peaks[1] / MIB,
                      "stages": [{"stage": r.stage, "clips_in": r.clips_in, "clips_out": r.clips_out,
                                  "seconds": r.seconds} for r in reports]}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=DEFAULT_SCALES, help="corpus copies per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each corpus part (1.92-4 s)")
    parser.add_argument("--results", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--face-alignment", action="store_true",
                        help="faces by face-alignment (random weights) instead of dlib")
    parser.add_argument("--child", nargs=4, metavar=("RAW", "OUT", "CHECKPOINTS", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        raw, out, checkpoints, workers = args.child
        child(raw, out, checkpoints, int(workers))
        return

    from latentsync.data.synthetic import build_corpus, write_test_checkpoints

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-data-") as work:
        work = Path(work)
        checkpoints = write_test_checkpoints(work / "ckpt", face_alignment=args.face_alignment)
        for scale in args.scales:
            raw, out = work / f"raw{scale}", work / f"out{scale}"
            build_corpus(raw, REPO_ROOT / "assets", copies=scale, seconds=args.seconds)
            cmd = [sys.executable, __file__, "--child", str(raw), str(out), str(checkpoints), str(args.workers)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
            result = {"scale": scale, "workers": args.workers, "face_alignment": args.face_alignment, **json.loads(proc.stdout.strip().splitlines()[-1])}
            results.append(result)
            print(f"corpus x{scale}: {result['seconds']:.0f} s, peak RSS {result['peak_tree_rss_mib']:.0f} MiB "
                  f"(tree), {result['peak_process_rss_mib']:.0f} MiB (largest process)")  # fmt: skip
            for stage in result["stages"]:
                rate = 60 * stage["clips_in"] / stage["seconds"] if stage["seconds"] else float("nan")
                print(f"  {stage['stage']:>8}: {stage['clips_in']:4d} in {stage['clips_out']:4d} out "
                      f"{stage['seconds']:7.1f} s  {rate:7.1f} clips/min")  # fmt: skip
    growth = results[-1]["peak_tree_rss_mib"] / results[0]["peak_tree_rss_mib"]
    scales = f"x{results[-1]['scale']} / x{results[0]['scale']}"
    print(f"peak RSS growth {scales}: {growth:.2f} (limit {RSS_GROWTH_LIMIT})")
    if args.results:
        args.results.write_text(json.dumps({"results": results, "rss_growth": growth}, indent=1))
    if growth > RSS_GROWTH_LIMIT:
        sys.exit(f"peak RSS grew {growth:.2f}x with the corpus (limit {RSS_GROWTH_LIMIT})")


if __name__ == "__main__":
    main()
