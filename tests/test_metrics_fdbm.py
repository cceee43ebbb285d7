"""FDBM (paper section 4.2; De & Masilamani 2013) on inputs with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from scipy.ndimage import gaussian_filter

from speechanim.media import read_video
from speechanim.metrics.cpbd import to_gray
from speechanim.metrics.fdbm import fdbm, fdbm_frames, fdbm_video


def test_constant_image_has_only_the_dc_coefficient():
    assert fdbm(np.full((128, 96), 137, np.uint8)) == pytest.approx(1 / (128 * 96), rel=1e-12)


def test_single_bright_pixel_has_a_flat_spectrum():
    delta = np.zeros((128, 96))
    delta[40, 30] = 255.0
    assert fdbm(delta) == 1.0


def test_all_zero_image_scores_zero():
    assert fdbm(np.zeros((32, 32))) == 0.0


def test_cosine_grating_has_dc_and_two_peaks():
    x = np.arange(96)
    grating = np.tile(128 + 100 * np.cos(2 * np.pi * 5 * x / 96), (128, 1))
    assert fdbm(grating) * 128 * 96 == pytest.approx(3.0)
    # a faint grating: its peaks (0.1 M N each) are under the threshold (DC / 1000 = 0.128 M N)
    faint = np.tile(128 + 0.2 * np.cos(2 * np.pi * 5 * x / 96), (128, 1))
    assert fdbm(faint) * 128 * 96 == pytest.approx(1.0)


def test_threshold_is_one_thousandth_of_the_peak():
    """De & Masilamani's threshold is max(|F|) / 1000, not any nearby ratio: two gratings on a mean
    of 128 (DC = 128 M N, threshold 0.128 M N), one with peaks 5% above the threshold (amplitude
    0.2688: peaks 0.1344 M N each) and one with peaks 5% below it (0.2432: 0.1216 M N each). The DC
    and the first pair count (3 coefficients), the second pair does not; a threshold of 1/600 (0.213
    M N) would drop the first pair too (1 coefficient), one of 1/1100 (0.116 M N) keep both (5)."""
    x = np.arange(96)
    above = 0.2688 * np.cos(2 * np.pi * 5 * x / 96)
    below = 0.2432 * np.cos(2 * np.pi * 11 * x / 96)
    both = np.tile(128 + above + below, (128, 1))
    assert fdbm(both) * 128 * 96 == pytest.approx(3.0)
    assert fdbm(np.tile(128 + above, (128, 1))) * 128 * 96 == pytest.approx(3.0)  # each side on its own
    assert fdbm(np.tile(128 + below, (128, 1))) * 128 * 96 == pytest.approx(1.0)


def test_score_ignores_the_intensity_scale():
    camera = skimage.data.camera().astype(np.float64)
    assert fdbm(camera * 0.5) == pytest.approx(fdbm(camera))


def test_sharper_scores_higher_and_blur_is_monotonic():
    camera = skimage.data.camera().astype(np.float64)
    scores = [fdbm(gaussian_filter(camera, s)) if s else fdbm(camera) for s in (0, 0.5, 1, 2, 4)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    noise = np.random.default_rng(0).uniform(0, 255, (128, 96))  # white noise: a flat spectrum
    assert fdbm(noise) > 0.9 > scores[0]


def test_video_mean_and_rgb_conversion(grid_mini):
    frames, _ = read_video(grid_mini / "lbax4n.mpg")
    frames = frames[:4]
    per_frame = fdbm_frames(frames)
    assert per_frame.shape == (4,)
    np.testing.assert_array_equal(per_frame, [fdbm(g) for g in to_gray(frames)])
    assert fdbm_video(frames) == pytest.approx(per_frame.mean())
    assert 0.01 < per_frame.min() and per_frame.max() < 0.5


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2-D"):
        fdbm(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fdbm(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="no frames"):
        fdbm_frames(np.zeros((0, 8, 8), np.uint8))


def test_every_input_check_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"^FDBM needs a non-empty 2-D grayscale image, got shape \(0, 4\)$"):
        fdbm(np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"^FDBM needs a non-empty 2-D grayscale image, got shape \(4,\)$"):
        fdbm(np.zeros(4))
    for dtype in (np.complex64, np.bool_, object):
        with pytest.raises(ValueError, match=rf"^FDBM needs a real-valued image, got "):
            fdbm(np.ones((4, 4), dtype))
    with pytest.raises(ValueError, match=r"^FDBM image has NaN or infinite values$"):
        fdbm(np.array([[0.0, np.inf], [1.0, 2.0]]))
    assert fdbm(np.full((4, 4), 7, np.int16)) == pytest.approx(1 / 16)  # any real dtype


def test_frames_are_scored_one_by_one_and_averaged():
    delta = np.zeros((8, 8), np.uint8)
    delta[3, 4] = 200
    gray = np.stack([delta, np.full((8, 8), 9, np.uint8)])  # FDBM 1 and 1/64
    np.testing.assert_allclose(fdbm_frames(gray), [1.0, 1 / 64])
    assert fdbm_video(gray) == pytest.approx((1 + 1 / 64) / 2)
    rgb = np.repeat(gray[..., None], 3, axis=-1)  # grey RGB: the same luma
    np.testing.assert_allclose(fdbm_frames(rgb), [1.0, 1 / 64])
