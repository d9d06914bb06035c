"""hyperIQA: the official HyperNet's key manifest, the head + target-network golden, strict loading, preprocessing."""

from __future__ import annotations

import pytest
import torch

from latentsync.errors import CheckpointError
from latentsync.models.hyperiqa import (
    HyperNet,
    load_hyperiqa,
    preprocess_frames,
    random_hyperiqa_state_dict,
    target_net,
)


@pytest.fixture(scope="module")
def training_dir(reference_dir):
    return reference_dir / "training"


def read_manifest(path):
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return [(name, shape, dtype) for name, shape, dtype in rows]


def test_state_dict_matches_official_manifest(training_dir):
    manifest = read_manifest(training_dir / "manifest_hyperiqa_hypernet.tsv")
    with torch.device("meta"):
        model = HyperNet()
    ours = [(k, str(list(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    assert len(manifest) == 355
    assert ours == manifest  # names, shapes, dtypes and order
    assert sum(p.numel() for p in model.parameters()) == 27_375_369


def test_head_and_target_network_match_golden(training_dir):
    from safetensors.torch import load_file

    weights = load_file(training_dir / "hyperiqa_head_weights_fp16.safetensors")
    golden = load_file(training_dir / "hyperiqa_head_golden.safetensors")
    with torch.device("meta"):
        model = HyperNet()
    head = {k: v.float() for k, v in weights.items()}
    missing = model.load_state_dict(head, strict=False, assign=True).missing_keys
    assert not any(k.startswith("fc") for k in missing)  # every head weight has its official name
    with torch.no_grad():
        params = model.target_params(golden["hyper_in_feat_after_conv1"])
        for key in ("fc1w", "fc1b", "fc2w", "fc2b", "fc3w", "fc3b", "fc4w", "fc4b", "fc5w", "fc5b"):
            expected = golden[f"paras.target_{key}"]
            torch.testing.assert_close(getattr(params, key), expected.reshape(getattr(params, key).shape),
                                       atol=1e-4, rtol=0)  # fmt: skip
        pred = target_net(golden["target_in_vec"], params)
    torch.testing.assert_close(pred, golden["pred_per_frame"], atol=1e-4, rtol=0)
    torch.testing.assert_close(pred.mean(), golden["quality_score"], atol=1e-4, rtol=0)


def test_strict_loading_of_official_format(tmp_path):
    path = tmp_path / "koniq_pretrained.pkl"
    state = random_hyperiqa_state_dict(seed=3)
    torch.save(state, path)  # the official file is a plain state_dict
    model = load_hyperiqa(path)
    assert not model.training
    key = "res.layer3.5.bn2.running_var"
    torch.testing.assert_close(model.state_dict()[key], state[key])
    scores = model(torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert scores.std() > 0  # different images, different scores

    del state["res.lda4_fc.bias"]
    torch.save(state, tmp_path / "broken.pkl")
    with pytest.raises(CheckpointError, match="lda4_fc.bias"):
        load_hyperiqa(tmp_path / "broken.pkl")


def test_preprocessing_centre_crop_without_resize():
    frames = torch.zeros(1, 256, 256, 3, dtype=torch.uint8)
    frames[0, 16:240, 16:240] = 255  # exactly the 224 centre (offset round((256 - 224) / 2) = 16)
    x = preprocess_frames(frames)
    assert x.shape == (1, 3, 224, 224)
    white = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0, :, 0, 0], white)
    torch.testing.assert_close(x[0, :, -1, -1], white)
    with pytest.raises(ValueError, match="224"):
        preprocess_frames(torch.zeros(1, 200, 256, 3, dtype=torch.uint8))
