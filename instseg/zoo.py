"""Named pretrained generators (configs/presets.yaml) and the download cache."""
from __future__ import annotations

import errno
import functools
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import DownloadError, UserError
from .io import atomic_path, atomic_write_bytes
from .locks import clean_stale_temps, lock_file

log = logging.getLogger(__name__)
FORMATS = ("native", "tf", "ada", "stylegan3", "rosinality")


@dataclass(frozen=True)
class Licence:
    key: str
    name: str
    url: str
    commercial: bool | None  # None: not known (a custom generator)

    def coco(self) -> dict[str, Any]:
        """The COCO `licenses` entry (a dataset has one generator, so id 1)."""
        return {"id": 1, "name": self.name, "url": self.url}

    def note(self, made: str) -> str | None:
        """The one wording of a non-commercial licence's reach, for what the generator `made` ("the images",
        "the masks"); None unless the licence is known to be non-commercial."""
        if self.commercial is not False:
            return None
        return (f"Made with a generator under a non-commercial licence: {made}, and models trained on them, carry "
                "that restriction; read the licence before any commercial use.")


UNKNOWN_LICENCE = Licence("unknown", "unknown: a custom generator; its owner's licence applies to this dataset", "",
                          None)


@dataclass(frozen=True)
class Preset:
    name: str
    urls: tuple[str, ...]  # copies of one file, official first; () = shipped inside the package
    file: str  # file name in the cache (or in the package)
    format: str  # checkpoint format: native | tf | ada | rosinality
    height: int
    width: int
    num_ws: int
    licence: Licence
    classes: tuple[str, ...] = ()  # detector classes; () = whole-image foreground
    detector: str = "none"  # default --detector spec
    class_names: tuple[str, ...] = ()  # a class-conditional generator's class names, one per index
    category: str = "foreground"  # the category of a whole-image (no detector) run
    run: dict[str, Any] = field(default_factory=dict)  # RunConfig fields that differ from the defaults
    sha256: str | None = None  # known checksum; otherwise recorded on first download
    photos: dict[str, Any] | None = None  # RunConfig fields `label` sets over `run` (None: config.PHOTO_DEFAULTS)
    label: dict[str, Any] = field(default_factory=dict)  # LabelConfig fields that differ from its defaults

    @property
    def packaged(self) -> bool:
        return not self.urls


def config_dir() -> Path:
    """configs/: installed as instseg.configs, or beside a source checkout."""
    try:
        return Path(str(resources.files("instseg.configs")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "configs"


@functools.lru_cache(maxsize=None)
def presets() -> dict[str, Preset]:
    """The preset table, read once from configs/presets.yaml."""
    data = yaml.safe_load((config_dir() / "presets.yaml").read_text())
    lic = {k: Licence(k, v["name"], v["url"], bool(v["commercial"])) for k, v in data["licences"].items()}
    out = {}
    for name, p in data["presets"].items():
        urls = tuple(p.get("urls") or ())
        file = p.get("file") or Path(urllib.parse.urlparse(urls[0]).path).name
        out[name] = Preset(name, urls, file, p["format"], int(p["size"][0]), int(p["size"][1]), int(p["num_ws"]),
                           lic[p["licence"]], tuple(p.get("classes") or ()), p.get("detector", "none"),
                           tuple(p.get("class_names") or ()), p.get("category", "foreground"), dict(p.get("run") or {}),
                           p.get("sha256"), dict(p["photos"]) if p.get("photos") is not None else None,
                           dict(p.get("label") or {}))
    return out


def default_cache() -> Path:
    """$INSTSEG_CACHE, or ~/.cache/instseg."""
    return Path(os.environ.get("INSTSEG_CACHE") or Path.home() / ".cache" / "instseg")


def packaged_path(name: str) -> Path:
    """A file shipped in instseg/toy/weights (found in editable and regular installs alike)."""
    return Path(str(resources.files("instseg.toy") / "weights" / name))


def preset_path(p: Preset, cache: Path) -> Path:
    """Where a preset's checkpoint lives (or will live once downloaded)."""
    return packaged_path(p.file) if p.packaged else cache / "generators" / p.file


def url_path(url: str, cache: Path) -> Path:
    tag = hashlib.sha1(url.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    name = Path(urllib.parse.urlparse(url).path).name or "checkpoint"
    return cache / "urls" / f"{tag}-{name}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


Progress = Callable[[int, "int | None"], None]  # (bytes so far, total or None)
Validate = Callable[..., None]  # (path[, (height, width)]) raises UserError when a file is not a usable checkpoint


DEFAULT_MAX_DOWNLOAD = 8 << 30  # bytes; the largest official StyleGAN file is well under 1 GB


def max_download() -> int:
    """The download cap: $INSTSEG_MAX_DOWNLOAD (bytes, or with a K/M/G suffix), else 8 GiB."""
    text = os.environ.get("INSTSEG_MAX_DOWNLOAD", "").strip()
    if not text:
        return DEFAULT_MAX_DOWNLOAD
    m = re.fullmatch(r"(\d{1,15})\s*([KMG]?)i?B?", text, re.I)
    if not m or int(m.group(1)) == 0:
        raise UserError(f"INSTSEG_MAX_DOWNLOAD={text!r}: give a size in bytes, e.g. 8G or 500000000")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def _fetch(url: str, tmp: Path, progress: Progress | None, timeout: float, limit: int | None = None) -> None:
    limit = limit or max_download()
    with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        if total is not None and total > limit:
            raise OSError(f"{total:,} bytes is over the download limit of {limit:,} (INSTSEG_MAX_DOWNLOAD raises it)")
        done = 0
        while chunk := r.read(1 << 20):
            done += len(chunk)
            if done > limit:
                raise OSError(f"more than the download limit of {limit:,} bytes (INSTSEG_MAX_DOWNLOAD raises it)")
            f.write(chunk)
            if progress:
                progress(done, total)
        if total is not None and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")
        if done == 0:
            raise OSError("empty response")


def download(urls: str | tuple[str, ...] | list[str], dest: Path, sha256: str | None = None,
             progress: Progress | None = None, validate: Validate | None = None, timeout: float = 30.0) -> Path:
    """Fetch the first of `urls` that serves a good copy into `dest`, atomically.

    A URL that errors, stops short of its Content-Length, has the wrong sha256 or fails
    `validate` (a transfer cut short with no Content-Length) falls through to the next. Nothing
    is left in the cache on failure; the error names every URL tried and where to put the file.
    """
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    max_download()  # a bad INSTSEG_MAX_DOWNLOAD is the user's to fix, not a URL's failure
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with lock_file(dest.parent / f".{dest.name}.lock"):  # one downloader per file; others wait
            return _download_locked(urls, dest, sha256, progress, validate, timeout)
    except OSError as e:
        raise DownloadError(f"cannot write the cache folder {dest.parent}: {e.strerror or e}") from None


def _download_locked(urls: tuple[str, ...], dest: Path, sha256: str | None, progress: Progress | None,
                     validate: Validate | None, timeout: float) -> Path:
    if dest.exists():
        return dest
    clean_stale_temps(dest.parent, f".{dest.name}.*.tmp")
    failures = []
    for url in urls:
        log.info("downloading %s -> %s", url, dest)
        try:
            with atomic_path(dest) as tmp:
                _fetch(url, tmp, progress, timeout)
                digest = sha256_file(tmp)
                if sha256 and digest != sha256:
                    raise OSError(f"sha256 {digest[:12]}.. is not the expected {sha256[:12]}..")
                if validate:
                    validate(tmp)
            atomic_write_bytes(_sidecar(dest), (digest + "\n").encode())
            return dest
        except OSError as e:
            if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise DownloadError(f"cannot write {dest}: {e.strerror}") from None
            failures.append(f"{url} ({getattr(e, 'reason', None) or e})")
        except (http.client.HTTPException, ValueError, UserError) as e:
            failures.append(f"{url} ({type(e).__name__}: {str(e)[:120]})")
    tried = "; ".join(failures) or "no URL"
    raise DownloadError(f"download failed, tried {tried}; put the file by hand at {dest}")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(path: Path, sha256: str | None, validate: Validate | None = None) -> None:
    """Check a cached file against its known or recorded checksum; a file placed by hand is validated
    first, and its checksum recorded only when it passes."""
    expected = sha256 or (_sidecar(path).read_text().strip() if _sidecar(path).exists() else None)
    if expected is None:  # placed by hand: record it now, check it from then on
        if validate:
            try:
                validate(path)
            except UserError as e:
                raise UserError(f"cached file {path} does not fit ({e}); delete it to download it again") from None
        atomic_write_bytes(_sidecar(path), (sha256_file(path) + "\n").encode())
        return
    if sha256_file(path) != expected:
        raise UserError(f"cached file {path} does not match its sha256 {expected}; delete it (and "
                        f"{_sidecar(path).name} if you placed another file by hand)")


@dataclass(frozen=True)
class ResolvedGan:
    path: Path
    source: str  # preset name, URL or the local path given
    preset: Preset | None
    cached: bool = False  # the file lives in our cache (so deleting it is the fix for a bad file)

    @functools.cached_property
    def licence(self) -> Licence:
        """The preset's licence; for a file, the one `instseg convert` recorded in it (read once); else unknown."""
        if self.preset:
            return self.preset.licence
        from .checkpoints import native_meta  # torch: imported only when a custom file is used

        try:
            meta = native_meta(self.path)
        except Exception:  # not a native file (or not readable as one): nothing recorded
            return UNKNOWN_LICENCE
        name, commercial = meta.get("licence"), meta.get("licence_commercial")
        if isinstance(name, str) and name and isinstance(commercial, bool):
            return Licence("recorded", f"{name} (recorded by instseg convert)", str(meta.get("licence_url", "")),
                           commercial)
        return UNKNOWN_LICENCE

    def load_error(self, e: UserError) -> UserError:
        """The error for a file that does not load: a cached one names the file to delete."""
        if self.cached:
            return UserError(f"cached file {self.path} does not load ({e}); delete it to download it again")
        return e


def resolve_gan(spec: str, cache: Path | None = None, progress: Progress | None = None,
                validate: Validate | None = None, flag: str = "--gan") -> ResolvedGan:
    """A preset name, a local path or a URL -> a local checkpoint file (downloading once).

    `flag` names the option in messages (convert's argument is SRC, not --gan)."""
    if not spec:
        raise UserError(f"{flag} is empty; give a preset ({', '.join(presets())}), a file or a URL")
    cache = cache or default_cache()
    table = presets()
    if spec in table:
        p = table[spec]
        path = preset_path(p, cache)
        if p.packaged:
            if not path.exists():
                raise UserError(f"packaged weights for {spec} are missing at {path}; reinstall instseg")
            return ResolvedGan(path, spec, p)
        fits = (lambda f: validate(f, (p.height, p.width))) if validate else None
        if not path.exists():
            _sidecar(path).unlink(missing_ok=True)  # left by a file that was deleted
            download(p.urls, path, p.sha256, progress, fits)
        verify(path, p.sha256, fits)
        return ResolvedGan(path, spec, p, cached=True)
    if "://" in spec:
        scheme = urllib.parse.urlparse(spec).scheme
        if scheme not in ("http", "https", "file"):
            raise UserError(f"{flag} {spec}: unsupported URL scheme {scheme!r} (use http, https or file)")
        if scheme == "file":
            _check_local_url(spec, flag)
        path = url_path(spec, cache)
        if not path.exists():
            _sidecar(path).unlink(missing_ok=True)
            download(spec, path, None, progress, validate)
        verify(path, None, validate)
        return ResolvedGan(path, spec, None, cached=True)
    path = Path(spec).expanduser()
    if path.is_file():
        return ResolvedGan(path, str(path), None)
    raise UserError(f"{flag} {spec!r} is neither a preset ({', '.join(table)}), an existing file nor a URL")


def _check_local_url(url: str, flag: str) -> None:
    """A file:// URL must name a regular file (not /dev/zero, a FIFO or a folder)."""
    import stat

    local = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    try:
        regular = stat.S_ISREG(os.stat(local).st_mode)
    except OSError as e:
        raise UserError(f"{flag} {url}: {e.strerror}") from None
    if not regular:
        raise UserError(f"{flag} {url} is not a regular file")


def preset_table(cache: Path) -> list[dict[str, Any]]:
    """One dict per preset, as `instseg models --json` prints them."""
    rows = []
    for p in presets().values():
        path = preset_path(p, cache)
        rows.append({
            "name": p.name, "urls": list(p.urls), "file": p.file, "resolution": [p.height, p.width],
            "num_ws": p.num_ws, "format": p.format,
            "licence": {"name": p.licence.name, "url": p.licence.url, "commercial": p.licence.commercial},
            "classes": list(p.classes), "class_names": list(p.class_names),
            "category": None if p.classes or p.class_names else p.category,
            "detector": None if p.detector == "none" else p.detector,
            "cached": str(path) if path.exists() else None,
        })
    return rows

