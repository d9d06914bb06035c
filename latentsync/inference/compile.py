"""Optional ``torch.compile`` of the LatentSync UNet (``--compile``; off by default).

:func:`compile_unet` returns ``torch.compile(unet)``: a module called exactly like the UNet
(``net(sample, t, audio)``) whose attributes (``config``, ``dtype``, ``device``, ``max_frames``) are the UNet's.

Choices for inference:

* One graph for the whole ``forward`` (``fullgraph`` not required). Compiling the blocks one by one (so that
  step caching, which calls the blocks itself, would also run compiled) was tried: every ResNet, transformer
  and sampler of one class shares one code object, so their different channel counts hit Dynamo's recompile
  limit (8) and the rest fell back to eager, and automatic dynamic shapes hit an Inductor range error on the
  down-samplers (torch 2.13, CPU). So the compiled UNet serves the plain path; a ``CachedUNet`` built on it
  walks the original blocks eagerly (correct, not faster).
* ``mode="default"``: Inductor kernels without CUDA graphs. "reduce-overhead" records a CUDA graph per input
  shape and keeps its memory pool alive (against the low-memory mode); "max-autotune" adds minutes of
  kernel benchmarking to the warm-up.
* ``dynamic=False``: shapes are specialised. A video's windows have 16 frames except perhaps the last, so a
  video compiles at most twice (16 frames, and its last window's length; each new length later compiles
  once more, up to Dynamo's recompile limit, after which that length runs eagerly). Symbolic shapes would
  save those recompiles but hit the range error above.

Warm-up cost: the first call with each shape compiles. Measured only on CPU in the session that wrote this
(2 cores shared by several jobs, load 4-8): the whole-graph compile of the tiny test UNet took ~10 min per
compile (20 min for a test that compiled twice), against 46 s for a per-block compile; the full-size UNet on a
GPU is not measured (benchmarks/bench_gpu.py prints it as ``warmup_s`` of the ``compiled`` variant). Pass the
timestep as a tensor (the pipeline's ``scheduler.timesteps`` elements are): a Python int is specialised, so
every new value would compile again. Outputs equal eager ones within float rounding (2e-6 measured).
"""

from __future__ import annotations

import shutil

import torch
from torch import nn

COMPILE_MODE = "default"  # see the module docstring for why not "reduce-overhead" / "max-autotune"


def inductor_problem(device: torch.device | str) -> str | None:
    """Why Inductor cannot compile for ``device`` here (None: it can). On CPU it needs a C++ compiler; on
    CUDA, Triton."""
    device = torch.device(device)
    if device.type == "cpu":
        if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
            return "torch.compile's Inductor backend needs a C++ compiler (g++ or clang++) on CPU; none on PATH"
        return None
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "torch.compile's Inductor backend needs Triton on CUDA (pip install triton)"
        return None
    return f"torch.compile is not supported here on {device.type}"


def compile_unet(unet: nn.Module, mode: str = COMPILE_MODE, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` of ``unet`` for inference (see the module docstring); call it like the UNet.

    Nothing compiles until the first call. Raises RuntimeError naming what is missing when Inductor cannot
    run on the UNet's device. ``backend="aot_eager"`` traces the same graphs without generating kernels (what the
    CPU tests use: Inductor's C++ code generation takes about ten minutes for the UNet on two CPU cores).
    """
    if backend != "inductor":
        return torch.compile(unet, backend=backend, dynamic=False, fullgraph=False)
    device = next(unet.parameters()).device
    problem = inductor_problem(device)
    if problem is not None:
        raise RuntimeError(f"cannot compile the UNet: {problem}")
    return torch.compile(unet, mode=mode, dynamic=False, fullgraph=False)


def is_compiled(unet: nn.Module) -> bool:
    """Whether ``unet`` is a ``torch.compile`` wrapper (e.g. from :func:`compile_unet`)."""
    return isinstance(unet, torch._dynamo.eval_frame.OptimizedModule)
