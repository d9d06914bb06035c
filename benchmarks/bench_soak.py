"""Soak benchmark of issue 29: the app's memory over many sequential API calls (smoke mode).

Starts ``python app.py --smoke`` in its own process on a free port (its face-track cache, gradio cache and temporary
files in a scratch folder), then calls ``/lipsync`` ``--calls`` times in a row through ``gradio_client`` on a short
clip (the demo video's first 12 frames, 0.3 s of the demo speech: 8 output frames, one step, guidance off) and reads
the server's resident memory (``VmRSS`` of ``/proc/<pid>/status``) after each call. Every other call asks for a
random seed, every fifth keeps the video's own frame rate and every tenth computes Sync-C scores, so that more of the
code runs.

RSS moves by tens of MB within a call, so each call's figure is read ``SETTLE_SECONDS`` after it returns (the server
has handed its result over and freed the request by then), and the figure "after call k" is the median of calls
k-4..k. Prints one line per call (so that a run cut short still says what it measured), then the RSS idle, after the
first call and after calls 10, 50, 100, 200 (those reached), the slope (least squares, MB per call, over calls 10 to
the last) and the change from call 10 to the last in percent; the target (issue 29) is that RSS after call 200 is
within 10 % of RSS after call 10. Also counts the results left in gradio's cache after the run and after SIGTERM (it
should be none).

Usage (from the repository root)::

    python benchmarks/bench_soak.py --calls 200
    python benchmarks/bench_soak.py --calls 30 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: no install needed
    sys.path.insert(0, str(REPO_ROOT))

DEMO_VIDEO = REPO_ROOT / "assets" / "demo_video.mp4"
DEMO_AUDIO = REPO_ROOT / "assets" / "demo_speech.wav"
CLIP_FRAMES = 12  # the demo video's first 12 frames
CLIP_SECONDS = 0.3  # of speech: ceil(0.3 x 25) = 8 output frames
REPORT_AT = (10, 50, 100, 200)  # calls after which the RSS is printed
START_TIMEOUT_SECONDS = 300
CALL_TIMEOUT_SECONDS = 300
TARGET_GROWTH = 0.10  # RSS after the last call within 10 % of RSS after call 10
SETTLE_SECONDS = 1.0  # wait after a call before reading RSS
MEDIAN_OF = 5  # "RSS after call k": the median of calls k-4..k
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no VmRSS for process {pid}")


def make_clip(folder: Path) -> tuple[Path, Path]:
    """The short clip's video (no sound) and speech."""
    import numpy as np

    from latentsync import media

    video = folder / "face.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v", str(CLIP_FRAMES),
                    "-an", str(video)], check=True)  # fmt: skip
    speech = np.resize(media.load_audio(DEMO_AUDIO), round(CLIP_SECONDS * media.SAMPLE_RATE))
    media.write_wav(folder / "speech.wav", speech)
    return video, folder / "speech.wav"


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before serving")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the app did not serve within {timeout:.0f} s")


def results_on_disk(gradio_dir: Path) -> int:
    """MP4 results in gradio's cache (the app names them lipsync.mp4)."""
    return sum(1 for _ in gradio_dir.rglob("lipsync*.mp4")) if gradio_dir.exists() else 0


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (call, MB) points, in MB per call."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def soak(calls: int, log: Path | None = None) -> dict:
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="latentsync-soak-") as scratch:
        scratch = Path(scratch)
        video, audio = make_clip(scratch)
        gradio_dir = scratch / "gradio"
        port = free_port()
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(gradio_dir), "TMPDIR": str(scratch),
               "LATENTSYNC_CACHE_DIR": str(scratch / "face-tracks"), "PYTHONUNBUFFERED": "1"}  # fmt: skip
        log_file = open(log or os.devnull, "wb")  # noqa: SIM115 -- closed in finally
        proc = subprocess.Popen([sys.executable, "app.py", "--smoke"], cwd=REPO_ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for_port(proc, port, START_TIMEOUT_SECONDS)
            time.sleep(2)  # let start-up settle
            idle = rss_mb(proc.pid)
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                            download_files=str(scratch / "downloads"))  # fmt: skip
            per_call: list[float] = []
            seconds: list[float] = []
            for i in range(1, calls + 1):
                started = time.perf_counter()
                output, _, _ = client.predict(
                    video=handle_file(str(video)), audio=handle_file(str(audio)), version="1.5", steps=1,
                    guidance_scale=1.0, seed=i, randomize_seed=i % 2 == 0, score_sync=i % 10 == 0,
                    native_fps=i % 5 == 0, api_name="/lipsync",
                )  # fmt: skip
                seconds.append(time.perf_counter() - started)
                Path(output).unlink()  # the client's download, not the server's
                time.sleep(SETTLE_SECONDS)
                per_call.append(rss_mb(proc.pid))
                print(f"call {i:4d}: RSS {per_call[-1]:7.1f} MB ({seconds[-1]:.1f} s)", flush=True)
            left_running = results_on_disk(gradio_dir)
            proc.send_signal(signal.SIGTERM)
            exit_code = proc.wait(timeout=60)
            left_after = results_on_disk(gradio_dir)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log_file.close()
    first_counted = min(10, calls)
    tail = [(i, mb) for i, mb in enumerate(per_call, start=1) if i >= first_counted]

    def after(k: int) -> float:
        window = sorted(per_call[max(k - MEDIAN_OF, 0) : k])
        return window[len(window) // 2]

    return {
        "calls": calls,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "rss_idle_mb": round(idle, 1),
        "rss_after_mb": {i: round(after(i), 1) for i in (1, *REPORT_AT) if i <= calls},
        "rss_last_mb": round(after(calls), 1),
        "slope_mb_per_call": round(slope(tail), 3),
        "growth_from_call_10": round(after(calls) / after(first_counted) - 1, 4),
        "seconds_per_call_median": round(sorted(seconds)[len(seconds) // 2], 2),
        "results_on_disk_before_sigterm": left_running,
        "results_on_disk_after_sigterm": left_after,
        "exit_code": exit_code,
        "rss_per_call_mb": [round(mb, 1) for mb in per_call],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=200, help="sequential /lipsync calls (default 200)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--log", type=Path, help="the server's output goes here (default: discarded)")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls must be at least 1, got {args.calls}")
    figures = soak(args.calls, args.log)
    growth = figures["growth_from_call_10"]
    print(json.dumps({k: v for k, v in figures.items() if k != "rss_per_call_mb"}, indent=2))
    verdict = "within" if abs(growth) <= TARGET_GROWTH else "NOT within"
    print(f"RSS after call {args.calls} is {growth:+.1%} from call {min(10, args.calls)}: {verdict} the "
          f"{TARGET_GROWTH:.0%} target; slope {figures['slope_mb_per_call']:+.3f} MB per call")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
