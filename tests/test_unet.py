"""LatentSyncUNet: official state_dict names/shapes, the tiny golden, dtypes, frame counts, audio layouts."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
from latentsync.models.unet_config import UNetConfig, tiny_unet_config

# Reference README §9: parameters of the official UNet per config (pos_encoder.pe buffers excluded).
STAGE2_PARAMS = 1_267_099_844
STAGE2_PE_BUFFERS, STAGE2_PE_NUMEL = 40, 844_800
STAGE1_ENTRIES, STAGE1_PARAMS = 686, 849_962_244  # use_motion_module=False (also LatentSync 1.0's shape)
EFFICIENT_ENTRIES, EFFICIENT_PARAMS = 1_022, 1_100_244_804  # motion_module_decoder_only=True
STAGE2_MOTION_PARAMS, STAGE2_ATTN2_PARAMS = 417_137_600, 34_377_920
GOLDEN_FP32_TOLERANCE = 1e-4


def meta_unet(config: UNetConfig) -> LatentSyncUNet:
    with torch.device("meta"):
        return LatentSyncUNet(config)


FIXTURE_MANIFEST = "unet_stage2_keys.tsv"  # tests/fixtures copy of the reference's 1.5 manifest
# The reference's manifests per preset (README §9: the 1.6 one is byte-identical to the 1.5 one).
SHARED_MANIFESTS = {"1.5": "unet_stage2_keys.tsv", "1.6": "unet_stage2_512_keys.tsv"}
PRESETS = {"1.5": UNetConfig.latentsync_15, "1.6": UNetConfig.latentsync_16}
STAGE2_ENTRIES = 1_246


def manifest(model: torch.nn.Module) -> dict[str, str]:
    return {name: ",".join(map(str, t.shape)) for name, t in model.state_dict().items()}


def read_manifest(path) -> dict[str, str]:
    """``name<TAB>shape`` lines -> {name: shape}; refuses repeated names (the dict would hide them)."""
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    names = [name for name, _ in rows]
    assert len(set(names)) == len(names), f"{path.name} repeats names"
    return dict(rows)


def assert_matches_manifest(model: torch.nn.Module, official: dict[str, str]) -> None:
    # Compared as name -> shape mappings, not as ordered lists: the spatial transformer block is diffusers'
    # BasicTransformerBlock, which registers norm3 before ff (the official block has ff first), so the
    # state_dict ORDER differs there. Loading (ours and the official one) matches tensors by name, so names
    # and shapes are the whole compatibility contract.
    ours = manifest(model)
    assert len(official) == STAGE2_ENTRIES
    assert sorted(set(official) - set(ours)) == [], "names the official checkpoint has and we lack"
    assert sorted(set(ours) - set(official)) == [], "names we have and the official checkpoint lacks"
    assert ours == official  # ...and every shape


@pytest.mark.parametrize("version", sorted(PRESETS))
def test_state_dict_equals_fixture_manifest(version, fixtures_dir) -> None:
    model = meta_unet(PRESETS[version]())
    assert_matches_manifest(model, read_manifest(fixtures_dir / FIXTURE_MANIFEST))
    assert sum(p.numel() for p in model.parameters()) == STAGE2_PARAMS
    pe = [t for name, t in model.named_buffers() if name.endswith("pos_encoder.pe")]
    assert (len(pe), sum(t.numel() for t in pe)) == (STAGE2_PE_BUFFERS, STAGE2_PE_NUMEL)


@pytest.mark.parametrize("version", sorted(PRESETS))
def test_state_dict_equals_shared_reference_manifest(version, reference_dir) -> None:
    """Each preset against the reference's own manifest for it (1.6: unet_stage2_512_keys.tsv)."""
    official = read_manifest(reference_dir / SHARED_MANIFESTS[version])
    assert_matches_manifest(meta_unet(PRESETS[version]()), official)


def test_fixture_manifest_is_the_shared_reference_copy(fixtures_dir, reference_dir) -> None:
    """Guard the tests/fixtures copy (used on clones without ../shared) against drifting from it."""
    fixture = (fixtures_dir / FIXTURE_MANIFEST).read_bytes()
    for name in sorted(set(SHARED_MANIFESTS.values())):
        assert fixture == (reference_dir / name).read_bytes(), f"tests/fixtures/{FIXTURE_MANIFEST} != {name}"


@pytest.mark.parametrize(("version", "config_file"), [("1.5", "stage2.yaml"), ("1.6", "stage2_512.yaml")])
def test_sizes_equal_the_reference_summary(version, config_file, reference_dir) -> None:
    """model_manifest_summary.json: the official build's entry, parameter and state_dict element counts."""
    summaries = json.loads((reference_dir / "model_manifest_summary.json").read_text())
    summary = summaries[f"configs/unet/{config_file}"]
    model = meta_unet(PRESETS[version]())
    params = dict(model.named_parameters())
    assert len(model.state_dict()) == summary["entries"]
    assert sum(p.numel() for p in params.values()) == summary["params"]
    assert sum(t.numel() for t in model.state_dict().values()) == summary["state_dict_numel"]
    assert len(list(model.buffers())) == summary["n_buffers"]
    part_sizes = {part: sum(p.numel() for n, p in params.items() if part in n)
                  for part in ("motion_modules.", "attn2.")}
    assert part_sizes["motion_modules."] == summary["motion_module_params"]
    assert part_sizes["attn2."] == summary["attn2_params"]


def test_part_sizes_match_official() -> None:
    params = dict(meta_unet(UNetConfig.latentsync_15()).named_parameters())
    assert sum(p.numel() for n, p in params.items() if "motion_modules." in n) == STAGE2_MOTION_PARAMS
    assert sum(p.numel() for n, p in params.items() if "attn2." in n) == STAGE2_ATTN2_PARAMS


@pytest.mark.parametrize(("change", "entries", "params"), [
    ({"use_motion_module": False}, STAGE1_ENTRIES, STAGE1_PARAMS),
    ({"motion_module_decoder_only": True}, EFFICIENT_ENTRIES, EFFICIENT_PARAMS),
])
def test_other_official_variants_have_official_sizes(change, entries, params) -> None:
    model = meta_unet(dataclasses.replace(UNetConfig.latentsync_15(), **change))
    assert len(model.state_dict()) == entries
    assert sum(p.numel() for p in model.parameters()) == params


# ---- the tiny golden (official UNet3DConditionModel outputs) ------------------------------------------
@pytest.fixture(scope="module")
def golden(tiny_unet_golden) -> dict[str, torch.Tensor]:
    return tiny_unet_golden  # (golden_unet, from conftest, is our UNet filled with its weights)


def test_position_codes_equal_official_buffers(golden) -> None:
    ours = LatentSyncUNet(tiny_unet_config()).state_dict()
    pe_names = [name for name in ours if name.endswith("pos_encoder.pe")]
    assert len(pe_names) == STAGE2_PE_BUFFERS
    for name in pe_names:
        torch.testing.assert_close(ours[name], golden[f"weights.{name}"], rtol=0, atol=1e-6)


@torch.no_grad()
def test_golden_fp32_and_both_audio_layouts(golden, golden_unet) -> None:
    audio = golden["input.encoder_hidden_states"]  # ((b f), 50, 24), batch-major as in CFG
    out = golden_unet(golden["input.sample"], golden["input.timestep"], audio)
    assert out.shape == (2, 4, 4, 16, 16)
    assert (out - golden["output.sample"]).abs().max().item() <= GOLDEN_FP32_TOLERANCE
    nested = golden_unet(golden["input.sample"], torch.tensor([500, 500]), audio.reshape(2, 4, 50, 24))
    assert torch.equal(out, nested)  # (b, f, 50, 24) is folded to the same rows


@pytest.mark.slow  # float64 kernels are slow to start on CPU (~10 s); the fp32 test above is the contract
@torch.no_grad()
def test_golden_fp64(golden, golden_unet) -> None:
    model = copy.deepcopy(golden_unet).double()
    out = model(golden["input.sample"].double(), golden["input.timestep"],
                golden["input.encoder_hidden_states"].double())
    assert (out - golden["output.sample_fp64"]).abs().max().item() <= 1e-10


# ---- behaviour on a random tiny net (no reference needed) ---------------------------------------------
@pytest.fixture(scope="module")
def tiny_unet() -> LatentSyncUNet:
    return randomize_zero_init_(LatentSyncUNet(tiny_unet_config()), torch.Generator().manual_seed(0)).eval()


def tiny_inputs(b: int = 1, f: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, 13, f, 16, 16, generator=gen), torch.randn(b * f, 50, 24, generator=gen)


def test_fresh_net_predicts_zero_and_randomize_fills_every_zero_init() -> None:
    fresh = LatentSyncUNet(tiny_unet_config()).eval()
    x, audio = tiny_inputs()
    with torch.no_grad():
        assert not fresh(x, 500, audio).any()  # conv_out starts at zero, as in the official net
    randomize_zero_init_(fresh, torch.Generator().manual_seed(0))
    assert all(p.any() for p in fresh.parameters())


@torch.no_grad()
def test_bf16_forward_is_finite_and_close_to_fp32(tiny_unet) -> None:
    x, audio = tiny_inputs(b=1, f=2)
    ref = tiny_unet(x, 500, audio)
    out = copy.deepcopy(tiny_unet).to(torch.bfloat16)(x.bfloat16(), 500, audio.bfloat16())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    # bf16 keeps 8 significant bits (unit roundoff 2**-8 = 0.4 %); ~60 layers in sequence each round their
    # output, errors growing roughly like sqrt(60) * 0.4 % = 3 %. Measured on the golden: 0.9 %.
    rel_rms = ((out.float() - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()
    assert 0 < rel_rms < 0.03


@torch.no_grad()
def test_frame_count_is_free_up_to_the_position_code(tiny_unet) -> None:
    x, audio = tiny_inputs(b=2, f=3)
    out = tiny_unet(x, torch.tensor([900, 100]), audio.reshape(2, 3, 50, 24))
    assert out.shape == (2, 4, 3, 16, 16) and torch.isfinite(out).all()
    assert tiny_unet.max_frames == 24
    with pytest.raises(ValueError, match="at most 24 frames per call, got 25"):
        tiny_unet(torch.zeros(1, 13, 25, 8, 8), 1, None)


@torch.no_grad()
def test_odd_latent_size_meets_its_skip_connections(tiny_unet) -> None:
    out = tiny_unet(torch.randn(1, 13, 2, 12, 10), 500, None)  # 12 -> 6 -> 3 -> 2 and back
    assert out.shape == (1, 4, 2, 12, 10)


@torch.no_grad()
def test_audio_and_timestep_condition_each_batch_item(tiny_unet) -> None:
    x, audio = tiny_inputs(b=2, f=2)
    base = tiny_unet(x, torch.tensor([500, 500]), audio)
    other_t = tiny_unet(x, torch.tensor([500, 10]), audio)
    assert torch.equal(other_t[0], base[0]) and (other_t[1] - base[1]).abs().max() > 1e-3
    no_audio = tiny_unet(x, 500, None)
    assert (no_audio - base).abs().max() > 1e-3
    audio_2 = audio.clone()
    audio_2[3] = 0  # second batch item, second frame: only batch item 1 may change
    changed = tiny_unet(x, 500, audio_2)
    assert torch.equal(changed[0], base[0]) and (changed[1] - base[1]).abs().max() > 1e-3


@torch.no_grad()
def test_resnet_group_norm_spans_frames_unless_inflated() -> None:
    """Official default: frames interact through the ResNet GroupNorm even without motion modules."""
    x, audio = tiny_inputs(b=1, f=4)
    for inflated in (False, True):
        cfg = dataclasses.replace(tiny_unet_config(), use_motion_module=False,
                                  use_inflated_groupnorm=inflated)
        model = randomize_zero_init_(LatentSyncUNet(cfg), torch.Generator().manual_seed(0)).eval()
        full = model(x, 500, audio)
        first_two = model(x[:, :, :2], 500, audio[:2])
        diff = (full[:, :, :2] - first_two).abs().max().item()
        assert diff < 1e-5 if inflated else diff > 1e-2


def test_bad_inputs_are_named(tiny_unet) -> None:
    x, audio = tiny_inputs(b=1, f=2)
    with pytest.raises(ValueError, match=r"audio_embeds must have shape \(1\*2, tokens, 24\)"):
        tiny_unet(x, 500, audio[:1])
    with pytest.raises(ValueError, match=r"timestep must be a scalar or have shape \(1,\), got \(3,\)"):
        tiny_unet(x, torch.tensor([1, 2, 3]), audio)
