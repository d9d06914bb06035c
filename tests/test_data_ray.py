"""The Ray runner's limits and failures on a local Ray instance (2 CPUs): --workers bounds every stage, and a model
stage whose networks do not load records its clips as internal errors instead of aborting (issue 27)."""

from __future__ import annotations

import pytest

from latentsync.data import engine
from latentsync.data.options import DataOptions
from latentsync.data.records import read_record
from tests.test_data_engine import fake_checkpoints

pytestmark = pytest.mark.slow  # a Ray instance takes ~10 s to start


@pytest.fixture(scope="module")
def runner(local_ray):
    from latentsync.data.runner_ray import RayRunner

    runner = RayRunner(workers=1, show_progress=False)
    yield runner
    runner.close()  # leaves the module's instance running (it did not start it)


def test_workers_limit_cpu_and_model_stages(runner, tmp_path):
    context = engine.RunContext(tmp_path, tmp_path, DataOptions())
    for name in engine.STAGE_NAMES:
        arguments = runner.map_arguments(name, context)
        assert arguments["concurrency"] == 1, name  # --workers 1: one task or one actor at a time
        assert ("num_cpus" in arguments) != engine.get_stage(name).uses_models


def test_a_model_stage_that_cannot_load_records_errors_and_completes(runner, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    checkpoints = fake_checkpoints(tmp_path / "ckpt")  # files that exist but are no networks
    clips = ["a.mp4", "sub/b.mp4"]
    for rel in clips:
        (out / "synced" / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / "synced" / rel).write_bytes(b"clip")
    context = engine.with_weights(engine.RunContext(raw, out, DataOptions(checkpoints=checkpoints, device="cpu")),
                                  ["quality"])  # fmt: skip
    runner.run_stage("quality", clips, context)  # returns: the stage completes
    records = [read_record(out, "quality", rel) for rel in clips]
    assert all(engine.is_internal_error(r.dropped) for r in records), [r.dropped for r in records]
    assert all("did not load" in r.detail and "koniq_pretrained.pkl" in r.detail for r in records)
    assert engine.pending(engine.get_stage("quality"), clips, context) == clips  # the next run retries them
