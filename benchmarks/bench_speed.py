"""Speed benchmark of issue 14: step caching (and, end to end, overlap) against the package's own plain path.

Two measurements, each compared within one run:

``unet``  The full-size LatentSync 1.5 UNet (1.27 B parameters, random weights in the real architecture) on
          one window of ``--frames`` frames at 256 px (32x32 latents), classifier-free guidance on (batch 2):
          the time of every denoising step plain and with :class:`~latentsync.models.deepcache.CachedUNet`
          (the reference's interval 3, branch 0). A shortened run (a few steps, few frames) gives the time of
          a full and of a cached step; the ratio for a 20-step window follows from the reference's schedule
          (7 full steps + 13 cached ones). The step input is the same each step: the cost does not depend
          on the values.

``e2e``   The tiny random pipeline end to end on a generated clip (the clip recipe of ``bench_pipeline.py``),
          one fresh process per variant: plain, cached, cached + overlapped (and compiled, on CUDA). Per row:
          frames/s, speed-up against plain, peak RSS (and peak VRAM on CUDA). A variant whose option the
          pipeline does not have yet is listed as not measured, with the missing option named.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/bench_speed.py unet --frames 4 --steps 3
    python benchmarks/bench_speed.py e2e --seconds 4 --write /tmp/speed.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # a script in benchmarks/: no install needed
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

REFERENCE_STEPS = 20  # the reference's inference.sh / gradio default
CACHE_INTERVAL, CACHE_BRANCH = 3, 0  # the reference's DeepCache settings
LATENT_SIDE_256 = 32  # 256 px faces / the VAE's factor 8
AUDIO_TOKENS = 50  # Whisper tokens per frame window (reference README §4.3)
MIB = 2**20

# End-to-end variants: option overrides for LipSyncOptions (fields the pipeline may not have yet) and whether
# the variant needs CUDA.
E2E_VARIANTS = {
    "plain": ({"cache_interval": 1, "overlap": False}, False),
    "cached": ({"cache_interval": CACHE_INTERVAL, "overlap": False}, False),
    "cached+overlapped": ({"cache_interval": CACHE_INTERVAL, "overlap": True}, False),
    "cached+overlapped+compiled": (
        {"cache_interval": CACHE_INTERVAL, "overlap": True, "compile": True}, True),
}


# ------------------------------------------------------------------------------------------------ unet


def full_steps(steps: int, interval: int = CACHE_INTERVAL) -> int:
    """How many of ``steps`` steps the cache recomputes in full (indices 0, interval, 2*interval, ...)."""
    return -(-steps // interval)


def bench_unet(args: argparse.Namespace) -> dict:
    import torch

    from latentsync.models.deepcache import CachedUNet
    from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
    from latentsync.models.unet_config import UNetConfig

    torch.set_flush_denormal(True)  # random weights can produce denormals, which are slow on x86
    started = time.perf_counter()
    config = UNetConfig.latentsync_15()
    unet = randomize_zero_init_(LatentSyncUNet(config), torch.Generator().manual_seed(0)).eval()
    build_s = time.perf_counter() - started
    gen = torch.Generator().manual_seed(1)
    batch = 2  # classifier-free guidance: unconditional and conditional halves
    shape = (batch, config.in_channels, args.frames, LATENT_SIDE_256, LATENT_SIDE_256)
    sample = torch.randn(shape, generator=gen)
    audio = torch.randn(batch * args.frames, AUDIO_TOKENS, config.cross_attention_dim, generator=gen)
    timesteps = list(range(951, 0, -50))[: args.steps]  # the reference's 20-step schedule, first steps

    def run(net) -> list[float]:
        times = []
        with torch.inference_mode():
            for t in timesteps:
                t0 = time.perf_counter()
                net(sample, t, audio)
                times.append(time.perf_counter() - t0)
        return times

    with torch.inference_mode():
        unet(sample[:, :, :1], timesteps[0], audio[: batch])  # warm-up (allocator, kernels) on one frame
    plain = run(unet)
    cached_net = CachedUNet(unet, CACHE_INTERVAL, CACHE_BRANCH, timesteps=timesteps)
    cached = run(cached_net)
    full_idx = [i for i in range(len(timesteps)) if i % CACHE_INTERVAL == 0]
    cached_idx = [i for i in range(len(timesteps)) if i % CACHE_INTERVAL != 0]
    # Every plain step and the cached run's full steps are full steps; the median ignores a slow first step.
    full_s = statistics.median(plain + [cached[i] for i in full_idx])
    cached_step_s = sum(cached[i] for i in cached_idx) / max(len(cached_idx), 1)
    n_full = full_steps(REFERENCE_STEPS)
    window_plain = REFERENCE_STEPS * full_s
    window_cached = n_full * full_s + (REFERENCE_STEPS - n_full) * cached_step_s
    return {
        "device": f"CPU ({platform.machine()}), {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "frames": args.frames, "steps": len(timesteps), "batch": batch,
        "build_seconds": build_s,
        "plain_step_seconds": plain, "cached_step_seconds": cached,
        "full_step_indices": full_idx, "cached_step_indices": cached_idx,
        "measured_ratio": sum(plain) / sum(cached),
        "full_step_s": full_s, "cached_step_s": cached_step_s,
        "cached_step_fraction": cached_step_s / full_s,
        "window20_plain_s": window_plain, "window20_cached_s": window_cached,
        "window20_ratio": window_plain / window_cached,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def print_unet(result: dict) -> None:
    print(f"UNet 1.5 (random weights), {result['device']}, torch {result['torch']}")
    print(f"window: {result['frames']} frames x batch {result['batch']} (CFG) at 32x32 latents, "
          f"{result['steps']} steps measured; build {result['build_seconds']:.0f} s")
    print("plain  step s: " + " ".join(f"{s:.2f}" for s in result["plain_step_seconds"]))
    print("cached step s: " + " ".join(f"{s:.2f}" for s in result["cached_step_seconds"])
          + f"  (full at indices {result['full_step_indices']})")
    print(f"measured {result['steps']}-step ratio plain/cached: {result['measured_ratio']:.2f}")
    print(f"cached step = {result['cached_step_fraction']:.3f} of a full step")
    print(f"20-step window (7 full + 13 cached): plain {result['window20_plain_s']:.1f} s, "
          f"cached {result['window20_cached_s']:.1f} s, ratio {result['window20_ratio']:.2f}")
    print(f"peak RSS {result['peak_rss_mib']:.0f} MiB")


# ------------------------------------------------------------------------------------------------ e2e


# An option the pipeline does not have yet is as good as absent when the variant sets it to its "off" value.
OFF_VALUES = {"cache_interval": 1, "overlap": False, "compile": False}


def available_overrides(overrides: dict) -> tuple[dict, list[str]]:
    """(the overrides LipSyncOptions has, the names it lacks that the variant needs switched on)."""
    from latentsync.inference.pipeline import LipSyncOptions

    fields = {f.name for f in dataclasses.fields(LipSyncOptions)}
    missing = sorted(k for k, v in overrides.items() if k not in fields and OFF_VALUES.get(k) != v)
    return {k: v for k, v in overrides.items() if k in fields}, missing


def run_variant(args: argparse.Namespace) -> None:
    """Child process: load the tiny pipeline, run one variant, write its measurements as JSON."""
    import torch

    from latentsync import load_pipeline
    from latentsync.inference.pipeline import LipSyncOptions

    overrides = json.loads(args.overrides)
    cuda = torch.cuda.is_available()
    pipe = load_pipeline("1.5", device="cuda" if cuda else "cpu", dtype="float16" if cuda else "float32",
                         checkpoints_dir=args.checkpoints)
    options = LipSyncOptions(steps=args.steps, guidance_scale=args.guidance, **overrides)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = pipe(args.video, args.audio, args.output, options)
    report = {"frames": result.num_frames, "seconds": result.seconds,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "peak_vram_mib": torch.cuda.max_memory_allocated() / MIB if cuda else None,
              # busy seconds per stage of the overlapped path (latentsync.inference.overlap.StageTimes.busy), if any
              "stage_busy": getattr(result, "stage_busy", None)}
    Path(args.report).write_text(json.dumps(report))


def bench_e2e(args: argparse.Namespace) -> list[dict]:
    import torch

    from bench_pipeline import write_inputs
    from latentsync.tiny import write_tiny_checkpoints

    cuda = torch.cuda.is_available()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        tmp = Path(tmp)
        video, audio = write_inputs(tmp, args.seconds, args.size)
        checkpoints = write_tiny_checkpoints(tmp / "ckpt", seed=0)
        for name, (overrides, needs_cuda) in E2E_VARIANTS.items():
            if needs_cuda and not cuda:
                rows.append({"variant": name, "note": "CUDA only: not measured"})
                continue
            overrides, missing = available_overrides(overrides)
            if missing:
                note = f"not measured: LipSyncOptions lacks {', '.join(missing)}"
                rows.append({"variant": name, "note": note})
                continue
            report = tmp / f"{name}.json"
            cmd = [sys.executable, __file__, "_variant", "--video", str(video), "--audio", str(audio),
                   "--output", str(tmp / f"{name}.mp4"), "--checkpoints", str(checkpoints),
                   "--steps", str(args.steps), "--guidance", str(args.guidance),
                   "--overrides", json.dumps(overrides), "--report", str(report)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"variant {name} failed:\n{proc.stderr[-4000:]}")
            rows.append({"variant": name, **json.loads(report.read_text())})
    plain = next((r for r in rows if r["variant"] == "plain" and "seconds" in r), None)
    for row in rows:
        if "seconds" in row:
            row["fps"] = row["frames"] / row["seconds"]
            row["speedup"] = plain["seconds"] / row["seconds"] if plain else None
    return rows


def e2e_table(rows: list[dict], args: argparse.Namespace) -> str:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.machine()})"
    stamp = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    lines = [f"End to end, tiny random models, {args.seconds:g} s clip at {args.size} px, "
             f"{args.steps} steps, guidance {args.guidance}; {device}; {stamp}", "",
             "| variant | frames/s | speed-up vs plain | peak RSS (MiB) | peak VRAM (MiB) |",
             "|---|---|---|---|---|"]
    for row in rows:
        if "seconds" not in row:
            lines.append(f"| {row['variant']} | {row['note']} | | | |")
            continue
        vram = f"{row['peak_vram_mib']:.0f}" if row["peak_vram_mib"] is not None else "-"
        speedup = f"{row['speedup']:.2f}" if row["speedup"] else "-"
        cells = [row["variant"], f"{row['fps']:.2f}", speedup, f"{row['peak_rss_mib']:.0f}", vram]
        lines.append("| " + " | ".join(cells) + " |")
    for row in rows:
        if row.get("stage_busy"):  # overlap: wall time against the sum of stage times, busy share per stage
            busy = row["stage_busy"]
            total = sum(busy.values())
            lines += ["", f"{row['variant']}: wall {row['seconds']:.1f} s, sum of stage times {total:.1f} s",
                      "", "| stage | busy s | busy fraction of wall |", "|---|---|---|"]
            lines += [f"| {name} | {s:.1f} | {s / row['seconds']:.0%} |" for name, s in busy.items()]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    unet = sub.add_parser("unet", help="full-size UNet: time per step plain vs cached (CPU or CUDA)")
    unet.add_argument("--frames", type=int, default=4, help="frames in the window (16 in real use)")
    unet.add_argument("--steps", type=int, default=3, help="steps measured (3 = one full + two cached)")
    unet.add_argument("--json", type=Path, help="also write the raw measurements here")
    e2e = sub.add_parser("e2e", help="tiny pipeline end to end: plain vs cached vs cached+overlapped")
    e2e.add_argument("--seconds", type=float, default=4.0)
    e2e.add_argument("--size", type=int, default=256, help="frame side in pixels")
    e2e.add_argument("--steps", type=int, default=REFERENCE_STEPS)
    e2e.add_argument("--guidance", type=float, default=1.5)
    e2e.add_argument("--write", type=Path, help="write the markdown table here (default: print only)")
    child = sub.add_parser("_variant", help=argparse.SUPPRESS)
    for name in ("--video", "--audio", "--output", "--checkpoints", "--overrides", "--report"):
        child.add_argument(name, required=True)
    child.add_argument("--steps", type=int, required=True)
    child.add_argument("--guidance", type=float, required=True)
    args = parser.parse_args(argv)

    if args.command == "unet":
        result = bench_unet(args)
        print_unet(result)
        if args.json:
            write_atomically(args.json, json.dumps(result, indent=1))
    elif args.command == "e2e":
        table = e2e_table(bench_e2e(args), args)
        print(table)
        if args.write:
            write_atomically(args.write, table)
    else:
        run_variant(args)


if __name__ == "__main__":
    main()
