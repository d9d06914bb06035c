"""SyncNetV2: checkpoint layout (names, shapes, parameter count), strict loading, embedding shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latentsync.errors import CheckpointError
from latentsync.sync.syncnet import SyncNetV2, load_syncnet_v2
from latentsync.tiny import random_syncnet_v2_state_dict

EXPECTED_PARAMETERS = 13_631_616  # reference README, syncnet_v2_keys.tsv entry


def test_state_dict_names_and_shapes_equal_the_official_manifest(fixtures_dir: Path) -> None:
    rows = (fixtures_dir / "sync_syncnet_v2_keys.tsv").read_text().splitlines()
    expected = [tuple(row.split("\t")) for row in rows]
    with torch.device("meta"):
        model = SyncNetV2()
    ours = [(name, ",".join(map(str, t.shape))) for name, t in model.state_dict().items()]
    assert len(ours) == 102
    assert ours == expected


def test_parameter_count() -> None:
    with torch.device("meta"):
        model = SyncNetV2()
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMETERS


def test_strict_load_of_an_official_format_file(tmp_path: Path) -> None:
    state = random_syncnet_v2_state_dict(seed=0)
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    model = load_syncnet_v2(path, device="cpu", dtype=torch.float64)
    assert not model.training
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        if tensor.is_floating_point():
            assert loaded[name].dtype == torch.float64
        assert torch.equal(loaded[name], tensor.to(loaded[name].dtype)), name


def test_embeddings_have_the_right_shapes_and_depend_on_the_input(tmp_path: Path) -> None:
    path = tmp_path / "syncnet_v2.model"
    torch.save(random_syncnet_v2_state_dict(seed=1), path)
    model = load_syncnet_v2(path)
    generator = torch.Generator().manual_seed(0)
    mfcc = 20 * torch.randn(2, 1, 13, 20, generator=generator)
    video = 255 * torch.rand(2, 3, 5, 224, 224, generator=generator)
    with torch.inference_mode():
        audio_embedding = model.embed_audio(mfcc)
        lip_embedding = model.embed_lips(video)
    assert audio_embedding.shape == (2, 1024)
    assert lip_embedding.shape == (2, 1024)
    assert torch.isfinite(audio_embedding).all() and torch.isfinite(lip_embedding).all()
    assert not torch.allclose(lip_embedding[0], lip_embedding[1])  # eval-mode BN: samples stay independent
    with torch.inference_mode():
        alone = model.embed_lips(video[1:])
    # Embeddings of this random net reach ~120, and a batch of 1 takes other conv kernels than a batch of 2 (1.8e-4
    # apart on an AMD EPYC): float32 rounding relative to the scale. Train-mode BN would move them by ~120.
    scale = lip_embedding.abs().max().item()
    torch.testing.assert_close(alone[0], lip_embedding[1], rtol=1e-5, atol=1e-5 * scale)


def test_embedding_input_shapes_are_checked() -> None:
    model = SyncNetV2().eval()
    with pytest.raises(ValueError, match="embed_audio"):
        model.embed_audio(torch.zeros(1, 1, 13, 21))
    with pytest.raises(ValueError, match="embed_lips"):
        model.embed_lips(torch.zeros(1, 3, 4, 224, 224))


def test_renamed_key_raises_checkpoint_error(tmp_path: Path) -> None:
    state = random_syncnet_v2_state_dict(seed=2)
    state["netcnnlip.0.weight_renamed"] = state.pop("netcnnlip.0.weight")
    path = tmp_path / "bad.model"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="netcnnlip.0.weight"):
        load_syncnet_v2(path)


def test_wrong_shape_raises_checkpoint_error(tmp_path: Path) -> None:
    state = random_syncnet_v2_state_dict(seed=3)
    state["netfcaud.3.weight"] = torch.zeros(512, 512)  # a 512-d head, not the v2 1024-d one
    path = tmp_path / "bad.model"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="netfcaud.3.weight"):
        load_syncnet_v2(path)


def test_missing_or_unreadable_file_raises_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_syncnet_v2(tmp_path / "absent.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="could not read"):
        load_syncnet_v2(garbage)
    not_a_state_dict = tmp_path / "list.model"
    torch.save([torch.zeros(1)], not_a_state_dict)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_syncnet_v2(not_a_state_dict)
