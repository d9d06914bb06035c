"""What a run leaves in its output folder besides the weights: the resolved config (checked on --resume), the loss
history and its plot; and a UNet run over a file list holding a corrupt and an audio-less clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from latentsync.errors import InputError
from latentsync.training import engine
from latentsync.training.config import (
    config_to_dict,
    load_syncnet_train_config,
    load_unet_train_config,
    syncnet_config_from_dict,
    unet_config_from_dict,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["unet/stage1", "unet/stage2_efficient", "unet/finetune", "syncnet/syncnet_16_latent"])
def test_the_resolved_config_reads_back_as_the_same_config(name, tmp_path):
    kind, _ = name.split("/")
    load = load_unet_train_config if kind == "unet" else load_syncnet_train_config
    config = load(CONFIGS / f"{name}.yaml")
    path = engine.write_run_config(tmp_path, config_to_dict(config))
    assert path == tmp_path / engine.CONFIG_FILE
    assert load(path) == config  # every resolved value, e.g. trainable_modules, batch size, the model section


def test_shipped_configs_start_from_the_released_unets_and_the_latent_syncnet_batch_is_the_references():
    for name, released in (("stage1", "released-1.5"), ("stage1_512", "released-1.6"), ("stage2", "released-1.5"),
                           ("stage2_512", "released-1.6"), ("stage2_efficient", "released-1.5"),
                           ("finetune", "released-1.5")):
        assert load_unet_train_config(CONFIGS / "unet" / f"{name}.yaml").init_unet == released
    finetune = load_unet_train_config(CONFIGS / "unet" / "finetune.yaml")
    stage2 = load_unet_train_config(CONFIGS / "unet" / "stage2.yaml")
    assert engine.changed_keys(config_to_dict(stage2), config_to_dict(finetune)) == \
        ["train.output_dir", "train.save_every", "train.validate_every"]  # stage 2 as the reference, run settings aside
    assert load_syncnet_train_config(CONFIGS / "syncnet" / "syncnet_16_latent.yaml").data.batch_size == 120


def test_a_changed_config_on_resume_is_an_error_naming_the_keys(tmp_path):
    config = unet_config_from_dict({"optimizer": {"lr": 1e-5}, "train": {"output_dir": str(tmp_path)}})
    engine.write_run_config(tmp_path, config_to_dict(config))
    assert engine.check_run_config(tmp_path, config_to_dict(config)) == []
    longer = unet_config_from_dict({"optimizer": {"lr": 1e-5}, "train": {"output_dir": str(tmp_path),
                                                                         "max_train_steps": 50, "log_every": 1}})
    assert engine.check_run_config(tmp_path, config_to_dict(longer)) == []  # a resume may run longer
    changed = unet_config_from_dict({"optimizer": {"lr": 2e-5}, "loss": {"use_syncnet": False},
                                     "train": {"output_dir": str(tmp_path)}})
    with pytest.raises(InputError, match=r"differs .* in: loss.use_syncnet, optimizer.lr; .*--allow-config-change"):
        engine.check_run_config(tmp_path, config_to_dict(changed))
    assert engine.check_run_config(tmp_path, config_to_dict(changed), allow_change=True) == \
        ["loss.use_syncnet", "optimizer.lr"]
    syncnet = syncnet_config_from_dict({"model": {"resolution": 32}})
    assert engine.changed_keys(config_to_dict(syncnet), {**config_to_dict(syncnet), "extra": 1}) == ["extra"]


def test_the_loss_history_survives_a_resume_and_is_plotted(tmp_path):
    for step, loss in ((1, 1.0), (2, 0.5), (3, 0.4)):
        engine.append_loss(tmp_path, step, loss)
    for step, loss in ((3, 0.3), (4, 0.2)):  # a resume from step 2's state re-runs step 3
        engine.append_loss(tmp_path, step, loss)
    assert engine.read_losses(tmp_path) == {1: 1.0, 2: 0.5, 3: 0.3, 4: 0.2}
    path = engine.write_loss_plot(tmp_path)
    image = cv2.imread(str(path))
    assert image.shape == (540, 960, 3)
    inside = image[60:480, 100:920]  # the plot area: a dark line from top left to bottom right
    dark = np.argwhere(inside.sum(axis=2) < 500)
    assert len(dark) > 100
    left, right = dark[dark[:, 1] < 100], dark[dark[:, 1] > 700]
    assert left[:, 0].mean() < right[:, 0].mean()  # higher loss on the left (rows grow downwards)
    assert engine.write_loss_plot(tmp_path / "empty") is None


@pytest.mark.slow
def test_a_unet_run_over_bad_clips_writes_its_files_and_resume_checks_the_config(tmp_path):
    from latentsync.cli_common import EXIT_INPUT, EXIT_OK
    from latentsync.tiny import write_tiny_checkpoints
    from latentsync.training.__main__ import main
    from latentsync.training.tiny import (
        TINY_TRAIN_RESOLUTION,
        tiny_unet_train_config,
        write_synthetic_dataset,
        write_tiny_syncnet_yaml,
    )
    from latentsync.training.unet_trainer import train_unet

    from .test_training_bad_clips import write_bad_clips

    checkpoints = write_tiny_checkpoints(tmp_path / "checkpoints", seed=0)
    fileslist = write_synthetic_dataset(tmp_path / "data", n_clips=2, seconds=2.4, resolution=TINY_TRAIN_RESOLUTION)
    from latentsync.training.inputs import check_fileslist

    good = check_fileslist("data.train_fileslist", fileslist)
    corrupt, silent = write_bad_clips(fileslist.parent, good[0])
    fileslist.write_text("\n".join(str(p.relative_to(fileslist.parent)) for p in [corrupt, *good, silent]) + "\n",
                         encoding="utf-8")
    syncnet_yaml = write_tiny_syncnet_yaml(tmp_path / "syncnet.yaml", fileslist, tmp_path / "unused")
    out = tmp_path / "run"
    config = tiny_unet_train_config(checkpoints, fileslist, out, syncnet_yaml, enable_gradient_checkpointing=False,
                                    **{"loss.pixel_space_supervise": False, "loss.use_syncnet": False,
                                       "data.samples_per_epoch": 4, "train.max_train_steps": 2,
                                       "train.save_every": 1})
    result = train_unet(unet_config_from_dict(config))
    assert list(result.losses) == [1, 2]
    log = (out / engine.LOG_FILE).read_text()
    for bad, reason in ((corrupt, "no decodable video frames"), (silent, "has no audio track")):
        lines = [line for line in log.splitlines() if f"skipped clip {bad}" in line]
        assert len(lines) == 1 and reason in lines[0]
    # The run's files: its resolved config, the loss history and plot, one cached feature file per good clip drawn.
    assert load_unet_train_config(out / engine.CONFIG_FILE) == unet_config_from_dict(config)
    assert engine.read_losses(out) == pytest.approx(result.losses, abs=1e-5)
    assert cv2.imread(str(out / engine.LOSS_PLOT_FILE)).shape == (540, 960, 3)
    cached = sorted(p.name.split("-")[0] for p in (out / engine.FEATURE_CACHE_DIR).glob("*.pt"))
    assert cached and set(cached) <= {p.stem for p in good}
    # --resume with another learning rate: one line naming the key, before any model loads.
    path = tmp_path / "changed.yaml"
    config["optimizer"]["lr"] = 5e-4
    config["train"]["max_train_steps"] = 3
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["unet", str(path), "--resume"]) == EXIT_INPUT
    assert engine.read_losses(out).keys() == {1, 2}
    assert main(["unet", str(path), "--resume", "--allow-config-change"]) == EXIT_OK
    assert engine.read_losses(out).keys() == {1, 2, 3}
    assert load_unet_train_config(out / engine.CONFIG_FILE).optimizer.lr == 5e-4  # the config the run goes on with
    log = (out / engine.LOG_FILE).read_text()
    assert "--allow-config-change: continuing with changed optimizer.lr" in log
    for bad in (corrupt, silent):  # the resumed run met them again but does not log them again
        assert sum(f"skipped clip {bad}" in line for line in log.splitlines()) == 1
    assert len((out / engine.SKIPPED_CLIPS_FILE).read_text().splitlines()) == 2
