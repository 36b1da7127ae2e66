"""The verdict table written out: the CSV, the HTML table the report shows, and claims.json with the verdict matrix
(claims x methods) the report opens with and one sentence per claim."""

from __future__ import annotations

import html
import json

import pandas as pd

from eea_repro.claims.registry import check_claims
from eea_repro.claims.verdicts import EEA, EEA_METHODS, VERDICTS, Settings, shown_label
from eea_repro.workflow.io import atomic_path, write_json


def verdict_html(table: pd.DataFrame) -> str:
    """The verdict table as the report shows it (the same rows and values as the CSV)."""

    def number(value) -> str:
        return "" if value is None or pd.isna(value) else f"{value:.3g}"

    lines = ['<table class="claims-table">', "<thead><tr><th>claim</th><th>subject</th><th>verdict</th>"
             "<th>statistic</th><th>value</th><th>CI</th><th>rule</th><th>protocol</th><th>seeds</th>"
             "<th>evidence</th></tr></thead>",
             "<tbody>"]
    for row in table.itertuples():
        ci = "" if pd.isna(row.ci_low) else f"[{number(row.ci_low)}, {number(row.ci_high)}]"
        cells = [f'<a href="#{row.figure}">{html.escape(row.section)}</a>: “{html.escape(row.quote)}”',
                 html.escape(row.subject), f'<span class="verdict {row.verdict.replace(" ", "-")}">{row.verdict}</span>',
                 html.escape(row.statistic) + (f"<br><small>{html.escape(row.note)}</small>" if row.note else ""),
                 number(row.value), ci, html.escape(row.rule), html.escape(row.protocol), seeds_cell(row),
                 html.escape(row.evidence)]
        lines.append('<tr data-claim="' + html.escape(row.claim) + '">' + "".join(f"<td>{c}</td>" for c in cells)
                     + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def seeds_cell(row) -> str:
    """The seeds column of the report's table: the per-seed verdicts, the seed-fragile mark and the variance share."""
    if not row.per_seed:
        return ""
    text = html.escape(row.per_seed) + (' <b class="fragile">seed-fragile ‡</b>' if row.seed_fragile else "")
    return text + (f"<br><small>{html.escape(row.seed_note)}</small>" if row.seed_note else "")


VERDICT_MARKS = {"reproduced": "✓", "not reproduced": "✗", "inconclusive": "?", "not run": "–"}


def verdict_matrix(table: pd.DataFrame) -> dict:
    """Claims as rows, methods as columns (EEA and pEEA first, then as they first appear): per cell the verdicts of its rows
    (models, variants, runs) counted, whether any of them departs from the paper's protocol, and whether any is
    seed-fragile."""
    rows = table[table["method"].fillna("") != ""]
    methods = sorted(dict.fromkeys(rows["method"]), key=lambda m: (m != EEA, m not in EEA_METHODS))
    cells = []
    for key, group in table.groupby("claim", sort=False):
        first = group.iloc[0]
        line = {"claim": key, "section": first["section"], "quote": first["quote"], "figure": first["figure"],
                "cells": []}
        for method in methods:
            mine = group[group["method"] == method]
            counts = mine["verdict"].value_counts().reindex(VERDICTS, fill_value=0)
            shown = {verdict: int(n) for verdict, n in counts.items() if n}
            line["cells"].append({
                "counts": shown,
                "verdict": next(iter(shown)) if len(shown) == 1 else ("mixed" if shown else ""),
                "departs": bool((mine["protocol"] != "as the paper").any()),
                "fragile": bool(mine["seed_fragile"].astype(bool).any()),
            })
        cells.append(line)
    return {"methods": methods, "rows": cells}


def matrix_html(matrix: dict) -> str:
    """The verdict matrix as the report's first table: one coloured cell per claim and method."""
    head = "".join(f"<th>{html.escape(shown_label(m))}</th>" for m in matrix["methods"])
    lines = ['<table class="verdict-matrix">', f"<thead><tr><th>claim</th>{head}</tr></thead>", "<tbody>"]
    for row in matrix["rows"]:
        cells = []
        for cell in row["cells"]:
            text = " ".join(f"{VERDICT_MARKS[v]}{n}" for v, n in cell["counts"].items())
            title = ", ".join(f"{n} {v}" for v, n in cell["counts"].items())
            if cell["departs"]:
                text += " †"
                title += "; † the run departs from the paper's protocol"
            if cell.get("fragile"):
                text += " ‡"
                title += "; ‡ seed-fragile: its seeds' verdicts disagree"
            kind = cell["verdict"].replace(" ", "-") or "empty"
            cells.append(f'<td class="cell {kind}" title="{html.escape(title)}">{text}</td>')
        claim = f'<a href="#{row["figure"]}">{html.escape(row["section"])}</a><br><small>{html.escape(row["claim"])}</small>'
        lines.append(f"<tr><td>{claim}</td>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def claim_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per claim, from the table's numbers: which subjects reproduced it and which did not."""
    sentences = []
    for key, rows in table.groupby("claim", sort=False):
        first = rows.iloc[0]
        by_verdict = {verdict: ", ".join(rows.loc[rows["verdict"] == verdict, "subject"]) for verdict in VERDICTS
                      if (rows["verdict"] == verdict).any()}
        parts = [f"{verdict}: {subjects}" for verdict, subjects in by_verdict.items()]
        sentences.append(f"{first['section']}, “{first['quote']}”: " + "; ".join(parts) + ".")
    return sentences


def write_claims(evidence: dict, settings: Settings, out_csv, out_json, out_html) -> pd.DataFrame:
    """Check every claim and write the verdict table (CSV, the report's HTML) and its summary (JSON), with the
    verdict matrix (claims x methods) the report opens with."""
    table = check_claims(evidence, settings)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    html_table = verdict_html(table)
    with atomic_path(out_html) as tmp:
        tmp.write_text(html_table + "\n", encoding="utf-8")
    counts = table["verdict"].value_counts().reindex(VERDICTS, fill_value=0).to_dict()
    matrix = verdict_matrix(table)
    write_json(out_json, {"settings": settings.recorded(), "counts": counts, "html": html_table,
                          "seeds": 1 + len(evidence.get("replicates", [])),
                          "seed_fragile": int(table["seed_fragile"].astype(bool).sum()),
                          "matrix": matrix, "matrix_html": matrix_html(matrix),
                          "sentences": claim_sentences(table), "rows": json.loads(table.to_json(orient="records"))})
    return table
