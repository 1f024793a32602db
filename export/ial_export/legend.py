"""Colour keys under label pictures: the training figures, `ial infer --overlay` and `ial-deploy --overlay`.

Pillow and numpy only; the default bitmap font, so nothing is looked up on the machine.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNKNOWN_LABEL = 255
UNKNOWN_COLOUR = (255, 255, 255)  # the paper draws unknown pixels white
SWATCH = 10
PADDING = 4


def present_classes(labels: Sequence[np.ndarray] | np.ndarray, class_names: Sequence[str],
                    palette: np.ndarray, skip_background: bool = False) -> list[tuple[str, tuple]]:
    """(name, colour) of each class that occurs in `labels` (255 last, as 'unknown'), in class order."""
    found = set()
    for array in (labels if isinstance(labels, (list, tuple)) else [labels]):
        found.update(int(value) for value in np.unique(array))
    entries = []
    for index in sorted(found - {UNKNOWN_LABEL}):
        if skip_background and index == 0:
            continue
        name = class_names[index] if index < len(class_names) else f"class {index}"
        entries.append((name, tuple(int(c) for c in np.asarray(palette)[index])))
    if UNKNOWN_LABEL in found:
        entries.append(("unknown", UNKNOWN_COLOUR))
    return entries


def legend(entries: Sequence[tuple[str, tuple]], width: int, heading: str = ""):
    """A white strip `width` pixels wide: `heading` on its own line, then a swatch and the name of
    each entry, wrapped onto as many lines as needed."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = max(SWATCH, _text_height(draw)) + PADDING
    cells = [(name, colour, SWATCH + 3 + int(draw.textlength(name)) + 2 * PADDING) for name, colour in entries]
    lines, line, used = [], [], PADDING
    for cell in cells:
        if line and used + cell[2] > width:
            lines.append(line)
            line, used = [], PADDING
        line.append(cell)
        used += cell[2]
    if line:
        lines.append(line)
    rows = len(lines) + (1 if heading else 0)
    strip = Image.new("RGB", (width, rows * line_height + PADDING), "white")
    draw = ImageDraw.Draw(strip)
    y = PADDING
    if heading:
        draw.text((PADDING, y), heading, fill="black")
        y += line_height
    for line in lines:
        x = PADDING
        for name, colour, cell_width in line:
            draw.rectangle([x, y, x + SWATCH - 1, y + SWATCH - 1], fill=colour, outline=(128, 128, 128))
            draw.text((x + SWATCH + 3, y - 1), name, fill="black")
            x += cell_width
        y += line_height
    return strip


def with_legend(picture, entries: Sequence[tuple[str, tuple]], heading: str = ""):
    """`picture` (a PIL image) with the legend of `entries` below it."""
    from PIL import Image

    strip = legend(entries, picture.width, heading)
    canvas = Image.new("RGB", (picture.width, picture.height + strip.height), "white")
    canvas.paste(picture.convert("RGB"), (0, 0))
    canvas.paste(strip, (0, picture.height))
    return canvas


def _text_height(draw) -> int:
    left, top, right, bottom = draw.textbbox((0, 0), "Ag")
    return bottom - top
