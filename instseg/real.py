"""Real images in: find them, read them safely, fit them to the generator's frame, and map masks back."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 1 << 26  # larger images are refused before decoding (a decompression bomb)
MIN_SIDE = 8  # px


def collect(specs: list[str]) -> list[Path]:
    """Files, folders (their images, not recursing) or globs -> image paths as given, sorted, each once.

    Refused: nothing found, a link (in a folder or a glob's match) that leads out of the folder it was
    found in, and two images stored under one name (the dataset names images by `stored_name`)."""
    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found += [_not_out(f, p) for f in sorted(p.iterdir()) if f.suffix.lower() in EXTENSIONS and f.is_file()]
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(spec) if Path(m).is_file())
            if not matches and not any(c in spec for c in "*?["):
                raise UserError(f"{spec} is neither an image file, a folder nor a glob that matches")
            found += [_not_out(m, m.parent) for m in matches if m.suffix.lower() in EXTENSIONS]
    unique = list({f.resolve(): f for f in reversed(found)}.values())[::-1]  # the first path given for each file
    if not unique:
        raise UserError(f"no images found in {' '.join(specs)} (looked for {', '.join(EXTENSIONS)})")
    names: dict[str, Path] = {}
    for f in unique:
        name = stored_name(f)
        if name in names:
            raise UserError(f"{names[name]} and {f} would both be stored as {name}; rename one")
        names[name] = f
    return sorted(unique, key=lambda f: (f.name, str(f)))


def _not_out(f: Path, folder: Path) -> Path:
    if folder.resolve() not in f.resolve().parents:
        raise UserError(f"{f} is a link that leads out of {folder}; refusing to read it")
    return f


def stored_name(path: Path) -> str:
    """The name an input image gets in the dataset: its own, or '<name>.png' when EXIF turns it (stored upright)."""
    try:
        turned = exif_turned(path)
    except Exception:  # not an image: read_rgb refuses it with its reason
        turned = False
    return path.name + ".png" if turned else path.name


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3]: EXIF rotation applied, 16-bit, grayscale, RGBA and palette
    images converted; one-line errors for anything that is not a whole, sane image."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise UserError(f"{path} has {w}x{h} pixels, more than the limit of {MAX_PIXELS:,}")
            if min(w, h) < MIN_SIDE:
                raise UserError(f"{path} is {w}x{h}: images need at least {MIN_SIDE} px a side")
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale to 8 bits
                a = np.asarray(im, dtype=np.float64)
                a = (a / (65535.0 if a.max() > 255 else 255.0) * 255).clip(0, 255).astype(np.uint8)
                return np.repeat(a[..., None], 3, axis=2)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")  # composite transparency over white, as a viewer shows it
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            return np.asarray(im.convert("RGB"))
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(f"{path} is larger than the decoder allows (a decompression bomb?)") from None
    except Exception as e:  # PIL (and plugins patched in by others) raise many types for a bad file
        raise UserError(f"{path} is not a readable image ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None


def photo_tensor(rgb: np.ndarray) -> Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float in [-1, 1]."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 127.5 - 1


@dataclass(frozen=True)
class Fit:
    """How an image of (height, width) was put into the generator's (size, size) frame."""

    mode: str
    height: int
    width: int
    size: int

    def _window(self) -> tuple[int, int, int, int]:
        """(top, left, h, w) of the image's content inside the frame, in frame pixels (pad), or of the
        frame inside the image, in image pixels (crop)."""
        h, w, s = self.height, self.width, self.size
        if self.mode == "pad":
            scale = s / max(h, w)
            ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
            return (s - ch) // 2, (s - cw) // 2, ch, cw
        side = min(h, w)
        return (h - side) // 2, (w - side) // 2, side, side

    @property
    def window_side(self) -> int:
        """The image pixels across the frame: the longer side (pad, resize) or the shorter (crop)."""
        return max(self.height, self.width) if self.mode != "crop" else min(self.height, self.width)

    def to_frame(self, rgb: np.ndarray) -> Tensor:
        """[H, W, 3] uint8 -> [3, size, size] in [-1, 1]."""
        x = photo_tensor(rgb)[None]
        s = self.size
        if self.mode == "resize":
            return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)[0]
        top, left, ch, cw = self._window()
        if self.mode == "crop":
            x = x[..., top:top + ch, left:left + cw]
            return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)[0]
        inner = F.interpolate(x, size=(ch, cw), mode="bilinear", antialias=True, align_corners=False)
        out = inner.mean(dim=(2, 3), keepdim=True).expand(1, 3, s, s).clone()  # pad with the image's mean colour
        out[..., top:top + ch, left:left + cw] = inner
        return out[0]

    def to_image(self, mask: Tensor) -> np.ndarray:
        """A [size, size] bool mask in the frame -> [height, width] bool on the image (outside a crop: False)."""
        m = mask.float()[None, None]
        h, w = self.height, self.width
        if self.mode == "resize":
            return (F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)[0, 0] > 0.5).cpu().numpy()
        top, left, ch, cw = self._window()
        if self.mode == "pad":
            m = m[..., top:top + ch, left:left + cw]
            return (F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)[0, 0] > 0.5).cpu().numpy()
        out = np.zeros((h, w), bool)
        out[top:top + ch, left:left + cw] = (F.interpolate(m, size=(ch, cw), mode="bilinear",
                                                           align_corners=False)[0, 0] > 0.5).cpu().numpy()
        return out

    def box_to_image(self, box: np.ndarray) -> list[float]:
        """An xyxy box in the frame -> xyxy on the image."""
        s, (top, left, _, cw) = self.size, self._window()
        b = np.asarray(box, np.float64)
        if self.mode == "resize":
            return [b[0] * self.width / s, b[1] * self.height / s, b[2] * self.width / s, b[3] * self.height / s]
        if self.mode == "pad":
            f = self.width / cw
            return [(b[0] - left) * f, (b[1] - top) * f, (b[2] - left) * f, (b[3] - top) * f]
        f = cw / s
        return [b[0] * f + left, b[1] * f + top, b[2] * f + left, b[3] * f + top]


def file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def place(src: Path, dst: Path, rgb: np.ndarray, upright: bool, copy: bool) -> None:
    """Put the user's image into the dataset: a hard link (or a copy) of its file, or, when its EXIF
    orientation turned it, the upright pixels as PNG (so every COCO reader sees what the masks fit)."""
    from .io import atomic_save_png, atomic_write_bytes

    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if not upright:
        atomic_save_png(dst, rgb)
        return
    try:
        if copy:
            raise OSError
        os.link(src, dst)
    except OSError:
        atomic_write_bytes(dst, Path(src).read_bytes())


def exif_turned(path: Path) -> bool:
    """Whether the file's EXIF orientation asks for a turn or flip."""
    from PIL import Image

    with Image.open(path) as im:
        return im.getexif().get(0x0112, 1) not in (1, None)
