"""Where every weight file of a LatentSync version comes from, and how it gets onto disk.

One registry (:data:`VERSIONS`) maps a version name to the Hugging Face Hub files it needs; :func:`resolve_checkpoints`
turns it into local paths, either from a local directory laid out like the Hub repos (argument ``checkpoints_dir`` or
the ``LATENTSYNC_CHECKPOINTS`` environment variable) or by downloading through ``huggingface_hub`` into its cache
(which honours ``HF_HUB_OFFLINE``, ``HF_HOME`` and ``HF_TOKEN``). Nothing is downloaded or read at import time.

Local directory layout (the official ``checkpoints/`` folder plus the VAE)::

    latentsync_unet.pt            # {"state_dict": ..., "global_step": ...}
    whisper/tiny.pt               # openai-whisper format: {"dims": ..., "model_state_dict": ...}
    vae/config.json               # diffusers AutoencoderKL (stabilityai/sd-vae-ft-mse)
    vae/diffusion_pytorch_model.safetensors
    auxiliary/2DFAN4-cd938726ad.zip, auxiliary/s3fd-619a316812.pth   # face-alignment landmarks + detector
    auxiliary/syncnet_v2.model    # only for sync scores
    latentsync_config.json        # optional: overrides for this directory (see LocalSettings)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from latentsync.errors import CheckpointError

CHECKPOINTS_ENV = "LATENTSYNC_CHECKPOINTS"  # a local directory that replaces the Hub
LOCAL_CONFIG_NAME = "latentsync_config.json"
# The Hub cannot be reached from the machines this was written on, so revisions are branch names rather than
# commit hashes; pin them here (or pass ``revision=``) once the hashes can be read.
LATENTSYNC_15_REPO, LATENTSYNC_16_REPO = "ByteDance/LatentSync-1.5", "ByteDance/LatentSync-1.6"
SD_VAE_REPO = "stabilityai/sd-vae-ft-mse"
DEFAULT_REVISION = "main"


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub repo; ``local_path`` is where it sits in a local checkpoints directory."""

    repo_id: str
    filename: str
    local_path: str
    revision: str = DEFAULT_REVISION


@dataclass(frozen=True)
class VersionSpec:
    """Everything one LatentSync version needs. The 1.5 and 1.6 networks are identical; 1.6 works at 512 px."""

    name: str
    resolution: int
    unet: HubFile
    whisper: HubFile
    vae: tuple[HubFile, ...]
    face_alignment: tuple[HubFile, ...]
    syncnet_v2: HubFile


def _vae_files() -> tuple[HubFile, ...]:
    return tuple(HubFile(SD_VAE_REPO, name, f"vae/{name}") for name in ("config.json", "diffusion_pytorch_model.safetensors"))


def _aux(name: str) -> HubFile:
    # The auxiliary models live in the 1.5 repo (the 1.6 repo only re-publishes the UNet and Whisper).
    return HubFile(LATENTSYNC_15_REPO, f"auxiliary/{name}", f"auxiliary/{name}")


def _version(name: str, repo: str, resolution: int) -> VersionSpec:
    return VersionSpec(
        name=name,
        resolution=resolution,
        unet=HubFile(repo, "latentsync_unet.pt", "latentsync_unet.pt"),
        whisper=HubFile(repo, "whisper/tiny.pt", "whisper/tiny.pt"),
        vae=_vae_files(),
        face_alignment=(_aux("2DFAN4-cd938726ad.zip"), _aux("s3fd-619a316812.pth")),
        syncnet_v2=_aux("syncnet_v2.model"),
    )


VERSIONS: dict[str, VersionSpec] = {
    "1.5": _version("1.5", LATENTSYNC_15_REPO, 256),
    "1.6": _version("1.6", LATENTSYNC_16_REPO, 512),
}


def get_version(name: str) -> VersionSpec:
    """The registry entry for ``name``; an unknown name raises with the available ones."""
    try:
        return VERSIONS[str(name)]
    except KeyError:
        raise ValueError(f"unknown LatentSync version {name!r}; available: {', '.join(VERSIONS)}") from None


@dataclass(frozen=True)
class LocalSettings:
    """Optional ``latentsync_config.json`` of a local directory (used by tiny test checkpoints and custom models).

    ``unet``: UNet config fields overriding the version preset; ``resolution``: face resolution;
    ``face_backend``: landmark backend name (``face_alignment`` unless stated).
    """

    unet: dict = field(default_factory=dict)
    resolution: int | None = None
    face_backend: str = "face_alignment"

    @classmethod
    def read(cls, directory: Path | None) -> LocalSettings:
        path = directory / LOCAL_CONFIG_NAME if directory else None
        if path is None or not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path} is not a valid {LOCAL_CONFIG_NAME}: {err}") from err


@dataclass(frozen=True)
class CheckpointPaths:
    """Local paths of one version's files, ready to load."""

    version: VersionSpec
    root: Path | None  # the local directory, or None when the files came from the Hub cache
    unet: Path
    whisper: Path
    vae_dir: Path
    face_weights_dir: Path | None  # None when the face backend needs no weight files
    settings: LocalSettings

    @property
    def resolution(self) -> int:
        return self.settings.resolution or self.version.resolution

    @property
    def face_backend(self) -> str:
        return self.settings.face_backend


def local_checkpoints_dir(checkpoints_dir: str | os.PathLike | None = None) -> Path | None:
    """The local override: the argument, else ``$LATENTSYNC_CHECKPOINTS``, else None (use the Hub)."""
    value = checkpoints_dir if checkpoints_dir is not None else os.environ.get(CHECKPOINTS_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"checkpoints directory {path} does not exist (from {'argument' if checkpoints_dir else CHECKPOINTS_ENV})")
    return path


def fetch(files: tuple[HubFile, ...] | list[HubFile], root: Path | None) -> list[Path]:
    """Local paths of ``files``: from ``root`` when given, else downloaded (or found in the cache) from the Hub.

    Raises :class:`CheckpointError` naming every file that is missing, with how to get it.
    """
    if root is not None:
        missing = [f for f in files if not (root / f.local_path).is_file()]
        if missing:
            lines = "\n".join(
                f"  {root / f.local_path}   (hf download {f.repo_id} {f.filename} --local-dir ...)" for f in missing
            )
            raise CheckpointError(f"missing model files in {root}:\n{lines}")
        return [root / f.local_path for f in files]

    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    def download(f: HubFile, local_only: bool) -> Path:
        return Path(huggingface_hub.hf_hub_download(f.repo_id, f.filename, revision=f.revision, local_files_only=local_only))

    # Cached files first, without touching the network; then download the rest, stopping at the first failure so an
    # unreachable Hub costs one set of retries rather than one per file.
    found: dict[HubFile, Path] = {}
    for f in files:
        try:
            found[f] = download(f, local_only=True)
        except LocalEntryNotFoundError:
            pass
    reason = ""
    if huggingface_hub.is_offline_mode():
        reason = "HF_HUB_OFFLINE is set and these files are not in the Hugging Face cache"
    else:
        for f in files:
            if f in found:
                continue
            try:
                found[f] = download(f, local_only=False)
            except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
                reason = f"downloading {f.repo_id}/{f.filename} failed: {type(err).__name__}: {str(err).splitlines()[0]}"
                break
    missing = [f for f in files if f not in found]
    if missing:
        lines = "\n".join(f"  {f.repo_id}/{f.filename} (revision {f.revision})" for f in missing)
        raise CheckpointError(
            f"could not get model files ({reason}):\n{lines}\n"
            f"Download them while online, or point {CHECKPOINTS_ENV} / --checkpoints at a directory holding them."
        )
    return [found[f] for f in files]


def _face_files(spec: VersionSpec, settings: LocalSettings) -> tuple[HubFile, ...]:
    """Weight files of the face backend; dlib's model ships inside a PyPI package, so it needs none."""
    return spec.face_alignment if settings.face_backend == "face_alignment" else ()


def resolve_checkpoints(version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None) -> CheckpointPaths:
    """Local paths for everything :func:`latentsync.load_pipeline` needs for ``version``."""
    spec = get_version(version)
    root = local_checkpoints_dir(checkpoints_dir)
    settings = LocalSettings.read(root)
    face_files = _face_files(spec, settings)
    paths = fetch([spec.unet, spec.whisper, *spec.vae, *face_files], root)
    unet, whisper, vae_config = paths[0], paths[1], paths[2]
    return CheckpointPaths(
        version=spec,
        root=root,
        unet=unet,
        whisper=whisper,
        vae_dir=vae_config.parent,
        face_weights_dir=paths[-1].parent if face_files else None,
        settings=settings,
    )


def resolve_sync_scoring(
    version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None
) -> tuple[str, Path | None, Path]:
    """What scoring a video needs: (face backend name, its weights directory or None, syncnet_v2.model path)."""
    spec = get_version(version)
    root = local_checkpoints_dir(checkpoints_dir)
    settings = LocalSettings.read(root)
    face_files = _face_files(spec, settings)
    paths = fetch([*face_files, spec.syncnet_v2], root)  # one call: an error lists everything that is missing
    return settings.face_backend, paths[0].parent if face_files else None, paths[-1]


def resolve_syncnet_v2(version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None) -> Path:
    """Local path of the original SyncNet weights used for Sync-C / Sync-D scores."""
    spec = get_version(version)
    return fetch([spec.syncnet_v2], local_checkpoints_dir(checkpoints_dir))[0]
