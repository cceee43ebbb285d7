"""CPBD (paper section 4.2): agreement with the PyPI ``cpbd`` package, and known inputs."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
from PIL import Image
from scipy.ndimage import gaussian_filter

from speechanim.media import read_video
from speechanim.metrics.cpbd import cpbd, cpbd_frames, cpbd_video, edge_widths, pad_to_block, to_gray


def _reference_cpbd():
    """The PyPI package ``cpbd`` 1.0.7 (in the ``test`` extra).  It imports ``scipy.ndimage.imread``,
    gone since SciPy 1.2, for its command line only; a stand-in attribute lets it import."""
    if not hasattr(scipy.ndimage, "imread"):
        scipy.ndimage.imread = None
    try:
        import cpbd as package
    except ImportError as err:
        pytest.fail(f"the reference package is missing: pip install cpbd==1.0.7 (the test extra) ({err})")
    return package.compute


def _crop64(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    return image[: h // 64 * 64, : w // 64 * 64]


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(np.round(gaussian_filter(image.astype(np.float64), sigma)), 0, 255).astype(np.uint8)


def _test_images() -> dict[str, np.ndarray]:
    images = {}
    for name, crop in (("camera", (slice(64, 256), slice(128, 320))), ("astronaut", (slice(0, 192), slice(128, 320))),
                       ("coins", (slice(0, 128), slice(0, 192))), ("text", (slice(0, 128), slice(0, 192)))):
        image = getattr(skimage.data, name)()
        gray = to_gray(image) if image.ndim == 3 else image
        gray = _crop64(gray[crop])
        images[name] = gray
        for sigma in (0.8, 2.0):
            images[f"{name}-blur{sigma}"] = _blur(gray, sigma)
    # low contrast (every block's max - min <= 50: the just-noticeable width is 5, not 3), and
    # block contrasts just above that split (51-56)
    camera = images["camera"].astype(np.float64)
    low = np.round(camera * 0.18 + 90).astype(np.uint8)
    images["camera-lowcontrast"] = low
    images["camera-lowcontrast-blur0.8"] = _blur(low, 0.8)
    images["camera-contrast-above-50"] = np.round(camera * 0.22 + 90).astype(np.uint8)
    # sparse edges: short bars, so that the top blocks hold 8, 10 and 12 Canny edge pixels, around
    # the edge-block threshold (more than 0.2 % of 4096 pixels, i.e. 9 or more)
    sparse = np.full((128, 192), 100.0)
    for top, left, height in ((20, 20, 3), (20, 90, 4), (20, 150, 5), (90, 30, 6), (90, 100, 9), (90, 160, 14)):
        sparse[top:top + height, left:left + 3] = 200
    images["sparse"] = _blur(sparse, 0.6)
    return images


def test_matches_the_cpbd_package_on_whole_blocks():
    compute = _reference_cpbd()
    images = _test_images()
    scores = {}
    for name, image in images.items():
        assert image.shape[0] % 64 == 0 and image.shape[1] % 64 == 0
        ours, theirs = cpbd(image), compute(image)
        assert ours == pytest.approx(theirs, abs=1e-6), name
        scores[name] = ours
    assert 0.3 < scores["camera"] < 1.0  # a real, non-degenerate comparison
    # the package takes float images on the 0-255 scale too
    image = images["astronaut"].astype(np.float64) * 0.9 + 10.0
    assert cpbd(image) == pytest.approx(compute(image), abs=1e-6)


def test_matches_the_package_on_a_real_aligned_grid_frame_with_a_partial_block(grid_mini):
    from speechanim.align import align_video

    compute = _reference_cpbd()
    frames, _ = read_video(grid_mini / "swwp2s.mpg")
    crops = align_video(frames[:3], name="swwp2s").frames  # 128 x 96: two whole blocks, 32 columns in none
    for gray in to_gray(crops):
        assert cpbd(gray) == pytest.approx(compute(gray), abs=1e-6)


def test_blur_lowers_cpbd():
    camera = _crop64(skimage.data.camera()[:256, :256])
    scores = [cpbd(_blur(camera, s)) if s else cpbd(camera) for s in (0, 0.7, 1.5, 3.0)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.5 and scores[-1] < 0.05


def test_columns_outside_whole_blocks_are_not_scored():
    # 128 x 96: the 64 columns of the whole blocks are flat, columns 72-95 (in no whole block) full
    # of sharp edges; 8 flat columns between keep the edge filters' reach out of the blocks
    rng = np.random.default_rng(0)
    image = np.full((128, 96), 120, np.uint8)
    image[:, 72:] = np.where(rng.random((128, 24)) > 0.5, 230, 20)
    assert cpbd(image) == 0.0
    assert _reference_cpbd()(image) == 0.0
    # the same texture inside the first block column is scored
    moved = np.full((128, 96), 120, np.uint8)
    moved[:, :24] = image[:, 72:]
    assert cpbd(moved) > 0.0


def _rows(profile: np.ndarray) -> np.ndarray:
    """Rows 0-4 hold ``profile``; rows 5-6 hold it reversed, so that some gradient points away from
    0 degrees (the package measures no width at all when every gradient angle is 0, and neither
    does :func:`edge_widths`; see ``test_no_widths_when_every_gradient_angle_is_zero``)."""
    profile = np.asarray(profile, np.float64)
    return np.vstack([np.tile(profile, (5, 1)), np.tile(profile[::-1], (2, 1))])


def test_marziliano_width_spans_the_monotone_ramp():
    image = _rows([10, 10, 20, 40, 80, 160, 200, 210, 210, 210, 210, 210])
    edges = np.zeros(image.shape, bool)
    edges[2, 4] = True  # on the ramp, intensity rising to the right (angle 0)
    widths = edge_widths(edges, image)
    assert widths[2, 4] == 6  # from the last 10 (column 1) to the first 210 (column 7)
    assert np.count_nonzero(widths) == 1
    falling = image[:, ::-1].copy()  # angle 180: the same ramp read right to left
    assert edge_widths(edges[:, ::-1].copy(), falling)[2, 7] == 6
    # a uint8 image is measured as its float copy (its falling steps are negative, not wrapped round to 246)
    assert edge_widths(edges[:, ::-1].copy(), falling.astype(np.uint8))[2, 7] == 6
    # an edge pixel on the image border gets no width
    border = np.zeros(image.shape, bool)
    border[0, 4] = True
    assert not edge_widths(border, image).any()


def test_edge_widths_match_the_package_on_small_images_and_integer_edge_maps():
    """The package's ``marziliano_method`` on random images with a 0/1 integer edge map (not bool), on
    images only 3 pixels high or wide (one interior row or column, still measured), and at a pixel whose
    ``np.gradient`` is exactly (pi/2, 0): the package's special case sets its angle to 90 degrees, so that
    edge pixel gets no width although its x-gradient is 0."""
    _reference_cpbd()  # lets the package import
    from cpbd.compute import marziliano_method

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (9, 12)).astype(np.float64)
    edges = (rng.random((9, 12)) < 0.5).astype(np.uint8)
    image[4, 3] = image[4, 5] = 7.0  # grad_x = 0 at (4, 4)
    image[3, 4], image[5, 4] = 0.0, np.pi  # grad_y = (pi - 0) / 2 at (4, 4)
    edges[4, 4] = 1
    widths = edge_widths(edges, image)
    np.testing.assert_array_equal(widths, marziliano_method(edges, image))
    assert widths[4, 4] == 0 and np.count_nonzero(widths) >= 5
    for shape in ((3, 10), (10, 3)):
        image = np.add.outer(np.arange(shape[0]) * 0.5, np.arange(shape[1]) * 30.0)  # rising to the right
        image += rng.random(shape)
        ones = np.ones(shape, np.int64)
        widths = edge_widths(ones, image)
        np.testing.assert_array_equal(widths, marziliano_method(ones, image))
        assert np.count_nonzero(widths) == (shape[1] - 2 if shape[0] == 3 else shape[0] - 2), shape


def test_sobel_edges_of_a_faint_dot_and_the_cut_off_tie():
    """A dot of height d in a 12 x 16 image: the normalised Sobel gives d/4 left and right of it and
    d/8 at the four diagonal pixels, so the squared strengths are d^2/16 (x2) and d^2/64 (x4), their
    mean 12 d^2 / (64 * 192) and the cut-off 2 sqrt(mean) = d/16.  At d = 2 the two side pixels
    (1/4 > 1/8) are edges and the diagonals (1/16) are not; at d = 1 the side pixels sit exactly on the
    cut-off (1/16) and, as in the package (``strength <= cut-off`` is dropped), are no edge."""
    from speechanim.metrics.cpbd import _sobel_vertical_edges

    _reference_cpbd()
    from cpbd.octave import sobel

    for d, want in ((2.0, [[5, 6], [5, 8]]), (1.0, [])):
        image = np.zeros((12, 16))
        image[5, 7] = d
        assert np.argwhere(_sobel_vertical_edges(image)).tolist() == want, d
        np.testing.assert_array_equal(_sobel_vertical_edges(image), sobel(image))


def _ramps(low: float, steps: list[float]) -> np.ndarray:
    """A 64 x 64 block of vertical ramps: from ``low`` up by ``steps`` (columns 6-10 and 38-42), flat, and
    down again (22-26, 54-58).  The middle of each 4-step ramp is its only thinned Sobel edge and is 4
    pixels wide, so every edge is sharp (P = 1 - exp(-(4/5)^3.6) = 36 % <= 63 %) when the block's
    just-noticeable width is 5 and blurred (P = 1 - exp(-(4/3)^3.6) = 94 %) when it is 3."""
    row = np.full(64, float(low))
    values = low + np.concatenate([[0.0], np.cumsum(steps)])
    for start in (6, 38):
        row[start:start + 5] = values
        row[start + 5:start + 16] = values[-1]
        row[start + 16:start + 21] = values[::-1]
    return np.tile(row, (64, 1))


def test_the_just_noticeable_width_follows_each_blocks_integer_contrast():
    """w_JNB is 5 where a block's ``int(max - min)`` is at most 50, else 3: contrast 50 and a float
    contrast of 50.5 (int 50) score 1, 60 scores 0; each block's contrast is its own max - min, so a
    block of 100-140 over a block of 0-40 scores 1 (not 140 against the whole image's minimum)."""
    compute = _reference_cpbd()
    images = {1.0: [_ramps(100, [6, 19, 19, 6]).astype(np.uint8), _ramps(100, [6, 19, 19, 6.5]),
                    np.vstack([_ramps(100, [5, 15, 15, 5]), _ramps(0, [5, 15, 15, 5])])],
              0.0: [_ramps(100, [7, 23, 23, 7]).astype(np.uint8)]}
    for want, group in images.items():
        for image in group:
            assert cpbd(image) == want, (image.dtype, image.max() - image.min())
            assert compute(image) == want


def test_no_widths_when_every_gradient_angle_is_zero():
    image = np.tile(np.array([10, 10, 20, 40, 80, 160, 200, 210, 210], np.float64), (5, 1))
    edges = np.zeros(image.shape, bool)
    edges[2, 4] = True
    assert not edge_widths(edges, image).any()  # the package's np.any(edge_angles) guard


def test_marziliano_width_is_capped_at_101_per_side():
    image = _rows(np.concatenate([np.linspace(0, 100, 150), np.linspace(100.5, 250, 150)]))
    edges = np.zeros(image.shape, bool)
    edges[1, 150] = True
    assert edge_widths(edges, image)[1, 150] == 202


def test_known_degenerate_values_and_errors():
    assert cpbd(np.full((64, 64), 77, np.uint8)) == 0.0  # no edges at all
    with pytest.raises(ValueError, match="at least 64x64"):
        cpbd(np.zeros((63, 128), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        cpbd(np.full((64, 64), 300.0))
    with pytest.raises(ValueError, match="2-D"):
        cpbd(np.zeros((64, 64, 3), np.uint8))


def test_gray_conversion_is_pillows_luma():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_gray(rgb), np.asarray(Image.fromarray(rgb).convert("L")))
    np.testing.assert_array_equal(to_gray(rgb[None])[0], to_gray(rgb))


def test_video_is_the_mean_over_frames():
    rgb = skimage.data.astronaut()[:128, 200:296]  # a 128 x 96 RGB crop
    blurred = np.clip(np.round(gaussian_filter(rgb.astype(np.float64), (1.0, 1.0, 0.0))), 0, 255).astype(np.uint8)
    video = np.stack([rgb, blurred])
    per_frame = cpbd_frames(video)
    assert per_frame.shape == (2,)
    assert per_frame[0] == cpbd(to_gray(rgb))
    assert cpbd_video(video) == pytest.approx(per_frame.mean())
    assert cpbd_frames(to_gray(video)).tolist() == per_frame.tolist()


def test_frames_smaller_than_a_block_are_scored_in_one_filled_out_block_when_asked():
    rgb = skimage.data.astronaut()[:128, 200:296]
    small = np.stack([rgb[::2, ::2], rgb[1::2, 1::2]])  # 64 x 48, like the embedded default's crops
    padded = pad_to_block(small)
    assert padded.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(padded[:, :, :48], small)
    np.testing.assert_array_equal(padded[:, :, 48:], np.repeat(small[:, :, 47:48], 16, axis=2))
    assert pad_to_block(rgb[None]).shape == (1, 128, 96, 3)  # big enough: as it is
    assert pad_to_block(np.zeros((1, 20, 30), np.uint8)).shape == (1, 64, 64)
    assert pad_to_block(np.zeros((1, 20, 100), np.uint8)).shape == (1, 64, 100)  # only the short side grows
    assert pad_to_block(np.zeros((1, 100, 20, 3), np.uint8)).shape == (1, 100, 64, 3)
    assert cpbd_video(small, fit_blocks=True) == cpbd_video(padded)
    assert cpbd_video(rgb[None], fit_blocks=True) == cpbd_video(rgb[None])  # a whole block: unchanged
    with pytest.raises(ValueError, match="at least 64x64"):
        cpbd_video(small)
    # the fill adds no measured edge: its columns have no horizontal gradient, so no vertical Sobel
    # edge (the only edges whose widths are measured); the frame's own edges are all still there
    from speechanim.metrics.cpbd import _sobel_vertical_edges

    gray = to_gray(padded[0]).astype(float)
    assert not _sobel_vertical_edges(gray)[:, 48:].any() and _sobel_vertical_edges(gray)[:, :47].sum() > 100
    # a blurred copy still scores lower
    blurred = np.clip(np.round(gaussian_filter(small.astype(float), (0, 1.0, 1.0, 0))), 0, 255).astype(np.uint8)
    assert cpbd_video(blurred, fit_blocks=True) < cpbd_video(small, fit_blocks=True)


def test_input_checks_name_what_is_wrong_and_accept_the_range_ends():
    with pytest.raises(ValueError, match=r"^CPBD needs an image of at least 64x64 pixels \(whole blocks\), got 64x63$"):
        cpbd(np.zeros((64, 63), np.uint8))
    with pytest.raises(ValueError, match=r"^CPBD needs a 2-D grayscale image, got shape \(64,\)$"):
        cpbd(np.zeros(64, np.uint8))
    for dtype in (np.complex64, np.bool_, object):
        with pytest.raises(ValueError, match=r"^CPBD needs a real-valued image, got "):
            cpbd(np.ones((64, 64), dtype))
    with pytest.raises(ValueError, match=r"^CPBD image has NaN or infinite values$"):
        cpbd(np.full((64, 64), np.nan))
    with pytest.raises(ValueError, match=r"^CPBD needs values in \[0, 255\], got \[-0\.5, 0\]$"):
        cpbd(np.where(np.eye(64) > 0, -0.5, 0.0))
    with pytest.raises(ValueError, match=r"^CPBD needs values in \[0, 255\], got \[0, 255\.5\]$"):
        cpbd(np.where(np.eye(64) > 0, 255.5, 0.0))
    ends = np.zeros((64, 64))
    ends[:, 32:] = 255.0  # floats at both ends of the range are accepted and score as uint8 does
    assert cpbd(ends) == cpbd(ends.astype(np.uint8))
    assert cpbd(ends.astype(np.int16)) == cpbd(ends.astype(np.uint8))
    with pytest.raises(ValueError, match=r"^expected uint8 RGB frames \(\.\.\., H, W, 3\), got float64 \(2, 64, 64, 3\)$"):
        to_gray(np.zeros((2, 64, 64, 3)))
    with pytest.raises(ValueError, match=r"^expected uint8 RGB frames .* got uint8 \(64, 3\)$"):
        to_gray(np.zeros((64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^expected frames \(T, H, W, 3\) or \(T, H, W\), got shape \(64, 64\)$"):
        cpbd_frames(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"^the video has no frames$"):
        cpbd_frames(np.zeros((0, 64, 64), np.uint8))


def test_luma_of_pure_colours_and_rounding():
    """(19595 R + 38470 G + 7471 B + 32768) >> 16: white is 255, pure red 76, green 150, blue 29."""
    rgb = np.array([[[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [1, 1, 1]]], np.uint8)
    assert to_gray(rgb).tolist() == [[255, 76, 150, 29, 0, 1]]
    assert to_gray(rgb).dtype == np.uint8
    # 0.587 * 62 + 0.114 * 229 = 62.5 exactly, but the integer weights give 38470 * 62 + 7471 * 229 = 4095999,
    # one below 62.5 x 65536: + 32768 stays one short of 63 x 65536, so 62, as Pillow
    tie = np.array([[[0, 62, 229]]], np.uint8)
    assert to_gray(tie).tolist() == [[62]] == np.asarray(Image.fromarray(tie).convert("L")).tolist()
