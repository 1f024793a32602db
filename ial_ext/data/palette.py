"""The PASCAL VOC colour map (the runner's), used to draw label maps of every data set."""
import numpy as np
from ial_export.palette import voc_palette

VOC_PALETTE = voc_palette()
VOC_PALETTE.setflags(write=False)


def colorize_mask(mask, palette: np.ndarray = VOC_PALETTE) -> np.ndarray:
    """Label map (H, W) with values 0..255 -> uint8 RGB (H, W, 3)."""
    labels = np.asarray(mask)
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError("colorize_mask expects labels in 0..255")
    return palette[labels.astype(np.uint8)]
