"""Frame strips like the paper's Figures 4-8 (speechanim.figures) from a packed test file of real GRID
clips, generated files in speechanim.generate's format and a tiny untrained generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from speechanim.checkpoint import load_generator
from speechanim.figures import (animate_pairs, first_per_speaker, generated_blink, main, make_figures, real_blink, spaced,
                                spread)
from speechanim.generate import clip_noise, generate_file, to_uint8
from speechanim.packing import WholeClips

from tiny_generator import tiny_generator_checkpoint
from test_evaluate import KEYS, N_FRAMES, RATE, SIZE, noisy, real_frames, shared_packed, write_generated

ALL_FIGURES = ["fig4_l1_vs_full.png", "fig5_same_face.png", "fig6_same_audio.png", "fig7_blinks.png",
               "fig8_silence.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _checkpoint(path, window_s: float = 0.16):
    return tiny_generator_checkpoint(path, SIZE, RATE, window_s=window_s, passes=2, steps=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("figures")


@pytest.fixture(scope="module")
def packed(tmp_path_factory, grid_mini):
    return shared_packed(tmp_path_factory, grid_mini)


@pytest.fixture(scope="module")
def ckpt(root):
    return _checkpoint(root / "generator.pt")


@pytest.fixture(scope="module")
def generated(root, packed):
    """l1, full and static 'generated' files: the real frames with noise (full keeps brbk7n's real blink)."""
    real = real_frames(packed)
    folder = root / "generated"
    for n, variant in enumerate(("l1", "full", "static")):
        write_generated(folder / f"{variant}.h5", {k: noisy(real[k], 10 * n + i) for i, k in enumerate(KEYS)}, variant)
    return folder


def _image(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3]


def test_helpers_pick_columns_and_one_clip_per_speaker():
    assert spaced(20) == [0, 3, 5, 8, 11, 14, 16, 19] and spaced(75)[-1] == 74
    assert first_per_speaker(["s1/a", "s1/a_mirror", "s1/b", "s2/c_mirror", "s2/d", "s3/e"]) == ["s1/a", "s2/d", "s3/e"]


def test_cli_writes_every_figure_as_a_valid_image(packed, ckpt, generated, root, capsys):
    out = root / "figs"
    assert main(["--h5", str(packed), "--generated", str(generated), "--checkpoint", str(ckpt),
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ALL_FIGURES
    assert capsys.readouterr().err.split() == [str(out / name) for name in ALL_FIGURES]
    images = {p.name[:4]: _image(p) for p in out.iterdir()}
    for name, image in images.items():
        h, w, _ = image.shape
        assert 500 <= w <= 1500 and 100 <= h <= 800, (name, image.shape)
        assert image.std() > 0.1 and (image.mean(axis=2) < 0.9).mean() > 0.2  # frames drawn, not a blank page
    heights = {name: image.shape[0] for name, image in images.items()}
    # one row per strip: fig4 / fig8 real, two models; fig5 three speakers' audio; fig6 the real video
    # and three faces; fig7 the real and the generated clip above their eye-aspect-ratio traces
    assert heights["fig4"] == heights["fig8"] == heights["fig5"] < heights["fig7"] < heights["fig6"]


def test_generated_blink_finds_the_blink_and_counts_the_clips_scanned(generated):
    assert generated_blink(generated / "full.h5", 25.0) == ("s1/brbk7n", pytest.approx(11, abs=1), len(KEYS))
    assert generated_blink(generated / "full.h5", 25.0, max_clips=1)[2] == 1
    assert generated_blink(generated / "full.h5", 25.0, within=KEYS[1:]) == (None, -1, 2)  # brbk7n left out


def test_generated_blink_takes_the_evaluations_blink_counts(generated, tmp_path):
    """With the evaluation's per-clip CSV, its blink counts pick the clip; only that clip is scanned
    again (for where the blink starts), and "scanned" counts the clips the evaluation scored."""
    def scores(rows):
        path = tmp_path / "full.csv"
        path.write_text("key,scored,blinks,psnr\n" + "".join(f"{k},{sc},{b},1.0\n" for k, sc, b in rows))
        return path

    counted = scores([(k, True, int(k == "s1/brbk7n")) for k in KEYS])
    assert generated_blink(generated / "full.h5", 25.0, scores=counted) == ("s1/brbk7n", pytest.approx(11, abs=1), len(KEYS))
    # the counts decide: a CSV that found no blink means no scan at all, and unscored rows do not count
    assert generated_blink(generated / "full.h5", 25.0, scores=scores([(k, True, 0) for k in KEYS])) == (None, -1, len(KEYS))
    unscored = scores([(k, k != "s1/brbk7n", 1) for k in KEYS])
    assert generated_blink(generated / "full.h5", 25.0, scores=unscored)[0] != "s1/brbk7n"
    bad = tmp_path / "bad.csv"
    bad.write_text("key,psnr\ns1/brbk7n,1.0\n")
    with pytest.raises(ValueError, match="bad.csv: not an evaluation's per-clip CSV"):
        generated_blink(generated / "full.h5", 25.0, scores=bad)


def test_real_blink_reads_the_packed_landmarks(packed):
    import h5py

    with h5py.File(packed) as real:
        assert real_blink(real, KEYS, 25.0) == ("s1/brbk7n", pytest.approx(11, abs=1))
        assert real_blink(real, [k for k in KEYS if k != "s1/brbk7n"], 25.0) is None


def test_spread_picks_evenly_and_keeps_short_lists():
    assert spread(list("abcdefghi"), 3) == ["a", "e", "i"] and spread(list("ab"), 3) == ["a", "b"]
    assert spread(list("abc"), None) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="n >= 1"):
        spread(list("abc"), 0)


def test_animate_pairs_takes_the_still_of_one_clip_and_the_audio_of_another(packed, ckpt):
    generator, _ = load_generator(ckpt)
    data = WholeClips(packed)
    keys = data.reader.keys
    i, j = keys.index("s2/lwbsza"), keys.index("s3/sbia1a")
    videos = animate_pairs(generator, data, [(i, j), (j, j), (i, j)], seed=3)
    assert all(v.shape == (N_FRAMES, *SIZE, 3) and v.dtype == np.uint8 for v in videos)
    def diff(a, b):
        return np.abs(a.astype(int) - b).max()

    assert diff(videos[0], videos[2]) <= 1  # the same noise for every pair (batched float rounding aside)
    assert np.abs(videos[0].astype(int) - videos[1]).mean() > 2  # another still
    noise = clip_noise(generator, N_FRAMES, 3)
    with torch.no_grad():
        expected = to_uint8(generator(data[i]["still"][None], data[j]["audio"][None], noise[None])[0])
    assert diff(expected.numpy().transpose(0, 2, 3, 1), videos[0]) <= 1
    assert diff(animate_pairs(ckpt, data, [(i, j)], seed=3)[0], videos[0]) <= 1  # from a checkpoint path too


def test_a_failed_model_with_another_audio_window(packed, root):
    """A model of 0.2 s windows (its audio windows must be cut at 0.2 s) whose videos show no face:
    figures 5 and 6 come out; no generated blink is found, so Fig. 7 shows the real blink next to the
    model (and nothing fails); 4 and 8 need l1 and static."""
    ckpt = _checkpoint(root / "g200.pt", window_s=0.2)
    folder = root / "failed"
    generate_file(ckpt, packed, folder / "full.h5", progress=False)
    written = make_figures(packed, folder, ckpt, root / "failed_figs")
    assert [p.name for p in written] == ["fig5_same_face.png", "fig6_same_audio.png", "fig7_blinks.png"]
    for p in written:
        _image(p)


def test_clear_errors(packed, ckpt, generated, root, capsys):
    args = ["--h5", str(packed), "--checkpoint", str(ckpt), "--out", str(root / "err")]
    assert main(args + ["--generated", str(root / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("speechanim.figures: error: ") and "nowhere: no such folder" in err
    assert main(["--h5", str(packed), "--generated", str(generated), "--checkpoint", str(root / "none.pt"),
                 "--out", str(root / "err")]) == 1
    assert "none.pt: no such checkpoint file" in capsys.readouterr().err
    partial = root / "partial"
    real = real_frames(packed)
    write_generated(partial / "l1.h5", {k: real[k] for k in KEYS[1:]}, "l1")
    write_generated(partial / "full.h5", {k: real[k] for k in KEYS}, "full")
    assert main(args + ["--generated", str(partial)]) == 1
    err = capsys.readouterr().err
    assert "l1.h5: has no generated clip s1/brbk7n" in err and "Traceback" not in err
    assert not (root / "err").exists()
