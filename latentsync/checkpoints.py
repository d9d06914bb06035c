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
    auxiliary/GFPGANv1.4.pth      # only for face restoration (a GitHub release file, see RELEASE_FILES)
    latentsync_config.json        # optional: overrides for this directory (see LocalSettings)

The face-alignment weights have a second source: face-alignment's own download cache
(``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``)
with the files ``s3fd-619a316812.pth`` and ``2DFAN4-11f355bf06.pth.tar`` (or the 1.4-era ``2DFAN4-cd938726ad.zip``).
It is used when the primary source (the local directory, or the Hub and its cache) cannot provide them; it is only
read, never written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from latentsync.errors import CheckpointError

CHECKPOINTS_ENV = "LATENTSYNC_CHECKPOINTS"  # a local directory that replaces the Hub
LOCAL_CONFIG_NAME = "latentsync_config.json"
# The Hub cannot be reached from the machines this was written on, so revisions are branch names rather than
# commit hashes; pin them here (or pass ``revision=``) once the hashes can be read.
LATENTSYNC_15_REPO, LATENTSYNC_16_REPO = "ByteDance/LatentSync-1.5", "ByteDance/LatentSync-1.6"
SD_VAE_REPO = "stabilityai/sd-vae-ft-mse"
DEFAULT_REVISION = "main"

# face-alignment's own cache (README §12): torch.hub.get_dir()/checkpoints under these exact names (also the names
# latentsync.faces.backend_face_alignment looks for in any weights folder).
FACE_ALIGNMENT_CACHE_SUBDIR = "checkpoints"
FACE_ALIGNMENT_DETECTOR_FILE = "s3fd-619a316812.pth"
FACE_ALIGNMENT_FAN_FILES = ("2DFAN4-11f355bf06.pth.tar", "2DFAN4-cd938726ad.zip")  # 1.5's plain file, or 1.4's archive


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
        face_alignment=(_aux(FACE_ALIGNMENT_FAN_FILES[1]), _aux(FACE_ALIGNMENT_DETECTOR_FILE)),
        syncnet_v2=_aux("syncnet_v2.model"),
    )


VERSIONS: dict[str, VersionSpec] = {
    "1.5": _version("1.5", LATENTSYNC_15_REPO, 256),
    "1.6": _version("1.6", LATENTSYNC_16_REPO, 512),
}


# Weights that training and the data toolchain need besides a version's own (reference README §2.2), by name.
# The auxiliary files live in the 1.5 repo; StableSyncNet is published with 1.6.
AUXILIARY: dict[str, HubFile] = {
    "hyperiqa": _aux("koniq_pretrained.pkl"),  # hyperIQA trained on KonIQ-10k: the data toolchain's quality filter
    "stable_syncnet": HubFile(LATENTSYNC_16_REPO, "stable_syncnet.pt", "stable_syncnet.pt"),  # sync loss in training
    "videomae_v2": _aux("vit_g_hybrid_pt_1200e_ssv2_ft.pth"),  # VideoMAE-v2 ViT-g/14: TREPA features
    "vgg16": _aux("vgg16-397923af.pth"),  # torchvision's VGG16: the LPIPS backbone
}


def resolve_auxiliary(name: str, checkpoints_dir: str | os.PathLike | None = None, *, revision: str | None = None) -> Path:
    """Local path of the auxiliary weight file ``name`` (see :data:`AUXILIARY`): from a local checkpoints directory
    (argument or ``LATENTSYNC_CHECKPOINTS``, at the same relative path as in the Hub repo) or the Hub and its cache.

    ``revision`` pins a commit, branch or tag of the file's Hub repo (None: the registry's pin). An unknown name
    raises with the available ones.
    """
    try:
        hub_file = AUXILIARY[str(name)]
    except KeyError:
        raise ValueError(f"unknown auxiliary checkpoint {name!r}; available: {', '.join(AUXILIARY)}") from None
    if revision is not None:
        hub_file = replace(hub_file, revision=str(revision))
    return fetch([hub_file], local_checkpoints_dir(checkpoints_dir))[0]


@dataclass(frozen=True)
class ReleaseFile:
    """A weight file published outside the Hub (a GitHub release), fetched once and checked against its SHA-256."""

    local_path: str  # where it sits in a local checkpoints directory, and in the download cache
    urls: tuple[str, ...]  # tried in order
    sha256: str
    approx_mib: int  # for messages only


# GFPGAN v1.4 (TencentARC, Apache-2.0): the optional face restorer (LipSyncOptions.restore). Its release assets:
# the project README links v1.3.0; the same file is also attached to v1.3.4.
RELEASE_FILES: dict[str, ReleaseFile] = {
    "gfpgan_v1.4": ReleaseFile(
        "auxiliary/GFPGANv1.4.pth",
        (
            "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
            "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth",
        ),
        "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        333,
    ),
}
RELEASE_CACHE_SUBDIR = ("latentsync", "releases")  # under the Hugging Face cache folder ($HF_HOME)
DOWNLOAD_CHUNK = 1 << 20


def release_cache_dir() -> Path:
    """Where release files are downloaded: ``$HF_HOME/latentsync/releases`` (default ``~/.cache/huggingface``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME).joinpath(*RELEASE_CACHE_SUBDIR)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_checked(spec: ReleaseFile, target: Path) -> None:
    """Download ``spec`` to ``target`` atomically (a temporary file beside it, renamed once its SHA-256 matches)."""
    import tempfile
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in spec.urls:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                for chunk in iter(lambda: response.read(DOWNLOAD_CHUNK), b""):
                    out.write(chunk)
            digest = _sha256(tmp)
            if digest != spec.sha256:
                errors.append(f"{url}: SHA-256 {digest} instead of {spec.sha256}")
                continue
            os.replace(tmp, target)
            return
        except OSError as err:  # URLError, HTTPError, timeouts, disk full
            errors.append(f"{url}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        finally:
            tmp.unlink(missing_ok=True)
    raise CheckpointError(
        f"could not download {Path(spec.local_path).name} (about {spec.approx_mib} MiB):\n  " + "\n  ".join(errors)
        + f"\nDownload it while online (or by hand from {spec.urls[0]}) to {target}, or put it at "
        f"<checkpoints>/{spec.local_path} and point {CHECKPOINTS_ENV} / --checkpoints there."
    )


def resolve_release_file(name: str, checkpoints_dir: str | os.PathLike | None = None) -> Path:
    """Local path of the release file ``name`` (see :data:`RELEASE_FILES`): from a local checkpoints directory
    (argument or ``LATENTSYNC_CHECKPOINTS``, at ``local_path``), else from the download cache
    (:func:`release_cache_dir`), else downloaded there once from its release URL with a SHA-256 check. With
    ``HF_HUB_OFFLINE`` set nothing is downloaded. An unknown name raises with the available ones."""
    try:
        spec = RELEASE_FILES[str(name)]
    except KeyError:
        raise ValueError(f"unknown release file {name!r}; available: {', '.join(RELEASE_FILES)}") from None
    root = local_checkpoints_dir(checkpoints_dir)
    if root is not None:
        path = root / spec.local_path
        if not path.is_file():
            raise CheckpointError(f"missing model file {path}\n  (download it from {spec.urls[0]})")
        return path
    target = release_cache_dir() / spec.local_path
    if target.is_file():
        return target
    import huggingface_hub

    if huggingface_hub.is_offline_mode():
        raise CheckpointError(
            f"HF_HUB_OFFLINE is set and {target} is not there yet: download {spec.urls[0]} to it while online, or put "
            f"it at <checkpoints>/{spec.local_path} and point {CHECKPOINTS_ENV} / --checkpoints there."
        )
    _download_checked(spec, target)
    return target


def get_version(name: str) -> VersionSpec:
    """The registry entry for ``name``; an unknown name raises with the available ones."""
    try:
        return VERSIONS[str(name)]
    except KeyError:
        raise ValueError(f"unknown LatentSync version {name!r}; available: {', '.join(VERSIONS)}") from None


def _with_revision(spec: VersionSpec, revision: str | None) -> VersionSpec:
    """``spec`` with ``revision`` on every file of the version's own Hub repo (the UNet's); None keeps the pins.

    A revision names a commit, branch or tag of one repository, so files of other repos keep theirs: the VAE's, and,
    for 1.6, the auxiliary models, which live in the 1.5 repo.
    """
    if revision is None:
        return spec
    repo = spec.unet.repo_id

    def pin(f: HubFile) -> HubFile:
        return replace(f, revision=str(revision)) if f.repo_id == repo else f

    return replace(
        spec,
        unet=pin(spec.unet),
        whisper=pin(spec.whisper),
        vae=tuple(pin(f) for f in spec.vae),
        face_alignment=tuple(pin(f) for f in spec.face_alignment),
        syncnet_v2=pin(spec.syncnet_v2),
    )


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


def _locate(files: tuple[HubFile, ...] | list[HubFile], root: Path | None) -> tuple[dict[HubFile, Path], str]:
    """The files that can be had (from ``root`` when given, else the Hub cache, else a download) and, when some
    cannot, why (empty otherwise)."""
    if root is not None:
        return {f: root / f.local_path for f in files if (root / f.local_path).is_file()}, ""

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
    if len(found) < len(files) and huggingface_hub.is_offline_mode():
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
    return found, reason


def _missing_error(missing: list[HubFile], root: Path | None, reason: str, note: str = "") -> CheckpointError:
    if root is not None:
        lines = "\n".join(
            f"  {root / f.local_path}   (hf download {f.repo_id} {f.filename} --local-dir ...)" for f in missing
        )
        return CheckpointError(f"missing model files in {root}:\n{lines}{note}")
    lines = "\n".join(f"  {f.repo_id}/{f.filename} (revision {f.revision})" for f in missing)
    return CheckpointError(
        f"could not get model files ({reason}):\n{lines}\n"
        f"Download them while online, or point {CHECKPOINTS_ENV} / --checkpoints at a directory holding them.{note}"
    )


def fetch(files: tuple[HubFile, ...] | list[HubFile], root: Path | None) -> list[Path]:
    """Local paths of ``files``: from ``root`` when given, else downloaded (or found in the cache) from the Hub.

    Raises :class:`CheckpointError` naming every file that is missing, with how to get it.
    """
    found, reason = _locate(files, root)
    missing = [f for f in files if f not in found]
    if missing:
        raise _missing_error(missing, root, reason)
    return [found[f] for f in files]


def face_alignment_cache_dir() -> Path:
    """face-alignment's own download folder, ``torch.hub.get_dir()/checkpoints`` (honours ``$TORCH_HOME`` and
    ``torch.hub.set_dir``). Only read here."""
    import torch.hub

    return Path(torch.hub.get_dir()) / FACE_ALIGNMENT_CACHE_SUBDIR


def _cached_face_alignment_dir() -> Path | None:
    """face-alignment's cache folder when it holds the detector and a landmark network, else None."""
    folder = face_alignment_cache_dir()
    if (folder / FACE_ALIGNMENT_DETECTOR_FILE).is_file() and any((folder / n).is_file() for n in FACE_ALIGNMENT_FAN_FILES):
        return folder
    return None


def _fetch_with_face_weights(
    files: list[HubFile], face_files: tuple[HubFile, ...], root: Path | None
) -> tuple[list[Path], Path | None]:
    """Paths of ``files`` and the folder of the face backend's weights (None when it needs none).

    The face weights come from the primary source (``root`` or the Hub) when it has them all, else from
    face-alignment's own cache; one error lists everything that neither source has.
    """
    found, reason = _locate([*files, *face_files], root)
    missing = [f for f in files if f not in found]
    face_dir, note = None, ""
    if face_files:
        if all(f in found for f in face_files):
            face_dir = found[face_files[0]].parent
        else:
            face_dir = _cached_face_alignment_dir()
        if face_dir is None:
            missing += [f for f in face_files if f not in found]
            note = (
                f"\nThe face-alignment weights were not in face-alignment's own cache either: "
                f"{face_alignment_cache_dir()} would need {FACE_ALIGNMENT_DETECTOR_FILE} and "
                f"{FACE_ALIGNMENT_FAN_FILES[0]} (set TORCH_HOME to use another cache)."
            )
    if missing:
        raise _missing_error(missing, root, reason, note)
    return [found[f] for f in files], face_dir


def _face_files(spec: VersionSpec, settings: LocalSettings) -> tuple[HubFile, ...]:
    """Weight files of the face backend; dlib's model ships inside a PyPI package, so it needs none."""
    return spec.face_alignment if settings.face_backend == "face_alignment" else ()


def resolve_checkpoints(
    version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None, *, revision: str | None = None
) -> CheckpointPaths:
    """Local paths for everything :func:`latentsync.load_pipeline` needs for ``version``.

    ``revision``: a commit, branch or tag of the version's Hub repo (None: the registry's pin); not used with a local
    directory. The face-alignment weights fall back to face-alignment's own cache (see the module docstring).
    """
    spec = _with_revision(get_version(version), revision)
    root = local_checkpoints_dir(checkpoints_dir)
    settings = LocalSettings.read(root)
    paths, face_dir = _fetch_with_face_weights([spec.unet, spec.whisper, *spec.vae], _face_files(spec, settings), root)
    unet, whisper, vae_config = paths[0], paths[1], paths[2]
    return CheckpointPaths(
        version=spec,
        root=root,
        unet=unet,
        whisper=whisper,
        vae_dir=vae_config.parent,
        face_weights_dir=face_dir,
        settings=settings,
    )


def resolve_sync_scoring(
    version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None, *, revision: str | None = None
) -> tuple[str, Path | None, Path]:
    """What scoring a video needs: (face backend name, its weights directory or None, syncnet_v2.model path).

    ``revision`` as in :func:`resolve_checkpoints` (the auxiliary files live in the 1.5 repo, so it applies to them
    only for version 1.5).
    """
    spec = _with_revision(get_version(version), revision)
    root = local_checkpoints_dir(checkpoints_dir)
    settings = LocalSettings.read(root)
    # One lookup: an error lists everything that is missing.
    paths, face_dir = _fetch_with_face_weights([spec.syncnet_v2], _face_files(spec, settings), root)
    return settings.face_backend, face_dir, paths[0]


def resolve_face_weights(
    version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None, *, revision: str | None = None
) -> tuple[str, Path | None]:
    """What finding faces needs: (face backend name, its weights directory or None), nothing else (``revision`` as
    in :func:`resolve_sync_scoring`)."""
    spec = _with_revision(get_version(version), revision)
    root = local_checkpoints_dir(checkpoints_dir)
    settings = LocalSettings.read(root)
    _, face_dir = _fetch_with_face_weights([], _face_files(spec, settings), root)
    return settings.face_backend, face_dir


def resolve_syncnet_v2(
    version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None, *, revision: str | None = None
) -> Path:
    """Local path of the original SyncNet weights used for Sync-C / Sync-D scores (``revision`` as in
    :func:`resolve_sync_scoring`)."""
    spec = _with_revision(get_version(version), revision)
    return fetch([spec.syncnet_v2], local_checkpoints_dir(checkpoints_dir))[0]
