"""Overlay blending and the qualitative grid figure."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from eea_repro.figures.grids import CELL_INCHES, DPI, GAP_INCHES, overlay, qualitative_grid


def test_overlay_blends_image_and_colormap():
    rng = np.random.default_rng(0)
    image_chw = rng.random((3, 6, 5))
    heat = rng.random((6, 5))
    blended = overlay(image_chw, heat, alpha=0.3)
    assert blended.shape == (6, 5, 3)
    assert blended.min() >= 0 and blended.max() <= 1
    image_hwc = image_chw.transpose(1, 2, 0)
    jet = matplotlib.colormaps["jet"](heat)[..., :3]
    np.testing.assert_allclose(blended, 0.7 * image_hwc + 0.3 * jet, atol=1e-12)
    np.testing.assert_allclose(overlay(image_hwc, heat, alpha=0.3), blended)
    np.testing.assert_allclose(overlay(image_hwc, heat, alpha=0.0), image_hwc)
    # Out-of-range maps are clipped, so they colour like 0 and 1.
    for value, clipped in ((-5.0, 0.0), (7.0, 1.0)):
        expected = np.broadcast_to(matplotlib.colormaps["jet"](clipped)[:3], (6, 5, 3))
        np.testing.assert_allclose(overlay(image_hwc, np.full((6, 5), value), alpha=1.0), expected)
    with pytest.raises(ValueError):
        overlay(rng.random((3, 4, 4)), heat)


def _grid(tmp_path, n_rows, n_methods, name, title=None):
    rng = np.random.default_rng(1)
    images = rng.random((n_rows, 3, 24, 24))
    maps = {f"method {m}": rng.random((n_rows, 24, 24)) for m in range(n_methods)}
    paths = [tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"]
    qualitative_grid(images, maps, [f"class {r} with a longish name" for r in range(n_rows)], paths, title=title)
    return paths


def test_grid_writes_png_and_pdf_with_one_cell_per_image_and_method(tmp_path):
    small_png, small_pdf = _grid(tmp_path, 2, 2, "small", title="A title")
    wide_png, _ = _grid(tmp_path, 2, 3, "wide", title="A title")
    tall_png, _ = _grid(tmp_path, 3, 2, "tall", title="A title")
    assert small_pdf.read_bytes().startswith(b"%PDF") and small_pdf.stat().st_size > 1000
    small, wide, tall = (Image.open(path).size for path in (small_png, wide_png, tall_png))
    step = round((CELL_INCHES + GAP_INCHES) * DPI)
    assert wide == (small[0] + step, small[1])
    assert tall == (small[0], small[1] + step)
    assert small[0] > 3 * CELL_INCHES * DPI and small[1] > 2 * CELL_INCHES * DPI
    pixels = np.asarray(Image.open(small_png).convert("RGB"))
    assert pixels.std() > 10  # something was drawn
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_grid_rejects_mismatched_inputs(tmp_path):
    images = np.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError, match="row titles"):
        qualitative_grid(images, {"m": np.zeros((2, 8, 8))}, ["a"], [tmp_path / "x.png"])
    with pytest.raises(ValueError, match="'m'"):
        qualitative_grid(images, {"m": np.zeros((2, 4, 4))}, ["a", "b"], [tmp_path / "x.png"])
    assert not (tmp_path / "x.png").exists()
