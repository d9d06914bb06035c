"""GFPGAN v1.4: the real file's key manifest loads strictly, the tiny golden of the reference class is reproduced,
the config is read back from a state dict, and the stored noise makes the network a deterministic function."""

from __future__ import annotations

import json

import pytest
import torch

from latentsync.errors import CheckpointError
from latentsync.models.gfpgan import (
    GFPGAN,
    STATE_DICT_KEY,
    GFPGANConfig,
    config_from_state_dict,
    load_gfpgan,
    random_gfpgan_state_dict,
    tiny_gfpgan_config,
)

from .conftest import FIXTURES_DIR


def read_manifest(path):
    rows = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return [(name, tuple(int(n) for n in shape.split("x"))) for name, shape, _ in rows]


@pytest.fixture(scope="module")
def restoration_dir(reference_dir):
    return reference_dir / "restoration"


def test_state_dict_matches_the_real_files_manifest():
    manifest = read_manifest(FIXTURES_DIR / "gfpgan_v1_4_keys.tsv")  # params_ema of GFPGANv1.4.pth
    with torch.device("meta"):
        model = GFPGAN()
    ours = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    assert len(manifest) == 285 and sorted(ours) == sorted(manifest)
    assert sum(t.numel() for t in model.state_dict().values()) == 87_143_276
    # the real file's shapes give back v1.4's constructor arguments (load_gfpgan reads the config this way)
    assert config_from_state_dict(model.state_dict()) == GFPGANConfig()


def test_tiny_golden_is_reproduced(restoration_dir):
    from safetensors.torch import load_file

    config = GFPGANConfig.from_dict(json.loads((restoration_dir / "gfpgan_tiny_config.json").read_text()))
    assert config == tiny_gfpgan_config()
    weights = load_file(restoration_dir / "gfpgan_tiny_weights.safetensors")
    assert config_from_state_dict(weights) == config
    model = GFPGAN(config).eval()
    model.load_state_dict(weights, strict=True)
    golden = load_file(restoration_dir / "gfpgan_tiny_golden.safetensors")
    with torch.no_grad():
        output = model(golden["input"])  # the stored noise buffers, as the golden (randomize_noise=False)
        _, _, rgbs = model.encode(golden["input"])
    assert output.shape == (2, 3, 64, 64) and golden["output"].abs().max() > 1  # not clamped, not trivial
    torch.testing.assert_close(output, golden["output"], atol=1e-4, rtol=0)
    for i, rgb in enumerate(rgbs):  # the U-Net's intermediate RGB at 8, 16, 32, 64 px
        torch.testing.assert_close(rgb, golden[f"rgb_{i}"], atol=1e-4, rtol=0)


def test_load_is_strict_and_reads_the_release_format(tmp_path):
    config = tiny_gfpgan_config()
    state = random_gfpgan_state_dict(config, seed=3)
    torch.save({STATE_DICT_KEY: state}, tmp_path / "GFPGANv1.4.pth")
    model = load_gfpgan(tmp_path / "GFPGANv1.4.pth")
    assert model.config == config and not model.training
    assert torch.equal(model.stylegan_decoder.noises.noise8, state["stylegan_decoder.noises.noise8"])
    del state["condition_shift.3.2.bias"]
    torch.save({STATE_DICT_KEY: state}, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="(?s)short.pth is not a GFPGAN v1.4 checkpoint.*condition_shift.3.2.bias"):
        load_gfpgan(tmp_path / "short.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_gfpgan(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read the GFPGAN checkpoint"):
        load_gfpgan(tmp_path / "junk.pth")


def test_stored_noise_makes_restoration_deterministic_and_fresh_noise_does_not():
    torch.manual_seed(0)
    model = GFPGAN(tiny_gfpgan_config()).eval()
    model.load_state_dict(random_gfpgan_state_dict(model.config, seed=1))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        first, second = model(x), model(x)
        fresh = model(x, noise=[torch.randn_like(n) for n in model.stored_noise()])
    assert torch.equal(first, second)
    assert (fresh - first).abs().mean() > 1e-2  # the noise reaches the output: it must be held fixed
    with pytest.raises(ValueError, match=r"expects \(b, 3, 64, 64\)"):
        model(torch.zeros(1, 3, 32, 32))


def test_unsupported_variant_is_refused():
    with pytest.raises(ValueError, match="sft_half=True only"):
        GFPGANConfig.from_dict({"out_size": 64, "sft_half": False})
