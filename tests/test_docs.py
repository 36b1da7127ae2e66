"""The README as a short guide and the reference pages it links: every link resolves, and the figures the pages quote
from the code are the code's."""

from __future__ import annotations

import re

import pytest

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def _pages(repo):
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def test_the_readme_is_a_short_guide_that_links_every_reference_page(repo):
    readme = (repo / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = {target.split("#")[0] for target in LINK.findall(readme)}
    assert {f"docs/{page.name}" for page in (repo / "docs").glob("*.md")} <= linked


@pytest.mark.parametrize("page", ["README.md", "docs"])
def test_every_relative_link_and_anchor_resolves(repo, page):
    for source in [p for p in _pages(repo) if p.name == page or (page == "docs" and p.parent.name == "docs")]:
        for target in LINK.findall(source.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (source.parent / path) if path else source
            assert resolved.is_file(), f"{source.name}: {target}"
            if anchor:
                assert anchor in _anchors(resolved.read_text()), f"{source.name}: {target}"


def test_the_cost_table_in_the_docs_is_the_one_the_code_computes(repo):
    from eea_repro.report.costs import H200_FP32, markdown_table, paper_cost_estimate

    assert markdown_table(paper_cost_estimate(H200_FP32)) in (repo / "docs/benchmarks.md").read_text()


def test_the_citation_file_cites_the_paper_and_the_workflow(repo):
    import tomllib

    import yaml

    citation = yaml.safe_load((repo / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert citation["version"] == tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"]
    paper = citation["preferred-citation"]
    assert "arXiv:2310.16584" in [identifier["value"] for identifier in paper["identifiers"]]
    assert [author["family-names"] for author in paper["authors"]][0] == "Barkan" and paper["year"] == 2023
