"""Segment ids for the pooling benchmarks, (B, H, W) int64 with K = max id + 1.

- voronoi: each pixel takes its nearest of K jittered grid points (compact regions,
  irregular borders, every id present);
- slic / felzenszwalb: scikit-image's superpixels of its bundled sample photos
  resized to H x W (one photo per batch item; not every id of [0, K) is present in
  every image): SLIC with ``n_segments`` (compact), Felzenszwalb with the project's
  defaults (ial_ext.superpixels: irregular sizes);
- random: uniform ids, no two neighbours alike (the worst case for run-based sums).
"""
import numpy as np
import torch

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
          "immunohistochemistry", "camera")


def voronoi_labels(b, h, w, k, seed=0):
    generator = torch.Generator().manual_seed(seed)
    rows = max(1, round((k * h / w) ** 0.5))
    cols = -(-k // rows)
    grid = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1).reshape(-1, 2)[:k]
    cell = torch.tensor([h / rows, w / cols])
    labels = []
    pixels = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(-1, 2).float()
    for _ in range(b):
        seeds = (grid + torch.rand(k, 2, generator=generator)) * cell
        labels.append(torch.cdist(pixels, seeds).argmin(dim=1).view(h, w))
    return torch.stack(labels)


def sample_photos(b, h, w):
    from skimage import data, transform

    photos = []
    for i in range(b):
        image = getattr(data, PHOTOS[i % len(PHOTOS)])()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos.append(transform.resize(image[..., :3], (h, w), anti_aliasing=True))
    return photos


def slic_labels(b, h, w, n_segments):
    from skimage.segmentation import slic

    labels = [slic(p, n_segments=n_segments, compactness=10, start_label=0) for p in sample_photos(b, h, w)]
    return torch.from_numpy(np.stack(labels)).long()


def felzenszwalb_labels(b, h, w):
    from ial_ext.superpixels import SuperpixelParams
    from skimage.segmentation import felzenszwalb

    params = SuperpixelParams()
    labels = [felzenszwalb(p, scale=params.scale, sigma=params.sigma, min_size=params.min_size)
              for p in sample_photos(b, h, w)]
    return torch.from_numpy(np.stack(labels)).long()


def make_labels(kind, b, h, w, k):
    """(labels, K) for a label kind; k is the target count (Voronoi, random, SLIC)."""
    if kind == "voronoi":
        labels = voronoi_labels(b, h, w, k)
    elif kind == "slic":
        labels = slic_labels(b, h, w, k)
    elif kind == "felzenszwalb":
        labels = felzenszwalb_labels(b, h, w)
    elif kind == "random":
        labels = torch.randint(0, k, (b, h, w), generator=torch.Generator().manual_seed(0))
    else:
        raise ValueError(f"unknown label kind {kind!r}")
    return labels, int(labels.max()) + 1
