"""Report helpers: per-method cost from the benchmark files, figure embedding."""

import base64
import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from eea_repro.report import embed_png, method_costs, rule_runtimes

matplotlib.use("Agg")


def _benchmark(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t100.0\n")


def test_method_costs_divide_shard_time_by_shard_images(repo, tmp_path):
    config = yaml.safe_load((repo / "config/ci.yaml").read_text())
    config["dataset"]["embedded"]["counts"]["test"] = 30
    config["dataset"]["shard_size"] = 20  # shards of 20 and 10 images
    bench = tmp_path / "benchmarks"
    _benchmark(bench / "maps/vit_target_attention_gradcam_0000.tsv", 4.0)
    _benchmark(bench / "maps/vit_target_attention_gradcam_0001.tsv", 2.0)
    _benchmark(bench / "metrics/vit_target_attention_gradcam_0000.tsv", 9.0)
    _benchmark(bench / "metrics/vit_target_attention_gradcam_0001.tsv", 6.0)
    _benchmark(bench / "checkpoints/train_vit.tsv", 100.0)
    costs = method_costs(rule_runtimes(bench), config).set_index(["model", "method"])
    assert list(costs.index) == [("vit", "attention_gradcam")]
    assert costs.loc[("vit", "attention_gradcam"), "maps_s_per_image"] == pytest.approx(6.0 / 30)
    assert costs.loc[("vit", "attention_gradcam"), "metrics_s_per_image"] == pytest.approx(15.0 / 30)


def test_method_costs_without_benchmarks_is_empty(repo):
    config = yaml.safe_load((repo / "config/ci.yaml").read_text())
    empty = pd.DataFrame(columns=["stage", "job", "seconds", "max_rss_mb"])
    assert method_costs(empty, config).empty


def test_a_job_serving_both_variants_counts_its_images_per_variant(repo, tmp_path):
    config = yaml.safe_load((repo / "config/ci.yaml").read_text())
    config["dataset"]["embedded"]["counts"]["test"] = 20
    config["dataset"]["shard_size"] = 20
    bench = tmp_path / "benchmarks"
    _benchmark(bench / "maps/resnet_target+predicted_all_ones_0000.tsv", 8.0)
    costs = method_costs(rule_runtimes(bench), config).set_index(["model", "method"])
    assert costs.loc[("resnet", "all_ones"), "maps_s_per_image"] == pytest.approx(8.0 / 40)


def test_jobs_of_several_methods_charge_each_its_share(repo, tmp_path):
    """A metric job of two methods: each gets its own seconds plus half of the job's shared work (start-up, loading)."""
    config = yaml.safe_load((repo / "config/ci.yaml").read_text())
    bench = tmp_path / "benchmarks"
    _benchmark(bench / "metrics/vit_0000.tsv", 10.0)
    (bench / "metrics/vit_0000.methods.csv").write_text("model,method,seconds,images\nvit,gae,3.0,80\n"
                                                        "vit,rollout,1.0,80\n")
    _benchmark(bench / "maps/vit_baselines_0000.tsv", 5.0)
    (bench / "maps/vit_baselines_0000.methods.csv").write_text("model,method,seconds,images\nvit,gae,4.0,80\n")
    runtimes = rule_runtimes(bench)
    assert set(runtimes["job"]) == {"vit_0000", "vit_baselines_0000"}  # the per-method files are not jobs
    costs = method_costs(runtimes, config, bench).set_index(["model", "method"])
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
