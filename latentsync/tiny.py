"""Tiny random-weight checkpoints in the official on-disk formats, for tests, benchmarks and the app's smoke mode.

:func:`write_tiny_checkpoints` fills a directory laid out exactly like a real one (see :mod:`latentsync.checkpoints`)
with the real architectures at tiny widths: the tiny-golden UNet (3.6 M parameters), a 4-layer Whisper encoder in
OpenAI's format, a small diffusers VAE, and the (already small) original SyncNet for sync scores. Loading it goes through the same code as the real weights. Faces are found
with the dlib backend (real weights shipped in a PyPI package), so the face geometry is real; the generated mouths
are noise-driven nonsense, which is why the app shows a banner in this mode. ``face_alignment=True`` adds random
face-alignment files in the Hub's formats, to exercise the production landmark backend's loading.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from latentsync.checkpoints import LOCAL_CONFIG_NAME, RELEASE_FILES, get_version

TINY_RESOLUTION = 256  # the real 1.5 face geometry (210x280 crop, 32x32 latents) with tiny networks
TINY_FACE_BACKEND = "dlib"  # the default; write_tiny_checkpoints(face_alignment=True) uses the production backend
SFD_FIRING_LAYER, SFD_LOGIT = "conv7_2", 10.0  # the random detector's only "face" scores come from this layer
FAN_TRACE_SIDE = 64  # input side the random 2D-FAN-4 is traced at (the TorchScript graph works at any size)


def random_syncnet_v2_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """``syncnet_v2.model``-shaped random weights, well scaled (BatchNorm variances positive, scales near 1)."""
    from latentsync.sync.syncnet import SyncNetV2

    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in SyncNetV2().state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(shape, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) > 1:  # conv / linear weights: keep activations at their input scale
            state[name] = torch.randn(shape, generator=generator) / shape[1:].numel() ** 0.5
        elif name.endswith("weight"):  # BatchNorm scales near 1, so signals neither vanish nor blow up
            state[name] = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[name] = 0.1 * torch.randn(shape, generator=generator)
    return state


def write_random_syncnet_v2(path: str | Path, seed: int = 0) -> Path:
    """The original SyncNet (full size, 13.6 M parameters: it is small) with random weights, as a plain state_dict."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_syncnet_v2_state_dict(seed), path)
    return path


def quiet_random_detector(detector: torch.nn.Module) -> torch.nn.Module:
    """Make a random SFD report one face per coarsest anchor (stride 128, 512 px boxes) and nothing elsewhere.

    Left fully random, its classifiers fire on thousands of anchors, and face-alignment's per-candidate Python loop
    then takes minutes per frame; this way a frame costs one forward pass and yields a few big, usable boxes.
    """
    with torch.no_grad():
        for name, module in detector.named_modules():
            if name.endswith("mbox_conf"):  # the last channel scores "face", the others "background"
                fires = name.startswith(SFD_FIRING_LAYER)
                module.weight.zero_()
                module.bias[:-1] = -SFD_LOGIT if fires else SFD_LOGIT
                module.bias[-1] = SFD_LOGIT if fires else -SFD_LOGIT
            elif name.endswith("mbox_loc"):  # no box regression: the boxes are the anchors themselves
                module.weight.zero_()
                module.bias.zero_()
    return detector


def write_random_face_alignment(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Random-weight face-alignment files in the formats of LatentSync's Hub repo: ``s3fd-619a316812.pth`` (the SFD
    detector, a plain state_dict) and ``2DFAN4-cd938726ad.zip`` (2D-FAN-4 as a TorchScript archive, the format
    face-alignment 1.4 shipped). Both are the real architectures at full size (about 90 MB each); returns the paths.

    The networks come from face-alignment's own classes, so :class:`FaceAlignmentBackend` loads them with
    ``strict=True`` exactly as it loads the real files. The landmark network is random; the detector is random too
    but made to report only big anchor boxes (see :func:`quiet_random_detector`), so it is quick and finds no real faces.
    """
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    from latentsync.faces.backend_face_alignment import DETECTOR_FILE, FAN_NETWORK_SIZE, FAN_TORCHSCRIPT_FILE

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # the modules' default initialisations draw from the global generator
    detector_path, fan_path = directory / DETECTOR_FILE, directory / FAN_TORCHSCRIPT_FILE
    torch.save(quiet_random_detector(s3fd()).state_dict(), detector_path)
    # Traced on a small input: the archive holds the weights and a graph for any input size; tracing at the network's
    # 256 px would only be slower.
    with warnings.catch_warnings():  # FAN returns a list of heatmaps; the tracer warns about it, harmlessly here
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(FAN(FAN_NETWORK_SIZE).eval(), torch.rand(1, 3, FAN_TRACE_SIDE, FAN_TRACE_SIDE),
                                 check_trace=False)  # fmt: skip
    traced.save(str(fan_path))
    return detector_path, fan_path


def write_random_gfpgan(path: str | Path, seed: int = 0, config=None) -> Path:
    """A GFPGAN restorer with random weights in ``GFPGANv1.4.pth``'s format (``{"params_ema": state_dict}``), by
    default the tiny one (:func:`latentsync.models.gfpgan.tiny_gfpgan_config`, 64 px, ~0.1 MB)."""
    from latentsync.models.gfpgan import STATE_DICT_KEY, random_gfpgan_state_dict, tiny_gfpgan_config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({STATE_DICT_KEY: random_gfpgan_state_dict(config or tiny_gfpgan_config(), seed)}, path)
    return path


def write_tiny_checkpoints(directory: str | Path, seed: int = 0, version: str = "1.5",
                           face_alignment: bool = False) -> Path:  # fmt: skip
    """Write a complete tiny checkpoint directory for ``version``'s layout; returns the directory.

    ``face_alignment``: also write random-weight face-alignment files (:func:`write_random_face_alignment`, +180 MB,
    some seconds) and use that backend, as the real directories do; by default faces are found by dlib (real weights
    from a PyPI package, no files here), which keeps the directory small (~70 MB) and face detection meaningful.
    """
    from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
    from latentsync.models.unet_checkpoint import save_unet_checkpoint
    from latentsync.models.unet_config import tiny_unet_config
    from latentsync.models.vae import save_random_tiny_vae
    from latentsync.models.whisper import tiny_whisper_dims, write_random_whisper_checkpoint

    directory = Path(directory)
    spec = get_version(version)
    dims = tiny_whisper_dims()
    unet_config = tiny_unet_config().to_dict()
    unet_config.update(cross_attention_dim=dims["n_audio_state"], resolution=TINY_RESOLUTION)

    from latentsync.models.unet_config import UNetConfig

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # module construction draws default initialisations from the global generator
    unet = randomize_zero_init_(LatentSyncUNet(UNetConfig.from_dict(unet_config)), generator)
    (directory / spec.unet.local_path).parent.mkdir(parents=True, exist_ok=True)
    save_unet_checkpoint(unet, directory / spec.unet.local_path)
    write_random_whisper_checkpoint(directory / spec.whisper.local_path, dims, seed=seed + 1)
    save_random_tiny_vae(directory / Path(spec.vae[0].local_path).parent, seed=seed + 2)
    write_random_syncnet_v2(directory / spec.syncnet_v2.local_path, seed=seed + 3)
    write_random_gfpgan(directory / RELEASE_FILES["gfpgan_v1.4"].local_path, seed=seed + 5)
    face_backend = TINY_FACE_BACKEND
    if face_alignment:
        aux_dir = (directory / spec.face_alignment[0].local_path).parent
        write_random_face_alignment(aux_dir, seed=seed + 4)
        face_backend = "face_alignment"
    settings = {"unet": unet_config, "resolution": TINY_RESOLUTION, "face_backend": face_backend}
    (directory / LOCAL_CONFIG_NAME).write_text(json.dumps(settings, indent=1))
    return directory
