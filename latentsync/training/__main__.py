"""``python -m latentsync.training syncnet|unet CONFIG [--resume [--allow-config-change]]`` (or under
``accelerate launch``).

Exit codes: 0 done, 1 failure (a missing or mismatched checkpoint: one line; anything else: its traceback), 2 bad
arguments, config or inputs (file lists, clips, output folder, --resume without a saved state or with a changed
config), before any model loads; also a training set whose clips mostly fail to read (during the run).
"""

from __future__ import annotations

import argparse
import sys

from latentsync.cli_common import EXIT_FAILURE, EXIT_INPUT, EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m latentsync.training",
        description="Train StableSyncNet or the LatentSync UNet from a YAML config (see configs/). Multi-GPU / "
                    "multi-node: accelerate launch [--num_processes N ...] -m latentsync.training ...",
    )
    parser.add_argument("what", choices=("syncnet", "unet"), help="which network to train")
    parser.add_argument("config", help="YAML config, e.g. configs/unet/stage2.yaml")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <train.output_dir>/state (model, optimiser, scaler, RNG, data position)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: continue although the config differs from <train.output_dir>/config.yaml "
                             "(without it, a changed key other than the run's length and reporting intervals is an "
                             "error naming it)")
    parser.add_argument("--max-steps", type=int, default=None, help="override train.max_train_steps")
    return parser


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    args = build_parser().parse_args(argv)
    from latentsync.training import config as cfg

    try:
        config = (cfg.load_syncnet_train_config if args.what == "syncnet" else cfg.load_unet_train_config)(args.config)
        if args.max_steps is not None:
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_train_steps=args.max_steps))
    except (OSError, ValueError, TypeError) as err:  # missing file, bad YAML or values
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    from latentsync.errors import CheckpointError, InputError

    try:
        if args.what == "syncnet":
            from latentsync.training.syncnet_trainer import train_syncnet

            result = train_syncnet(config, resume=args.resume, allow_config_change=args.allow_config_change)
        else:
            from latentsync.training.unet_trainer import train_unet

            result = train_unet(config, resume=args.resume, allow_config_change=args.allow_config_change)
    except InputError as err:  # the run's inputs (file lists, clips, folders, --resume): checked before any model loads
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except CheckpointError as err:  # a model file missing or of another architecture; other failures keep their traceback
        print(f"failed: {err}", file=sys.stderr)
        return EXIT_FAILURE
    last = result.losses.get(result.final_step)
    print(f"done: step {result.final_step}" + (f", loss {last:.5f}" if last is not None else ""))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
