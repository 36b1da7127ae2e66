"""Bootstrap intervals, per-method summaries and the three table formats."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from eea_repro.metrics.engine import METRICS
from eea_repro.metrics.tables import bootstrap_ci, summarize, write_table


def test_bootstrap_mean_excludes_nan_and_interval_shrinks():
    rng = np.random.default_rng(1)
    small = rng.normal(40.0, 10.0, size=50)
    mean, low, high = bootstrap_ci(np.r_[small, np.nan, np.nan], n_boot=500, seed=3)
    assert mean == pytest.approx(small.mean(), abs=1e-12)
    assert low < mean < high
    # the standard error of the mean is 10 / sqrt(50) ~ 1.4: a 95 % interval is roughly +- 2.8
    assert 1.5 < (high - low) / 2 < 4.5
    large = rng.normal(40.0, 10.0, size=5000)
    large_mean, large_low, large_high = bootstrap_ci(large, n_boot=500, seed=3)
    assert large_low < large_mean < large_high
    assert (large_high - large_low) < (high - low) / 5
    assert bootstrap_ci(large, n_boot=200, seed=7) == bootstrap_ci(large, n_boot=200, seed=7)
    assert all(np.isnan(bootstrap_ci(np.array([np.nan, np.nan]))))


def test_bootstrap_ci_matches_a_plain_percentile_bootstrap():
    values = np.random.default_rng(0).exponential(5.0, size=40)
    _, low, high = bootstrap_ci(values, n_boot=4000, level=0.9, seed=11)
    rng = np.random.default_rng(123)
    replicate_means = [rng.choice(values, size=values.size).mean() for _ in range(4000)]
    assert low == pytest.approx(np.percentile(replicate_means, 5), abs=0.15)
    assert high == pytest.approx(np.percentile(replicate_means, 95), abs=0.15)


def per_image_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    centers = {"ltx": 10.0, "gradcam": 30.0, "random": 50.0}
    for offset, (method, center) in enumerate(centers.items()):
        frame = pd.DataFrame({name: rng.normal(center + 3 * index, 2.0, size=20) for index, name in enumerate(METRICS)})
        frame.insert(0, "method", method)
        frame["valid"] = True
        frame["constant"] = False
        frames.append(frame)
    frames[1].loc[[2, 5, 7], list(METRICS)] = np.nan
    frames[1].loc[[2, 5, 7], "valid"] = False
    frames[2].loc[[0], "constant"] = True
    return pd.concat(frames, ignore_index=True)


def test_summarize_counts_invalid_rows_and_averages_valid_ones():
    per_image = per_image_frame()
    summary = summarize(per_image, n_boot=200, level=0.95, seed=0)
    assert summary["method"].tolist() == ["ltx", "gradcam", "random"]
    assert summary["n_images"].tolist() == [20, 20, 20]
    assert summary["n_invalid"].tolist() == [0, 3, 0]
    assert summary["n_constant"].tolist() == [0, 0, 1]
    gradcam = per_image[(per_image["method"] == "gradcam") & per_image["valid"]]
    assert summary.loc[1, "POS_mean"] == pytest.approx(gradcam["POS"].mean())
    for name in METRICS:
        assert (summary[f"{name}_ci_low"] <= summary[f"{name}_mean"]).all()
        assert (summary[f"{name}_mean"] <= summary[f"{name}_ci_high"]).all()


class CellCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells = []

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self.cells.append(dict(attrs).get("class", "").split())


def test_write_table_formats(tmp_path):
    summary = summarize(per_image_frame(), n_boot=100, seed=0)
    labels = {"ltx": "LTX & co_1", "gradcam": "Grad-CAM <b>", "random": "50% random"}
    paths = [tmp_path / "t.csv", tmp_path / "sub" / "t.tex", tmp_path / "t.html"]
    write_table(summary, *paths, caption="ViT-B, target", method_labels=labels)

    table = pd.read_csv(paths[0])
    assert table["method"].tolist() == ["ltx", "gradcam", "random"]
    np.testing.assert_allclose(table["DEL_ci_high"], summary["DEL_ci_high"])

    tex = paths[1].read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"LTX \& co\_1" in tex and r"50\% random" in tex
    assert r"ADP $\downarrow$" in tex and r"PIC $\uparrow$" in tex
    # centres grow with the method, so the lowest-is-best metrics are won by ltx, the highest-is-best by random
    ltx_row = next(line for line in tex.splitlines() if line.startswith("LTX"))
    assert ltx_row.count(r"\textbf") == 3
    assert "invalid maps" in tex

    page = paths[2].read_text(encoding="utf-8")
    assert "Grad-CAM &lt;b&gt;" in page and "<b>" not in page
    collector = CellCollector()
    collector.feed(page)
    for name in METRICS:
        cells = [classes for classes in collector.cells if "metric" in classes and name in classes]
        assert len(cells) == 4  # header + three methods
        assert sum("best" in classes for classes in cells) == 1
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_write_table_interval_style(tmp_path):
    summary = summarize(per_image_frame()[lambda frame: frame["method"] != "gradcam"], n_boot=50, seed=0)
    paths = [tmp_path / "t.csv", tmp_path / "t.tex", tmp_path / "t.html"]
    write_table(summary, *paths, caption="c", method_labels={}, ci_style="interval", decimals=1)
    row = summary.iloc[0]
    expected = f"{row['POS_mean']:.1f} [{row['POS_ci_low']:.1f}, {row['POS_ci_high']:.1f}]"
    assert expected in paths[1].read_text()
    assert "invalid maps" not in paths[1].read_text()
