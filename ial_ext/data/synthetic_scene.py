"""Procedural scenes of the synthetic weakly-labelled data set.

A scene is a muted, noise-textured background with distractor clutter (thin lines, small blobs that
re-use every colour of the object classes) and 1-3 objects painted on top. Each object class has a
fixed appearance: a shape family, a texture pattern with its own orientation and period, and a pair
of saturated colours. Every colour is shared by two classes and by the clutter, so one pixel's
colour does not give the class away; shape and texture do. Objects are painted with crisp edges and
saturated colours over the muted background, so their boundaries are strong image edges (what an
edge-aware propagation and superpixels snap to). Objects may touch and occlude: the mask follows the
paint order, and a placement that would hide more than half of an earlier object is redrawn.

Only IEEE-exact arithmetic (add, multiply, divide, sqrt, floor, comparisons) on float32 and numpy
Generator draws decide pixels, no transcendental functions, so a seed gives the same bytes on every
platform.
"""
from dataclasses import dataclass

import numpy as np

# Saturated colours shared out between the classes (two each) and re-used by the clutter.
HUES = np.array(
    [
        (220, 50, 40),    # red
        (240, 150, 30),   # orange
        (230, 215, 50),   # yellow
        (60, 170, 70),    # green
        (40, 185, 200),   # cyan
        (50, 80, 210),    # blue
        (140, 60, 185),   # purple
        (235, 110, 175),  # pink
    ],
    dtype=np.float32,
)
SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "ring", "cross", "hexagon", "halfdisc")
PATTERNS = ("stripes", "checks", "dots", "zigzag", "rings", "speckle")
# Texture orientations as integer vectors (normalised with sqrt: exact on every platform).
DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1), (2, 1), (1, 2), (-1, 2), (-2, 1))
SQRT3_HALF = float(np.sqrt(np.float64(3.0))) / 2.0


@dataclass(frozen=True)
class ClassAppearance:
    """How every object of one class looks; sizes are fractions of the image side."""
    name: str
    shape: str
    pattern: str
    colours: tuple  # two indices into HUES: ground and pattern colour
    direction: tuple  # unit vector of the texture orientation
    period: float


def class_appearances(num_object_classes: int) -> list:
    """Appearance of object classes 1..K (list index 0 is class 1); fixed for a given K."""
    if num_object_classes < 1:
        raise ValueError(f"num_object_classes must be >= 1, got {num_object_classes}")
    appearances = []
    for c in range(num_object_classes):
        shape = SHAPES[c % len(SHAPES)]
        pattern = PATTERNS[c % len(PATTERNS)]
        dx, dy = DIRECTIONS[(3 * c) % len(DIRECTIONS)]
        norm = float(np.sqrt(np.float64(dx * dx + dy * dy)))
        repeat = c // (len(SHAPES) * len(PATTERNS))
        name = f"{pattern}_{shape}" + (f"_{repeat + 1}" if repeat else "")
        appearances.append(
            ClassAppearance(
                name=name,
                shape=shape,
                pattern=pattern,
                colours=((3 * c) % len(HUES), (3 * c + 5) % len(HUES)),
                direction=(dx / norm, dy / norm),
                period=0.075 + 0.025 * ((c // len(PATTERNS)) % 3),
            )
        )
    return appearances


def render_scene(rng: np.random.Generator, size: int, appearances: list):
    """One scene: uint8 RGB (size, size, 3) and uint8 mask (size, size), 0 = background, c = class c."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    canvas = _background(rng, size, ys, xs)
    _paint_clutter(rng, canvas, size, ys, xs)
    mask = np.zeros((size, size), dtype=np.uint8)
    owner = np.full((size, size), -1, dtype=np.int16)  # which object a pixel shows
    areas = []
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(len(appearances)))
        appearance = appearances[label]
        for _attempt in range(12):
            window, shape_mask, frame = _draw_shape(rng, size, appearance.shape, ys, xs)
            if _placement_ok(owner, areas, window, shape_mask, size):
                break
        else:
            continue  # no room for this object: the scene keeps fewer objects
        colour = _object_texture(rng, appearance, frame, shape_mask.shape, size)
        region = canvas[window]
        region[shape_mask] = colour[shape_mask]
        mask[window][shape_mask] = label + 1
        owner[window][shape_mask] = len(areas)
        areas.append(int(shape_mask.sum()))
    canvas += rng.normal(0.0, 5.0, canvas.shape).astype(np.float32)
    return np.rint(np.clip(canvas, 0, 255)).astype(np.uint8), mask


def _value_noise(rng, size: int, cells: int) -> np.ndarray:
    """Smoothly interpolated random grid: (size, size) float32 in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    coords = np.arange(size, dtype=np.float32) * np.float32(cells / size)
    i0 = coords.astype(np.int64)
    f = coords - i0.astype(np.float32)
    f = f * f * (3 - 2 * f)
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _muted(rng) -> np.ndarray:
    """A background tone: one of the class hues blended with a random grey."""
    grey = np.float32(rng.uniform(60, 170))
    weight = np.float32(rng.uniform(0.25, 0.5))
    return HUES[int(rng.integers(len(HUES)))] * weight + grey * (1 - weight)


def _background(rng, size, ys, xs) -> np.ndarray:
    first, second = _muted(rng), _muted(rng)
    noise = 0.7 * _value_noise(rng, size, int(rng.integers(2, 6))) + 0.3 * _value_noise(
        rng, size, int(rng.integers(10, 20))
    )
    canvas = first * (1 - noise[..., None]) + second * noise[..., None]
    if rng.random() < 0.5:  # faint stripes of no class: texture alone must not mean "object"
        dx, dy = rng.normal(size=2)
        norm = np.sqrt(dx * dx + dy * dy) + 1e-6
        period = np.float32(rng.uniform(0.05, 0.15) * size)
        t = (xs * np.float32(dx / norm) + ys * np.float32(dy / norm)) / period
        canvas += (np.float32(rng.uniform(6, 14)) * ((t - np.floor(t)) < 0.5))[..., None]
    return canvas.astype(np.float32)


def _window(size, cy, cx, extent):
    y0, y1 = max(0, int(np.floor(cy - extent))), min(size, int(np.ceil(cy + extent)) + 1)
    x0, x1 = max(0, int(np.floor(cx - extent))), min(size, int(np.ceil(cx + extent)) + 1)
    return np.s_[y0:y1, x0:x1]


def _paint_clutter(rng, canvas, size, ys, xs) -> None:
    # Small blobs, some muted and noisy like the background, some in the saturated object colours.
    for _ in range(int(rng.integers(2, 7))):
        radius = np.float32(rng.uniform(0.02, 0.055) * size)
        cy, cx = rng.uniform(0, size, 2).astype(np.float32)
        window = _window(size, cy, cx, radius)
        inside = (ys[window] - cy) ** 2 + (xs[window] - cx) ** 2 <= radius * radius
        colour = HUES[int(rng.integers(len(HUES)))] if rng.random() < 0.5 else _muted(rng)
        shade = rng.uniform(-20, 20, inside.shape).astype(np.float32)[..., None]
        canvas[window][inside] = (colour + shade)[inside]
    # Thin straight lines of any colour, crossing the background.
    for _ in range(int(rng.integers(2, 6))):
        (y0, x0), (y1, x1) = rng.uniform(-0.1 * size, 1.1 * size, (2, 2)).astype(np.float32)
        width = np.float32(rng.uniform(0.6, 1.2))
        dy, dx = y1 - y0, x1 - x0
        length2 = dy * dy + dx * dx + np.float32(1e-6)
        t = np.clip(((ys - y0) * dy + (xs - x0) * dx) / length2, 0, 1)
        dist2 = (ys - y0 - t * dy) ** 2 + (xs - x0 - t * dx) ** 2
        colour = HUES[int(rng.integers(len(HUES)))] if rng.random() < 0.7 else _muted(rng) * 0.5
        canvas[dist2 <= width * width] = colour


def _draw_shape(rng, size, shape, ys, xs):
    """Random pose of one shape: window slice, bool mask inside it, and the object frame."""
    radius = np.float32(rng.uniform(0.13, 0.24) * size)
    aspect = np.float32(rng.uniform(0.65, 1.0))
    cy, cx = rng.uniform(0.5 * radius, size - 0.5 * radius, 2).astype(np.float32)
    rot_y, rot_x = rng.normal(size=2)
    norm = np.sqrt(rot_y * rot_y + rot_x * rot_x) + 1e-9
    cos, sin = np.float32(rot_x / norm), np.float32(rot_y / norm)
    window = _window(size, cy, cx, 1.42 * radius)
    dy, dx = ys[window] - cy, xs[window] - cx
    u = (dx * cos + dy * sin) / radius
    v = (dy * cos - dx * sin) / (radius * aspect)
    inside = _shape_test(shape, u, v)
    return window, inside, (dy, dx)


def _shape_test(shape, u, v) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    if shape == "ellipse":
        return u * u + v * v <= 1
    if shape == "rectangle":
        return (au <= 0.9) & (av <= 0.9)
    if shape == "triangle":  # equilateral, inscribed in the unit circle
        h = SQRT3_HALF
        return (v <= 0.5) & (h * u - 0.5 * v <= 0.5) & (-h * u - 0.5 * v <= 0.5)
    if shape == "diamond":
        return au + av <= 1.1
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= 0.3)
    if shape == "cross":
        return ((au <= 1) & (av <= 0.36)) | ((au <= 0.36) & (av <= 1))
    if shape == "hexagon":
        h = SQRT3_HALF
        return (av <= h) & (h * au + 0.5 * av <= h)
    if shape == "halfdisc":
        return (u * u + v * v <= 1.1) & (v <= 0.25)
    raise ValueError(f"unknown shape {shape!r}")


def _placement_ok(owner, areas, window, shape_mask, size) -> bool:
    area = int(shape_mask.sum())
    if area < 0.012 * size * size:
        return False
    if not areas:
        return True
    covered = owner[window][shape_mask]
    lost = np.bincount(covered[covered >= 0], minlength=len(areas))
    visible = np.bincount(owner[owner >= 0], minlength=len(areas))
    return bool(np.all(visible - lost >= 0.5 * np.asarray(areas)))


def _object_texture(rng, appearance, frame, shape, size) -> np.ndarray:
    """(h, w, 3) float32 colours of one object over its window, in its class's pattern."""
    dy, dx = frame
    jitter = np.float32(rng.uniform(-0.15, 0.15))
    norm = np.sqrt(1 + jitter * jitter)
    c, s = appearance.direction
    dir_x = np.float32((c - s * jitter) / norm)
    dir_y = np.float32((s + c * jitter) / norm)
    period = np.float32(appearance.period * size * rng.uniform(0.85, 1.15))
    t1 = (dx * dir_x + dy * dir_y) / period + np.float32(rng.random())
    t2 = (dy * dir_x - dx * dir_y) / period + np.float32(rng.random())
    pattern = appearance.pattern
    if pattern == "stripes":
        p = (t1 - np.floor(t1)) < 0.5
    elif pattern == "checks":
        p = (np.floor(t1 * 0.8) + np.floor(t2 * 0.8)) % 2 == 1
    elif pattern == "dots":
        f1, f2 = t1 - np.floor(t1) - 0.5, t2 - np.floor(t2) - 0.5
        p = f1 * f1 + f2 * f2 < 0.09
    elif pattern == "zigzag":
        half = t2 * 0.5
        tri = np.abs(half - np.floor(half) - 0.5) * 2
        z = t1 + 0.9 * tri
        p = (z - np.floor(z)) < 0.5
    elif pattern == "rings":
        r = np.sqrt(dx * dx + dy * dy) / period + np.float32(rng.random())
        p = (r - np.floor(r)) < 0.5
    elif pattern == "speckle":
        p = rng.random(shape) < 0.3
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    ground, ink = (_jittered(rng, HUES[i]) for i in appearance.colours)
    p = p.astype(np.float32)[..., None]
    return ground * (1 - p) + ink * p


def _jittered(rng, colour) -> np.ndarray:
    brightness = np.float32(rng.uniform(0.8, 1.1))
    return colour * brightness + rng.uniform(-15, 15, 3).astype(np.float32)
