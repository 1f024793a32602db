"""A PNG grid of samples (image beside its colour-coded mask), for the README and for eyeballing.

    python -m ial_ext.data.preview --out outputs/synthetic_samples.png [--count 12] [--seed 0]
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

from .palette import colorize_mask


def render_grid(dataset, indices, path: str, columns: int = 4, scale: int = 2) -> str:
    """Writes image | mask pairs of `dataset[indices]` in a grid to `path`; returns the path."""
    indices = list(indices)
    if not indices:
        raise ValueError("render_grid needs at least one index")
    cells = [_cell(dataset, i, scale) for i in indices]
    cell_h, cell_w = cells[0].shape[:2]
    rows = (len(cells) + columns - 1) // columns
    pad = 4
    grid = np.full((rows * (cell_h + pad) + pad, columns * (cell_w + pad) + pad, 3), 255, np.uint8)
    for k, cell in enumerate(cells):
        y, x = pad + (k // columns) * (cell_h + pad), pad + (k % columns) * (cell_w + pad)
        grid[y:y + cell.shape[0], x:x + cell.shape[1]] = cell
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def _cell(dataset, index, scale) -> np.ndarray:
    sample = dataset[index]
    rgb = sample["rgb"].numpy()
    coloured = colorize_mask(sample["mask"].numpy(), dataset.palette)
    pair = np.concatenate([rgb, np.full((rgb.shape[0], 2, 3), 255, np.uint8), coloured], axis=1)
    pair = np.repeat(np.repeat(pair, scale, axis=0), scale, axis=1)
    present = [dataset.class_names[c] for c in np.flatnonzero(sample["class_labels"].numpy()) if c > 0]
    caption = Image.new("RGB", (pair.shape[1], 14), "white")
    ImageDraw.Draw(caption).text((2, 1), ", ".join(present), fill="black")
    return np.concatenate([np.asarray(caption), pair], axis=0)


def main(argv=None) -> None:
    from .synthetic import SyntheticDataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/synthetic_samples.png")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dataset = SyntheticDataset("train", num_images=args.count, image_size=args.image_size,
                               num_object_classes=args.classes, seed=args.seed)
    print(render_grid(dataset, range(args.count), args.out, columns=args.columns))


if __name__ == "__main__":
    main()
