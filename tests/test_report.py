"""Report helpers: per-method cost from the benchmark files, figure embedding."""

import base64
import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from eea_repro.report.page import embed_png, method_costs, rule_runtimes

matplotlib.use("Agg")


def _benchmark(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t100.0\n")


def _methods_file(path, rows):
    path.write_text("model,method,seconds,images\n" + "".join(f"{m},{method},{s},{n}\n" for m, method, s, n in rows))


def test_method_costs_sum_a_methods_shards_before_dividing(tmp_path):
    """Shards of 20 and 10 images: a method's cost is its seconds over all its images, not a mean of shard rates."""
    bench = tmp_path / "benchmarks"
    for shard, (images, wall, seconds) in enumerate([(20, 4.0, 4.0), (10, 2.0, 2.0)]):
        _benchmark(bench / f"maps/vit_baselines_{shard:04d}.tsv", wall)
        _methods_file(bench / f"maps/vit_baselines_{shard:04d}.methods.csv", [("vit", "gae", seconds, images)])
    _benchmark(bench / "checkpoints/train_vit.tsv", 100.0)
    costs = method_costs(rule_runtimes(bench), bench).set_index(["model", "method"])
    assert list(costs.index) == [("vit", "gae")]
    assert costs.loc[("vit", "gae"), "maps_s_per_image"] == pytest.approx(6.0 / 30)
    assert np.isnan(costs.loc[("vit", "gae"), "metrics_s_per_image"])


def test_method_costs_without_benchmarks_is_empty(tmp_path):
    empty = pd.DataFrame(columns=["stage", "job", "seconds", "max_rss_mb"])
    assert method_costs(empty, tmp_path).empty


def test_jobs_of_several_methods_charge_each_its_share(tmp_path):
    """A metric job of two methods: each gets its own seconds plus half of the job's shared work (start-up, loading)."""
    bench = tmp_path / "benchmarks"
    _benchmark(bench / "metrics/vit_0000.tsv", 10.0)
    _methods_file(bench / "metrics/vit_0000.methods.csv", [("vit", "gae", 3.0, 80), ("vit", "rollout", 1.0, 80)])
    _benchmark(bench / "maps/vit_baselines_0000.tsv", 5.0)
    _methods_file(bench / "maps/vit_baselines_0000.methods.csv", [("vit", "gae", 4.0, 80)])
    runtimes = rule_runtimes(bench)
    assert set(runtimes["job"]) == {"vit_0000", "vit_baselines_0000"}  # the per-method files are not jobs
    costs = method_costs(runtimes, bench).set_index(["model", "method"])
    assert costs.loc[("vit", "gae"), "metrics_s_per_image"] == pytest.approx(6.0 / 80)
    assert costs.loc[("vit", "rollout"), "metrics_s_per_image"] == pytest.approx(4.0 / 80)
    assert costs.loc[("vit", "gae"), "maps_s_per_image"] == pytest.approx(5.0 / 80)


def _decoded(uri):
    header, data = uri.split(",", 1)
    return header, Image.open(io.BytesIO(base64.b64decode(data)))


def test_photo_grids_embed_as_jpeg_and_plots_as_png(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(400, 600, 3)), 0), 1)  # photo-like: textured, no flat areas
    photo = ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)
    Image.fromarray(photo).convert("RGBA").save(tmp_path / "grid.png")
    figure, axis = plt.subplots(figsize=(4, 3))
    axis.plot([0, 1, 2], [1.0, 0.5, 0.2], marker="o")
    axis.set_title("cascading randomization")
    figure.savefig(tmp_path / "curve.png", dpi=100)
    plt.close(figure)

    header, image = _decoded(embed_png(tmp_path / "grid.png"))
    assert header == "data:image/jpeg;base64" and image.size == (600, 400)
    assert len(embed_png(tmp_path / "grid.png")) < 0.5 * len(base64.b64encode((tmp_path / "grid.png").read_bytes()))
    difference = np.abs(np.asarray(image.convert("RGB"), dtype=float) - photo).mean()
    assert difference < 3  # a faithful re-encoding, not a blurred thumbnail
    header, image = _decoded(embed_png(tmp_path / "curve.png"))
    assert header == "data:image/png;base64" and image.size == (400, 300)
