"""The benchmark entry: its CLI at CI size, the naive metrics it compares against, the cost estimate, torch.compile.

No timing assertions: the figures depend on the machine; what is checked is that every figure is produced and that
the compared implementations compute the same thing.
"""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from eea_repro.bench.naive import NAIVE_FORWARDS_PER_IMAGE, naive_metrics
from eea_repro.workflow.config import load_config
from eea_repro.report.costs import paper_cost_estimate, throughputs_from_run
from eea_repro.metrics.engine import MAP_STEPS, METRICS, evaluate_batch
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network

TINY_VIT = ModelSpec("vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
                     {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2})
TINY_CNN = ModelSpec("resnet18", "cnn", 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                     {"channels": (8, 16, 32, 64), "stem_width": 8})


def tiny_model(spec, num_classes=5):
    torch.manual_seed(0)
    return ExplainedModel(create_network(spec, num_classes), spec).eval().requires_grad_(False)


def tiny_inputs(count, size, num_classes=5, grid=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(count, 3, size, size, generator=generator), torch.rand(count, grid, grid, generator=generator),
            torch.randint(num_classes, (count,), generator=generator))


def test_bench_cli_prints_every_ratio(repo, tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "eea_repro.bench", "--preset", "ci", "--device", "cpu", "--threads", "1",
               "--benchmarks", "engine,naive,finetune,dry_run,maps,numerics", "--images", "6", "--naive-images", "3",
               "--finetune-images", "4", "--finetune-loop-images", "2", "--finetune-steps", "2", "--chunk-size", "4",
               "--map-images", "2", "--batch-size", "32", "--repeats", "1", "--dry-run-images", "2000",
               "--workflow-dir", str(repo), "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    for heading in ("1. metric engine vs bare forward", "2. metric engine vs naive", "3. batched EEA fine-tuning",
                    "4. snakemake -n, paper preset, 2,000 images", "5. map throughput", "8. numerics",
                    "Cost estimate"):
        assert heading in text
    figures = json.loads(out.read_text())
    assert set(figures["models"]) == {"vit", "resnet"}
    for entry in figures["models"].values():
        ratios = [entry["engine"]["eager"]["ratio"], entry["naive"]["speedup"], entry["naive"]["forward_bound_speedup"],
                  entry["finetune"]["speedup"]]
        assert all(math.isfinite(r) and r > 0 for r in ratios)
        assert entry["naive"]["agree"] and max(entry["naive"]["max_abs_difference"].values()) < 0.01
        assert entry["finetune"]["max_abs_map_difference"] < 1e-4  # the batched maps are the loop's maps
        assert entry["engine"]["eager"]["inputs"] == 6 * 20
        assert "random" not in entry["maps"] and "eea" not in entry["maps"] and len(entry["maps"]) >= 5
    for mode in ("portable", "native"):  # each model's step and forward timed in both modes' worker processes
        assert set(figures["numerics"]["seconds"][mode]) == {"vit", "resnet"}
        assert all(0 < t < 60 for times in figures["numerics"]["seconds"][mode].values() for t in times.values())
    assert figures["dry_run"]["jobs"] > 100
    assert figures["dry_run"]["seconds_again"] > 0
    stages = {row["stage"] for row in figures["cost_estimate"]}
    assert stages == {"maps", "EEA fine-tuning", "metrics", "explainer pretraining", "total"}


@pytest.mark.parametrize("spec", [TINY_VIT, TINY_CNN], ids=["vit", "cnn"])
@pytest.mark.parametrize("naive_batch", [1, 3])
def test_naive_metrics_equal_the_engine(spec, naive_batch):
    model = tiny_model(spec)
    images, maps, classes = tiny_inputs(5, spec.input_size)
    engine = evaluate_batch(model, images, maps, classes, classes, batch_size=17)
    naive = naive_metrics(model, images, maps, classes, batch_size=naive_batch)
    for name in METRICS:
        np.testing.assert_allclose(naive[name], engine[name], atol=1e-3, err_msg=name)
    assert np.ptp(naive["DEL"]) > 0  # not a degenerate comparison


def test_forward_counts_behind_the_forward_bound():
    """The bench's forward-bound speed-up assumes these counts of model inputs per image; count them."""
    from eea_repro.models.memory import input_footprint

    model = tiny_model(TINY_VIT)
    images, maps, classes = tiny_inputs(3, TINY_VIT.input_size)
    input_footprint(model, TINY_VIT.input_size, images.device)  # the engine's one blank image, before counting
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    naive_metrics(model, images, maps, classes, batch_size=1)
    assert (len(seen), sum(seen)) == (3 * NAIVE_FORWARDS_PER_IMAGE, 3 * NAIVE_FORWARDS_PER_IMAGE)
    seen.clear()
    evaluate_batch(model, images, maps, classes, classes, batch_size=64)
    assert sum(seen) == 3 * (MAP_STEPS + 1) + 1  # 19 per map, the clean image, and the all-black image once


def test_paper_cost_estimate_on_known_inputs():
    rates = {"M": {"maps": {"a": 100.0, "b": 10.0}, "finetune": 50.0, "metrics": 20.0}}
    frame = paper_cost_estimate(rates, n_images=3600).set_index(["stage", "method"])["gpu_hours"]
    # 3600 images x 2 variants: map a 7200 / 100 s, map b 7200 / 10 s; 25 fine-tuning steps at 50 image-steps/s;
    # metrics over a, b, EEA, pEEA at 20 images/s; pretraining 6000 x 30 x 2 at 50/s plus 1000 x 30 x 2 at 40/s.
    expected = {("maps", "a"): 72 / 3600, ("maps", "b"): 720 / 3600, ("EEA fine-tuning", "EEA"): 3600 / 3600,
                ("metrics", "4 methods"): 1440 / 3600, ("explainer pretraining", "pEEA"): (7200 + 1500) / 3600}
    for key, hours in expected.items():
        assert frame[key] == pytest.approx(hours)
    assert frame[("total", "")] == pytest.approx(sum(expected.values()))
    # two more seeds: fine-tuning and pretraining again, and the metrics of 3 of the 4 scored methods
    tripled = paper_cost_estimate(rates, n_images=3600, replicates=3).set_index(["stage", "method"])["gpu_hours"]
    seeded = expected[("EEA fine-tuning", "EEA")] + expected[("explainer pretraining", "pEEA")] + 1080 / 3600
    assert tripled[("seed replicates", "2 more seeds")] == pytest.approx(2 * seeded)
    assert tripled[("total", "")] == pytest.approx(sum(expected.values()) + 2 * seeded)


def test_throughputs_from_run_invert_seconds_per_image():
    methods = ["eea", "peea", "gae", "random"]
    costs = pd.DataFrame({"model": ["vit"] * 4, "method": methods, "maps_s_per_image": [0.5, 0.01, 0.02, 0.001],
                          "metrics_s_per_image": [0.1, 0.3, 0.2, 0.2]})
    config = {"finetune": {"steps": 5}, "explainer": {"train_count": 100, "epochs": 3},
              "models": {"vit": {"label": "ViT", "family": "vit"}}, "methods": {"vit": methods}}
    rates = throughputs_from_run(costs, {"vit": 60.0}, config, {"random", "all_ones"})["ViT"]
    assert rates["maps"] == pytest.approx({"gae": 50.0})  # pEEA and the controls are not timed, as in the bench
    assert rates["finetune"] == pytest.approx(10.0)  # 5 steps per image in 0.5 s
    assert rates["metrics"] == pytest.approx(0.2 ** -1) and rates["pretrain"] == pytest.approx(5.0)
    assert rates["evaluated_methods"] == 4


def test_compiled_model_gives_the_engine_equal_results(tmp_path):
    """torch.compile (inductor) through compile_model; skipped when compiling takes too long on this machine."""
    script = textwrap.dedent(f"""
        import numpy as np, torch
        from eea_repro.metrics.engine import evaluate_batch
        from eea_repro.models.network import ExplainedModel, ModelSpec, compile_model, create_network
        torch.set_num_threads(1)
        spec = ModelSpec{tuple(TINY_VIT.__dict__.values())!r}
        torch.manual_seed(0)
        model = ExplainedModel(create_network(spec, 5), spec).eval().requires_grad_(False)
        generator = torch.Generator().manual_seed(1)
        images, maps = torch.rand(4, 3, 32, 32, generator=generator), torch.rand(4, 4, 4, generator=generator)
        classes = torch.randint(5, (4,), generator=generator)
        eager = evaluate_batch(model, images, maps, classes, classes, batch_size=32)
        compiled = evaluate_batch(compile_model(model, True), images, maps, classes, classes, batch_size=32)
        print(max(float(np.abs(eager[m] - compiled[m]).max()) for m in {list(METRICS)!r}))
    """)
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=40,
                                cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.skip("torch.compile took over 40 s here (cold compiler cache or a busy machine)")
    if result.returncode != 0 and ("InductorError" in result.stderr or "CompilationError" in result.stderr):
        pytest.skip(f"torch.compile is unavailable here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-3


def test_report_estimate_from_a_runs_benchmark_files(repo, tmp_path):
    """Benchmark files of one 40-image shard -> hours for 50,000 images, rendered in the report's cost section."""

    from eea_repro.report.costs import run_cost_estimate
    from eea_repro.report.page import method_costs, report_environment, rule_runtimes

    config = load_config(repo / "config/ci.yaml")
    shard_images = config["dataset"]["embedded"]["counts"]["test"]
    assert config["dataset"]["shard_size"] >= shard_images  # one shard
    bench = tmp_path / "benchmarks"
    seconds = {"maps/vit_target_eea_0000": 8.0, "maps/vit_baselines_0000": 2.0, "metrics/vit_0000": 8.0,
               "explainer/vit_target": 300.0, "explainer/vit_mixed_resnet_target": 999.0}
    for name, value in seconds.items():
        path = bench / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{value}\t0:00:01\t100.0\n")
    methods = {"maps/vit_target_eea_0000": [("eea", 8.0)], "maps/vit_baselines_0000": [("gae", 2.0)],
               "metrics/vit_0000": [("eea", 4.0), ("gae", 4.0)]}
    for name, rows in methods.items():
        (bench / f"{name}.methods.csv").write_text("model,method,seconds,images\n" + "".join(
            f"vit,{method},{value},{shard_images}\n" for method, value in rows))
    runtimes = rule_runtimes(bench)
    estimate = run_cost_estimate(method_costs(runtimes, bench), runtimes, config, {"random", "all_ones"})
    hours = estimate.set_index(["stage", "method"])["gpu_hours"]
    per_image = {"eea": 8.0 / shard_images, "gae": 2.0 / shard_images, "metrics": 4.0 / shard_images}
    assert hours[("maps", "gae")] == pytest.approx(50_000 * 2 * per_image["gae"] / 3600)
    # the run's EEA seconds per image cover its configured steps; the estimate scales them to 25 steps
    steps = config["finetune"]["steps"]
    assert hours[("EEA fine-tuning", "EEA")] == pytest.approx(50_000 * 2 * 25 * per_image["eea"] / steps / 3600)
    assert hours[("metrics", "2 methods")] == pytest.approx(50_000 * 2 * 2 * per_image["metrics"] / 3600)
    train_rate = config["explainer"]["train_count"] * config["explainer"]["epochs"] / 300.0  # mixed job ignored
    expected_pretrain = 6000 * 30 * 2 / train_rate + 1000 * 30 * 2 / (2 / per_image["metrics"])
    assert hours[("explainer pretraining", "pEEA")] == pytest.approx(expected_pretrain / 3600)

    html = report_environment(repo / "report/sections").get_template("cost.html.j2").render(
        cost_estimate=estimate.to_dict("records"), method_costs=[], runtimes=[], runtime_total=0.0)
    assert 'id="cost-estimate"' in html and "this machine" in html
    assert html.count("<tr><td>ViT (tiny)</td>") == len(estimate) - 1


def test_the_sanity_modes_bench_counts_each_sides_explained_pairs(tmp_path):
    """Ours explains 2 images on the original and the L + 1 bottom-up levels (L = 8 residual blocks), eMPRT on two
    models, sMPRT with every copy; Quantus's pairs follow its own randomized models. Rates are pairs per second."""
    pytest.importorskip("quantus")
    from eea_repro.bench.sanity_modes import MODES, main, measure

    rows = {row["mode"]: row for row in measure(images_count=2, samples=2, repeats=1)}
    assert list(rows) == list(MODES)
    assert (rows["bottom_up"]["ours_pairs"], rows["efficient"]["ours_pairs"], rows["smooth"]["ours_pairs"]) == (
        2 * 10, 2 * 2, 2 * 10 * 2)
    assert rows["efficient"]["quantus_pairs"] == 4 and rows["bottom_up"]["quantus_pairs"] > rows["bottom_up"]["ours_pairs"]
    for row in rows.values():
        assert row["ours_pairs_per_s"] == pytest.approx(row["ours_pairs"] / row["ours_seconds"])
        assert row["ratio"] == pytest.approx(row["ours_pairs_per_s"] / row["quantus_pairs_per_s"])
    main(["--images", "2", "--samples", "2", "--repeats", "1", "--out", str(tmp_path / "modes.json")])
    written = json.loads((tmp_path / "modes.json").read_text())
    assert [row["mode"] for row in written] == list(MODES) and {row["device"] for row in written} == {"cpu"}
