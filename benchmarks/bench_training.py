"""Seconds per optimiser step and peak RSS of the tiny training configs on CPU; the full configs' GPU weight memory.

    python benchmarks/bench_training.py [--steps 3] [--out benchmarks/results/training_cpu.json]
    python benchmarks/bench_training.py --memory-estimate [--config configs/unet/stage2.yaml]

Builds the tiny setup of ``latentsync.training.tiny`` in a temporary folder, then runs the tiny StableSyncNet
(batch 8), UNet stage 1 (reconstruction only) and stage 2 (all four losses), each in a fresh process so the peak RSS
is its own. The first step (warm-up, clip decoding, Whisper features) is excluded from s/step.

``--memory-estimate`` needs no GPU and no weights: it counts the parameters of every network a UNet config trains
with (on the meta device) and prints the GPU memory their weights, gradients and AdamW states take as the trainer holds
them (UNet float32 with float32 gradients and two AdamW moments for the trainable part; the frozen VAE,
StableSyncNet and VideoMAE ViT-g in the mixed-precision dtype; LPIPS's VGG16 float32). Activations come on top and
depend on the batch size and gradient checkpointing: only a GPU run measures them.
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


BYTES = {"no": 4, "fp16": 2, "bf16": 2}  # bytes per frozen-network parameter per train.mixed_precision
FP32 = 4
ADAMW_MOMENTS = 2  # exp_avg and exp_avg_sq, float32, per trainable parameter


def memory_estimate(config_path: Path) -> list[tuple[str, int, float]]:
    """(what, parameters, GiB) rows for the UNet config at ``config_path`` (see the module docstring)."""
    import torch

    from latentsync.models.lpips import vgg16_features
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig
    from latentsync.models.videomae import VideoMAEConfig, VisionTransformer
    from latentsync.training.config import (
        count_trainable_parameters,
        load_unet_train_config,
        read_syncnet_model_section,
    )

    config = load_unet_train_config(config_path)
    frozen_bytes = BYTES[config.train.mixed_precision]
    trainable, total = count_trainable_parameters(config)
    gib = 1024**3
    rows = [("UNet weights (float32)", total, total * FP32 / gib),
            ("UNet gradients (float32, trainable)", trainable, trainable * FP32 / gib),
            ("AdamW moments (2 x float32, trainable)", trainable, trainable * FP32 * ADAMW_MOMENTS / gib)]

    def count(build) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in build().parameters())

    from diffusers import AutoencoderKL

    # sd-vae-ft-mse's architecture: diffusers' AutoencoderKL with SD's block widths.
    vae = count(lambda: AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                      down_block_types=("DownEncoderBlock2D",) * 4,
                                      up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4))
    dtype = f"{config.train.mixed_precision}" if frozen_bytes == 2 else "float32"
    rows.append((f"VAE (frozen, {dtype})", vae, vae * frozen_bytes / gib))
    loss = config.loss
    if loss.use_syncnet and loss.sync_loss_weight:
        section = read_syncnet_model_section(REPO_ROOT / config.syncnet_config
                                             if not Path(config.syncnet_config).is_absolute() else config.syncnet_config)
        n = count(lambda: StableSyncNet(StableSyncNetConfig.from_dict(section)))
        rows.append((f"StableSyncNet (frozen, {dtype})", n, n * frozen_bytes / gib))
    if loss.pixel_space_supervise and loss.trepa_loss_weight:
        n = count(lambda: VisionTransformer(VideoMAEConfig(**config.videomae_model)))
        rows.append((f"VideoMAE-v2 ViT-g (frozen, {dtype})", n, n * frozen_bytes / gib))
    if loss.pixel_space_supervise and loss.perceptual_loss_weight:
        n = count(vgg16_features)
        rows.append(("LPIPS VGG16 (frozen, float32)", n, n * FP32 / gib))
    return rows


def print_memory_estimate(config_path: Path) -> None:
    rows = memory_estimate(config_path)
    print(f"GPU memory of the weights and optimiser state for {config_path} (activations not included):")
    for what, n, size in rows:
        print(f"  {what:<42} {n:>15,} params {size:8.2f} GiB")
    print(f"  {'total':<42} {'':>15}        {sum(r[2] for r in rows):8.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_cpu.json"))
    parser.add_argument("--memory-estimate", action="store_true",
                        help="print the GPU memory of a UNet config's weights and optimiser state (no GPU needed)")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "unet" / "stage2.yaml",
                        help="the UNet config --memory-estimate reads")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_estimate:
        print_memory_estimate(args.config)
        return
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
