"""compile_unet: torch.compile of the UNet runs on CPU and equals the eager UNet within float rounding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from latentsync.inference.compile import compile_unet, inductor_problem, is_compiled
from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
from latentsync.models.unet_config import tiny_unet_config

# Fused Inductor kernels reorder float sums: 2e-6 measured (per-block compile) on outputs of magnitude ~1.
COMPILE_TOLERANCE = 1e-4
# The tiny golden's topology with one ResNet + attention per down level (two per up level) instead of two (three):
# every block type, motion module and skip connection is still traced, and dynamo, whose cost grows with the number
# of modules, takes 39 s instead of 58 s on 2 cores.
TRACED_CONFIG = dataclasses.replace(tiny_unet_config(), layers_per_block=1)


def _compiled_equals_eager(device: str, backend: str) -> None:
    unet = randomize_zero_init_(LatentSyncUNet(TRACED_CONFIG), torch.Generator().manual_seed(0)).eval()
    unet = unet.to(device)
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 13, 4, 16, 16, generator=gen).to(device)  # a guidance batch of a 4-frame window
    audio = torch.randn(2 * 4, 50, 24, generator=gen).to(device)
    t, later = torch.tensor(500, device=device), torch.tensor(200, device=device)  # tensors, as the pipeline passes
    eager = unet(sample, t, audio)
    compiled = compile_unet(unet, backend=backend)
    assert is_compiled(compiled) and not is_compiled(unet)
    assert (compiled.config, compiled.dtype, compiled.max_frames) == (unet.config, unet.dtype, unet.max_frames)
    out = compiled(sample, t, audio)
    assert (out - eager).abs().max().item() <= COMPILE_TOLERANCE
    # Another timestep reuses the graph (the timestep is a tensor input) and still follows the eager UNet.
    assert (compiled(sample, later, audio) - unet(sample, later, audio)).abs().max().item() <= COMPILE_TOLERANCE


@pytest.mark.slow  # dynamo traces the whole UNet (~40 s on 2 cores); no kernels are generated
@torch.no_grad()
def test_traced_unet_equals_eager_and_keeps_the_interface() -> None:
    _compiled_equals_eager("cpu", backend="aot_eager")


@pytest.mark.gpu  # Inductor's kernels: on CUDA only (on 2 CPU cores its C++ generation takes ~10 minutes)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@torch.no_grad()
def test_inductor_compiled_unet_equals_eager_on_cuda() -> None:
    problem = inductor_problem("cuda")
    if problem is not None:
        pytest.skip(problem)
    _compiled_equals_eager("cuda", backend="inductor")


def test_inductor_problem_names_the_missing_tool(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)  # fault injection: no C++ compiler on PATH
    assert "C++ compiler" in inductor_problem("cpu")
    unet = LatentSyncUNet(tiny_unet_config())
    with pytest.raises(RuntimeError, match="cannot compile the UNet: .*C\\+\\+ compiler"):
        compile_unet(unet)
