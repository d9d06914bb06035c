"""Read and write LatentSync UNet weights: the official ``latentsync_unet.pt`` format and flat safetensors.

The official file is ``torch.save({"global_step": int, "state_dict": unet.state_dict()})``. Loading is
strict (every name and shape must match the config) and builds the net on the meta device first, so the
1.27 B-parameter model exists in memory once, in the requested dtype on the requested device.
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentsync.errors import CheckpointError
from latentsync.models.unet import LatentSyncUNet
from latentsync.models.unet_config import UNetConfig

STATE_DICT_KEY = "state_dict"
GLOBAL_STEP_KEY = "global_step"
# LatentSync 1.0 named the audio cross-attention differently (same maths: pre-LN attention with a residual).
V10_KEY_RENAMES = (("audio_cross_attn.attn.", "attn2."), ("audio_cross_attn.norm.", "norm2."))
# How many offending names an error message lists per kind.
MAX_NAMES_IN_ERROR = 5


def read_unet_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The raw tensors of a ``.pt`` (official dict or flat) or ``.safetensors`` file, with 1.0 names renamed.

    ``.pt`` files are memory-mapped where possible, so reading does not copy the weights into RAM.
    """
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
    if isinstance(state, dict) and isinstance(state.get(STATE_DICT_KEY), dict):
        state = state[STATE_DICT_KEY]
    is_tensor_dict = isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    if not is_tensor_dict or not state:
        keys = sorted(state)[:MAX_NAMES_IN_ERROR] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a UNet checkpoint: expected a dict of tensors or a dict with "
                              f"'{STATE_DICT_KEY}', found {keys}")
    return {_rename_v10(name): tensor for name, tensor in state.items()}


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


def load_unet_weights_(model: LatentSyncUNet, path: str | Path, *, allow_missing_motion_modules: bool = False
                       ) -> list[str]:
    """Fill an existing (training) ``model`` in place from ``path``; returns the names the file did not provide.

    Strict, except that with ``allow_missing_motion_modules`` a file without motion modules (stage 1) may fill a
    net with them (stage 2): those names keep their initialisation (zero ``proj_out``, i.e. identity modules),
    which is the reference's ``strict=False`` load; any other missing, unexpected or mis-shaped name raises
    :class:`~latentsync.errors.CheckpointError`.
    """
    state = read_unet_state_dict(path)
    expected = model.state_dict()
    kept = [name for name in expected if name not in state]
    if allow_missing_motion_modules and kept and all("motion_modules." in name for name in kept):
        expected = {name: t for name, t in expected.items() if name in state}
    else:
        kept = []
    check_unet_state_dict(state, expected, source=str(path))
    model.load_state_dict(state, strict=not kept)
    return kept


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
    if missing and all("motion_modules." in name for name in missing):
        hint = (" (a LatentSync 1.0 checkpoint has no motion modules: use a config with "
                "use_motion_module=False)")
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


def _first_names(items: list[str]) -> str:
    more = ", ..." if len(items) > MAX_NAMES_IN_ERROR else ""
    return ", ".join(items[:MAX_NAMES_IN_ERROR]) + more


def _rename_v10(name: str) -> str:
    for old, new in V10_KEY_RENAMES:
        name = name.replace(old, new)
    return name
