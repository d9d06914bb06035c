"""What both trainers share around ``accelerate``: the accelerator, resumable state, checkpoints, logging.

Layout of a run's ``output_dir``:

* ``state/``: ``accelerator.save_state`` (model, optimiser, GradScaler, every process's RNG states) plus
  ``progress.json`` (the optimiser step, which fixes the data position: samples are index-seeded); replaced as a whole
  (written as ``state.tmp`` then renamed), so a crash mid-save leaves the previous state;
* ``checkpoints/checkpoint-<step>.pt``: the official format ``{"global_step", "state_dict"}``, written atomically;
* ``config.yaml``: the resolved config, written when a run starts; ``--resume`` compares the config against it (a
  change is an error naming the changed keys, unless allowed; :data:`RESUME_MAY_CHANGE` may always change);
* ``train.log``: one plain line per log step (also printed); TensorBoard events in ``logs/`` when it is installed;
* ``losses.csv`` (``step,loss`` for every optimiser step) and ``loss.png``, its plot, redrawn at each checkpoint;
* ``skipped_clips.txt``: each clip the data loaders skipped (unreadable, no audio, too short), with the reason;
* ``whisper_features/``: the UNet trainer's cache of each clip's Whisper features (reused by later epochs and runs);
* ``validation/step-<step>.mp4``: the UNet trainer's validation render at that step (its Sync-C / Sync-D are in
  ``train.log``, TensorBoard and :attr:`TrainResult.validations`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from latentsync.errors import InputError

STATE_DIR = "state"
PROGRESS_FILE = "progress.json"
CHECKPOINT_DIR = "checkpoints"
LOG_FILE = "train.log"
VALIDATION_DIR = "validation"
CONFIG_FILE = "config.yaml"
LOSSES_FILE = "losses.csv"
LOSS_PLOT_FILE = "loss.png"
FEATURE_CACHE_DIR = "whisper_features"
SKIPPED_CLIPS_FILE = "skipped_clips.txt"
# Keys a resumed run may change without --allow-config-change: how long it runs and how often it reports, not what
# it trains (the run's length is what a resume usually extends).
RESUME_MAY_CHANGE = ("train.max_train_steps", "train.save_every", "train.validate_every", "train.log_every",
                     "data.num_workers")


@dataclass
class TrainResult:
    """What a run did: the loss of every optimiser step it ran (mean over processes and accumulation)."""

    final_step: int
    losses: dict[int, float] = field(default_factory=dict)
    checkpoints: list[Path] = field(default_factory=list)
    validations: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> scores (main process only)


class StepBookkeeping:
    """What ends every optimiser step, the same for both trainers: reduce the micro-batch losses over processes and
    accumulation, count the step, advance the progress bar, log every ``log_every`` steps, and save the resumable
    state and an official checkpoint every ``save_every`` steps (both also at the last step).

    The loop calls :meth:`record` after each micro-batch; it returns True when that micro-batch completed an
    optimiser step (``step`` is then the new count). :meth:`close` ends the run and returns the filled ``result``.
    """

    def __init__(self, accelerator, run, log: logging.Logger, result: TrainResult, desc: str) -> None:
        from tqdm.auto import tqdm

        self.accelerator, self.run, self.log, self.result = accelerator, run, log, result
        self.step = result.final_step
        self._micro_losses: list[float] = []
        self._progress = tqdm(total=run.max_train_steps, initial=self.step,
                              disable=not accelerator.is_main_process, desc=desc)

    @property
    def done(self) -> bool:
        return self.step >= self.run.max_train_steps

    def record(self, loss: torch.Tensor, model: torch.nn.Module,
               terms: dict[str, torch.Tensor] | None = None) -> bool:
        """Book one micro-batch's ``loss``; on a completed optimiser step also log it (with the unweighted loss
        ``terms`` of this process's last micro-batch, if given) and save ``model`` when due."""
        accelerator, run = self.accelerator, self.run
        self._micro_losses.append(accelerator.reduce(loss.detach().float(), "mean").item())
        if not accelerator.sync_gradients:
            return False
        self.step += 1
        step = self.step
        self.result.losses[step] = sum(self._micro_losses) / len(self._micro_losses)
        self._micro_losses = []
        self._progress.update(1)
        if accelerator.is_main_process:
            append_loss(run.output_dir, step, self.result.losses[step])
        last = step == run.max_train_steps
        if step % run.log_every == 0 or last:
            terms = {k: v.item() for k, v in (terms or {}).items()}
            parts = " (" + " ".join(f"{k} {v:.4f}" for k, v in terms.items()) + ")" if terms else ""
            self.log.info(f"step {step} loss {self.result.losses[step]:.5f}{parts}")
            accelerator.log({"loss": self.result.losses[step], **terms}, step=step)
        if step % run.save_every == 0 or last:
            save_state(accelerator, run.output_dir, step)
            if accelerator.is_main_process:
                path = save_official_checkpoint(accelerator.unwrap_model(model).state_dict(), run.output_dir, step)
                self.result.checkpoints.append(path)
                self.log.info(f"saved {path}")
                write_loss_plot(run.output_dir)
        return True

    @property
    def validation_due(self) -> bool:
        """Whether the step just counted is a validation step (on the main process, which validates)."""
        every = self.run.validate_every
        return bool(every) and self.step % every == 0 and self.accelerator.is_main_process

    def record_validation(self, scores: dict[str, float]) -> None:
        self.result.validations[self.step] = scores
        self.accelerator.log(scores, step=self.step)

    def close(self) -> TrainResult:
        self._progress.close()
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        self.result.final_step = self.step
        return self.result


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between two config mappings (present in one only counts), sorted."""
    old, new = flatten(saved), flatten(current)
    return sorted(key for key in set(old) | set(new) if old.get(key, KeyError) != new.get(key, KeyError))


def check_run_config(output_dir: str | Path, config: dict, allow_change: bool = False) -> list[str]:
    """``--resume``: compare the resolved ``config`` with the run's ``config.yaml``; returns the changed keys (besides
    :data:`RESUME_MAY_CHANGE`). :class:`~latentsync.errors.InputError` naming them unless ``allow_change``; a run
    without a ``config.yaml`` (saved by an older version) is not checked."""
    import yaml

    path = Path(output_dir) / CONFIG_FILE
    if not path.is_file():
        return []
    saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    changed = [key for key in changed_keys(saved, config) if key not in RESUME_MAY_CHANGE]
    if changed and not allow_change:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        raise InputError(f"--resume: the config differs from the one this run started with ({path}) in: {shown}; "
                         f"restore it, or pass --allow-config-change to continue with the new values")
    return changed


def write_run_config(output_dir: str | Path, config: dict) -> Path:
    """``output_dir/config.yaml`` = the resolved config (written atomically; call from the main process)."""
    import yaml

    path = Path(output_dir) / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def begin_run_files(accelerator, output_dir: str | Path, config: dict, resume: bool, changed: list[str], log) -> None:
    """At the start of a run (the folder exists): a fresh run clears the previous run's loss history; every run writes
    its resolved config to ``config.yaml`` (a resume with allowed changes logs them)."""
    if accelerator.is_main_process:
        if not resume:
            for name in (LOSSES_FILE, LOSS_PLOT_FILE, SKIPPED_CLIPS_FILE):
                (Path(output_dir) / name).unlink(missing_ok=True)
        path = write_run_config(output_dir, config)
        if changed:
            log.warning(f"--allow-config-change: continuing with changed {', '.join(changed)}")
        log.info(f"resolved config written to {path}")
    accelerator.wait_for_everyone()


def append_loss(output_dir: str | Path, step: int, loss: float) -> None:
    """One ``step,loss`` line in ``losses.csv`` (a resumed run appends; a step run twice keeps its last value)."""
    path = Path(output_dir) / LOSSES_FILE
    new = not path.is_file()
    with path.open("a", encoding="utf-8") as file:
        if new:
            file.write("step,loss\n")
        file.write(f"{step},{loss:.6g}\n")


def read_losses(output_dir: str | Path) -> dict[int, float]:
    """``losses.csv`` as {step: loss}, the last line of a step winning (steps re-run after a resume)."""
    path = Path(output_dir) / LOSSES_FILE
    if not path.is_file():
        return {}
    losses = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        step, _, loss = line.partition(",")
        losses[int(step)] = float(loss)
    return dict(sorted(losses.items()))


def write_loss_plot(output_dir: str | Path) -> Path | None:
    """``loss.png``: the run's loss per optimiser step (from ``losses.csv``); None when there is nothing to plot."""
    from latentsync.training.plot import write_line_plot

    losses = read_losses(output_dir)
    if not losses:
        return None
    return write_line_plot(Path(output_dir) / LOSS_PLOT_FILE, list(losses), list(losses.values()),
                           title="training loss", x_label="step")


def make_accelerator(output_dir: str | Path, mixed_precision: str, gradient_accumulation_steps: int):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    output_dir = Path(output_dir)
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with="tensorboard" if tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return accelerator


def make_optimizer(params, config, num_processes: int = 1) -> torch.optim.Optimizer:
    """The optimiser of an :class:`~latentsync.training.config.OptimizerConfig` (AdamW, or plain SGD); with
    ``scale_lr`` its learning rate is ``lr x num_processes`` (the reference)."""
    lr = config.lr * num_processes if config.scale_lr else config.lr
    if config.name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def make_lr_scheduler(optimizer, config, max_train_steps: int, num_processes: int = 1):
    """The learning-rate schedule of an :class:`~latentsync.training.config.OptimizerConfig`, counted in optimiser
    steps (diffusers' ``get_scheduler``, as the reference).

    Meant for ``accelerator.prepare``, which saves it with the training state and, when the batch is not split
    across processes, steps it once per process at every optimiser step: the step counts are multiplied by the
    number of processes here so that the schedule is the same in optimiser steps on any number of processes.
    """
    from diffusers.optimization import get_scheduler

    return get_scheduler(config.lr_scheduler, optimizer=optimizer,
                         num_warmup_steps=config.lr_warmup_steps * num_processes,
                         num_training_steps=max_train_steps * num_processes)


def make_logger(output_dir: str | Path, is_main: bool, name: str) -> logging.Logger:
    """Plain-text log to ``train.log`` and stderr, from the main process only."""
    # One logger per run folder (a process may run several trainings, e.g. tests), each writing its own file.
    logger = logging.getLogger(f"latentsync.training.{name}:{Path(output_dir).resolve()}")
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    if is_main and not logger.handlers:
        formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        for handler in (logging.FileHandler(Path(output_dir) / LOG_FILE, encoding="utf-8"), logging.StreamHandler()):
            handler.setFormatter(formatter)
            logger.addHandler(handler)
    return logger


def save_state(accelerator, output_dir: str | Path, step: int) -> Path:
    """Accelerate's full state plus the step, replacing the previous state only once complete."""
    output_dir = Path(output_dir)
    final, tmp, old = output_dir / STATE_DIR, output_dir / f"{STATE_DIR}.tmp", output_dir / f"{STATE_DIR}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its RNG state; the main one the rest
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / PROGRESS_FILE).write_text(json.dumps({"step": step}))
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def check_saved_state(output_dir: str | Path) -> None:
    """:class:`~latentsync.errors.InputError` unless ``output_dir`` holds a state :func:`save_state` wrote
    (``--resume`` is checked before any model loads)."""
    final = Path(output_dir) / STATE_DIR
    if not (final / PROGRESS_FILE).is_file():
        raise InputError(f"--resume: no saved training state in {final} (expected {PROGRESS_FILE} there); "
                         f"run without --resume to start afresh")


def load_state(accelerator, output_dir: str | Path) -> int:
    """Restore the state saved by :func:`save_state`; returns its optimiser step."""
    check_saved_state(output_dir)
    final = Path(output_dir) / STATE_DIR
    accelerator.load_state(str(final))
    return int(json.loads((final / PROGRESS_FILE).read_text())["step"])


def save_official_checkpoint(state_dict: dict[str, torch.Tensor], output_dir: str | Path, step: int) -> Path:
    """``checkpoints/checkpoint-<step>.pt`` = ``{"global_step", "state_dict"}``, written to a temporary name and
    renamed (call from the main process)."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-{step}.pt"
    tmp = folder / f".checkpoint-{step}.pt.tmp"
    torch.save({"global_step": step, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}, tmp)
    os.replace(tmp, path)
    return path


def data_position(step: int, accumulation: int, batches_per_epoch: int) -> tuple[int, int]:
    """(epoch, batches to skip in it) after ``step`` optimiser steps: the data position a resume continues from."""
    if batches_per_epoch < 1:
        raise ValueError("the training set gives no full batch per process: use more clips or a smaller batch_size")
    return divmod(step * accumulation, batches_per_epoch)


def epochs(loader, dataset, start_step: int, accumulation: int, accelerator):
    """Batches from the data position of ``start_step`` onwards, epoch after epoch (sets ``dataset.epoch``)."""
    epoch, skip = data_position(start_step, accumulation, len(loader))
    while True:
        dataset.epoch = epoch
        yield from (accelerator.skip_first_batches(loader, skip) if skip else loader)
        epoch, skip = epoch + 1, 0
