"""Procedural "objects in clutter" dataset: the embedded stand-in for ImageNet.

Each class is one (shape, texture) pair drawn over a random clutter background. Everything that is random but not
the class (position, scale, rotation, texture phase, the object's colours, the whole background) is drawn from the
same distribution for every class, so only the object carries the label; the ground-truth object masks then let the
metrics ask whether an explanation points at the object. The object is drawn in extreme luminance (a very dark
pattern on a very bright ground, or one of the two for solid objects) over a mid-tone background, and large enough
(35-60 % of the image side), so that a small network trained from scratch learns it quickly.

On-disk layout (the layout the ImageNet path reads too, so one loader serves both)::

    <split_dir>/images/<id>.png        RGB
    <split_dir>/labels.txt             "<file name> <label>" (two-object split: "<file name> <label_a> <label_b>")
    <split_dir>/masks/<id>.png         L mode, 0/255 (two-object split: <id>_a.png and <id>_b.png)
    <root>/classes.txt                 one class name per line
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from PIL import Image

from eea_repro.workflow.io import atomic_path
from eea_repro.workflow.logs import progress

TWO_OBJECT_SPLIT = "two_object"

# Object scale (diameter of the bounding circle) as a fraction of the image side.
SINGLE_OBJECT_SCALE = (0.35, 0.60)
TWO_OBJECT_SCALE = (0.25, 0.40)
# Texture period as a fraction of the object radius: about five periods across the object.
TEXTURE_PERIOD = 0.4
MAX_ROTATION_DEGREES = 20.0
PIXEL_NOISE_STD = 0.015


# --- shapes: boolean masks over object-frame coordinates (u, v), unit = object radius, v points down -------------


def _disc(u, v):
    return u * u + v * v <= 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.7


def _triangle(u, v):
    # Equilateral, pointing up, vertices on the unit circle: outward edge normals at 90, 210 and 330 degrees.
    inside = np.ones_like(u, dtype=bool)
    for angle in np.deg2rad((90.0, 210.0, 330.0)):
        inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5
    return inside


def _ring(u, v):
    radius2 = u * u + v * v
    return (radius2 <= 1.0) & (radius2 >= 0.55**2)


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))


def _star(u, v, points: int = 5, inner_radius: float = 0.45):
    # Fold every point into the wedge between an inner vertex (angle 0) and an outer vertex (angle pi/points),
    # then test which side of that wedge's edge it lies on.
    half_wedge = np.pi / points
    angle = np.mod(np.arctan2(v, u) + np.pi / 2, 2 * half_wedge)  # 0 at an outer vertex, the top one pointing up
    folded = np.abs(angle - half_wedge)
    radius = np.hypot(u, v)
    px, py = radius * np.cos(folded), radius * np.sin(folded)
    inner = np.array([inner_radius, 0.0])
    outer = np.array([np.cos(half_wedge), np.sin(half_wedge)])
    edge = outer - inner
    side = edge[0] * (py - inner[1]) - edge[1] * (px - inner[0])
    origin_side = edge[0] * (0.0 - inner[1]) - edge[1] * (0.0 - inner[0])
    return np.sign(side) == np.sign(origin_side)


def _diamond(u, v):
    return np.abs(u) / 0.62 + np.abs(v) <= 1.0


def _ellipse(u, v):
    return u * u + (v / 0.55) ** 2 <= 1.0


def _crescent(u, v):
    return _disc(u, v) & ((u - 0.45) ** 2 + v * v > 0.8**2)


def _hexagon(u, v):
    apothem = np.sqrt(3.0) / 2.0
    inside = np.abs(v) <= apothem
    for angle in np.deg2rad((30.0, 150.0)):
        inside &= np.abs(u * np.cos(angle) + v * np.sin(angle)) <= apothem
    return inside


def _chevron(u, v):
    top = -0.8 + np.abs(u)
    return (np.abs(u) <= 0.8) & (v >= top) & (v <= top + 0.5)


def _hourglass(u, v):
    return (np.abs(v) <= 0.75) & (np.abs(u) <= 0.85 * np.abs(v) + 0.06)


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disc": _disc,
    "square": _square,
    "triangle": _triangle,
    "ring": _ring,
    "cross": _cross,
    "star": _star,
    "diamond": _diamond,
    "ellipse": _ellipse,
    "crescent": _crescent,
    "hexagon": _hexagon,
    "chevron": _chevron,
    "hourglass": _hourglass,
}


# --- textures: True where the first object colour goes; coordinates and period in object-radius units -------------
# Every class has its own texture as well as its own shape, so that both a texture-driven learner (a ViT on few
# images) and a shape-driven one find the class quickly.


def _solid(u, v, period, rng):
    return np.ones_like(u, dtype=bool)


def _striped(u, v, period, rng):
    return np.mod(v / period, 1.0) < 0.5


def _barred(u, v, period, rng):
    return np.mod(u / period, 1.0) < 0.5


def _checkered(u, v, period, rng):
    cell = 0.6 * period
    return (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0


def _cell_offsets(u, v, period):
    """Position inside the current texture cell, in [-0.5, 0.5) periods."""
    return np.mod(u / period, 1.0) - 0.5, np.mod(v / period, 1.0) - 0.5


def _dotted(u, v, period, rng):
    du, dv = _cell_offsets(u, v, period)
    return du * du + dv * dv <= 0.3**2


def _bubbly(u, v, period, rng):
    du, dv = _cell_offsets(u, v, period)
    distance2 = du * du + dv * dv
    return (distance2 <= 0.36**2) & (distance2 >= 0.18**2)


def _studded(u, v, period, rng):
    du, dv = np.abs(_cell_offsets(u, v, period))
    return ((du <= 0.12) & (dv <= 0.38)) | ((dv <= 0.12) & (du <= 0.38))


def _hatched(u, v, period, rng):
    return (np.mod(u / period, 1.0) < 0.3) | (np.mod(v / period, 1.0) < 0.3)


def _zigzag(u, v, period, rng):
    triangle_wave = np.abs(2.0 * np.mod(u / period, 1.0) - 1.0)
    return np.mod((v + 0.5 * period * triangle_wave) / period, 1.0) < 0.5


def _concentric(u, v, period, rng):
    return np.mod(np.hypot(u, v) / period, 1.0) < 0.5


def _brick(u, v, period, rng):
    row_height = 0.5 * period
    row = np.floor(v / row_height)
    mortar = 0.25 * row_height
    in_row = np.mod(v, row_height) >= mortar
    in_brick = np.mod(u + 0.5 * period * (row % 2), period) >= mortar
    return in_row & in_brick


def _speckled(u, v, period, rng):
    """Random on/off cells a third of a period wide, drawn afresh for every object."""
    cell = period / 3.0
    extent = 2.0  # |u|, |v| stay below 2 object radii (phase included)
    n_cells = int(np.ceil(2 * extent / cell)) + 1
    bits = rng.random((n_cells, n_cells)) < 0.5
    rows = np.clip(np.floor((v + extent) / cell).astype(int), 0, n_cells - 1)
    cols = np.clip(np.floor((u + extent) / cell).astype(int), 0, n_cells - 1)
    return bits[rows, cols]


TEXTURES: dict[str, Callable[..., np.ndarray]] = {
    "solid": _solid,
    "striped": _striped,
    "barred": _barred,
    "checkered": _checkered,
    "dotted": _dotted,
    "bubbly": _bubbly,
    "studded": _studded,
    "hatched": _hatched,
    "zigzag": _zigzag,
    "concentric": _concentric,
    "brick": _brick,
    "speckled": _speckled,
}

# Every shape and every texture is used once; the first eight textures are the most distinct from each other.
CLASSES: tuple[tuple[str, str], ...] = (
    ("striped", "disc"),
    ("checkered", "square"),
    ("dotted", "triangle"),
    ("solid", "ring"),
    ("hatched", "cross"),
    ("zigzag", "star"),
    ("speckled", "diamond"),
    ("brick", "ellipse"),
    ("bubbly", "crescent"),
    ("concentric", "hexagon"),
    ("barred", "chevron"),
    ("studded", "hourglass"),
)
MAX_CLASSES = len(CLASSES)


def class_names(n_classes: int) -> list[str]:
    """Human-readable names of the first ``n_classes`` classes, e.g. ``"striped disc"``."""
    _check_n_classes(n_classes)
    return [f"{texture} {shape}" for texture, shape in CLASSES[:n_classes]]


def _check_n_classes(n_classes: int) -> None:
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be between 2 and {MAX_CLASSES}, got {n_classes}")


# --- rendering ------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _pixel_centres(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(image_size, dtype=np.float64) + 0.5
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    k = np.mod(np.array([5.0, 3.0, 1.0]) + hue * 6.0, 6.0)
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _mid_tone(rng: np.random.Generator) -> np.ndarray:
    return _hsv_to_rgb(rng.uniform(), rng.uniform(0.15, 0.8), rng.uniform(0.35, 0.7))


def _linear_upsampling_matrix(grid: int, size: int) -> np.ndarray:
    """(size, grid) weights that interpolate a coarse grid linearly onto pixel centres."""
    positions = (np.arange(size) + 0.5) / size * grid - 0.5
    weights = np.zeros((size, grid))
    for node in range(grid):
        weights[:, node] = np.clip(1.0 - np.abs(positions - node), 0.0, 1.0)
    weights[positions < 0, 0] = 1.0
    weights[positions > grid - 1, grid - 1] = 1.0
    return weights


def render_background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Class-free clutter (H, W, 3) in [0, 1]: smooth colour noise, then random blobs, then random line segments."""
    ys, xs = _pixel_centres(image_size)
    grid = 4
    upsample = _linear_upsampling_matrix(grid, image_size)
    noise = rng.normal(0.0, 0.12, size=(grid, grid, 3))
    image = _mid_tone(rng) + np.einsum("yg,ghc,xh->yxc", upsample, noise, upsample)

    for _ in range(rng.integers(3, 8)):
        cy, cx = rng.uniform(0, image_size, size=2)
        ry, rx = rng.uniform(0.05, 0.16, size=2) * image_size
        angle = rng.uniform(0, np.pi)
        dy, dx = ys - cy, xs - cx
        along = dx * np.cos(angle) + dy * np.sin(angle)
        across = -dx * np.sin(angle) + dy * np.cos(angle)
        inside = (along / rx) ** 2 + (across / ry) ** 2 <= 1.0
        alpha = rng.uniform(0.6, 0.9)
        image[inside] = (1 - alpha) * image[inside] + alpha * _mid_tone(rng)

    for _ in range(rng.integers(3, 8)):
        start, end = rng.uniform(-0.1, 1.1, size=(2, 2)) * image_size
        half_width = max(0.5, rng.uniform(0.6, 1.8) * image_size / 128) / 2 + 0.25
        direction = end - start
        t = np.clip(((ys - start[0]) * direction[0] + (xs - start[1]) * direction[1]) / (direction @ direction), 0, 1)
        distance = np.hypot(ys - (start[0] + t * direction[0]), xs - (start[1] + t * direction[1]))
        on_line = distance <= half_width
        alpha = rng.uniform(0.7, 1.0)
        image[on_line] = (1 - alpha) * image[on_line] + alpha * _mid_tone(rng)
    return np.clip(image, 0.0, 1.0)


def _object_colours(rng: np.random.Generator, texture_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(pattern colour, ground colour): the pattern very dark on a very bright ground, so that each texture keeps
    one look; a solid object is all bright or all dark by a coin flip. Hues are random for every class."""
    bright = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.6), rng.uniform(0.9, 1.0))
    dark = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.15))
    solid_is_bright = rng.uniform() < 0.5
    if texture_name == "solid":
        return (bright, bright) if solid_is_bright else (dark, dark)
    return dark, bright


def _draw_object(rng, image, label, centre, radius) -> np.ndarray:
    """Paint one object of class ``label`` into ``image`` (in place); returns its boolean mask."""
    texture_name, shape_name = CLASSES[label]
    ys, xs = _pixel_centres(image.shape[0])
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    dy, dx = (ys - centre[0]) / radius, (xs - centre[1]) / radius
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    mask = SHAPES[shape_name](u, v)
    pattern_colour, ground_colour = _object_colours(rng, texture_name)
    phase_u, phase_v = rng.uniform(0.0, TEXTURE_PERIOD, size=2)
    pattern = TEXTURES[texture_name](u + phase_u, v + phase_v, TEXTURE_PERIOD, rng)
    image[mask] = np.where(pattern[mask][:, None], pattern_colour, ground_colour)
    return mask


def render_sample(
    rng: np.random.Generator, image_size: int, labels: Iterable[int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One image (H, W, 3) uint8 with one non-overlapping object per label, and one boolean mask per object."""
    labels = [int(label) for label in labels]
    scale_range = SINGLE_OBJECT_SCALE if len(labels) == 1 else TWO_OBJECT_SCALE
    image = render_background(rng, image_size)
    radii = rng.uniform(*scale_range, size=len(labels)) * image_size / 2
    centres = _place_without_overlap(rng, radii, image_size)
    masks = [_draw_object(rng, image, label, centre, radius) for label, centre, radius in zip(labels, centres, radii)]
    image = image + rng.normal(0.0, PIXEL_NOISE_STD, size=image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), masks


def _place_without_overlap(rng: np.random.Generator, radii: np.ndarray, image_size: int) -> np.ndarray:
    """Centres that keep every object inside the image and the bounding circles at least 2 px apart."""
    gap = 2.0
    for _ in range(1000):
        centres = np.stack([rng.uniform(radius, image_size - radius, size=2) for radius in radii])
        separated = all(
            np.hypot(*(centres[i] - centres[j])) >= radii[i] + radii[j] + gap
            for i in range(len(radii))
            for j in range(i)
        )
        if separated:
            return centres
    raise RuntimeError(f"could not place {len(radii)} objects of radii {radii} in a {image_size}px image")


# --- writing splits -------------------------------------------------------------------------------------------------


def _image_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per image, so an image does not depend on how many images precede it."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _split_labels(n_images: int, n_classes: int, seed: int, two_objects: bool) -> list[list[int]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2**31 - 1]))
    if two_objects:
        return [rng.choice(n_classes, size=2, replace=False).tolist() for _ in range(n_images)]
    return [[int(label)] for label in rng.permutation(np.arange(n_images) % n_classes)]


def _save_png(array: np.ndarray, path: Path) -> None:
    """uint8 (H, W, 3) is saved as RGB, uint8 (H, W) as L."""
    Image.fromarray(array).save(path, format="PNG")


def generate_split(
    out_dir: str | Path,
    n_images: int,
    image_size: int,
    n_classes: int,
    seed: int,
    two_objects: bool = False,
    progress: Callable | None = None,
    split_name: str | None = None,
    workers: int = 1,
) -> None:
    """Write one split; classes are balanced (single-object split) and the output appears only when complete.

    The split is built in a hidden sibling folder and renamed onto ``out_dir`` at the end, so a killed run never
    leaves a complete-looking split. Image ids are ``synth_<split_name>_<8-digit index>``; ``split_name`` defaults to
    the folder name. ``workers`` processes render and write the images; each image has its own random stream, so the
    files do not depend on how many.
    """
    _check_n_classes(n_classes)
    out_dir = Path(out_dir)
    split_name = split_name or out_dir.name
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (staging / "images").mkdir()
        (staging / "masks").mkdir()
        labels_per_image = _split_labels(n_images, n_classes, seed, two_objects)
        write = partial(_write_sample, staging, split_name, image_size, seed, two_objects)
        jobs = [(index, tuple(labels_per_image[index])) for index in range(n_images)]
        with _sample_pool(workers) as pool:
            lines = pool.map(write, jobs, chunksize=max(1, n_images // (8 * workers))) if pool else map(write, jobs)
            lines = list(progress(lines, total=n_images, desc=split_name) if progress else lines)
        (staging / "labels.txt").write_text("\n".join(lines) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _write_sample(staging: Path, split_name: str, image_size: int, seed: int, two_objects: bool,
                  job: tuple[int, tuple[int, ...]]) -> str:
    """Render image ``index`` of a split with its labels, write it and its mask(s); returns its label line."""
    index, labels = job
    image, masks = render_sample(_image_rng(seed, index), image_size, list(labels))
    image_id = f"synth_{split_name}_{index + 1:08d}"
    _save_png(image, staging / "images" / f"{image_id}.png")
    suffixes = ("_a", "_b") if two_objects else ("",)
    for suffix, mask in zip(suffixes, masks):
        _save_png(mask.astype(np.uint8) * 255, staging / "masks" / f"{image_id}{suffix}.png")
    return " ".join([f"{image_id}.png", *map(str, labels)])


@contextlib.contextmanager
def _sample_pool(workers: int):
    """A process pool for ``workers`` > 1 (forked where the platform can: workers need no re-import), else None."""
    if workers <= 1:
        yield None
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool


def split_seed(seed: int, split: str) -> int:
    """Independent seed per split name, so train/val/test never share images."""
    return int(np.random.SeedSequence([seed, zlib.crc32(split.encode())]).generate_state(1)[0])


def generate_dataset(
    root: str | Path,
    image_size: int,
    n_classes: int,
    counts: dict[str, int],
    n_two_object: int,
    seed: int,
    progress: Callable | None = None,
    workers: int = 1,
) -> None:
    """Write ``<root>/classes.txt``, one split folder per entry of ``counts`` and ``<root>/two_object`` if asked
    (``workers`` processes per split)."""
    root = Path(root)
    with atomic_path(root / "classes.txt") as tmp:
        tmp.write_text("\n".join(class_names(n_classes)) + "\n")
    for split, count in counts.items():
        generate_split(root / split, count, image_size, n_classes, split_seed(seed, split), progress=progress,
                       workers=workers)
    if n_two_object > 0:
        generate_split(
            root / TWO_OBJECT_SPLIT,
            n_two_object,
            image_size,
            n_classes,
            split_seed(seed, TWO_OBJECT_SPLIT),
            two_objects=True,
            progress=progress,
            workers=workers,
        )


def make_embedded_dataset(root, settings: dict, seed: int, workers: int = 1) -> None:
    """The dataset job: the config's ``dataset.embedded`` settings, with a progress bar in the job's log."""
    generate_dataset(
        root,
        image_size=settings["image_size"],
        n_classes=settings["n_classes"],
        counts=dict(settings["counts"]),
        n_two_object=settings["n_two_object"],
        seed=seed,
        progress=progress(),
        workers=workers,
    )
