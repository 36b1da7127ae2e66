"""The report template: contents list only the sections that render, in the paper's appendix order."""

import re

import yaml

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
