"""End-to-end CPU benchmark of the lip-sync pipeline with tiny random-weight checkpoints, per video length.

For each length (10 s, 60 s and 300 s by default) it writes a talking-head-like clip (scikit-image's astronaut
photograph with a slight head motion, as ``scripts/make_demo_assets.py`` does, generated frame by frame and
streamed into :class:`latentsync.media.VideoWriter`) and a 16 kHz WAV of the same length (the demo sentence
repeated), then runs the tiny pipeline on CPU **in a fresh subprocess per length**, so each peak RSS belongs
to one length alone.

Measured per length: wall time per stage (from the timestamps of the progress callback), total time, frames/s,
CPU seconds per frame (less sensitive than wall time to whatever else runs on the machine), the peak RSS of
the pipeline process (``ru_maxrss``), the peak RSS of the process tree (psutil sampling, the ffmpeg pipes
included; ``RUSAGE_CHILDREN`` is not used: a forked child's ru_maxrss counts the parent's pages it shared
before exec) and the RSS during the lip-sync stage (first, middle and last batch), which shows growth within
one run. The check: the peak RSS of the longest run divided by the shortest's must stay within
``RSS_GROWTH_LIMIT``.

Usage (from the repository root)::

    python benchmarks/bench_pipeline.py                      # 10 60 300 s, steps 1, guidance 1.0, 320x320
    python benchmarks/bench_pipeline.py --lengths 10 60 --steps 2 --guidance 1.5 --size 256

Timings are indicative: the tiny networks are not the real ones, and other processes may share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: import the package without installing it
    sys.path.insert(0, str(REPO_ROOT))

from latentsync import media  # noqa: E402

DEFAULT_LENGTHS = (10, 60, 300)  # seconds
DEFAULT_STEPS = 1  # DDIM steps: one keeps the 300 s CPU run near half an hour on 2 cores
DEFAULT_GUIDANCE = 1.0  # 1.0 disables classifier-free guidance (one UNet pass per step instead of two)
DEFAULT_SIZE = 320  # frame side in pixels; the face is about a third of it, like the demo clip
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "cpu_tiny.json"
# Peak RSS of the longest run / the shortest's: host memory must not grow with the video's length.
RSS_GROWTH_LIMIT = 1.3
DEMO_SPEECH = REPO_ROOT / "assets" / "demo_speech.wav"
GENERATE_CHUNK = 25  # frames generated and written per VideoWriter call (one second)
SAMPLE_PERIOD_S = 0.25  # psutil sampling period of the process-tree RSS
MIB = 2**20
# ru_maxrss is in kilobytes on Linux and in bytes on macOS.
RU_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024

# Head motion of the generated clip (the recipe of scripts/make_demo_assets.py, re-stated here because that
# script renders its 4 s clip in memory, and a 300 s clip must be streamed).
PHOTO_SIDE = 512  # skimage.data.astronaut() is 512x512 RGB
FACE_CROP = (16, 96, 256)  # (top, left, side) of the square around the face in the photograph
FACE_CENTRE = (222.0, 126.0)  # (x, y) pivot of the head motion in the photograph
ROLL_DEGREES, ROLL_PERIOD_S = 2.5, 3.0
ZOOM, ZOOM_PERIOD_S = 0.02, 2.3
SWAY_PX, SWAY_PERIOD_S = (3.0, 1.5), (2.1, 1.7)  # (x, y) amplitude in photo pixels and period


# ------------------------------------------------------------------------------------------------ inputs


def talking_head_frames(seconds: float, size: int) -> Iterator[np.ndarray]:
    """Chunks ``(n, size, size, 3)`` uint8 of the astronaut's face with a slight head motion, at 25 fps."""
    import cv2
    from skimage import data

    photo = data.astronaut()  # (512, 512, 3) uint8 RGB
    top, left, side = FACE_CROP
    total = media.frames_for_duration(seconds)
    for first in range(0, total, GENERATE_CHUNK):
        chunk = []
        for i in range(first, min(first + GENERATE_CHUNK, total)):
            t = i / media.VIDEO_FPS
            angle = ROLL_DEGREES * np.sin(2 * np.pi * t / ROLL_PERIOD_S)
            scale = 1.0 + ZOOM * np.sin(2 * np.pi * t / ZOOM_PERIOD_S)
            matrix = cv2.getRotationMatrix2D(FACE_CENTRE, angle, scale)
            matrix[:, 2] += [a * np.sin(2 * np.pi * t / p) for a, p in zip(SWAY_PX, SWAY_PERIOD_S)]
            moved = cv2.warpAffine(photo, matrix, (PHOTO_SIDE, PHOTO_SIDE), flags=cv2.INTER_CUBIC,
                                   borderMode=cv2.BORDER_REFLECT)  # fmt: skip
            face = moved[top : top + side, left : left + side]
            chunk.append(cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA))
        yield np.stack(chunk)  # (n, size, size, 3)


def write_inputs(directory: Path, seconds: float, size: int) -> tuple[Path, Path]:
    """Write ``talking_<s>s_<size>px.mp4`` and ``speech_<s>s.wav`` (reused when present); return the paths."""
    video = directory / f"talking_{seconds:g}s_{size}px.mp4"
    audio = directory / f"speech_{seconds:g}s.wav"
    if not video.is_file():
        with media.VideoWriter(video, width=size, height=size) as writer:
            for chunk in talking_head_frames(seconds, size):
                writer.write(chunk)
    if not audio.is_file():
        sentence = media.load_audio(DEMO_SPEECH)  # about 3 s; repeated to the clip's length
        media.write_wav(audio, np.resize(sentence, round(seconds * media.SAMPLE_RATE)))
    return video, audio


# ------------------------------------------------------------------------------------------------ the child


class TreeRssSampler:
    """Samples the RSS of this process and all its descendants (the ffmpeg pipes) in a background thread.

    ``stage`` is set by the caller (from the progress callback); the sampled peak of this process is kept per
    stage, which tells where the peak happens (approximately: a spike shorter than the period can be missed).
    """

    def __init__(self, period: float = SAMPLE_PERIOD_S):
        import psutil

        self._process = psutil.Process()
        self._period = period
        self._stop = threading.Event()
        self.peak_tree = 0
        self.stage = "load"
        self.peak_by_stage: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        """RSS of this process now, also counted towards the current stage's peak."""
        rss = self._process.memory_info().rss
        self.peak_by_stage[self.stage] = max(self.peak_by_stage.get(self.stage, 0), rss)
        return rss

    def _tree_rss(self) -> int:
        import psutil

        total = self.rss()
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # the child ended between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_tree = max(self.peak_tree, self._tree_rss())
            self._stop.wait(self._period)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of the children it has waited for (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_child(args: argparse.Namespace) -> None:
    """Load the tiny pipeline, lip-sync one clip and write the raw measurements as JSON to ``args.report``."""
    import torch

    from latentsync import load_pipeline
    from latentsync.inference.pipeline import LipSyncOptions

    with TreeRssSampler() as sampler:
        rss_start = sampler.rss()
        loaded = time.perf_counter()
        pipe = load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=args.checkpoints)
        load_s = time.perf_counter() - loaded
        rss_loaded = sampler.rss()
        events: list[tuple[float, str, int, int]] = []
        lip_rss: list[int] = []

        def progress(stage: str, done: int, total: int) -> None:
            events.append((time.perf_counter(), stage, done, total))
            sampler.stage = stage
            rss = sampler.rss()
            if stage == "lip sync":
                lip_rss.append(rss)

        options = LipSyncOptions(steps=args.steps, guidance_scale=args.guidance)
        load_before = os.getloadavg()[0]
        cpu_before = _cpu_seconds()
        sampler.stage = "setup"
        started = time.perf_counter()
        result = pipe(args.video, args.audio, args.output, options, progress=progress)
        finished = time.perf_counter()
        cpu_s = _cpu_seconds() - cpu_before
    report = {
        "num_frames": result.num_frames,
        "frames_with_face": result.frames_with_face,
        "looped": result.looped,
        "load_s": load_s,
        "started": started,
        "finished": finished,
        "events": events,
        "cpu_s": cpu_s,
        "load_average_1m": [load_before, os.getloadavg()[0]],
        "rss_start_mib": rss_start / MIB,
        "rss_loaded_mib": rss_loaded / MIB,
        "lip_sync_rss_mib": [r / MIB for r in lip_rss],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RU_MAXRSS_UNIT / MIB,
        "peak_tree_rss_mib": sampler.peak_tree / MIB,
        "peak_rss_by_stage_mib": {stage: rss / MIB for stage, rss in sampler.peak_by_stage.items()},
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.report).write_text(json.dumps(report))


# ------------------------------------------------------------------------------------------------ the parent

def stage_times(events: list, started: float, finished: float) -> dict[str, float]:
    """Seconds per stage, in the order the stages were reported; each runs from the previous stage's last
    event. "setup" is probing the video and decoding the audio, before the first event; "lip sync" includes
    the face alignment maths done after the last face-analysis event; "finish" (the "done" event) is closing
    the output, i.e. the last encode and the mux.
    """
    last: dict[str, float] = {}
    for t, stage, _, _ in events:
        last[stage] = t  # dicts keep the order in which stages first appeared
    times = {"setup": events[0][0] - started}
    previous = events[0][0]
    for stage, t in last.items():
        times["finish" if stage == "done" else stage] = t - previous
        previous = t
    times["total"] = finished - started
    return times


def batch_times(events: list) -> list[float]:
    """Seconds between consecutive lip-sync events: one 16-frame batch each (read, diffuse, paste, encode)."""
    stamps = [t for t, stage, _, _ in events if stage == "lip sync"]
    return [b - a for a, b in zip(stamps, stamps[1:])]


def summarise(seconds: float, raw: dict) -> dict:
    times = stage_times(raw["events"], raw["started"], raw["finished"])
    batches = batch_times(raw["events"])
    lip_rss = raw["lip_sync_rss_mib"]
    return {
        "seconds": seconds,
        "num_frames": raw["num_frames"],
        "frames_with_face": raw["frames_with_face"],
        "looped": raw["looped"],
        "load_s": round(raw["load_s"], 2),
        "stage_s": {name: round(value, 2) for name, value in times.items()},
        "frames_per_s": round(raw["num_frames"] / times["total"], 2),
        "cpu_s": round(raw["cpu_s"], 1),
        "cpu_s_per_frame": round(raw["cpu_s"] / raw["num_frames"], 3),
        "load_average_1m_start_end": [round(x, 2) for x in raw["load_average_1m"]],
        "lip_sync_frames_per_s": round(raw["num_frames"] / times["lip sync"], 2),
        "batch_s": {"count": len(batches), "median": round(statistics.median(batches), 3),
                    "max": round(max(batches), 3)},  # fmt: skip
        "rss_mib": {
            "start": round(raw["rss_start_mib"], 1),
            "after_load": round(raw["rss_loaded_mib"], 1),
            "lip_sync_first_mid_last": [round(lip_rss[i], 1) for i in (0, len(lip_rss) // 2, -1)],
            "peak": round(raw["peak_rss_mib"], 1),
            "peak_tree_sampled": round(raw["peak_tree_rss_mib"], 1),
            "peak_by_stage_sampled": {k: round(v, 1) for k, v in raw["peak_rss_by_stage_mib"].items()},
        },
        "torch_threads": raw["torch_threads"],
    }


def run_length(seconds: float, video: Path, audio: Path, checkpoints: Path, workdir: Path,
               args: argparse.Namespace) -> dict:  # fmt: skip
    """Run the pipeline on one clip in a fresh Python process and return its summary."""
    report = workdir / f"report_{seconds:g}s.json"
    output = workdir / f"lipsync_{seconds:g}s.mp4"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--checkpoints", str(checkpoints),
           "--video", str(video), "--audio", str(audio), "--output", str(output), "--report", str(report),
           "--steps", str(args.steps), "--guidance", str(args.guidance)]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    raw = json.loads(report.read_text())
    output.unlink(missing_ok=True)
    return summarise(seconds, raw)


def rss_check(runs: list[dict]) -> dict:
    shortest, longest = min(runs, key=lambda r: r["seconds"]), max(runs, key=lambda r: r["seconds"])
    ratio = longest["rss_mib"]["peak"] / shortest["rss_mib"]["peak"]
    return {
        "rule": f"peak RSS {longest['seconds']:g} s / {shortest['seconds']:g} s <= {RSS_GROWTH_LIMIT}",
        "ratio": round(ratio, 3),
        "passed": ratio <= RSS_GROWTH_LIMIT,
    }


def print_table(runs: list[dict]) -> None:
    header = (f"{'length':>7} {'frames':>6} {'init':>5} {'setup':>6} {'audio':>6} {'faces':>7} "
              f"{'lipsync':>8} {'finish':>6} {'total':>7} {'fps':>6} {'s/batch':>7} {'CPU s/f':>7} "
              f"{'loadavg':>9} {'RSS MiB':>8} {'tree MiB':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in runs:
        s = r["stage_s"]
        load = "%.1f-%.1f" % tuple(r["load_average_1m_start_end"])
        print(f"{r['seconds']:>6g}s {r['num_frames']:>6} {r['load_s']:>5.1f} {s['setup']:>6.2f} "
              f"{s['audio features']:>6.2f} {s['analysing faces']:>7.1f} {s['lip sync']:>8.1f} "
              f"{s['finish']:>6.2f} {s['total']:>7.1f} {r['frames_per_s']:>6.2f} "
              f"{r['batch_s']['median']:>7.2f} "
              f"{r['cpu_s_per_frame']:>7.3f} {load:>9} {r['rss_mib']['peak']:>8.0f} "
              f"{r['rss_mib']['peak_tree_sampled']:>8.0f}")  # fmt: skip


def machine() -> dict:
    import psutil
    import torch

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": None,
    }


def run_benchmark(args: argparse.Namespace) -> dict:
    from latentsync.tiny import write_tiny_checkpoints

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        workdir = Path(tmp)
        inputs = args.inputs_dir or workdir / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        checkpoints = write_tiny_checkpoints(workdir / "checkpoints")
        runs = []
        for seconds in args.lengths:
            made = time.perf_counter()
            video, audio = write_inputs(inputs, seconds, args.size)
            print(f"[{seconds:g} s] inputs ready in {time.perf_counter() - made:.1f} s; running the pipeline",
                  flush=True)  # fmt: skip
            runs.append(run_length(seconds, video, audio, checkpoints, workdir, args))
            run = runs[-1]
            print(f"[{seconds:g} s] {run['stage_s']['total']:.1f} s, {run['frames_per_s']:.2f} frames/s, "
                  f"peak RSS {run['rss_mib']['peak']:.0f} MiB", flush=True)  # fmt: skip
    return {
        "date": date.today().isoformat(),
        "machine": machine(),
        "models": "tiny random-weight checkpoints (latentsync.tiny.write_tiny_checkpoints), LatentSync 1.5 "
                  "layout, 256 px faces, device cpu, float32",
        "settings": {"steps": args.steps, "guidance_scale": args.guidance, "frame_size": args.size,
                     "lengths_s": args.lengths},  # fmt: skip
        "runs": runs,
        "rss_check": rss_check(runs) if len(runs) > 1 else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--lengths", type=float, nargs="+", default=list(DEFAULT_LENGTHS),
                        help="clip lengths (s)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="guidance scale (1.0: none)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame side of the clips (px)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON file to write")
    parser.add_argument("--inputs-dir", type=Path, help="keep (and reuse) the generated clips here")
    # Internal: one measured run, started by the parent in a fresh process.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--checkpoints", "--video", "--audio", "--output", "--report"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    results = run_benchmark(args)
    print()
    print(f"tiny models on CPU, steps {args.steps}, guidance {args.guidance}, {args.size}x{args.size} frames")
    print("times in s; init = loading the models; fps = output frames / total;")
    print("s/batch = median wall time per 16 frames;")
    print("CPU s/f = CPU seconds per frame (ffmpeg included); loadavg = 1-min load average at start and end;")
    print("RSS = peak of the pipeline process; tree = sampled peak of the process and its ffmpeg children")
    print_table(results["runs"])
    check = results["rss_check"]
    if check:
        print(f"{'PASS' if check['passed'] else 'FAIL'}: {check['rule']}: ratio {check['ratio']:.3f}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.results}")
    return 0 if check is None or check["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
