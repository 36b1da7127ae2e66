"""The six metrics' names, directions and conventions, apart from the torch engine that computes them: the table,
significance, claim and report jobs read them without loading torch. The engine (:mod:`.metrics`, :mod:`.pixel_order`)
takes its fraction steps and tie rules from here, so the printed conventions cannot drift from the code."""

from __future__ import annotations

import numpy as np

METRICS = ("ADP", "PIC", "POS", "NEG", "DEL", "INS")
HIGHER_IS_BETTER = {"ADP": False, "PIC": True, "POS": False, "NEG": True, "DEL": False, "INS": True}

FRACTION_STEPS = 10  # removal / reveal fractions are j / FRACTION_STEPS
FRACTIONS_POS_NEG: np.ndarray = np.arange(FRACTION_STEPS) / FRACTION_STEPS
FRACTIONS_DEL_INS: np.ndarray = np.arange(FRACTION_STEPS + 1) / FRACTION_STEPS
REMOVED_COUNT_TEXT = "k(f) = floor(N·f)"
REVEALED_COUNT_TEXT = "N − k(1 − f)"
TIE_RULE_TEXT = {
    "random": "ties are broken by a seeded random permutation of the pixels, one per image (seeded by the run's seed "
    "and the image id), the same for every method",
    "raster": "ties are broken by the lower row-major pixel index (the released code's stable sort), so a plateau is "
    "removed top rows first",
}


def _fractions(values: np.ndarray) -> str:
    return f"{values[0]:g}, {values[1]:g} … {values[-1]:g}"


def conventions(ltx_code: bool, tie_rule: str) -> list[tuple[str, str]]:
    """(term, definition) pairs of the conventions in force, from the constants the engine uses: the report and
    docs/metrics.md print these, so they cannot drift from the code."""
    order = (f"Pixels are ordered by normalised map value, most relevant first; {TIE_RULE_TEXT[tie_rule]}. "
             f"At fraction f of N pixels, {REMOVED_COUNT_TEXT}.")
    rows = [
        ("Pixel order", order),
        ("ADP ↓", "100 · mean(max(0, Y − O) / Y): Y = softmax probability of class c on the image, O = the same on "
                  "x ⊙ map."),
        ("PIC ↑", "100 · mean(1[Y < O])."),
        ("POS ↓ / NEG ↑", "100 · trapezoid AUC of top-1 accuracy (argmax = c) over removal fractions "
                          f"{_fractions(FRACTIONS_POS_NEG)}: POS removes the first k(f) pixels of the order, NEG the "
                          "last k(f)."),
    ]
    if ltx_code:
        rows.append(("DEL ↓ / INS ↑", "Released-code convention: probability of the ground-truth class along the POS "
                                      f"/ NEG removals over {_fractions(FRACTIONS_POS_NEG)}."))
    else:
        rows += [
            ("DEL ↓", f"100 · trapezoid AUC of p_c over removal fractions {_fractions(FRACTIONS_DEL_INS)}: the first "
                      "k(f) pixels of the order removed (f = 1 is the black image)."),
            ("INS ↑", f"100 · trapezoid AUC of p_c over revealed fractions {_fractions(FRACTIONS_DEL_INS)} on a black "
                      f"image: the first {REVEALED_COUNT_TEXT} pixels of the order revealed, i.e. exactly what NEG "
                      "leaves at 1 − f."),
        ]
    return rows
