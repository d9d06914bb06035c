"""UNet checkpoint files: official ``{"global_step", "state_dict"}`` .pt, flat .safetensors, strict errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentsync.errors import CheckpointError
from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
from latentsync.models.unet_checkpoint import load_unet_checkpoint, read_unet_state_dict, save_unet_checkpoint
from latentsync.models.unet_config import tiny_unet_config

CROSS_ATTN_PREFIX = "down_blocks.0.attentions.0.transformer_blocks.0."


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    model = randomize_zero_init_(LatentSyncUNet(tiny_unet_config()), torch.Generator().manual_seed(3))
    return {name: t.clone() for name, t in model.state_dict().items()}


def write_official(path: Path, state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> Path:
    """The layout the official trainer saves (optionally in fp16, as some re-uploads are)."""
    torch.save({"global_step": 1234, "state_dict": {k: v.to(dtype) for k, v in state.items()}}, path)
    return path


def assert_loaded(model: LatentSyncUNet, state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == dtype and loaded[name].device.type == "cpu"
        assert torch.equal(loaded[name], tensor.to(dtype)), name


def test_official_pt_loads_strictly(tmp_path, random_state) -> None:
    path = write_official(tmp_path / "latentsync_unet.pt", random_state)
    model = load_unet_checkpoint(path, tiny_unet_config(), device="cpu", dtype=torch.float32)
    assert not model.training
    assert_loaded(model, random_state, torch.float32)
    assert not any(t.is_meta for t in model.state_dict().values())


def test_fp16_file_loads_into_fp32_and_bf16(tmp_path, random_state) -> None:
    path = write_official(tmp_path / "unet_fp16.pt", random_state, torch.float16)
    rounded = {k: v.half().float() for k, v in random_state.items()}
    model = load_unet_checkpoint(path, tiny_unet_config(), "cpu", torch.float32)
    assert_loaded(model, rounded, torch.float32)
    model = load_unet_checkpoint(path, tiny_unet_config(), "cpu", torch.bfloat16)
    assert_loaded(model, rounded, torch.bfloat16)
    with torch.no_grad():
        out = model(torch.randn(1, 13, 2, 8, 8, dtype=torch.bfloat16), 500, torch.randn(2, 50, 24))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_safetensors_and_flat_pt_load(tmp_path, random_state) -> None:
    model = LatentSyncUNet(tiny_unet_config())
    model.load_state_dict(random_state)
    for name in ("unet.safetensors", "unet_flat.pt"):
        path = tmp_path / name
        if name.endswith(".pt"):
            torch.save(random_state, path)
        else:
            save_unet_checkpoint(model, path)
        assert_loaded(load_unet_checkpoint(path, tiny_unet_config()), random_state, torch.float32)


def test_save_writes_official_layout(tmp_path, random_state) -> None:
    model = LatentSyncUNet(tiny_unet_config())
    model.load_state_dict(random_state)
    saved = torch.load(save_unet_checkpoint(model, tmp_path / "u.pt", global_step=7), weights_only=True)
    assert set(saved) == {"global_step", "state_dict"} and saved["global_step"] == 7
    assert list(saved["state_dict"]) == list(random_state)


def test_v10_audio_cross_attention_names_are_renamed(tmp_path, random_state) -> None:
    old = {k.replace(".attn2.", ".audio_cross_attn.attn.").replace(".norm2.", ".audio_cross_attn.norm.")
           if ".transformer_blocks." in k and "attention_blocks" not in k else k: v
           for k, v in random_state.items()}
    assert f"{CROSS_ATTN_PREFIX}audio_cross_attn.attn.to_k.weight" in old
    assert f"{CROSS_ATTN_PREFIX}audio_cross_attn.norm.weight" in old
    path = write_official(tmp_path / "v10.pt", old)
    assert read_unet_state_dict(path).keys() == random_state.keys()
    assert_loaded(load_unet_checkpoint(path, tiny_unet_config()), random_state, torch.float32)


def test_wrong_shape_missing_and_unexpected_keys_are_listed(tmp_path, random_state) -> None:
    state = dict(random_state)
    state["conv_in.weight"] = torch.zeros(32, 9, 3, 3)  # e.g. a 9-channel inpainting conv
    del state["conv_out.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = write_official(tmp_path / "bad.pt", state)
    with pytest.raises(CheckpointError) as info:
        load_unet_checkpoint(path, tiny_unet_config())
    message = str(info.value)
    assert "does not match the UNet config" in message and str(path) in message
    assert "1 missing: conv_out.bias" in message
    assert "1 unexpected: extra.weight" in message
    assert "1 mis-shaped: conv_in.weight (32, 9, 3, 3) (config expects (32, 13, 3, 3))" in message


def test_checkpoint_without_motion_modules_gets_a_hint(tmp_path, random_state) -> None:
    state = {k: v for k, v in random_state.items() if "motion_modules." not in k}
    # 560 = 1246 - 686 entries: the official stage-2 vs stage-1 difference (reference README §9)
    with pytest.raises(CheckpointError, match=r"560 missing: down_blocks\.0\.motion_modules\.0\..*, \.\.\. "
                                              r"\(a LatentSync 1\.0 .* use_motion_module=False\)"):
        load_unet_checkpoint(write_official(tmp_path / "v10.pt", state), tiny_unet_config())


def test_unreadable_files_raise_checkpoint_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_unet_checkpoint(tmp_path / "absent.pt", tiny_unet_config())
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read UNet checkpoint"):
        load_unet_checkpoint(garbage, tiny_unet_config())
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match=r"not a UNet checkpoint: .*\['model'\]"):
        load_unet_checkpoint(other, tiny_unet_config())
    bad_st = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(1)}, str(bad_st))
    with pytest.raises(CheckpointError, match="unexpected: w"):
        load_unet_checkpoint(bad_st, tiny_unet_config())
