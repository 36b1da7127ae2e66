"""Label files and image decoding without torch: what the checks of a user's folder (run before any model job) and
the workflow, when it is read, need from the dataset layer."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError


def read_label_file(path: str | Path) -> list[tuple[str, list[int]]]:
    """Parse "<file name> <label> [<label> ...]" lines; blank lines are skipped, anything malformed is an error."""
    path = Path(path)
    entries = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}, line {line_number}: expected '<file name> <label> ...', got {line.strip()!r}")
        try:
            labels = [int(field) for field in fields[1:]]
        except ValueError:
            raise ValueError(f"{path}, line {line_number}: labels must be integers, got {line.strip()!r}") from None
        if min(labels) < 0:
            raise ValueError(f"{path}, line {line_number}: labels must be >= 0, got {line.strip()!r}")
        entries.append((fields[0], labels))
    return entries


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def open_rgb(path: Path) -> Image.Image:
    """Decode fully (so truncated files fail here) and convert grayscale / palette / RGBA / CMYK to RGB."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "PA", "LA") or "transparency" in image.info:
                image = image.convert("RGBA")
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {first_line(error)}") from error
