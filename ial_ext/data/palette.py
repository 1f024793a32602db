"""The PASCAL VOC colour map, used to draw label maps of every data set."""
import numpy as np


def _voc_palette() -> np.ndarray:
    # The devkit's bit-interleaving rule: bits of the label spread over the high bits of R, G, B.
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        value, red, green, blue = label, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[label] = (red, green, blue)
    return palette


VOC_PALETTE = _voc_palette()
VOC_PALETTE.setflags(write=False)


def colorize_mask(mask, palette: np.ndarray = VOC_PALETTE) -> np.ndarray:
    """Label map (H, W) with values 0..255 -> uint8 RGB (H, W, 3)."""
    labels = np.asarray(mask)
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError("colorize_mask expects labels in 0..255")
    return palette[labels.astype(np.uint8)]
