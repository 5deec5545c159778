"""Procedural toy scenes with exact instance masks: the ground truth of the toy world.

Shape (class, position, size, angle) and appearance (colours, shading, stripes, background
texture) are drawn independently, which is the independence style mixing can discover.

Worlds: `classic` (rotated, striped shapes), `flat` (upright, anti-aliased, flat colours: toy-flat's) and
`textured` (flat's layouts, every surface a photographed texture in a per-scene palette with a soft drop
shadow, so colour alone does not find the objects: toy-textured's).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources

import numpy as np
from scipy import ndimage

from ..config import WORLDS as CONFIG_WORLDS

CLASSES = ("square", "triangle", "disc")


@dataclass(frozen=True)
class ToyObject:
    cls: int  # index into CLASSES
    cx: float  # centre, pixels
    cy: float
    radius: float  # half-size, pixels
    angle: float  # radians
    color: tuple[float, float, float]  # base RGB in [0, 1]
    shade: tuple[float, float]  # lighting gradient (dx, dy), per radius
    stripes: tuple[float, float, float]  # (amplitude, cycles per pixel, direction)


@dataclass(frozen=True)
class Skin:
    """A textured surface: a photographed texture, placed and coloured (lo where it is dark, hi where bright)."""

    texture: int  # index into TEXTURES
    span: float  # source pixels across the image's width
    angle: float  # radians
    offset: tuple[float, float]  # source pixel at the image's centre
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclass(frozen=True)
class Scene:
    size: int
    bg_a: tuple[float, float, float]
    bg_b: tuple[float, float, float]
    bg_angle: float
    texture: tuple[float, float, float, float]  # (amplitude, fx, fy, phase) of a low-frequency pattern
    objects: tuple[ToyObject, ...] = field(default_factory=tuple)
    skins: tuple[Skin, ...] = ()  # textured world: the background's, then one per object (else flat colours)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    return np.meshgrid(c, c, indexing="xy")


def shape_mask(obj: ToyObject, size: int) -> np.ndarray:
    """Pixels whose centre lies inside the object's silhouette: [H, W] bool."""
    x, y = _grid(size)
    dx, dy = x - obj.cx, y - obj.cy
    ca, sa = np.cos(obj.angle), np.sin(obj.angle)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy  # object frame
    r = obj.radius
    if CLASSES[obj.cls] == "square":
        return (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
    if CLASSES[obj.cls] == "disc":
        return u * u + v * v <= r * r
    # equilateral triangle inscribed in the circle of radius r, apex at -v
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        t = -np.pi / 2 + k * 2 * np.pi / 3 + np.pi  # outward normal of each edge
        inside &= u * np.cos(t) + v * np.sin(t) <= r * 0.5
    return inside


def rand_color(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0.05, 0.95, size=3))


@dataclass(frozen=True)
class World:
    """How a world's scenes are drawn (ranges are fractions of the image size where they say so)."""

    tex_amp: tuple[float, float]  # background pattern amplitude
    tex_freq: tuple[float, float]  # its cycles per image
    radius: tuple[float, float]  # object half-size, fraction of the image size
    margin: float  # centres keep margin x radius from the border
    min_contrast: float  # summed |object colour - background mean| over RGB
    rotate: bool  # random angle (else upright)
    shade: float  # lighting gradient amplitude
    stripes: bool  # random stripes on half of the objects
    min_visible: float  # share of an object left visible under later ones
    tries: int
    separate_classes: bool  # same-class objects never touch and none is cut in two: class maps split into instances


WORLD_SPECS = {
    "classic": World((0.0, 0.12), (1, 4), (0.13, 0.24), 0.8, 0.5, True, 0.3, True, 0.5, 10, False),
    "flat": World((0.04, 0.12), (1, 3), (0.17, 0.26), 1.0, 0.6, False, 0.15, False, 0.6, 20, True),
}
WORLD_SPECS["textured"] = WORLD_SPECS["flat"]  # the same layouts (per seed); only the appearance differs

WORLDS = tuple(WORLD_SPECS)
assert WORLDS == CONFIG_WORLDS, "config.WORLDS names the worlds drawn here"
ANTIALIASED = ("flat", "textured")  # worlds whose images are drawn anti-aliased
TEXTURES = ("brick", "grass", "gravel")  # scikit-image's, CC0: instseg/toy/textures/LICENSE.md
TEXTURE_LICENCE = "textures: scikit-image's brick, grass and gravel (CC0 1.0), histogram-equalised"


@dataclass(frozen=True)
class Camo:
    """How the textured world dresses a layout (sizes in source pixels of the 512 px textures)."""

    bg_span: tuple[float, float] = (150.0, 300.0)  # the background's texture across the image
    brick_zoom: float = 1.2  # brick's pattern is coarse: shown 1.2x wider
    obj_scale: float = 2.0  # each object's texture is this much finer or coarser than the background's
    max_span: float = 450.0
    palette: tuple[float, float] = (0.2, 0.8)  # lo and hi drawn uniformly in this range, per channel
    contrast: tuple[float, float] = (0.35, 0.8)  # mean |hi - lo| over RGB
    jitter: float = 0.05  # per surface and channel, on lo and hi
    swap: float = 0.5  # an object swaps lo and hi with this probability
    shift: float = 0.15  # and shifts both by this (random sign)
    shadow: float = 0.45  # darkening under an object's silhouette
    shadow_offset: float = 0.05  # down-right, fraction of the image size
    shadow_blur: float = 0.03  # box width, fraction of the image size


CAMO = Camo()


def sample_scene(seed: int, size: int = 64, max_objects: int = 3, world: str = "classic") -> Scene:
    """A random scene, deterministic per seed and world."""
    if world not in WORLD_SPECS:
        raise ValueError(f"unknown toy world {world!r}; choose from {', '.join(WORLDS)}")
    if world == "textured":
        scene = sample_scene(seed, size, max_objects, "flat")
        return replace(scene, skins=_skins(np.random.default_rng([seed, 1]), len(scene.objects)))
    w = WORLD_SPECS[world]
    rng = np.random.default_rng(seed)
    bg_a, bg_b = rand_color(rng), rand_color(rng)
    tex = (float(rng.uniform(*w.tex_amp)), float(rng.uniform(*w.tex_freq)), float(rng.uniform(*w.tex_freq)),
           float(rng.uniform(0, 6.3)))
    bg_mean = (np.array(bg_a) + np.array(bg_b)) / 2
    objects: list[ToyObject] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _try in range(w.tries):
            radius = float(rng.uniform(*w.radius) * size)
            color = rand_color(rng)
            if np.abs(np.array(color) - bg_mean).sum() < w.min_contrast:
                continue
            cls = int(rng.integers(len(CLASSES)))
            cx = float(rng.uniform(radius * w.margin, size - radius * w.margin))
            cy = float(rng.uniform(radius * w.margin, size - radius * w.margin))
            angle = float(rng.uniform(0, 2 * np.pi)) if w.rotate else 0.0
            shade = (float(rng.uniform(-w.shade, w.shade)), float(rng.uniform(-w.shade, w.shade)))
            stripes = ((float(rng.uniform(0, 0.15) * (rng.random() < 0.5)), float(rng.uniform(5, 12) / size),
                        float(rng.uniform(0, np.pi))) if w.stripes else (0.0, 1.0, 0.0))
            obj = ToyObject(cls, cx, cy, radius, angle, color, shade, stripes)
            if w.separate_classes and any(o.cls == cls and (shape_mask(o, size) & shape_mask(
                    replace(obj, radius=radius + 1.5), size)).any() for o in objects):
                continue
            trial = Scene(size, bg_a, bg_b, 0.0, tex, tuple(objects + [obj]))
            if _all_visible(trial, w.min_visible) and (not w.separate_classes or _all_connected(trial)):
                objects.append(obj)
                break
    return Scene(size, bg_a, bg_b, float(rng.uniform(0, 2 * np.pi)), tex, tuple(objects))


def draw_palette(rng: np.random.Generator, c: Camo) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(100):
        lo, hi = rng.uniform(*c.palette, 3), rng.uniform(*c.palette, 3)
        if c.contrast[0] <= np.abs(hi - lo).mean() <= c.contrast[1]:
            break
    return lo, hi


def _skins(rng: np.random.Generator, n_objects: int, c: Camo = CAMO) -> tuple[Skin, ...]:
    """The background's skin, then each object's: its own texture (not the background's), 2x finer or coarser."""
    lo, hi = draw_palette(rng, c)

    def skin(tex: int, span: float, lo: np.ndarray, hi: np.ndarray) -> Skin:
        jit = lambda v: tuple(float(x) for x in np.clip(v + rng.normal(0, c.jitter, 3), 0, 1))
        return Skin(tex, span * (c.brick_zoom if TEXTURES[tex] == "brick" else 1.0), float(rng.uniform(0, 2 * np.pi)),
                    (float(rng.uniform(128, 384)), float(rng.uniform(128, 384))), jit(lo), jit(hi))

    bg_tex = int(rng.integers(len(TEXTURES)))
    bg_span = float(rng.uniform(*c.bg_span))
    out = [skin(bg_tex, bg_span, lo, hi)]
    for _ in range(n_objects):
        tex = int(rng.choice([t for t in range(len(TEXTURES)) if t != bg_tex]))
        span = min(bg_span * (c.obj_scale if rng.random() < 0.5 else 1 / c.obj_scale), c.max_span)
        a, b = (hi, lo) if rng.random() < c.swap else (lo, hi)
        d = c.shift * (1 if rng.random() < 0.5 else -1)
        out.append(skin(tex, span, a + d, b + d))
    return tuple(out)


@cache
def texture_levels(index: int) -> tuple[np.ndarray, ...]:
    """One texture as float greys in [0, 1], pre-blurred by each of BLURS (a sampling step of d source pixels
    takes the level nearest d / 2)."""
    from PIL import Image

    with resources.files("instseg.toy.textures").joinpath(f"{TEXTURES[index]}.png").open("rb") as f:
        grey = np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255
    return tuple(grey if s == 0 else ndimage.gaussian_filter(grey, s, mode="mirror") for s in BLURS)


BLURS = (0.0, 0.5, 1.0, 2.0, 4.0)  # texture_levels' sigmas, source pixels

def _surface(skin: Skin, size: int) -> np.ndarray:
    """The skin's colour at each pixel centre of a size x size image: [H, W, 3]."""
    step = skin.span / size  # source pixels per image pixel
    levels = texture_levels(skin.texture)
    grey = levels[int(np.argmin([abs(b - step / 2) for b in BLURS]))]
    x, y = _grid(size)
    u, v = (x - size / 2) * step, (y - size / 2) * step
    ca, sa = np.cos(skin.angle), np.sin(skin.angle)
    sx, sy = skin.offset[0] + ca * u - sa * v, skin.offset[1] + sa * u + ca * v
    g = ndimage.map_coordinates(grey, [sy.ravel(), sx.ravel()], order=1, mode="mirror").reshape(size, size)
    lo, hi = np.array(skin.lo), np.array(skin.hi)
    return lo + g[..., None] * (hi - lo)


def _render_textured(scene: Scene, c: Camo = CAMO) -> np.ndarray:
    """The textured world: background skin, then each object over a soft shadow of its own silhouette."""
    s = scene.size
    img = _surface(scene.skins[0], s)
    shift = c.shadow_offset * s
    width = max(1, int(round(c.shadow_blur * s)))
    for obj, skin in zip(scene.objects, scene.skins[1:]):
        m = shape_mask(obj, s)
        sh = ndimage.uniform_filter(ndimage.shift(m.astype(np.float64), (shift, shift), order=1), width)
        img = img * (1 - c.shadow * sh)[..., None]
        img[m] = _surface(skin, s)[m]
    return img


def _scaled(scene: Scene, s: int) -> Scene:
    """The same scene drawn on an s-times finer grid."""
    objs = tuple(replace(o, cx=o.cx * s, cy=o.cy * s, radius=o.radius * s, stripes=(o.stripes[0], o.stripes[1] / s, o.stripes[2]))
                 for o in scene.objects)
    return replace(scene, size=scene.size * s, objects=objs)


def _box_down(a: np.ndarray, s: int) -> np.ndarray:
    """Average s x s blocks of the two leading axes."""
    h, w = a.shape[0] // s, a.shape[1] // s
    return a.reshape(h, s, w, s, *a.shape[2:]).mean(axis=(1, 3))


def class_coverage(scene: Scene, supersample: int = 4) -> np.ndarray:
    """Soft label maps: the visible share of each pixel per class, [len(CLASSES), H, W] float32 in [0, 1]."""
    big = _scaled(scene, supersample)
    inst = instance_map(big)
    cls_of = np.array([0] + [o.cls + 1 for o in big.objects])[inst]  # 0 = background
    onehot = np.stack([cls_of == c + 1 for c in range(len(CLASSES))], axis=-1).astype(np.float32)
    return _box_down(onehot, supersample).transpose(2, 0, 1)


def render_antialiased(scene: Scene, supersample: int = 4) -> np.ndarray:
    """The scene's image averaged over supersample^2 points per pixel: [H, W, 3] uint8."""
    img = _render_float(_scaled(scene, supersample))
    return (np.clip(_box_down(img, supersample), 0, 1) * 255 + 0.5).astype(np.uint8)


def _all_connected(scene: Scene) -> bool:
    """Every object's visible part is one piece (an occluder never cuts an object in two)."""
    from scipy import ndimage

    inst = instance_map(scene)
    return all(ndimage.label(inst == i + 1)[1] <= 1 for i in range(len(scene.objects)))


def _all_visible(scene: Scene, min_share: float = 0.5) -> bool:
    """Every object keeps at least `min_share` of its area visible."""
    inst = instance_map(scene)
    for i, obj in enumerate(scene.objects):
        full = shape_mask(obj, scene.size).sum()
        if full == 0 or (inst == i + 1).sum() < min_share * full:
            return False
    return True


def instance_map(scene: Scene) -> np.ndarray:
    """[H, W] int: 0 for background, i + 1 where object i is visible (later objects on top)."""
    inst = np.zeros((scene.size, scene.size), dtype=np.int32)
    for i, obj in enumerate(scene.objects):
        inst[shape_mask(obj, scene.size)] = i + 1
    return inst


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene: (image [H, W, 3] uint8, instance map [H, W] int32)."""
    img = _render_float(scene)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), instance_map(scene)


def _render_float(scene: Scene) -> np.ndarray:
    """[H, W, 3] float image, unclipped; shading and stripes are in units of the object's radius."""
    if scene.skins:
        return _render_textured(scene)
    x, y = _grid(scene.size)
    s = scene.size
    t = ((x - s / 2) * np.cos(scene.bg_angle) + (y - s / 2) * np.sin(scene.bg_angle)) / s + 0.5
    img = np.array(scene.bg_a) * (1 - t[..., None]) + np.array(scene.bg_b) * t[..., None]
    amp, fx, fy, ph = scene.texture
    img = img + amp * (np.sin(2 * np.pi * fx * x / s + ph) * np.sin(2 * np.pi * fy * y / s))[..., None]
    inst = instance_map(scene)
    for i, obj in enumerate(scene.objects):
        m = inst == i + 1
        light = 1 + (obj.shade[0] * (x - obj.cx) + obj.shade[1] * (y - obj.cy)) / obj.radius
        amp, freq, ang = obj.stripes
        stripe = amp * np.sin(2 * np.pi * freq * (x * np.cos(ang) + y * np.sin(ang)))
        col = np.array(obj.color) * light[..., None] + stripe[..., None]
        img[m] = col[m]
    return img


def render_seed(seed: int, size: int = 64, world: str = "classic") -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Image, instance map and per-instance class ids of the scene of one seed.

    Flat and textured images are anti-aliased; the instance map holds the pixels whose centre is inside."""
    scene = sample_scene(seed, size, world=world)
    img, inst = render(scene)
    if world in ANTIALIASED:
        img = render_antialiased(scene)
    return img, inst, [o.cls for o in scene.objects]


def flat_colored(scene: Scene, colors: list[tuple[float, float, float]]) -> Scene:
    """The same shapes with flat colours and a black background (used to check masks)."""
    objs = tuple(replace(o, color=c, shade=(0.0, 0.0), stripes=(0.0, 1.0, 0.0)) for o, c in zip(scene.objects, colors))
    return replace(scene, bg_a=(0.0, 0.0, 0.0), bg_b=(0.0, 0.0, 0.0), texture=(0.0, 1.0, 1.0, 0.0), objects=objs,
                   skins=())
