"""The report template: contents list only the sections that render, in the paper's appendix order."""

import re
import subprocess
import sys
from html import unescape

from markupsafe import escape

from eea_repro.workflow.config import load_config
from eea_repro.metrics.names import TIE_RULE_TEXT, conventions
from eea_repro.report.page import numerics_provenance, report_environment


def _render(repo, **extra):
    config = load_config(repo / "config/ci.yaml")
    context = dict(style="", config=config, config_yaml="", checkpoints=[], explainers=[], runtimes=[],
                   method_costs=[], runtime_total=0.0, versions={}, commit="abc",
                   numerics=numerics_provenance(config["numerics"]),
                   tables=[{"model": m, "variant": "target", "html": "<table></table>", "caption": m,
                            "sentence": f"sentence {m}"} for m in config["models"]],
                   figures=[{"model": m, "variant": "target", "src": "data:image/png;base64,", "caption": m}
                            for m in config["models"]])
    html = report_environment(repo / "report").get_template("template.html.j2").render(**{**context, **extra})
    return html, re.findall(r'<section id="(\w+)"', html), re.findall(r'<a href="#(\w+)"', html)


def test_contents_match_the_sections_on_the_page(repo):
    html, sections, toc = _render(repo)
    assert toc == sections
    assert sections[:3] == ["metrics", "results", "cnn"]
    assert "localisation" not in sections  # no data, no section, no dangling link
    assert sections[-3:] == ["models", "cost", "provenance"]
    cnn = html[html.index('<section id="cnn"'):html.index("</section>", html.index('<section id="cnn"'))]
    assert "sentence resnet" in cnn and "sentence vit" not in cnn  # the CNN section shows the CNN tables only


def test_localisation_section_appears_with_its_data(repo):
    localisation = {"masks_source": "embedded object masks", "models": [
        {"model": "vit", "html": "<table id='loc'></table>", "chance": {"target": 21.5}, "two_object": True,
         "confidence": 0.95, "bootstrap": 100}]}
    html, sections, toc = _render(repo, localisation=localisation)
    assert sections.index("qualitative") < sections.index("localisation") < sections.index("models")
    assert toc == sections
    assert "21.5 %" in html and "Class-specific pointing game" in html


def test_metric_section_prints_the_conventions_in_force(repo):
    """The definitions come from the engine's constants, for the tie rule and convention of the run."""
    for ltx_code, tie_rule in ((False, "random"), (True, "raster")):
        config = load_config(repo / "config/ci.yaml")
        config["metrics"].update(ltx_code=ltx_code, tie_break=tie_rule)
        html, _, _ = _render(repo, config=config, metric_conventions=conventions(ltx_code, tie_rule))
        section = html[html.index('<section id="metrics"'):].split("</section>")[0]
        for term, definition in conventions(ltx_code, tie_rule):
            assert f"<dt>{escape(term)}</dt><dd>{escape(definition)}</dd>" in section
        assert TIE_RULE_TEXT[tie_rule] in unescape(section)
        assert f"<strong>{tie_rule}</strong> rule" in section


def test_docs_state_the_default_conventions(repo):
    """docs/metrics.md states the engine's metric conventions word for word (line breaks aside)."""
    readme = " ".join(re.sub(r"\*\*|`", "", (repo / "docs/metrics.md").read_text()).split())
    config = load_config(repo / "config.yaml")
    for term, definition in conventions(config["metrics"]["ltx_code"], config["metrics"]["tie_break"]):
        assert f"{term}: {definition}" in readme, term


def test_building_the_report_imports_no_torch(repo, tmp_path):
    """The report job renders the tables' sentences and the cost estimate from the labels and controls the workflow
    passes it: it never loads the method registry or the metric engine (torch), as it once did for both."""
    per_image = tmp_path / "vit_target.per_image.csv"
    rows = [f"{method},img{i},{10 + i + shift},50,{20 + shift},60,30,70"
            for method, shift in (("eea", 0), ("gae", 5), ("random", 9)) for i in range(6)]
    per_image.write_text("method,image_id,ADP,PIC,POS,NEG,DEL,INS\n" + "\n".join(rows) + "\n")
    (tmp_path / "table.html").write_text("<table></table>")
    (tmp_path / "benchmarks").mkdir()
    code = f"""
import sys
from eea_repro.workflow.config import load_config
from eea_repro.report.page import build_report
config = load_config({str(repo / "config/ci.yaml")!r})
table = {{"model": "vit", "variant": "target", "html": {str(tmp_path / "table.html")!r},
          "per_image": {str(per_image)!r}, "caption": "ViT"}}
build_report(template={str(repo / "report/template.html.j2")!r}, style={str(repo / "report/style.css")!r},
             config=config, method_labels={{"eea": "EEA", "gae": "GAE", "random": "Random"}}, controls=["random"],
             tables=[table], figures=[], checkpoints=[], explainers=[], benchmarks_dir={str(tmp_path / "benchmarks")!r},
             output={str(tmp_path / "index.html")!r})
print(sorted(m for m in ("torch", "timm") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
    html = (tmp_path / "index.html").read_text()
    assert "GAE" in html and "EEA" in html  # the sentence names methods by the labels passed in
