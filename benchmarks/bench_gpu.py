"""GPU benchmark of the full-size LatentSync 1.5 (256 px) and 1.6 (512 px) networks with random weights.

No real weights are needed (nor downloadable here): the script writes a checkpoint directory in the real
layout (see :mod:`latentsync.checkpoints`) holding full-size, randomly initialised models, so speed and memory
are those of the real networks while the generated mouths are noise:

* ``latentsync_unet.pt``: the 1.27 B-parameter UNet (:class:`~latentsync.models.unet.LatentSyncUNet`, official
  config), random via :func:`~latentsync.models.unet.randomize_zero_init_`, stored in float16 (2.5 GB; the
  official file is float32, 5.07 GB; the loader casts to the requested dtype either way). 1.5 and 1.6 share
  this file: the networks are identical, only the face resolution differs, and that comes from the version.
* ``whisper/tiny.pt``: a random Whisper tiny with the real dimensions, in OpenAI's format.
* ``vae/``: a random diffusers ``AutoencoderKL`` with sd-vae-ft-mse's configuration.
* ``latentsync_config.json``: ``{"face_backend": "dlib"}`` (the face-alignment weights are not available
  offline).

Then, per version, it loads the pipeline with ``load_pipeline(version, device="cuda", dtype="float16")``,
warms it up on a 1 s clip, and lip-syncs a generated 10 s talking-head clip (the one of
``bench_pipeline.py``), measuring the wall time per stage, frames/s and the peak VRAM
(``torch.cuda.max_memory_allocated``) of that call. Results go to ``benchmarks/results/gpu_random.json``.

Usage (from the repository root)::

    python benchmarks/bench_gpu.py                 # needs a CUDA GPU; 1.5 and 1.6, 20 steps, guidance 1.5
    python benchmarks/bench_gpu.py --dry-run       # CPU only: checks shapes and model files, nothing big

Variants (``--variants``, default all three): ``plain``; ``low-memory`` (the two guidance halves one after the
other, :class:`~latentsync.models.low_memory.SequentialGuidance`, and the VAE one frame per call); ``compiled``
(:func:`~latentsync.inference.compile.compile_unet`; its warm-up call, which compiles, is timed as ``warmup_s``). Each
variant uses the pipeline's own option when the pipeline has it (``LipSyncOptions.low_memory``,
``load_pipeline(..., compile=True)``) and otherwise wraps the loaded pipeline's UNet / VAE itself (then with
step caching off, ``cache_interval=1``, where that option exists, since a cached UNet needs the bare UNet).
Before the pipeline runs, ``unet_memory`` measures one guided 16-frame UNet call and one VAE decode of 16
frames per version alone: peak VRAM batched vs sequential halves, 8 vs 1 frames per VAE call.

``--dry-run`` builds both UNets on the meta device (parameter and entry counts checked against the reference
manifest, one shape-only forward pass of a guided 16-frame call), writes the full-size Whisper and VAE for
real and runs them once on CPU, and generates a 1 s clip. It writes no results.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: import the package without installing it
    sys.path.insert(0, str(REPO_ROOT))

from bench_pipeline import MIB, machine, stage_times, write_inputs  # noqa: E402  (this folder is on sys.path)

from latentsync.checkpoints import LOCAL_CONFIG_NAME, get_version  # noqa: E402
from latentsync.inference.pipeline import (  # noqa: E402
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    FRAMES_PER_CALL,
    LATENT_CHANNELS,
)

VERSIONS = ("1.5", "1.6")
VARIANTS = ("plain", "low-memory", "compiled")
DEFAULT_SECONDS = 10.0  # length of the measured clip
WARMUP_SECONDS = 1.0  # a first short call loads the CUDA kernels and picks the cuDNN algorithms
DEFAULT_SIZE = 512  # frame side of the generated clip (px)
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "gpu_random.json"
DEVICE = "cuda"
DTYPE = "float16"  # what the reference runs on GPUs of compute capability 8 or newer
FACE_BACKEND = "dlib"  # the only landmark backend whose weights are available offline (a pip package)
UNET_FILE_DTYPE = torch.float16  # halves the 5 GB file; loading casts to the requested dtype anyway

# Whisper tiny's real dimensions (OpenAI's ModelDimensions for "tiny", README §2.2 of the reference).
WHISPER_TINY_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51865,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}

# stabilityai/sd-vae-ft-mse's config.json (diffusers AutoencoderKL): four levels 128-256-512-512, two ResNets
# per level, four latent channels.
SD_VAE_FT_MSE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
}

# The reference manifest (model_manifest_summary.json, configs/unet/stage2.yaml and stage2_512.yaml):
# parameters (without the 40 pos_encoder.pe buffers) and state_dict entries of the official UNet.
REFERENCE_UNET_PARAMS = 1_267_099_844
REFERENCE_UNET_ENTRIES = 1246
AUDIO_TOKENS = 50  # per frame: 10 Whisper steps x 5 hidden states (latentsync.inference.audio_features)


# ------------------------------------------------------------------------------------------------ checkpoints


def unet_config(version: str):
    from latentsync.models.unet_config import UNetConfig

    is_512 = get_version(version).resolution == 512
    return UNetConfig.latentsync_16() if is_512 else UNetConfig.latentsync_15()


def write_whisper_and_vae(directory: Path, seed: int) -> None:
    from latentsync.models.vae import save_random_tiny_vae
    from latentsync.models.whisper import write_random_whisper_checkpoint

    spec = get_version(VERSIONS[0])
    # float16, like the official whisper/tiny.pt.
    write_random_whisper_checkpoint(directory / spec.whisper.local_path, WHISPER_TINY_DIMS, seed=seed + 1,
                                    dtype=torch.float16)  # fmt: skip
    # save_random_tiny_vae writes any AutoencoderKL config; "tiny" is only its default.
    vae_dir = directory / Path(spec.vae[0].local_path).parent
    save_random_tiny_vae(vae_dir, seed=seed + 2, config=SD_VAE_FT_MSE_CONFIG)
    (directory / LOCAL_CONFIG_NAME).write_text(json.dumps({"face_backend": FACE_BACKEND}, indent=1))


def write_random_checkpoints(directory: Path, seed: int = 0, build_device: str = "cpu") -> Path:
    """Fill ``directory`` with full-size random models in the real layout (reused when already complete)."""
    from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
    from latentsync.models.unet_checkpoint import save_unet_checkpoint

    spec = get_version(VERSIONS[0])  # 1.5 and 1.6 have the same file layout and the same network
    unet_path = directory / spec.unet.local_path
    if unet_path.is_file() and (directory / LOCAL_CONFIG_NAME).is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # module construction draws its default initialisation from the global generator
    with torch.device(build_device):
        unet = LatentSyncUNet(unet_config(VERSIONS[0]))
    randomize_zero_init_(unet, torch.Generator().manual_seed(seed))
    save_unet_checkpoint(unet.to("cpu", UNET_FILE_DTYPE), unet_path)
    del unet
    write_whisper_and_vae(directory, seed)
    return directory


# ------------------------------------------------------------------------------------------------ dry run


def dry_run(args: argparse.Namespace) -> int:
    """Check everything that does not need a GPU: model shapes, the Whisper and VAE files, clip generation."""
    from latentsync.models.low_memory import SequentialGuidance
    from latentsync.models.unet import LatentSyncUNet
    from latentsync.models.vae import LatentVae
    from latentsync.models.whisper import WhisperAudioEncoder

    failures = []
    for version in args.versions:
        config = unet_config(version)
        with torch.device("meta"):
            unet = LatentSyncUNet(config)
        params = sum(p.numel() for p in unet.parameters())
        entries = len(unet.state_dict())
        side = config.resolution // 8  # latent side: 32 for 1.5, 64 for 1.6
        batch = 2  # guided call: unconditional and conditional
        sample = torch.empty(batch, config.in_channels, FRAMES_PER_CALL, side, side, device="meta")
        audio = torch.empty(batch * FRAMES_PER_CALL, AUDIO_TOKENS, config.cross_attention_dim, device="meta")
        with torch.inference_mode():
            out = unet(sample, 951, audio)  # (2, 4, 16, side, side)
            halves = SequentialGuidance(unet)(sample, 951, audio)  # the low-memory variant's call
        ok_halves = halves.shape == out.shape
        print(f"UNet {version}: sequential guidance halves -> {tuple(halves.shape)}: "
              f"{'ok' if ok_halves else 'MISMATCH'}")
        if not ok_halves:
            failures.append(f"SequentialGuidance {version}")
        expected_out = (batch, LATENT_CHANNELS, FRAMES_PER_CALL, side, side)
        counts_ok = params == REFERENCE_UNET_PARAMS and entries == REFERENCE_UNET_ENTRIES
        ok = counts_ok and out.shape == expected_out
        print(f"UNet {version}: {params:,} parameters ({entries} entries; reference "
              f"{REFERENCE_UNET_PARAMS:,} / {REFERENCE_UNET_ENTRIES}); meta forward {tuple(sample.shape)} -> "
              f"{tuple(out.shape)}: {'ok' if ok else 'MISMATCH'}")  # fmt: skip
        if not ok:
            failures.append(f"UNet {version}")

    with tempfile.TemporaryDirectory(prefix="bench-gpu-dry-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        write_whisper_and_vae(directory, args.seed)
        files = [path for path in directory.rglob("*") if path.is_file()]
        sizes = {path.relative_to(directory).as_posix(): path.stat().st_size / MIB for path in files}
        print(f"wrote in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{name} {size:.0f} MiB" for name, size in sorted(sizes.items())))  # fmt: skip
        spec = get_version(VERSIONS[0])
        whisper = WhisperAudioEncoder.from_checkpoint(directory / spec.whisper.local_path)
        features = whisper.encode(np.zeros(16_000, np.float32) + 0.01)  # 1 s -> (50, 5, 384)
        vae = LatentVae.from_pretrained(directory / "vae")
        vae_params = sum(p.numel() for p in vae.model.parameters())
        latents = vae.encode(torch.zeros(1, 3, 256, 256), torch.Generator().manual_seed(0))  # (1, 4, 32, 32)
        ok = tuple(features.shape) == (50, 5, 384) and tuple(latents.shape) == (1, 4, 32, 32)
        ok = ok and whisper.feature_dim == unet_config(VERSIONS[0]).cross_attention_dim
        print(f"Whisper tiny: 1 s -> features {tuple(features.shape)}; VAE ({vae_params:,} parameters): "
              f"256x256 -> latents {tuple(latents.shape)}: {'ok' if ok else 'MISMATCH'}")  # fmt: skip
        if not ok:
            failures.append("Whisper/VAE")
        video, audio = write_inputs(directory, WARMUP_SECONDS, args.size)
        print(f"clip: {video.name} ({video.stat().st_size / 1024:.0f} KiB), {audio.name}")
    print("dry run: " + ("all checks passed" if not failures else f"FAILED: {', '.join(failures)}"))
    return 1 if failures else 0


# ------------------------------------------------------------------------------------------------ GPU run


def _options_field(name: str) -> bool:
    from latentsync.inference.pipeline import LipSyncOptions

    return name in LipSyncOptions.__dataclass_fields__


def load_variant(version: str, variant: str, checkpoints: Path) -> tuple[object, dict]:
    """The pipeline for ``variant`` and the extra LipSyncOptions fields it needs (see the module docstring)."""
    import inspect

    from latentsync import load_pipeline
    from latentsync.inference.compile import compile_unet
    from latentsync.models.low_memory import SequentialGuidance
    from latentsync.models.vae import LOW_MEMORY_VAE_BATCH_SIZE

    extra: dict = {}
    native_compile = "compile" in inspect.signature(load_pipeline).parameters
    kwargs = {"compile": True} if variant == "compiled" and native_compile else {}
    pipe = load_pipeline(version, device=DEVICE, dtype=DTYPE, checkpoints_dir=checkpoints, **kwargs)
    if variant == "low-memory":
        if _options_field("low_memory"):
            extra["low_memory"] = True
        else:
            pipe.unet = SequentialGuidance(pipe.unet)
            pipe.vae.batch_size = LOW_MEMORY_VAE_BATCH_SIZE
    if variant == "compiled" and not native_compile:
        pipe.unet = compile_unet(pipe.unet)
    wrapped_low_memory = variant == "low-memory" and "low_memory" not in extra
    wrapped = wrapped_low_memory or (variant == "compiled" and not native_compile)
    if wrapped and _options_field("cache_interval"):
        extra["cache_interval"] = 1  # a CachedUNet must wrap the bare UNet
    return pipe, extra


def run_version(version: str, checkpoints: Path, clips: dict, workdir: Path, args: argparse.Namespace,
                variant: str = "plain") -> dict:  # fmt: skip
    """Load ``version``, warm it up, lip-sync the measured clip: times per stage and that call's peak VRAM."""
    from latentsync.inference.pipeline import LipSyncOptions

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe, extra = load_variant(version, variant, checkpoints)
    torch.cuda.synchronize()
    load_s = time.perf_counter() - started
    weights_mib = torch.cuda.memory_allocated() / MIB
    options = LipSyncOptions(steps=args.steps, guidance_scale=args.guidance, **extra)
    output = workdir / f"out_{version}_{variant}.mp4"
    warmup_s = None
    if args.warmup or variant == "compiled":  # the compiled UNet's first calls compile: always warm it up
        started = time.perf_counter()
        pipe(*clips["warmup"], output, options)
        torch.cuda.synchronize()
        warmup_s = time.perf_counter() - started
    torch.cuda.reset_peak_memory_stats()
    events: list = []
    started = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        events.append((time.perf_counter(), stage, done, total))

    result = pipe(*clips["measure"], output, options, progress=progress)
    torch.cuda.synchronize()
    finished = time.perf_counter()
    times = stage_times(events, started, finished)
    summary = {
        "version": version,
        "variant": variant,
        "options": extra,
        "resolution": pipe.resolution,
        "num_frames": result.num_frames,
        "frames_with_face": result.frames_with_face,
        "load_s": round(load_s, 2),
        "warmup_s": None if warmup_s is None else round(warmup_s, 2),
        "stage_s": {name: round(value, 2) for name, value in times.items()},
        "frames_per_s": round(result.num_frames / times["total"], 2),
        "lip_sync_frames_per_s": round(result.num_frames / times["lip sync"], 2),
        "weights_mib": round(weights_mib, 1),
        "peak_vram_allocated_mib": round(torch.cuda.max_memory_allocated() / MIB, 1),
        "peak_vram_reserved_mib": round(torch.cuda.max_memory_reserved() / MIB, 1),
    }
    del pipe
    gc.collect()
    torch.cuda.empty_cache()
    return summary


def _peak_mib(fn) -> float:
    """Peak VRAM allocated above what was allocated before ``fn()`` (MiB)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - before) / MIB, 1)


@torch.inference_mode()
def unet_memory(version: str, checkpoints: Path) -> dict:
    """Peak activation VRAM of one guided 16-frame UNet call, batched vs halves in turn, and of one VAE decode of
    16 frames at 8 vs 1 frames per call; plus the weights (all fp16, on the GPU)."""
    from latentsync.checkpoints import get_version
    from latentsync.models.low_memory import SequentialGuidance
    from latentsync.models.unet_checkpoint import load_unet_checkpoint
    from latentsync.models.vae import DEFAULT_VAE_BATCH_SIZE, LOW_MEMORY_VAE_BATCH_SIZE, LatentVae

    dtype = getattr(torch, DTYPE)
    config = unet_config(version)
    spec = get_version(VERSIONS[0])
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    unet = load_unet_checkpoint(checkpoints / spec.unet.local_path, config, torch.device(DEVICE), dtype)
    vae = LatentVae.from_pretrained(checkpoints / Path(spec.vae[0].local_path).parent, DEVICE, dtype)
    weights = round((torch.cuda.memory_allocated() - before) / MIB, 1)
    side = config.resolution // 8
    gen = torch.Generator(DEVICE).manual_seed(0)
    like = {"device": DEVICE, "dtype": dtype, "generator": gen}
    sample = torch.randn(2, config.in_channels, FRAMES_PER_CALL, side, side, **like)  # a guided window
    audio = torch.randn(2 * FRAMES_PER_CALL, AUDIO_TOKENS, config.cross_attention_dim, **like)
    latents = torch.randn(FRAMES_PER_CALL, LATENT_CHANNELS, side, side, **like)
    halves = SequentialGuidance(unet)
    result = {
        "version": version,
        "weights_unet_vae_mib": weights,
        "unet_batched_mib": _peak_mib(lambda: unet(sample, 951, audio)),
        "unet_sequential_mib": _peak_mib(lambda: halves(sample, 951, audio)),
        "vae_decode_8_mib": _peak_mib(lambda: vae.decode(latents, batch_size=DEFAULT_VAE_BATCH_SIZE)),
        "vae_decode_1_mib": _peak_mib(lambda: vae.decode(latents, batch_size=LOW_MEMORY_VAE_BATCH_SIZE)),
    }
    unet = vae = halves = None  # free the weights before the pipeline runs (the lambdas above are done)
    gc.collect()
    torch.cuda.empty_cache()
    return result


def run_benchmark(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        workdir = Path(tmp)
        checkpoints = args.checkpoints or workdir / "checkpoints"
        started = time.perf_counter()
        write_random_checkpoints(checkpoints, args.seed, build_device=DEVICE)
        print(f"checkpoints ready in {time.perf_counter() - started:.0f} s ({checkpoints})", flush=True)
        clips = {
            "warmup": write_inputs(workdir, WARMUP_SECONDS, args.size),
            "measure": write_inputs(workdir, args.seconds, args.size),
        }
        memory = []
        for version in args.versions:
            memory.append(unet_memory(version, checkpoints))
            print(json.dumps(memory[-1]), flush=True)
        runs = []
        for version in args.versions:
            for variant in args.variants:
                runs.append(run_version(version, checkpoints, clips, workdir, args, variant))
                print(json.dumps(runs[-1]), flush=True)
    return {
        "date": date.today().isoformat(),
        "machine": {**machine(), "gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda},
        "models": "full-size random weights (LatentSync UNet, Whisper tiny, sd-vae-ft-mse config), "
                  f"device {DEVICE}, {DTYPE}, face backend {FACE_BACKEND}",
        "settings": {"steps": args.steps, "guidance_scale": args.guidance, "seconds": args.seconds,
                     "frame_size": args.size, "warmup": args.warmup},  # fmt: skip
        "unet_memory": memory,
        "runs": runs,
    }


def print_table(runs: list[dict]) -> None:
    header = (f"{'version':>7} {'variant':>10} {'res':>4} {'frames':>6} {'load':>6} {'warmup':>6} {'audio':>6} "
              f"{'faces':>6} {'lipsync':>8} {'total':>7} {'fps':>7} {'VRAM MiB':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in runs:
        s = r["stage_s"]
        warmup = "-" if r["warmup_s"] is None else f"{r['warmup_s']:.1f}"
        print(f"{r['version']:>7} {r['variant']:>10} {r['resolution']:>4} {r['num_frames']:>6} {r['load_s']:>6.1f} "
              f"{warmup:>6} "
              f"{s['audio features']:>6.2f} {s['analysing faces']:>6.2f} {s['lip sync']:>8.2f} "
              f"{s['total']:>7.2f} "
              f"{r['frames_per_s']:>7.2f} {r['peak_vram_allocated_mib']:>9.0f}")  # fmt: skip


def print_memory(memory: list[dict]) -> None:
    print("peak VRAM above the weights, MiB: one guided 16-frame UNet call; one VAE decode of 16 frames")
    for m in memory:
        print(f"{m['version']:>4}: weights {m['weights_unet_vae_mib']:.0f} | "
              f"UNet batched {m['unet_batched_mib']:.0f}"
              f" vs halves {m['unet_sequential_mib']:.0f} | VAE 8/call {m['vae_decode_8_mib']:.0f}"
              f" vs 1/call {m['vae_decode_1_mib']:.0f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU-only checks of shapes and files")
    parser.add_argument("--versions", nargs="+", default=list(VERSIONS), choices=VERSIONS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="pipeline variants to run per version")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="measured clip (s)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="guidance scale (1.0: none)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame side of the clip (px)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the 1 s warm-up call")
    parser.add_argument("--checkpoints", type=Path, help="write (or reuse) the random checkpoints here")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    if not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check the setup on CPU", file=sys.stderr)
        return 2
    results = run_benchmark(args)
    print()
    print(f"random full-size models, {DTYPE}, steps {args.steps}, guidance {args.guidance}, "
          f"{args.seconds:g} s clip at {args.size}x{args.size}")
    print("times in s; load = building the pipeline; VRAM = peak allocated during the measured call")
    print_table(results["runs"])
    print()
    print_memory(results["unet_memory"])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
