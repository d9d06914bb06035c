"""Read and write LatentSync UNet weights: the official ``latentsync_unet.pt`` format and flat safetensors.

The official file is ``torch.save({"global_step": int, "state_dict": unet.state_dict()})``. Loading is
strict (every name and shape must match the config) and builds the net on the meta device first, so the
1.27 B-parameter model exists in memory once, in the requested dtype on the requested device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from latentsync.errors import CheckpointError
from latentsync.models.unet import LatentSyncUNet
from latentsync.models.unet_config import UNetConfig

STATE_DICT_KEY = "state_dict"
GLOBAL_STEP_KEY = "global_step"
# LatentSync 1.0 named the audio cross-attention differently (same maths: pre-LN attention with a residual).
V10_KEY_RENAMES = (("audio_cross_attn.attn.", "attn2."), ("audio_cross_attn.norm.", "norm2."))
MOTION_MODULES = "motion_modules."  # the name part of every temporal (motion) module tensor
# How many offending names an error message lists per kind.
MAX_NAMES_IN_ERROR = 5


def read_unet_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The raw tensors of a ``.pt`` (official dict or flat) or ``.safetensors`` file, with 1.0 names renamed.

    ``.pt`` files are memory-mapped where possible, so reading does not copy the weights into RAM.
    """
    return read_unet_file(path)[0]


def read_unet_file(path: str | Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """(tensors, ``global_step``) of a UNet file, as :func:`read_unet_state_dict`; the step is None when the file
    does not record one (flat state dicts, safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"UNet checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = _torch_load(path)
    except Exception as err:  # torch / pickle / safetensors each use their own types for a bad file
        raise CheckpointError(f"cannot read UNet checkpoint {path}: {err}") from err
    global_step = None
    if isinstance(state, dict) and isinstance(state.get(STATE_DICT_KEY), dict):
        step = state.get(GLOBAL_STEP_KEY)
        global_step = int(step) if isinstance(step, (int, torch.Tensor)) else None
        state = state[STATE_DICT_KEY]
    is_tensor_dict = isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    if not is_tensor_dict or not state:
        keys = sorted(state)[:MAX_NAMES_IN_ERROR] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a UNet checkpoint: expected a dict of tensors or a dict with "
                              f"'{STATE_DICT_KEY}', found {keys}")
    return {_rename_v10(name): tensor for name, tensor in state.items()}, global_step


def load_unet_checkpoint(path: str | Path, config: UNetConfig, device: torch.device | str = "cpu",
                         dtype: torch.dtype = torch.float32) -> LatentSyncUNet:
    """Build the UNet for ``config`` and fill it from ``path`` strictly; returns it in eval mode.

    Floating-point tensors (parameters and the ``pos_encoder.pe`` buffers) are cast to ``dtype``. Raises
    :class:`~latentsync.errors.CheckpointError` when the file is unreadable or its names/shapes differ from
    the config's, listing the first offending names. Same-dtype CPU loads of a ``.pt`` keep the tensors
    memory-mapped from the file (no copy).
    """
    state = read_unet_state_dict(path)
    with torch.device("meta"):
        model = LatentSyncUNet(config)
    check_unet_state_dict(state, model.state_dict(), source=str(path))
    device = torch.device(device)
    converted = {}
    for name in list(state):  # pop as we go: the source tensors are freed one by one (one copy at a time)
        tensor = state.pop(name)
        target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
        converted[name] = tensor.to(device=device, dtype=target_dtype)
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()


@dataclass(frozen=True)
class WeightsLoadReport:
    """What :func:`load_unet_weights_` did with a file."""

    loaded: int  # tensors copied from the file into the net
    dropped: dict[str, int]  # motion-module group (e.g. "down_blocks.0.motion_modules") -> the file's tensors the
    #                          net has no module for, left out
    kept: tuple[str, ...]  # the net's motion-module tensors the file lacks: they keep their initialisation
    global_step: int | None  # the file's recorded step (None: not recorded)

    @property
    def dropped_count(self) -> int:
        return sum(self.dropped.values())

    def describe(self) -> str:
        """One line for a training log."""
        parts = [f"{self.loaded} tensors loaded"]
        if self.dropped:
            groups = ", ".join(f"{group} ({n})" for group, n in self.dropped.items())
            parts.append(f"{self.dropped_count} motion-module tensors dropped (the net has no such modules): {groups}")
        if self.kept:
            parts.append(f"{len(self.kept)} motion-module tensors keep their identity initialisation (not in the file)")
        step = "not recorded" if self.global_step is None else str(self.global_step)
        parts.append(f"the file's global_step: {step}")
        return "; ".join(parts)


def load_unet_weights_(model: LatentSyncUNet, path: str | Path, *, allow_missing_motion_modules: bool = False,
                       drop_absent_motion_modules: bool = False) -> WeightsLoadReport:
    """Fill an existing (training) ``model`` in place from ``path``; returns what was loaded, dropped and kept.

    Strict, with two exceptions, each asked for by its flag:

    * ``allow_missing_motion_modules``: a file without (some of) the net's motion modules (a stage-1 file into a
      stage-2 net) leaves those names at their initialisation (zero ``proj_out``, i.e. identity modules), which is
      the reference's ``strict=False`` load;
    * ``drop_absent_motion_modules``: a file with motion modules the net lacks (the released UNet into a stage-1 net,
      or into the efficient stage's decoder-only net) has exactly those modules' tensors left out, counted per
      group in the report; a motion module the net has must still match tensor for tensor.

    Any other missing, unexpected or mis-shaped name (another width, another block layout) raises
    :class:`~latentsync.errors.CheckpointError`.
    """
    state, global_step = read_unet_file(path)
    expected = model.state_dict()
    kept = [name for name in expected if name not in state and MOTION_MODULES in name]
    dropped: dict[str, int] = {}
    if drop_absent_motion_modules:
        # Whole modules only: a motion module the net has (same prefix) must match tensor for tensor.
        present = {_motion_module(name) for name in expected} - {None}
        for name in [name for name in state if name not in expected]:
            module = _motion_module(name)
            if module is None or module in present:
                continue
            del state[name]
            group = module.rpartition(".")[0]  # "up_blocks.1.motion_modules"
            dropped[group] = dropped.get(group, 0) + 1
    if allow_missing_motion_modules and kept:
        expected = {name: t for name, t in expected.items() if name not in kept}
    else:
        kept = []
    check_unet_state_dict(state, expected, source=str(path))
    model.load_state_dict(state, strict=not kept)
    return WeightsLoadReport(loaded=len(state), dropped=dropped, kept=tuple(kept), global_step=global_step)


def check_unet_state_dict(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str
                          ) -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped entries (first few of each)."""
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    misshaped = [f"{name} {tuple(state[name].shape)} (config expects {tuple(t.shape)})"
                 for name, t in expected.items() if name in state and state[name].shape != t.shape]
    if not (missing or unexpected or misshaped):
        return
    kinds = (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
    problems = [f"{len(items)} {kind}: {_first_names(items)}" for kind, items in kinds if items]
    hint = ""
    if missing and all(MOTION_MODULES in name for name in missing):
        hint = (" (a LatentSync 1.0 checkpoint has no motion modules: use a config with "
                "use_motion_module=False)")
    elif unexpected and all(MOTION_MODULES in name for name in unexpected):
        hint = (" (the file has motion modules this config lacks: a released 1.5 / 1.6 UNet for a net without "
                "them; training's init_unet drops them)")
    raise CheckpointError(f"UNet checkpoint {source} does not match the UNet config: "
                          f"{'; '.join(problems)}{hint}")


def save_unet_checkpoint(model: torch.nn.Module, path: str | Path, global_step: int = 0) -> Path:
    """Write ``model.state_dict()`` in the official format (``.pt``) or as flat ``.safetensors``."""
    path = Path(path)
    state = model.state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({name: t.contiguous() for name, t in state.items()}, str(path))
    else:
        torch.save({GLOBAL_STEP_KEY: global_step, STATE_DICT_KEY: state}, path)
    return path


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        # Files written with the legacy (non-zip) serialisation cannot be memory-mapped.
        return torch.load(path, map_location="cpu", weights_only=True)


def _motion_module(name: str) -> str | None:
    """The motion module a tensor belongs to ("up_blocks.1.motion_modules.2"), or None for other tensors."""
    head, found, tail = name.partition(MOTION_MODULES)
    index = tail.split(".", 1)[0]
    return f"{head}{MOTION_MODULES}{index}" if found and index.isdigit() else None


def _first_names(items: list[str]) -> str:
    more = ", ..." if len(items) > MAX_NAMES_IN_ERROR else ""
    return ", ".join(items[:MAX_NAMES_IN_ERROR]) + more


def _rename_v10(name: str) -> str:
    for old, new in V10_KEY_RENAMES:
        name = name.replace(old, new)
    return name
