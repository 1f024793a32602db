"""The PASCAL VOC colour map in plain numpy (the runner must not import ial_ext or torch)."""
import numpy as np

PALETTE_SIZE = 256


def voc_palette() -> np.ndarray:
    """(256, 3) uint8: label l's colour spreads l's bits over the high bits of R, G and B (VOC devkit)."""
    labels = np.arange(PALETTE_SIZE)
    palette = np.zeros((PALETTE_SIZE, 3), dtype=np.uint8)
    for bit in range(8):
        for channel in range(3):
            # Bit (3 * bit + channel) of the label becomes bit (7 - bit) of the channel.
            palette[:, channel] |= (((labels >> (3 * bit + channel)) & 1) << (7 - bit)).astype(np.uint8)
    return palette
