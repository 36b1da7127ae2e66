"""Qualitative figures: explanation maps overlaid on their images, one row per image, one column per method.

Every figure uses :func:`overlay` so all maps share one colormap and blending. The layout is fixed in inches (no
tight bounding box), so the saved size depends only on the grid shape and labels can never push cells around.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .io import atomic_path

DPI = 150
CELL_INCHES = 1.5
GAP_INCHES = 0.06
LEFT_INCHES = 1.15  # room for row titles
HEADER_INCHES = 0.42  # room for two lines of column header
TITLE_INCHES = 0.35
MARGIN_INCHES = 0.08
FONT_SIZE = 9
ROW_TITLE_WRAP = 14
HEADER_WRAP = 20


def _to_hwc(image01: np.ndarray, height: int, width: int) -> np.ndarray:
    image01 = np.asarray(image01, dtype=np.float64)
    if image01.ndim == 3 and image01.shape[1:] == (height, width) and image01.shape[0] == 3:
        return image01.transpose(1, 2, 0)
    if image01.ndim == 3 and image01.shape[:2] == (height, width) and image01.shape[2] == 3:
        return image01
    raise ValueError(f"image of shape {image01.shape} does not match a map of shape {(height, width)}")


def overlay(image01: np.ndarray, map01: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend ``cmap(map)`` over the image: (1 - alpha) * image + alpha * colour; returns (H, W, 3) in [0, 1]."""
    map01 = np.clip(np.asarray(map01, dtype=np.float64), 0.0, 1.0)
    if map01.ndim != 2:
        raise ValueError(f"map must be (H, W), got shape {map01.shape}")
    image = np.clip(_to_hwc(image01, *map01.shape), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](map01)[..., :3]
    return np.clip((1.0 - alpha) * image + alpha * colours, 0.0, 1.0)


def grid_figure_size(n_rows: int, n_cols: int, has_title: bool) -> tuple[float, float]:
    """(width, height) in inches of a qualitative grid."""
    width = LEFT_INCHES + n_cols * CELL_INCHES + (n_cols - 1) * GAP_INCHES + MARGIN_INCHES
    height = HEADER_INCHES + (TITLE_INCHES if has_title else 0.0) + n_rows * CELL_INCHES
    height += (n_rows - 1) * GAP_INCHES + MARGIN_INCHES
    return width, height


def _wrap(text: str, width: int, max_lines: int) -> str:
    return "\n".join(textwrap.wrap(str(text), width=width, max_lines=max_lines, placeholder="…"))


def save_figure(fig: Figure, out_paths: Sequence[str | Path]) -> None:
    """Save to every path (format from the suffix) atomically, without timestamps so reruns give the same bytes."""
    for out_path in out_paths:
        out_path = Path(out_path)
        fmt = out_path.suffix.lstrip(".").lower()
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None} if fmt == "png" else None
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata)


def qualitative_grid(
    images: np.ndarray,
    maps: dict[str, np.ndarray],
    row_titles: Sequence[str],
    out_paths: Sequence[str | Path],
    title: str | None = None,
    masks: np.ndarray | None = None,
) -> None:
    """Rows = images; column 0 the image (with the outline of ``masks`` (N, H, W) if given), then one overlay per map.

    ``maps`` maps a column header to (N, H, W) maps already upsampled to the image size and normalised to [0, 1].
    """
    images = np.asarray(images)
    n_rows = images.shape[0]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got shape {images.shape}")
    if len(row_titles) != n_rows:
        raise ValueError(f"{len(row_titles)} row titles for {n_rows} images")
    height, width = images.shape[2:]
    for header, method_maps in maps.items():
        if np.shape(method_maps) != (n_rows, height, width):
            raise ValueError(f"maps of {header!r} have shape {np.shape(method_maps)}, expected {(n_rows, height, width)}")

    n_cols = 1 + len(maps)
    fig_width, fig_height = grid_figure_size(n_rows, n_cols, title is not None)
    fig = Figure(figsize=(fig_width, fig_height), dpi=DPI)
    top = MARGIN_INCHES + (TITLE_INCHES if title is not None else 0.0) + HEADER_INCHES
    if title is not None:
        fig.text(0.5, 1 - (MARGIN_INCHES + TITLE_INCHES / 2) / fig_height, title, ha="center", va="center",
                 fontsize=FONT_SIZE + 2)
    headers = ["image", *maps]
    for col, header in enumerate(headers):
        left = LEFT_INCHES + col * (CELL_INCHES + GAP_INCHES)
        fig.text((left + CELL_INCHES / 2) / fig_width, 1 - (top - 0.05) / fig_height,
                 _wrap(header, HEADER_WRAP, 2), ha="center", va="bottom", fontsize=FONT_SIZE)
    for row in range(n_rows):
        row_top = top + row * (CELL_INCHES + GAP_INCHES)
        bottom = 1 - (row_top + CELL_INCHES) / fig_height
        fig.text((LEFT_INCHES - 0.08) / fig_width, 1 - (row_top + CELL_INCHES / 2) / fig_height,
                 _wrap(row_titles[row], ROW_TITLE_WRAP, 4), ha="right", va="center", fontsize=FONT_SIZE)
        image = np.clip(images[row].transpose(1, 2, 0).astype(np.float64), 0.0, 1.0)
        panels = [image] + [overlay(image, method_maps[row]) for method_maps in maps.values()]
        for col, panel in enumerate(panels):
            left = LEFT_INCHES + col * (CELL_INCHES + GAP_INCHES)
            ax = fig.add_axes((left / fig_width, bottom, CELL_INCHES / fig_width, CELL_INCHES / fig_height))
            ax.imshow(panel, interpolation="nearest")
            if col == 0 and masks is not None:
                ax.contour(np.asarray(masks[row], dtype=float), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_axis_off()
    save_figure(fig, out_paths)
