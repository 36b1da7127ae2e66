"""Localisation tables and the report's summary of them, from the per-image scores of :mod:`eea_repro.localisation.scores`
(torch-free: these jobs only read CSVs)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from eea_repro.workflow.io import atomic_path, write_json
from eea_repro.metrics.tables import bootstrap_ci

SCORES = ("pointing", "ap")
SCORE_LABELS = {"pointing": "pointing game", "ap": "AP (mask)", "class_pointing": "class-specific pointing game",
                "other_pointing": "points at the other object"}


def localisation_table(per_image_files: dict[str, str | Path], two_object_file: str | Path | None, caption: str,
                       tables_cfg: dict, seed: int, method_labels: dict[str, str], out_csv: str | Path,
                       out_html: str | Path, out_json: str | Path) -> None:
    """One table per explained model: methods x (variant's pointing game and AP, two-object class-specific pointing),
    mean with the bootstrap CI over images; the JSON carries the same numbers and the HTML for the report."""
    n_boot, level = tables_cfg["bootstrap"], tables_cfg["confidence"]
    columns, rows, chance = [], {}, {}
    for variant, path in per_image_files.items():
        frame = pd.read_csv(path)
        chance[variant] = float(frame.drop_duplicates("image_id")["area"].mean())
        for score in SCORES:
            columns.append((variant, score))
            for method, group in frame.groupby("method", sort=False):
                rows.setdefault(method, {})[(variant, score)] = bootstrap_ci(group[score].to_numpy(), n_boot, level, seed)
                rows[method]["n_images"] = int(group[score].notna().sum())
    if two_object_file is not None:
        two = pd.read_csv(two_object_file)
        for score in ("class_pointing", "other_pointing"):
            if two.empty:
                break
            columns.append(("two-object", score))
            for method, group in two.groupby("method", sort=False):
                rows.setdefault(method, {})[("two-object", score)] = bootstrap_ci(group[score].to_numpy(), n_boot,
                                                                                 level, seed)
    records = []
    for method, cells in rows.items():
        record = {"method": method, "label": method_labels[method], "n_images": cells.get("n_images", 0)}
        for variant, score in columns:
            mean, low, high = cells.get((variant, score), (np.nan, np.nan, np.nan))
            record.update({f"{variant}_{score}_{part}": 100 * value
                           for part, value in zip(("mean", "ci_low", "ci_high"), (mean, low, high))})
        records.append(record)
    table = pd.DataFrame(records)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    html = _html_table(table, columns, caption)
    with atomic_path(out_html) as tmp:
        tmp.write_text(html, encoding="utf-8")
    write_json(out_json, {"caption": caption, "html": html, "chance": {v: 100 * c for v, c in chance.items()},
                          "two_object": any(variant == "two-object" for variant, _ in columns), "rows": records,
                          "confidence": level, "bootstrap": n_boot})


def _html_table(table: pd.DataFrame, columns: list[tuple[str, str]], caption: str) -> str:
    means = {column: table[f"{column[0]}_{column[1]}_mean"].to_numpy(dtype=np.float64) for column in columns}
    best = {column: set(np.flatnonzero(values == np.nanmax(values))) if np.isfinite(values).any() else set()
            for column, values in means.items() if column[1] != "other_pointing"}
    groups = list(dict.fromkeys(variant for variant, _ in columns))
    lines = ['<table class="metrics-table localisation-table">', f"<caption>{html.escape(caption)}</caption>",
             '<thead><tr><th scope="col" rowspan="2">Method</th>'
             + "".join(f'<th scope="colgroup" colspan="{sum(v == g for v, _ in columns)}">{html.escape(g)}</th>'
                       for g in groups) + "</tr>",
             "<tr>" + "".join(f'<th scope="col">{html.escape(SCORE_LABELS[s])} {"↓" if s == "other_pointing" else "↑"}'
                              "</th>" for _, s in columns) + "</tr></thead>", "<tbody>"]
    for index, row in table.iterrows():
        cells = [f'<th scope="row" class="method">{html.escape(str(row["label"]))}</th>']
        for column in columns:
            prefix = f"{column[0]}_{column[1]}"
            mean, low, high = row[f"{prefix}_mean"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
            text = "n/a" if not np.isfinite(mean) else f"{mean:.1f} ± {(high - low) / 2:.1f}"
            marked = ' class="best"' if index in best.get(column, ()) else ""
            cells.append(f"<td{marked}>{text}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>", ""]
    return "\n".join(lines)


def localisation_summary(table_files: dict[str, str | Path], labels: dict[str, str], masks_source: str,
                         out_json: str | Path) -> None:
    """The report's input: every model's localisation table, in config order."""
    models = [{"model": model, "label": labels[model], **json.loads(Path(path).read_text())}
              for model, path in table_files.items()]
    write_json(out_json, {"models": models, "masks_source": masks_source})
