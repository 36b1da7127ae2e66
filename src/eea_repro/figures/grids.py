"""Qualitative figures: explanation maps overlaid on their images, one row per image, one column per method.

Every figure uses :func:`overlay` (one colormap, one blending) so maps look alike across figures. The layout is fixed
in inches (no tight bounding box), so the saved size depends only on the grid shape and labels can never push cells
around. Figures are sized for the report's ~1000 px column: at most :data:`MAX_COLUMNS` columns side by side; more
methods wrap into further bands (the image column repeated), and every label is shrunk until it fits its slot.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from eea_repro.workflow.io import atomic_path

DPI = 150
CELL_INCHES = 1.1
GAP_INCHES = 0.06
LEFT_INCHES = 1.15  # room for row titles
HEADER_INCHES = 0.42  # room for two lines of column header
TITLE_INCHES = 0.35
BAND_GAP_INCHES = 0.12  # between bands of wrapped columns
MARGIN_INCHES = 0.08
# image + 7 maps per band: 10.4 in = 1560 px, shown in a ~1000 px column the 9 pt labels stay about 12 px high
MAX_COLUMNS = 8
FONT_SIZE = 9
MIN_FONT_SIZE = 5
ROW_TITLE_WRAP = 14
HEADER_WRAP = 13
LABEL_PAD_INCHES = 0.04  # free space kept on either side of a label
COLORMAP = "jet"
OVERLAY_ALPHA = 0.5
MASK_OUTLINE = {"colors": "white", "linewidths": 0.8}


def _to_hwc(image01: np.ndarray, height: int, width: int) -> np.ndarray:
    image01 = np.asarray(image01, dtype=np.float64)
    if image01.ndim == 3 and image01.shape[1:] == (height, width) and image01.shape[0] == 3:
        return image01.transpose(1, 2, 0)
    if image01.ndim == 3 and image01.shape[:2] == (height, width) and image01.shape[2] == 3:
        return image01
    raise ValueError(f"image of shape {image01.shape} does not match a map of shape {(height, width)}")


def overlay(image01: np.ndarray, map01: np.ndarray, alpha: float = OVERLAY_ALPHA, cmap: str = COLORMAP) -> np.ndarray:
    """Blend ``cmap(map)`` over the image: (1 - alpha) * image + alpha * colour; returns (H, W, 3) in [0, 1]."""
    map01 = np.clip(np.asarray(map01, dtype=np.float64), 0.0, 1.0)
    if map01.ndim != 2:
        raise ValueError(f"map must be (H, W), got shape {map01.shape}")
    image = np.clip(_to_hwc(image01, *map01.shape), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](map01)[..., :3]
    return np.clip((1.0 - alpha) * image + alpha * colours, 0.0, 1.0)


def column_bands(n_maps: int, max_columns: int = MAX_COLUMNS) -> list[range]:
    """Split the map columns into bands of at most ``max_columns - 1`` maps (each band repeats the image column),
    as even as possible so that no band is a lone straggler."""
    if max_columns < 2:
        raise ValueError(f"max_columns must be >= 2 (the image and one map), got {max_columns}")
    n_bands = max(1, math.ceil(n_maps / (max_columns - 1)))
    sizes = [n_maps // n_bands + (band < n_maps % n_bands) for band in range(n_bands)]
    starts = np.cumsum([0, *sizes])
    return [range(int(start), int(start) + size) for start, size in zip(starts, sizes)]


def _band_height(n_rows: int) -> float:
    return HEADER_INCHES + n_rows * CELL_INCHES + (n_rows - 1) * GAP_INCHES


def grid_figure_size(n_rows: int, n_maps: int, has_title: bool, max_columns: int = MAX_COLUMNS) -> tuple[float, float]:
    """(width, height) in inches of a qualitative grid of ``n_rows`` images and ``n_maps`` map columns."""
    bands = column_bands(n_maps, max_columns)
    n_cols = 1 + max(len(band) for band in bands)
    width = LEFT_INCHES + n_cols * CELL_INCHES + (n_cols - 1) * GAP_INCHES + MARGIN_INCHES
    height = (TITLE_INCHES if has_title else 0.0) + len(bands) * _band_height(n_rows)
    height += (len(bands) - 1) * BAND_GAP_INCHES + 2 * MARGIN_INCHES
    return width, height


def _wrap(text: str, width: int, max_lines: int) -> str:
    return "\n".join(
        "\n".join(textwrap.wrap(line, width=width, max_lines=max_lines, placeholder="…")) or line
        for line in str(text).split("\n")
    )


def _shrink_to_fit(fig: Figure, labels: list[tuple[Text, float, float]]) -> None:
    """Lower each label's font size until it fits (width, height) inches, so neighbouring labels can never overlap."""
    renderer = fig.canvas.get_renderer()
    for text, max_width, max_height in labels:
        while text.get_fontsize() > MIN_FONT_SIZE:
            box = text.get_window_extent(renderer)
            if box.width <= max_width * fig.dpi and box.height <= max_height * fig.dpi:
                break
            text.set_fontsize(text.get_fontsize() - 0.5)


def save_figure(fig: Figure, out_paths: Sequence[str | Path]) -> None:
    """Save to every path (format from the suffix) atomically, without timestamps so reruns give the same bytes."""
    for out_path in out_paths:
        out_path = Path(out_path)
        fmt = out_path.suffix.lstrip(".").lower()
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None} if fmt == "png" else None
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata)


def qualitative_grid_figure(
    images: np.ndarray,
    maps: dict[str, np.ndarray],
    row_titles: Sequence[str],
    title: str | None = None,
    masks: np.ndarray | None = None,
    max_columns: int = MAX_COLUMNS,
) -> Figure:
    """Rows = images; column 0 the image (with the outline of ``masks`` (N, H, W) if given), then one overlay per map.

    ``maps`` maps a column header to (N, H, W) maps already upsampled to the image size and normalised to [0, 1].
    Columns beyond ``max_columns`` wrap into further bands below, each starting again with the image column.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got shape {images.shape}")
    n_rows = images.shape[0]
    if len(row_titles) != n_rows:
        raise ValueError(f"{len(row_titles)} row titles for {n_rows} images")
    height, width = images.shape[2:]
    for header, method_maps in maps.items():
        if np.shape(method_maps) != (n_rows, height, width):
            raise ValueError(f"maps of {header!r} have shape {np.shape(method_maps)}, expected {(n_rows, height, width)}")
    if masks is not None and np.shape(masks) != (n_rows, height, width):
        raise ValueError(f"masks have shape {np.shape(masks)}, expected {(n_rows, height, width)}")

    headers = list(maps)
    bands = column_bands(len(headers), max_columns)
    fig_width, fig_height = grid_figure_size(n_rows, len(headers), title is not None, max_columns)
    fig = Figure(figsize=(fig_width, fig_height), dpi=DPI)
    FigureCanvasAgg(fig)  # a renderer to measure labels with
    labels: list[tuple[Text, float, float]] = []
    slot_width = CELL_INCHES + GAP_INCHES - 2 * LABEL_PAD_INCHES
    top = MARGIN_INCHES
    if title is not None:
        text = fig.text(0.5, 1 - (top + TITLE_INCHES / 2) / fig_height, title, ha="center", va="center",
                        fontsize=FONT_SIZE + 2)
        labels.append((text, fig_width - 2 * MARGIN_INCHES, TITLE_INCHES))
        top += TITLE_INCHES
    images_hwc = np.clip(images.transpose(0, 2, 3, 1).astype(np.float64), 0.0, 1.0)
    for band in bands:
        columns = [None, *band]  # None = the image itself
        for col, index in enumerate(columns):
            header = "image" if index is None else headers[index]
            left = LEFT_INCHES + col * (CELL_INCHES + GAP_INCHES)
            text = fig.text((left + CELL_INCHES / 2) / fig_width, 1 - (top + HEADER_INCHES - 0.05) / fig_height,
                            _wrap(header, HEADER_WRAP, 2), ha="center", va="bottom", fontsize=FONT_SIZE)
            labels.append((text, slot_width, HEADER_INCHES - 0.07))
        cells_top = top + HEADER_INCHES
        for row in range(n_rows):
            row_top = cells_top + row * (CELL_INCHES + GAP_INCHES)
            bottom = 1 - (row_top + CELL_INCHES) / fig_height
            text = fig.text((LEFT_INCHES - 0.08) / fig_width, 1 - (row_top + CELL_INCHES / 2) / fig_height,
                            _wrap(row_titles[row], ROW_TITLE_WRAP, 4), ha="right", va="center", fontsize=FONT_SIZE)
            labels.append((text, LEFT_INCHES - 0.08 - MARGIN_INCHES, CELL_INCHES))
            for col, index in enumerate(columns):
                left = LEFT_INCHES + col * (CELL_INCHES + GAP_INCHES)
                ax = fig.add_axes((left / fig_width, bottom, CELL_INCHES / fig_width, CELL_INCHES / fig_height))
                panel = images_hwc[row] if index is None else overlay(images_hwc[row], maps[headers[index]][row])
                ax.imshow(panel, interpolation="nearest")
                if index is None and masks is not None and np.ptp(masks[row]) > 0:
                    ax.contour(np.asarray(masks[row], dtype=float), levels=[0.5], **MASK_OUTLINE)
                ax.set_axis_off()
        top = cells_top + _band_height(n_rows) - HEADER_INCHES + BAND_GAP_INCHES
    _shrink_to_fit(fig, labels)
    return fig


def qualitative_grid(
    images: np.ndarray,
    maps: dict[str, np.ndarray],
    row_titles: Sequence[str],
    out_paths: Sequence[str | Path],
    title: str | None = None,
    masks: np.ndarray | None = None,
) -> None:
    """Build :func:`qualitative_grid_figure` and save it to every path in ``out_paths`` (PNG, PDF, ...)."""
    save_figure(qualitative_grid_figure(images, maps, row_titles, title=title, masks=masks), out_paths)
