"""Figure 6 of the paper, per step: images with seeds, unary, mined regions, refined output, truth."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

UNKNOWN_COLOUR = (255, 255, 255)  # the paper draws unknown pixels white
TITLE_HEIGHT = 14


def colourize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8; 255 (unknown) is white."""
    colours = np.asarray(palette, dtype=np.uint8)[np.minimum(labels, len(palette) - 1)]
    colours[labels == 255] = UNKNOWN_COLOUR
    return colours


def save_step_figure(
    path: str, rgb: np.ndarray, columns: dict[str, np.ndarray], palette: np.ndarray, scale: int = 2
) -> str:
    """rgb: (R, H, W, 3) uint8; columns: title -> (R, H, W) label maps. Writes a PNG grid."""
    rows, height, width = rgb.shape[:3]
    titles = ["image", *columns]
    cell_w, cell_h = width * scale, height * scale
    canvas = Image.new("RGB", (len(titles) * (cell_w + 2), TITLE_HEIGHT + rows * (cell_h + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles):
        draw.text((column * (cell_w + 2) + 2, 1), title, fill="black")
        for row in range(rows):
            pixels = rgb[row] if title == "image" else colourize(columns[title][row], palette)
            tile = Image.fromarray(pixels).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (column * (cell_w + 2), TITLE_HEIGHT + row * (cell_h + 2)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)
    return path
