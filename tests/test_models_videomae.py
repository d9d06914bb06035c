"""VideoMAE-v2 ViT features and the TREPA loss against the official manifest and tiny golden (training/README §2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentsync.models.videomae import (
    VideoMAEConfig,
    VisionTransformer,
    load_videomae,
    sinusoid_table,
    tiny_videomae_config,
    trepa_inputs,
    trepa_loss,
)


def read_manifest(path):
    rows = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return [(name, json.loads(shape)) for name, shape, *_ in rows]


def shapes(model):
    return [(name, list(t.shape)) for name, t in model.state_dict().items()]


def test_vit_g_equals_the_official_manifest(reference_dir):
    with torch.device("meta"):
        model = VisionTransformer(VideoMAEConfig())
    assert shapes(model) == read_manifest(reference_dir / "training" / "manifest_videomaev2_vit_g_trepa.tsv")
    assert sum(p.numel() for p in model.parameters()) == 1_011_855_918
    assert VideoMAEConfig().mlp_hidden == 6144 and VideoMAEConfig().num_tokens == 2048


def test_tiny_golden_features_and_loss(reference_dir):
    from safetensors.torch import load_file

    folder = reference_dir / "training"
    config = json.loads((folder / "trepa_tiny_config.json").read_text())
    assert (config["embed_dim"], config["depth"], config["num_heads"]) == (48, 2, 4)
    model = load_videomae(folder / "trepa_tiny_weights.safetensors", tiny_videomae_config())
    assert shapes(model) == read_manifest(folder / "manifest_videomaev2_tiny.tsv")
    golden = load_file(folder / "trepa_tiny_golden.safetensors")
    inputs = trepa_inputs(golden["videos_fake"])
    torch.testing.assert_close(inputs[:, 0, 0], golden["model_input_fake_frame0_ch0"], atol=1e-5, rtol=0)
    with torch.no_grad():
        for kind in ("fake", "real"):
            features = model.forward_features(trepa_inputs(golden[f"videos_{kind}"]))
            torch.testing.assert_close(features, golden[f"feats_{kind}"], atol=1e-4, rtol=1e-4)
        loss = trepa_loss(model, golden["videos_fake"], golden["videos_real"])
    torch.testing.assert_close(loss, golden["loss"], atol=1e-8, rtol=1e-4)


def test_position_table_formula():
    table = sinusoid_table(7, 6)[0].numpy()
    p, j = 5, 3  # odd channel: cos(p / 10000^(2*(3//2)/6))
    assert table[p, j] == pytest.approx(np.cos(p / 10000 ** (2 / 6)), abs=1e-7)
    assert table[p, 2] == pytest.approx(np.sin(p / 10000 ** (2 / 6)), abs=1e-7)


def test_official_wrappers_load_strictly(tmp_path):
    from latentsync.errors import CheckpointError

    model = VisionTransformer(tiny_videomae_config())
    for wrapper in ("model", "module"):
        path = tmp_path / f"{wrapper}.pth"
        torch.save({wrapper: model.state_dict()}, path)
        assert torch.equal(load_videomae(path, tiny_videomae_config()).head.weight, model.head.weight)
    torch.save({"module": {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}},
               tmp_path / "headless.pth")
    with pytest.raises(CheckpointError, match="head"):
        load_videomae(tmp_path / "headless.pth", tiny_videomae_config())
