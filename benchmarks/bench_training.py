"""Seconds per optimiser step and peak RSS of the tiny training configs on CPU.

    python benchmarks/bench_training.py [--steps 3] [--out benchmarks/results/training_cpu.json]

Builds the tiny setup of ``latentsync.training.tiny`` in a temporary folder, then runs the tiny StableSyncNet
(batch 8), UNet stage 1 (reconstruction only) and stage 2 (all four losses), each in a fresh process so the peak RSS
is its own. The first step (warm-up, clip decoding, Whisper features) is excluded from s/step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: import the package without installing it
    sys.path.insert(0, str(REPO_ROOT))

CASES = ("syncnet", "unet_stage1", "unet_stage2")


def run_case(case: str, root: Path, steps: int) -> dict:
    """In this process: train ``steps`` steps and report the timings (called through a subprocess)."""
    from latentsync.training.config import load_syncnet_train_config, unet_config_from_dict
    from latentsync.training.tiny import tiny_unet_train_config

    if case == "syncnet":
        from latentsync.training import syncnet_trainer as trainer

        config = load_syncnet_train_config(root / "syncnet.yaml")
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, max_train_steps=steps, output_dir=str(root / case / str(steps))))
        run = trainer.train_syncnet
    else:
        from latentsync.training import unet_trainer as trainer

        overrides = {"train.max_train_steps": steps}
        if case == "unet_stage1":
            overrides.update({"loss.pixel_space_supervise": False, "loss.use_syncnet": False, "trainable_modules": []})
        config = unet_config_from_dict(tiny_unet_train_config(root / "checkpoints", root / "data" / "fileslist.txt",
                                                              root / case / str(steps), root / "syncnet.yaml",
                                                              **overrides))
        run = trainer.train_unet
    started = time.perf_counter()
    result = run(config)
    total = time.perf_counter() - started
    return {"case": case, "steps": steps, "seconds_total": round(total, 2),
            "losses": {str(k): round(v, 5) for k, v in result.losses.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_cpu.json"))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process: one case, print one JSON line
        run_case(args.case, args.root, 1)  # warm-up: clip decoding, Whisper features, first-call costs
        # The difference of two warm runs (1 and steps + 1 steps) excludes start-up: seconds per optimiser step.
        one = run_case(args.case, args.root, 1)["seconds_total"]
        more = run_case(args.case, args.root, args.steps + 1)["seconds_total"]
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"case": args.case, "seconds_per_step": round((more - one) / args.steps, 2),
                          "peak_rss_mib": round(peak_kib / 1024)}))
        return
    from latentsync.tiny import write_tiny_checkpoints
    from latentsync.training.tiny import (
        TINY_TRAIN_RESOLUTION,
        write_synthetic_dataset,
        write_tiny_auxiliary,
        write_tiny_syncnet_yaml,
    )

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        write_tiny_auxiliary(write_tiny_checkpoints(root / "checkpoints", seed=0))
        fileslist = write_synthetic_dataset(root / "data", 4, resolution=TINY_TRAIN_RESOLUTION)
        write_tiny_syncnet_yaml(root / "syncnet.yaml", fileslist, root / "syncnet")
        for case in CASES:
            proc = subprocess.run([sys.executable, __file__, "--case", case, "--root", str(root), "--steps",
                                   str(args.steps)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{case} failed: {proc.stderr[-2000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(results[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": "cpu", "results": results}, indent=1))


if __name__ == "__main__":
    main()
