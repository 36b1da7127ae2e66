"""The report template: contents list only the sections that render, in the paper's appendix order."""

import re
from html import unescape

from markupsafe import escape

import yaml

from eea_repro.metrics import conventions
from eea_repro.pixel_order import TIE_RULE_TEXT
from eea_repro.report import report_environment


def _render(repo, **extra):
    config = yaml.safe_load((repo / "config/ci.yaml").read_text())
    context = dict(style="", config=config, config_yaml="", checkpoints=[], explainers=[], runtimes=[],
                   method_costs=[], runtime_total=0.0, versions={}, commit="abc",
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
        config = yaml.safe_load((repo / "config/ci.yaml").read_text())
        config["metrics"].update(ltx_code=ltx_code, tie_break=tie_rule)
        html, _, _ = _render(repo, config=config, metric_conventions=conventions(ltx_code, tie_rule))
        section = html[html.index('<section id="metrics"'):].split("</section>")[0]
        for term, definition in conventions(ltx_code, tie_rule):
            assert f"<dt>{escape(term)}</dt><dd>{escape(definition)}</dd>" in section
        assert TIE_RULE_TEXT[tie_rule] in unescape(section)
        assert f"<strong>{tie_rule}</strong> rule" in section


def test_readme_states_the_default_conventions(repo):
    """The README's metric conventions are the engine's, word for word (line breaks aside)."""
    readme = " ".join(re.sub(r"\*\*|`", "", (repo / "README.md").read_text()).split())
    config = yaml.safe_load((repo / "config.yaml").read_text())
    for term, definition in conventions(config["metrics"]["ltx_code"], config["metrics"]["tie_break"]):
        assert f"{term}: {definition}" in readme, term
