"""Names of the parameter-randomization runs and of their randomized models (settings): the tokens in file names
that the rules, the map jobs and the figure jobs share, without torch."""

from __future__ import annotations

import re

ORIGINAL = "original"
RUN_PATTERN = r"(cascading|independent|bottom_up|efficient|smooth)(?:-(attention|block|stage))?"
# the modes that randomize layer after layer and end at x = L + 2, every parameter of the network
CUMULATIVE_MODES = ("cascading", "bottom_up", "smooth")
MODE_NAMES = {"cascading": "cascading randomization", "independent": "independent randomization",
              "bottom_up": "bottom-up cascading randomization", "efficient": "efficient MPRT",
              "smooth": "Smooth MPRT (bottom-up, maps averaged over noisy copies)"}


def layer_kinds(sanity_cfg: dict, family: str) -> list[str]:
    """``sanity.layers.<family>``: one layer granularity or a list of them, each a run of every mode."""
    which = sanity_cfg["layers"][family]
    return [which] if isinstance(which, str) else list(which)


def sanity_runs(sanity_cfg: dict, family: str) -> list[str]:
    """The run names of a family's models: each mode once per layer granularity. The first granularity keeps the
    plain mode name ("cascading"); another is named after it ("cascading-block"), in file names and the report."""
    kinds = layer_kinds(sanity_cfg, family)
    return [mode if which == kinds[0] else f"{mode}-{which}" for which in kinds for mode in sanity_cfg["modes"]]


def parse_run(run: str) -> tuple[str, str | None]:
    """A run name -> (mode, its layer granularity; None = the family's first one)."""
    match = re.fullmatch(RUN_PATTERN, run)
    if not match:
        raise ValueError(f"sanity run {run!r} is not '<mode>' or '<mode>-<layers>'")
    return match.group(1), match.group(2)


def run_levels(run: str, layers: int) -> list[int]:
    """The levels x of a run of a model with ``layers`` (L) layers: 1 (the original) .. L + 1 (every layer), and
    L + 2 (every parameter) for the cumulative modes; efficient MPRT compares the original with L + 2 only."""
    mode = parse_run(run)[0]
    if mode == "efficient":
        return [1, layers + 2]
    return list(range(1, layers + (3 if mode in CUMULATIVE_MODES else 2)))


def run_label(run: str) -> str:
    """How figures and the report name a run: "cascading randomization", "cascading randomization of block layers",
    "bottom-up cascading randomization", "efficient MPRT"."""
    mode, which = parse_run(run)
    return MODE_NAMES[mode] + (f" of {which} layers" if which else "")


def setting_name(run: str, level: int) -> str:
    """The token naming one randomized model in file names. Level 1 of any run is the original model, and level 2
    is the same model in the cascading and independent modes of one granularity (only the top layer re-initialised,
    with the same seed), so it is made once, as ``cascading-2`` (``cascading-block-2``); bottom-up's level 2 is the
    bottom layer's. Efficient MPRT's fully randomized network (Quantus randomizes it bottom-up) is bottom-up's last
    level, ``bottom_up-<L + 2>``, shared when both modes run. Smooth MPRT's settings are its own at every level,
    ``smooth-<x>`` (its models are bottom-up's)."""
    mode, which = parse_run(run)
    suffix = f"-{which}" if which else ""
    if mode == "smooth":  # its maps, the original's included, are averages over noisy copies: its own settings
        return f"smooth{suffix}-{level}"
    if level == 1:
        return ORIGINAL
    if mode == "efficient":
        return f"bottom_up{suffix}-{level}"
    return f"cascading{suffix}-{level}" if level == 2 and mode != "bottom_up" else f"{mode}{suffix}-{level}"


def parse_setting(setting: str) -> tuple[str | None, str | None, int]:
    """A setting token -> (mode, layer granularity or None for the first one, level); the original is (None, None, 1)
    (``smooth-1`` is the original model too, explained by Smooth MPRT's averaged maps)."""
    if setting == ORIGINAL:
        return None, None, 1
    match = re.fullmatch(rf"{RUN_PATTERN}-(\d+)", setting)
    if not match:
        raise ValueError(f"sanity setting {setting!r} is neither {ORIGINAL!r} nor '<mode>[-<layers>]-<level>'")
    return match.group(1), match.group(2), int(match.group(3))
