"""Read a weights file as the official tools wrote it: a torch pickle (read with ``weights_only=True``: no pickled
code runs) or a safetensors file, with one clear error for a file that cannot be read."""

from __future__ import annotations

from pathlib import Path

import torch

from latentsync.errors import CheckpointError


def read_weights_file(path: str | Path, what: str):
    """The object stored in ``path`` (a dict of tensors, or the official wrapper dict around one).

    ``what`` names the network in the error, e.g. "StableSyncNet checkpoint".
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch / pickle / safetensors raise their own types for a bad file
        raise CheckpointError(f"cannot read {what} {path}: {err}") from err


def load_frozen(model: torch.nn.Module, state: dict, path: str | Path, what: str,
                device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """``state`` loaded strictly into ``model`` (a mismatch is a CheckpointError naming ``path`` and the network,
    e.g. "StableSyncNet"), moved to ``device`` / ``dtype``, in eval mode and without gradients."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match the {what} config: {err}") from err
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
