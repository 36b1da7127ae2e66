"""Checks of a user's image folder and label file, made once when the split lists are drawn, before any model job.

A bad input (an unreadable or truncated image, a label line naming no file, an image without a label, a label outside
the model's classes) is either an error naming the file and line, or, with ``dataset.on_bad_image: skip``, excluded
and listed with its reason. Nothing is dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from eea_repro.data.files import first_line, open_rgb

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())  # what an image with no label line is recognised by


@dataclass(frozen=True)
class LabeledFile:
    """One usable line of a label file."""

    name: str
    labels: tuple[int, ...]
    line: int


@dataclass(frozen=True)
class BadImage:
    """An input excluded (or refused) and why; ``line`` is 0 for an image that no label line names."""

    name: str
    line: int
    reason: str

    def describe(self, image_dir, label_file) -> str:
        where = f"line {self.line} of {label_file}" if self.line else f"not listed in {label_file}"
        return f"{Path(image_dir) / self.name} ({where}): {self.reason}"


def scan_label_file(label_file, n_classes: int, image_dir=None) -> tuple[list[LabeledFile], list[BadImage]]:
    """Every non-blank line, either usable or bad (no label, a label that is not an integer in [0, n_classes), a file
    listed twice, and with ``image_dir`` a file that is not there), without opening the images."""
    usable, bad, first_line_of = [], [], {}
    present = set() if image_dir is None else _files_under(Path(image_dir))
    for number, text in enumerate(Path(label_file).read_text().splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        name = fields[0]
        if len(fields) < 2:
            bad.append(BadImage(name, number, "no label on the line"))
            continue
        try:
            labels = tuple(int(field) for field in fields[1:])
        except ValueError:
            bad.append(BadImage(name, number, f"labels must be integers, got {' '.join(fields[1:])!r}"))
            continue
        outside = [label for label in labels if not 0 <= label < n_classes]
        if outside:
            bad.append(BadImage(name, number, f"label {outside[0]} is outside [0, {n_classes})"))
        elif name in first_line_of:
            bad.append(BadImage(name, number, f"listed twice (first on line {first_line_of[name]})"))
        elif image_dir is not None and name not in present and not (Path(image_dir) / name).is_file():
            bad.append(BadImage(name, number, "file not found"))
        else:
            first_line_of[name] = number
            usable.append(LabeledFile(name, labels, number))
    return usable, bad


def _files_under(root: Path) -> set[str]:
    """Every file below ``root`` as a relative POSIX path: one walk instead of a stat per label line."""
    return {(Path(folder) / name).relative_to(root).as_posix() for folder, _, names in os.walk(root, followlinks=True)
            for name in names}


def unlabeled_images(image_dir, label_file) -> list[BadImage]:
    """Image files under ``image_dir`` that no line of the label file names (any label, valid or not)."""
    listed = {text.split()[0] for text in Path(label_file).read_text().splitlines() if text.split()}
    root = Path(image_dir)
    found = []
    for folder, _, files in os.walk(root, followlinks=True):  # a plain folder is linked in (data/folder.py)
        for file_name in files:
            relative = (Path(folder) / file_name).relative_to(root).as_posix()
            if Path(file_name).suffix.lower() in IMAGE_SUFFIXES and relative not in listed:
                found.append(BadImage(relative, 0, "image has no label line"))
    return sorted(found, key=lambda bad: bad.name)


def _decode_problem(path: Path) -> str | None:
    try:
        open_rgb(path)
    except FileNotFoundError:
        return "file not found"
    except ValueError as error:
        if isinstance(error.__cause__, UnidentifiedImageError):
            return "not an image file PIL can read"
        return first_line(error.__cause__ or error)
    return None


def unreadable(image_dir, entries: Sequence[LabeledFile], threads: int = 1) -> list[BadImage]:
    """The entries whose file is missing, not an image, or truncated: each image is fully decoded (and converted to
    RGB as the loader does), on ``threads`` threads since the decoders release the GIL."""
    root = Path(image_dir)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        problems = list(pool.map(_decode_problem, [root / entry.name for entry in entries]))
    return [BadImage(entry.name, entry.line, problem) for entry, problem in zip(entries, problems) if problem]


def first_usable(image_dir, ordered: Sequence[LabeledFile], needed: int, *, skip: bool, describe, threads: int = 1
                 ) -> tuple[list[LabeledFile], list[BadImage]]:
    """The first ``needed`` readable entries of ``ordered``, decoding only as many as it takes.

    With ``skip`` false the first unreadable one (lowest line number in the batch) is an error; ``describe`` turns a
    :class:`BadImage` into that error's text.
    """
    chosen, bad, position = [], [], 0
    while len(chosen) < needed and position < len(ordered):
        batch = ordered[position : position + needed - len(chosen)]
        position += len(batch)
        problems = unreadable(image_dir, batch, threads)
        if problems and not skip:
            raise ValueError(describe(min(problems, key=lambda problem: problem.line)))
        names = {problem.name for problem in problems}
        chosen.extend(entry for entry in batch if entry.name not in names)
        bad.extend(problems)
    return chosen, bad
