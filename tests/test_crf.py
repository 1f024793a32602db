"""The optional dense CRF (ial_ext.crf, the crf extra): what it does to scores on a known picture."""
import sys

import numpy as np
import pytest

from ial_ext import crf


def two_region_picture(height=40, width=60):
    """A picture whose left 40% is dark blue and the rest light orange, with the true labels."""
    rng = np.random.default_rng(0)
    truth = np.zeros((height, width), np.int64)
    truth[:, int(0.4 * width):] = 1
    colours = np.array([[30, 40, 160], [230, 170, 60]], np.float64)
    rgb = np.clip(colours[truth] + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    return rgb, truth


def blurry_scores(truth, edge_shift=8, noise=0.25):
    """Class scores whose boundary sits `edge_shift` pixels off the true one, with noise."""
    rng = np.random.default_rng(1)
    width = truth.shape[1]
    columns = np.arange(width)[None, :].repeat(truth.shape[0], 0)
    edge = int(0.4 * width) + edge_shift
    right = 1 / (1 + np.exp(-(columns - edge) / 3.0))
    right = np.clip(right + rng.normal(0, noise, right.shape), 0.01, 0.99)
    return np.stack([1 - right, right]).astype(np.float32)


needs_crf = pytest.mark.skipif(not crf.crf_available(), reason='needs pydensecrf2 (pip install "ial_ext[crf]")')


@needs_crf
def test_the_crf_moves_a_boundary_to_the_colour_edge():
    rgb, truth = two_region_picture()
    scores = blurry_scores(truth)
    before = float((scores.argmax(0) == truth).mean())
    rgb.setflags(write=False)  # as np.asarray(PIL image) gives it
    refined = crf.dense_crf(scores, rgb)
    after = float((refined.argmax(0) == truth).mean())
    assert before < 0.9  # the input misses a band 8 pixels wide, plus noise
    assert after > 0.99
    assert refined.shape == scores.shape and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(0), 1, atol=1e-4)


@needs_crf
def test_a_class_scored_zero_never_wins_and_scale_does_not_matter():
    rgb, truth = two_region_picture(20, 30)
    scores = np.concatenate([blurry_scores(truth), np.zeros((1, 20, 30), np.float32)])
    refined = crf.dense_crf(scores, rgb)
    assert refined.argmax(0).max() <= 1
    # -log(k * score) = -log(score) - log(k): the same constant for every class of a pixel.
    np.testing.assert_allclose(crf.dense_crf(3 * scores, rgb), refined, atol=1e-5)


@needs_crf
def test_bad_inputs_are_named():
    rgb, truth = two_region_picture(20, 30)
    with pytest.raises(ValueError, match="same size"):
        crf.dense_crf(blurry_scores(truth)[:, :10], rgb)
    with pytest.raises(ValueError, match="uint8"):
        crf.dense_crf(blurry_scores(truth), rgb.astype(np.float32))
    with pytest.raises(ValueError, match="iterations"):
        crf.dense_crf(blurry_scores(truth), rgb, iterations=0)


def test_without_pydensecrf_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # makes `import pydensecrf...` fail
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    assert not crf.crf_available()
    rgb, truth = two_region_picture(8, 8)
    with pytest.raises(ImportError, match=r'pip install "ial_ext\[crf\]"'):
        crf.dense_crf(blurry_scores(truth), rgb)


@needs_crf
def test_crf_seeds_follow_the_colour_edge_that_the_cams_miss():
    import torch

    from ial_ext.train.seeds import crf_seeds_from_cams, seeds_from_cams

    rgb, truth = two_region_picture()
    cams = torch.from_numpy(blurry_scores(truth, noise=0.1)[1])[None, None]  # class 1 = the right part
    class_labels = torch.tensor([[1.0, 1.0, 0.0]])  # background and class 1 present, class 2 absent
    cams = torch.cat([cams, torch.rand_like(cams)], dim=1)  # an absent class's CAM never shows up

    def precision_and_coverage(seeds):
        known = seeds[0] != 255
        return float((seeds[0][known].numpy() == truth[known.numpy()]).mean()), float(known.float().mean())

    plain = seeds_from_cams(cams, class_labels, 0.5, 4.0)
    refined = crf_seeds_from_cams(cams, class_labels, torch.from_numpy(rgb)[None], 0.5, 4.0, iterations=10)
    assert refined.shape == plain.shape and refined.dtype == torch.int64
    assert set(refined.unique().tolist()) <= {0, 1, 255}
    plain_precision, _ = precision_and_coverage(plain)
    refined_precision, refined_coverage = precision_and_coverage(refined)
    assert plain_precision < 0.95  # the blurry CAM puts part of the background into class 1
    assert refined_precision > 0.99 and refined_coverage > 0.9
