"""Held-out accuracy of the tiny StableSyncNet as it trains, for several seeds: the learning test's run, longer.

    python benchmarks/bench_syncnet_learning.py [--steps 1500] [--every 300] [--seeds 42 7] [--val-samples 512]
                                                [--train-clips 4] [--out benchmarks/results/syncnet_learning.json]

The setup of tests/test_training_syncnet_learns.py (``latentsync.training.tiny.syncnet_learning_config``: 4 constructed
9.6 s clips, 2 held-out ones, the plain tiny net, batch 16, AdamW lr 1e-4), trained by ``train_syncnet`` for
``--steps`` steps per ``train.seed`` and scored on ``--val-samples`` held-out windows every ``--every`` steps
(accuracy = cos > 0.5, as the reference). accelerate runs it on CUDA when there is a GPU; ~0.2 s per step on 2 CPU
cores. ``--train-clips N`` trains on N constructed clips instead of 4 (same held-out clips). Prints one row per seed
and writes the table as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: import the package without installing it
    sys.path.insert(0, str(REPO_ROOT))


def keep_clips_decoded(n_clips: int) -> None:
    """The trainer keeps CLIP_CACHE_SIZE (4) decoded clips per process: the learning run's 4 training clips fill it,
    each validation's 2 held-out clips evict some, and with more training clips every batch would decode clips again.
    Widen the cache to hold them all (in this process, the one the trainer's data loader reads in:
    ``data.num_workers`` is 0): the windows drawn are the same, only the decoding is saved."""
    from latentsync.training import data
    from latentsync.training.tiny import SYNC_LEARNING_VAL_CLIPS

    size = n_clips + SYNC_LEARNING_VAL_CLIPS  # validation reads the held-out clips through the same cache
    if size > data.CLIP_CACHE_SIZE:
        data.read_clip = functools.lru_cache(maxsize=size)(data.read_clip.__wrapped__)
        data.clip_mel = functools.lru_cache(maxsize=size)(data.clip_mel.__wrapped__)


def run_seed(seed: int, steps: int, every: int, val_samples: int, train_clips: int) -> dict:
    from latentsync.training.syncnet_trainer import train_syncnet
    from latentsync.training.tiny import syncnet_learning_config

    keep_clips_decoded(train_clips)
    with tempfile.TemporaryDirectory(prefix="bench-syncnet-learning-") as root:
        config = syncnet_learning_config(root, max_train_steps=steps, validate_every=every, val_samples=val_samples,
                                         seed=seed, log_every=every, train_clips=train_clips)
        started = time.perf_counter()
        result = train_syncnet(config)
        seconds = time.perf_counter() - started
    return {"seed": seed, "train_clips": train_clips, "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / steps, 3),
            "accuracy": {str(step): round(scores["val_accuracy"], 3) for step, scores in result.validations.items()},
            "loss": {str(step): round(scores["val_loss"], 4) for step, scores in result.validations.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=300, help="validate every N steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7], help="train.seed values (42: the test's)")
    parser.add_argument("--val-samples", type=int, default=512, help="held-out windows per validation")
    parser.add_argument("--train-clips", type=int, default=4, help="constructed training clips (the test's: 4)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "syncnet_learning.json")
    args = parser.parse_args()
    if args.steps < 1 or not 1 <= args.every <= args.steps:
        parser.error("need --steps >= 1 and 1 <= --every <= --steps")
    if args.train_clips < 1:
        parser.error("need --train-clips >= 1")

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for seed in args.seeds:
        row = run_seed(seed, args.steps, args.every, args.val_samples, args.train_clips)
        rows.append(row)
        accuracies = "  ".join(f"{step}: {acc:.3f}" for step, acc in row["accuracy"].items())
        print(f"train.seed {seed}: held-out accuracy after {accuracies}  ({row['seconds_per_step']} s/step)",
              flush=True)
    report = {"device": device, "steps": args.steps, "every": args.every, "val_samples": args.val_samples,
              "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
