"""PSNR and SSIM (paper section 4.2) on inputs with known answers."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from speechanim.media import read_video
from speechanim.metrics.quality import (
    SSIM_SETTINGS,
    mean_quality,
    psnr,
    psnr_frames,
    ssim,
    ssim_frames,
    video_quality,
)


def _video(t: int, h: int = 32, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (t, h, w, 3), dtype=np.uint8)


def _wang_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM written out from Wang et al. (2004): Gaussian window sigma 1.5 (radius 5), population
    statistics, K1 0.01, K2 0.03, L 255, mean over the map without a 5-pixel border, per channel."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
        blur = lambda v: gaussian_filter(v, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
        mu_a, mu_b = blur(a), blur(b)
        var_a = blur(a * a) - mu_a**2
        var_b = blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        values.append(s[5:-5, 5:-5].mean())
    return float(np.mean(values))


def test_psnr_of_a_constant_error_is_known():
    ref = _video(3)
    gen = ref.copy()
    gen[0] = np.clip(ref[0].astype(int) + 5, 0, 255)  # values 20..235: no clipping, error 5 everywhere
    gen[1] = ref[1] - 10
    gen[2] = ref[2] + 1
    expected = [10 * np.log10(255**2 / e**2) for e in (5, 10, 1)]
    np.testing.assert_allclose(psnr_frames(ref, gen), expected, rtol=1e-12)
    assert psnr(ref, gen) == pytest.approx(np.mean(expected))


def test_identical_frames_give_infinite_psnr_and_unit_ssim():
    ref = _video(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MSE 0: the inf comes without numpy's "divide by zero" warning
        assert np.isinf(psnr_frames(ref, ref)).all()
    np.testing.assert_allclose(ssim_frames(ref, ref), 1.0)


def test_ssim_uses_wang_et_al_setting():
    ref = _video(2, 40, 30, seed=1)
    rng = np.random.default_rng(2)
    gen = np.clip(ref.astype(int) + rng.integers(-40, 41, ref.shape), 0, 255).astype(np.uint8)
    ours = ssim_frames(ref, gen)
    for r, g, value in zip(ref, gen, ours):
        assert value == pytest.approx(_wang_ssim(r, g), abs=1e-9)
        # scikit-image's defaults (7x7 uniform window, sample covariance) are a different number
        assert abs(value - structural_similarity(r, g, data_range=255, channel_axis=-1)) > 1e-4
    assert SSIM_SETTINGS["gaussian_weights"] and SSIM_SETTINGS["sigma"] == 1.5
    assert SSIM_SETTINGS["use_sample_covariance"] is False and SSIM_SETTINGS["data_range"] == 255


def test_more_noise_lowers_both_metrics():
    ref = _video(2, seed=3)
    rng = np.random.default_rng(4)
    scores = []
    for amplitude in (5, 20, 60):
        gen = np.clip(ref.astype(int) + rng.integers(-amplitude, amplitude + 1, ref.shape), 0, 255).astype(np.uint8)
        q = video_quality(ref, gen)
        scores.append((q.psnr, q.ssim))
    assert scores[0][0] > scores[1][0] > scores[2][0]
    assert scores[0][1] > scores[1][1] > scores[2][1]


def test_mean_is_per_video_then_over_videos():
    # video A: one frame with error 5; video B: three frames with error 10
    a = _video(1, seed=5)
    b = _video(3, seed=6)
    q = mean_quality([(a, a + 5), (b, b - 10)])
    psnr_a, psnr_b = 10 * np.log10(255**2 / 25), 10 * np.log10(255**2 / 100)
    assert q.n_videos == 2
    assert q.psnr == pytest.approx((psnr_a + psnr_b) / 2)  # not (psnr_a + 3 psnr_b) / 4
    assert q.ssim == pytest.approx((ssim(a, a + 5) + ssim(b, b - 10)) / 2)


def test_bad_inputs_are_refused():
    ref = _video(2)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_frames(ref, ref[:1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        ssim_frames(ref.astype(np.float32), ref.astype(np.float32))
    with pytest.raises(ValueError, match="11x11"):
        ssim_frames(ref[:, :8, :8], ref[:, :8, :8])
    with pytest.raises(ValueError, match=r"^no videos to average$"):
        mean_quality([])


def test_real_grid_frames(grid_mini):
    frames, _ = read_video(grid_mini / "bbaf2n.mpg")
    ref, nxt = frames[:10], frames[1:11]
    q = video_quality(ref, nxt)  # neighbouring frames of a talking head: close but not equal
    assert 25.0 < q.psnr < 50.0
    assert 0.8 < q.ssim < 1.0


def test_the_checks_name_each_video_and_the_smallest_frame_ssim_takes():
    ref = _video(2)
    with pytest.raises(ValueError, match=r"^reference frames must be uint8 RGB \(T, H, W, 3\), got float32 "):
        psnr_frames(ref.astype(np.float32), ref)
    with pytest.raises(ValueError, match=r"^generated frames must be uint8 RGB \(T, H, W, 3\), got uint8 \(2, \d+, \d+\)$"):
        psnr_frames(ref, ref[..., 0])
    with pytest.raises(ValueError, match=r"^generated frames must be uint8 RGB .* got uint8 \(2, \d+, \d+, 4\)$"):
        psnr_frames(ref, np.concatenate([ref, ref[..., :1]], axis=-1))
    with pytest.raises(ValueError, match=r"^reference frames must be uint8 RGB .* got uint8 \(\d+, \d+, 3\)$"):
        psnr_frames(ref[0], ref[0])
    with pytest.raises(ValueError, match=r"^reference and generated videos differ in shape: \(2, "):
        ssim_frames(ref, ref[:, :-1])
    with pytest.raises(ValueError, match=r"^the videos have no frames$"):
        ssim_frames(ref[:0], ref[:0])
    with pytest.raises(ValueError, match=r"^SSIM needs frames of at least 11x11 pixels \(its Gaussian window\), got "
                                         r"\(10, 11\)$"):
        ssim_frames(ref[:, :10, :11], ref[:, :10, :11])
    with pytest.raises(ValueError, match=r"got \(11, 10\)$"):
        ssim_frames(ref[:, :11, :10], ref[:, :11, :10])
    np.testing.assert_allclose(ssim_frames(ref[:, :11, :11], ref[:, :11, :11]), 1.0)  # 11 x 11 is enough
    q = video_quality(ref, ref)
    assert q.n_videos == 1 and np.isinf(q.psnr) and q.ssim == pytest.approx(1.0)
    assert mean_quality([(ref, ref), (ref, ref)]).n_videos == 2
