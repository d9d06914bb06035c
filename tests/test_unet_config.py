"""UNetConfig: presets hold the official 1.5/1.6 values; dict round trips; unsupported options are refused."""

from __future__ import annotations

import json

import pytest

from latentsync.models.unet_config import MotionModuleConfig, UNetConfig, tiny_unet_config

STAGE2_CONFIG = "configs/unet/stage2.yaml"


def test_latentsync_15_preset_spot_values() -> None:
    cfg = UNetConfig.latentsync_15()
    assert (cfg.in_channels, cfg.out_channels, cfg.cross_attention_dim) == (13, 4, 384)
    assert cfg.block_out_channels == (320, 640, 1280, 1280)
    assert cfg.down_block_types == ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",)
    assert cfg.up_block_types == ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3
    assert (cfg.attention_head_dim, cfg.norm_num_groups, cfg.norm_eps) == (8, 32, 1e-5)
    assert cfg.layers_per_block == 2
    assert (cfg.flip_sin_to_cos, cfg.freq_shift, cfg.use_inflated_groupnorm) == (True, 0, False)
    assert cfg.use_motion_module and not cfg.motion_module_mid_block and not cfg.motion_module_decoder_only
    assert cfg.motion_module_resolutions == (1, 2, 4, 8)
    assert cfg.motion_module_kwargs == MotionModuleConfig(
        num_attention_heads=8, num_transformer_block=1,
        attention_block_types=("Temporal_Self", "Temporal_Self"),
        temporal_position_encoding=True, temporal_position_encoding_max_len=24, temporal_attention_dim_div=1,
        zero_initialize=True)
    assert cfg.resolution == 256


def test_latentsync_16_differs_from_15_only_in_resolution() -> None:
    v15, v16 = UNetConfig.latentsync_15().to_dict(), UNetConfig.latentsync_16().to_dict()
    assert {k for k in v15 if v15[k] != v16[k]} == {"resolution"}
    assert v16["resolution"] == 512


def test_presets_equal_the_official_resolved_configs(reference_dir) -> None:
    summary = json.loads((reference_dir / "model_manifest_summary.json").read_text())
    for preset, name in ((UNetConfig.latentsync_15(), STAGE2_CONFIG),
                         (UNetConfig.latentsync_16(), "configs/unet/stage2_512.yaml")):
        official = summary[name]["unet_config_full"]
        ours = preset.to_dict()
        assert ours.pop("resolution") == preset.resolution
        assert ours == official  # every key and value of the official resolved config, nothing more
        assert UNetConfig.from_dict(official) == UNetConfig.latentsync_15()


def test_other_official_configs_parse(reference_dir) -> None:
    summary = json.loads((reference_dir / "model_manifest_summary.json").read_text())
    stage1 = UNetConfig.from_dict(summary["configs/unet/stage1.yaml"]["unet_config_full"])
    efficient = UNetConfig.from_dict(summary["configs/unet/stage2_efficient.yaml"]["unet_config_full"])
    assert (stage1.use_motion_module, efficient.motion_module_decoder_only) == (False, True)


def test_tiny_config_equals_golden_json(reference_dir) -> None:
    tiny_json = json.loads((reference_dir / "tiny_unet_config.json").read_text())
    from_kwargs = UNetConfig.from_dict(tiny_json["constructor_kwargs"]).to_dict()
    from_resolved = UNetConfig.from_dict(tiny_json["resolved_config"]).to_dict()
    ours = tiny_unet_config().to_dict()
    for other in (from_kwargs, from_resolved):
        other.pop("resolution")
        assert {k: v for k, v in ours.items() if k != "resolution"} == other


def test_tiny_config_values() -> None:
    cfg = tiny_unet_config()
    assert cfg.block_out_channels == (32, 32, 64, 64)
    assert (cfg.norm_num_groups, cfg.attention_head_dim, cfg.cross_attention_dim) == (8, 2, 24)
    assert cfg.sample_size == 16
    assert cfg.motion_module_kwargs.num_attention_heads == 2
    assert cfg.motion_module_kwargs.temporal_position_encoding_max_len == 24


def test_to_dict_is_json_and_round_trips() -> None:
    cfg = tiny_unet_config()
    text = json.dumps(cfg.to_dict())
    assert UNetConfig.from_dict(json.loads(text)) == cfg


def test_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match="unknown keys \\['cross_attn_dim'\\]"):
        UNetConfig.from_dict({"cross_attn_dim": 384})
    with pytest.raises(ValueError, match="motion_module_kwargs: unknown keys \\['heads'\\]"):
        UNetConfig.from_dict({"motion_module_kwargs": {"heads": 8}})


@pytest.mark.parametrize(("key", "value"), [
    ("use_linear_projection", True), ("class_embed_type", "timestep"), ("upcast_attention", True),
    ("resnet_time_scale_shift", "scale_shift"), ("motion_module_mid_block", True), ("act_fn", "gelu"),
    ("attention_head_dim", [5, 8, 8, 8]), ("block_out_channels", [320, 640, 1280]),
])
def test_unsupported_values_are_refused(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key if key != "block_out_channels" else "4 levels"):
        UNetConfig.from_dict({key: value})


def test_per_level_head_list_with_one_value_is_accepted() -> None:
    assert UNetConfig.from_dict({"attention_head_dim": [8, 8, 8, 8]}).attention_head_dim == 8
