"""Figure 6 of the paper, per step: images with seeds, unary, mined regions, refined output, truth;
the step and each stage's scores above, a legend of the classes present below."""
from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from ial_export.legend import UNKNOWN_COLOUR, UNKNOWN_LABEL, present_classes, with_legend

LINE_HEIGHT = 12
MIN_CELL_WIDTH = 96  # room for a caption line such as "precision 88.1"


def colourize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8; 255 (unknown) is white."""
    colours = np.asarray(palette, dtype=np.uint8)[np.minimum(labels, len(palette) - 1)]
    colours[labels == UNKNOWN_LABEL] = UNKNOWN_COLOUR
    return colours


def stage_caption(row: Optional[dict]) -> list[str]:
    """The scores of a table row, as the lines under its column's title."""
    if row is None:
        return []
    names = (("train_miou", "mIoU"), ("train_precision", "precision"), ("coverage", "coverage"))
    return [f"{label} {_percent(row.get(key))}" for key, label in names if row.get(key) is not None]


def save_step_figure(
    path: str, rgb: np.ndarray, columns: dict[str, np.ndarray], palette: np.ndarray, scale: int = 2,
    class_names: tuple = (), heading: str = "", captions: Optional[dict[str, list[str]]] = None,
) -> str:
    """rgb: (R, H, W, 3) uint8; columns: title -> (R, H, W) label maps; captions: title -> lines
    under the title. Writes a PNG grid with `heading` on top and a legend of the classes present."""
    captions = captions or {}
    rows, height, width = rgb.shape[:3]
    scale = max(scale, math.ceil(MIN_CELL_WIDTH / width))
    titles = ["image", *columns]
    caption_lines = max([len(captions.get(title, [])) for title in titles] + [0])
    top = LINE_HEIGHT * (1 + caption_lines + (1 if heading else 0)) + 2
    cell_w, cell_h = width * scale, height * scale
    grid = Image.new("RGB", (len(titles) * (cell_w + 2), top + rows * (cell_h + 2)), "white")
    draw = ImageDraw.Draw(grid)
    y = 1
    if heading:
        draw.text((2, y), heading, fill="black")
        y += LINE_HEIGHT
    for column, title in enumerate(titles):
        x = column * (cell_w + 2) + 2
        draw.text((x, y), title, fill="black")
        for line_index, line in enumerate(captions.get(title, [])):
            draw.text((x, y + LINE_HEIGHT * (1 + line_index)), line, fill=(80, 80, 80))
        for row in range(rows):
            pixels = rgb[row] if title == "image" else colourize(columns[title][row], palette)
            tile = Image.fromarray(pixels).resize((cell_w, cell_h), Image.NEAREST)
            grid.paste(tile, (column * (cell_w + 2), top + row * (cell_h + 2)))
    canvas = with_legend(grid, present_classes(list(columns.values()), class_names, palette))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)
    return path


def _percent(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"
