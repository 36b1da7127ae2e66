"""§4 and §5: the claims beyond one model's single-class images, EEA explaining a model of another architecture and
EEA's class-specific maps on images of two objects."""

from __future__ import annotations

from eea_repro.claims.verdicts import (EEA, EEA_METHODS, Finding, Settings, build_finding, claim, missing_evidence,
                                       not_run, paired_values, read_evidence, shown_label)


def _class_agnostic(method: str) -> bool:
    from eea_repro.localisation.two_object import is_class_specific

    return not is_class_specific(method)


@claim("mixed_architectures", "§4, EEA with mixed architectures (Fig. 9)",
       "even with mixed architectures the EEA manages to produce meaningful explanation maps", "mixed", reads=("mixed",))
def mixed_architectures(evidence: dict, settings: Settings) -> list[Finding]:
    key = "mixed_architectures"
    if reason := missing_evidence(evidence, "mixed"):
        return [not_run(key, "cross pairs", reason)]
    mixed = evidence["mixed"]
    frame = read_evidence(mixed["per_image"])
    own = {pair["model"]: pair["label"] for pair in mixed["pairs"] if pair["explainer"] == pair["model"]}
    findings = []
    for pair in mixed["pairs"]:
        if pair["explainer"] == pair["model"] or pair["model"] not in own:
            continue
        rows = frame[frame["pair"].isin([pair["label"], own[pair["model"]]])].assign(method=lambda f: f["pair"])
        findings.append(build_finding(
            key, pair["label"], paired_values(rows, pair["label"], own[pair["model"]], "POS"), settings,
            f"POS of {pair['label']} − POS of {own[pair['model']]} (the explained model's own architecture)",
            settings.mixed_pos_margin, "below", [mixed["per_image"]], method=EEA))
    return findings or [not_run(key, "cross pairs", "no cross pair of two configured models")]


@claim("two_object_class_specific", "§5, multiple-class images (Fig. 10)",
       "EEA provides the most accurate class-specific explanation maps", "multiclass", reads=("two_object",),
       assumes=("size_penalty", "finetune_steps"))
def two_object_class_specific(evidence: dict, settings: Settings) -> list[Finding]:
    key = "two_object_class_specific"
    if reason := missing_evidence(evidence, "two_object"):
        return [not_run(key, "every model", reason)]
    findings = []
    for entry in evidence["two_object"]:
        frame = read_evidence(entry["per_image"])
        methods = list(dict.fromkeys(frame["method"]))
        agnostic = [m for m in methods if _class_agnostic(m)]
        if not agnostic:
            findings.append(not_run(key, entry["label"], "no class-agnostic method to compare with"))
            continue
        best = frame[frame["method"].isin(agnostic)].groupby("method")["class_pointing"].mean().idxmax()
        for method in sorted((m for m in methods if m not in agnostic), key=lambda m: m != EEA):
            findings.append(build_finding(
                key, f"{entry['label']}, {shown_label(method)}",
                paired_values(frame, method, best, "class_pointing", keys=("image_id", "class")), settings,
                f"class-specific pointing game of {shown_label(method)} − the best class-agnostic method's "
                f"({shown_label(best)})", 0.0, "above", [entry["per_image"]],
                rests_on_eea=method in EEA_METHODS or best in EEA_METHODS, method=method))
    return findings
