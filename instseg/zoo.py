"""Named pretrained generators and the download cache."""
from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from .errors import DownloadError, UserError
from .io import atomic_path, atomic_write_bytes

log = logging.getLogger(__name__)

_TF = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
_NC = "NVIDIA Source Code License-NC: non-commercial research use only"


@dataclass(frozen=True)
class Preset:
    name: str
    url: str | None  # None: shipped inside the package
    height: int
    width: int
    num_ws: int
    licence: str
    classes: tuple[str, ...]  # detector classes the generator suits; () means whole-image fg/bg
    detector: str  # default --detector spec
    sha256: str | None = None  # known checksum; otherwise recorded on first download

    @property
    def filename(self) -> str:
        return Path(urllib.parse.urlparse(self.url).path).name if self.url else f"{self.name}.pt"


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("toy-shapes", None, 64, 64, 10, "MIT; trained by instseg on its own procedural scenes",
           ("square", "triangle", "disc"), "yolo:toy-shapes"),
    Preset("ffhq", _TF + "stylegan2-ffhq-config-f.pkl", 1024, 1024, 18, _NC, ("person",), "none"),
    Preset("lsun-horse", _TF + "stylegan2-horse-config-f.pkl", 256, 256, 14, _NC, ("horse",), "yolo:yolov8n.pt"),
    Preset("lsun-cat", _TF + "stylegan2-cat-config-f.pkl", 256, 256, 14, _NC, ("cat",), "yolo:yolov8n.pt"),
    Preset("lsun-church", _TF + "stylegan2-church-config-f.pkl", 256, 256, 14, _NC, (), "none"),
    Preset("lsun-car", _TF + "stylegan2-car-config-f.pkl", 384, 512, 16, _NC, ("car",), "yolo:yolov8n.pt"),
    Preset("afhq-cat", _ADA + "afhqcat.pkl", 512, 512, 16, _NC, ("cat",), "yolo:yolov8n.pt"),
    Preset("afhq-dog", _ADA + "afhqdog.pkl", 512, 512, 16, _NC, ("dog",), "yolo:yolov8n.pt"),
    Preset("afhq-wild", _ADA + "afhqwild.pkl", 512, 512, 16, _NC, ("cat", "dog"), "yolo:yolov8n.pt"),
    Preset("metfaces", _ADA + "metfaces.pkl", 1024, 1024, 18, _NC, ("person",), "none"),
]}


def default_cache() -> Path:
    """$INSTSEG_CACHE, or ~/.cache/instseg."""
    return Path(os.environ.get("INSTSEG_CACHE") or Path.home() / ".cache" / "instseg")


def packaged_path(name: str) -> Path:
    """A file shipped in instseg/toy/weights (found in editable and regular installs alike)."""
    return Path(str(resources.files("instseg.toy") / "weights" / name))


def preset_path(p: Preset, cache: Path) -> Path:
    """Where a preset's checkpoint lives (or will live once downloaded)."""
    return packaged_path(p.filename) if p.url is None else cache / "generators" / p.filename


def url_path(url: str, cache: Path) -> Path:
    tag = hashlib.sha1(url.encode()).hexdigest()[:10]
    name = Path(urllib.parse.urlparse(url).path).name or "checkpoint"
    return cache / "urls" / f"{tag}-{name}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


Progress = Callable[[int, "int | None"], None]  # (bytes so far, total or None)


def download(url: str, dest: Path, sha256: str | None = None, progress: Progress | None = None,
             timeout: float = 30.0) -> Path:
    """Fetch `url` into `dest` through a temp file and an atomic rename; nothing is left on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, dest)
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                done = 0
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                if total is not None and done != total:
                    raise OSError(f"connection closed after {done} of {total} bytes")
            digest = sha256_file(tmp)
            if sha256 and digest != sha256:
                raise OSError(f"sha256 mismatch: got {digest}, expected {sha256}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"download failed ({reason}): {url}; put the file by hand at {dest}") from None
    if not sha256:
        atomic_write_bytes(_sidecar(dest), (digest + "\n").encode())
    return dest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(path: Path, sha256: str | None) -> None:
    """Check a cached file against its known or recorded checksum."""
    expected = sha256 or (_sidecar(path).read_text().strip() if _sidecar(path).exists() else None)
    if expected is None:  # placed by hand: record it now, check it from then on
        atomic_write_bytes(_sidecar(path), (sha256_file(path) + "\n").encode())
        return
    if sha256_file(path) != expected:
        raise UserError(f"{path} does not match its sha256 {expected}; delete it to download it again")


@dataclass(frozen=True)
class ResolvedGan:
    path: Path
    source: str  # preset name, URL or the local path given
    preset: Preset | None


def resolve_gan(spec: str, cache: Path | None = None, progress: Progress | None = None) -> ResolvedGan:
    """A preset name, a local path or a URL -> a local checkpoint file (downloading once)."""
    cache = cache or default_cache()
    if spec in PRESETS:
        p = PRESETS[spec]
        path = preset_path(p, cache)
        if p.url is None:
            if not path.exists():
                raise UserError(f"packaged weights for {spec} are missing at {path}; reinstall instseg")
            return ResolvedGan(path, spec, p)
        if not path.exists():
            download(p.url, path, p.sha256, progress)
        verify(path, p.sha256)
        return ResolvedGan(path, spec, p)
    if "://" in spec:
        scheme = urllib.parse.urlparse(spec).scheme
        if scheme not in ("http", "https", "file"):
            raise UserError(f"--gan {spec}: unsupported URL scheme {scheme!r} (use http, https or file)")
        path = url_path(spec, cache)
        if not path.exists():
            download(spec, path, None, progress)
        verify(path, None)
        return ResolvedGan(path, spec, None)
    path = Path(spec).expanduser()
    if path.is_file():
        return ResolvedGan(path, str(path), None)
    raise UserError(f"--gan {spec!r} is neither a preset ({', '.join(PRESETS)}), an existing file nor a URL")
