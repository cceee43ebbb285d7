"""Generation of a packed test file's videos (speechanim.generate) on real GRID clips."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from speechanim.align import AlignConfig, align_video
from speechanim.audio import fit_length, normalise, samples_per_frame
from speechanim.generate import clip_noise, clip_seed, generate_file, main, to_uint8, video_path
from speechanim.media import probe, read_audio, read_video
from speechanim.packing import AtomicH5, Clip, clip_keys, to_unit_range, write_clip
from tiny_generator import tiny_generator_checkpoint

SIZE = (64, 48)
RATE = 8000
CLIPS = {"bbaf2n": 75, "sbia1a": 50}  # the second is cut short: clips of different lengths share a batch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _checkpoint(path, sample_rate=RATE, seed=0):
    return tiny_generator_checkpoint(path, SIZE, sample_rate, seed=seed)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "generator.pt")


@pytest.fixture(scope="module")
def packed(tmp_path_factory, grid_mini):
    """A test.h5 of two real clips aligned at the model's size, audio at the model's rate."""
    path = tmp_path_factory.mktemp("packed") / "test.h5"
    spf = samples_per_frame(RATE, 25.0)
    with AtomicH5(path) as h5:
        for utt, n in CLIPS.items():
            video = grid_mini / f"{utt}.mpg"
            frames, fps = read_video(video)
            aligned = align_video(frames[:n], AlignConfig(size=SIZE), name=utt)
            audio = fit_length(normalise(read_audio(video, RATE)), n, spf)
            write_clip(h5, Clip("s1", utt, aligned.frames, audio, aligned.landmarks.astype(np.float32), fps, RATE,
                                "words of " + utt, False, str(video)))
    return path


def _frames(path):
    with h5py.File(path, "r") as h5:
        return {k: h5[k]["frames"][()] for k in clip_keys(h5)}


def test_generates_every_clip_with_shapes_keys_and_attrs(ckpt, packed, tmp_path):
    out = generate_file(ckpt, packed, tmp_path / "full.h5", seed=0, batch_size=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.h5"]  # no temporary file left
    with h5py.File(out, "r") as h5, h5py.File(packed, "r") as src:
        assert clip_keys(h5) == clip_keys(src) == ["s1/bbaf2n", "s1/sbia1a"]
        for utt, n in CLIPS.items():
            g = h5[f"s1/{utt}"]
            assert g["frames"].shape == (n, 3, *SIZE) and g["frames"].dtype == np.uint8
            assert g["frames"].compression == "lzf" and g["frames"].chunks == (1, 3, *SIZE)
            a = g.attrs
            assert (a["speaker"], a["utterance"], a["words"], a["fps"], a["sample_rate"], a["variant"]) == \
                ("s1", utt, "words of " + utt, 25.0, RATE, "full")
            assert a["checkpoint"] == str(ckpt)
        assert h5.attrs["seed"] == 0 and h5.attrs["source"] == str(packed)
    frames = _frames(out)
    assert frames["s1/bbaf2n"].std() > 3.0  # a picture, not a constant
    assert np.abs(np.diff(frames["s1/bbaf2n"].astype(np.int16), axis=0)).mean() > 0.1  # frames change over time


def test_frames_are_the_generator_output_for_the_still_audio_and_seeded_noise(ckpt, packed, tmp_path):
    out = generate_file(ckpt, packed, tmp_path / "g.h5", seed=3, progress=False)
    from speechanim.checkpoint import load_generator
    from speechanim.packing import WholeClips

    g, _ = load_generator(ckpt)
    item = WholeClips(packed)[1]
    assert item["key"] == "s1/sbia1a"
    with h5py.File(packed, "r") as src:
        np.testing.assert_array_equal(item["still"].numpy(), to_unit_range(src["s1/sbia1a/frames"][0]))
    noise = clip_noise(g, len(item["audio"]), clip_seed(3, "s1/sbia1a"))
    with torch.no_grad():
        expected = to_uint8(g(item["still"][None], item["audio"][None], noise[None])[0]).numpy()
    got = _frames(out)["s1/sbia1a"]
    assert np.abs(got.astype(np.int16) - expected).max() <= 1


def test_the_loaded_generator_keeps_its_training_layout_with_the_same_frames(ckpt, packed):
    # channels-last, as speechanim.train keeps it (faster on the CPU); the same network: the frames of
    # a copy in the default layout differ by float rounding only
    from speechanim.checkpoint import load_generator
    from speechanim.packing import WholeClips

    g, _ = load_generator(ckpt)
    convs = [m for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    plain, _ = load_generator(ckpt)
    plain.to(memory_format=torch.contiguous_format)
    assert not convs[0].weight.is_contiguous() and plain.frame_decoder.to_rgb.weight.is_contiguous()
    item = WholeClips(packed)[0]
    noise = clip_noise(g, len(item["audio"]), clip_seed(0, item["key"]))
    with torch.no_grad():
        a = g(item["still"][None], item["audio"][None], noise[None])
        b = plain(item["still"][None], item["audio"][None], noise[None])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_reproducible_with_the_same_seed_and_any_batch_size(ckpt, packed, tmp_path):
    a = _frames(generate_file(ckpt, packed, tmp_path / "a.h5", seed=7, batch_size=2, progress=False))
    b = _frames(generate_file(ckpt, packed, tmp_path / "b.h5", seed=7, batch_size=2, progress=False))
    c = _frames(generate_file(ckpt, packed, tmp_path / "c.h5", seed=7, batch_size=1, progress=False))
    d = _frames(generate_file(ckpt, packed, tmp_path / "d.h5", seed=8, batch_size=2, progress=False))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        # alone or padded in a batch: the same frames (the generator is causal; eval-mode batch norm)
        assert np.abs(a[key].astype(np.int16) - c[key]).max() <= 1
        assert not np.array_equal(a[key], d[key])  # another seed, other noise


def test_cli_writes_h5_and_the_first_videos_with_audio(ckpt, packed, tmp_path):
    out, videos = tmp_path / "gen" / "full.h5", tmp_path / "videos"
    rc = main(["--checkpoint", str(ckpt), "--h5", str(packed), "--out", str(out), "--videos", str(videos),
               "--limit-videos", "1", "--seed", "0", "--no-progress"])
    assert rc == 0 and out.is_file()
    assert sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*") if p.is_file()) == ["s1/bbaf2n.mp4"]
    info = probe(video_path(videos, "s1/bbaf2n"))
    assert (info.n_frames, info.width, info.height, info.fps, info.has_audio) == (75, SIZE[1], SIZE[0], 25.0, True)
    decoded, _ = read_video(video_path(videos, "s1/bbaf2n"))
    lossless = _frames(out)["s1/bbaf2n"].transpose(0, 2, 3, 1)
    # the mp4 shows the generated frames (H.264 at CRF 17 blurs the untrained model's fine pixel noise)
    assert np.corrcoef(decoded.ravel().astype(np.float64), lossless.ravel())[0, 1] > 0.5


def test_sample_rate_mismatch_is_a_clear_error(packed, tmp_path, capsys):
    other = _checkpoint(tmp_path / "g16k.pt", sample_rate=16000)
    out = tmp_path / "x.h5"
    rc = main(["--checkpoint", str(other), "--h5", str(packed), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and not out.exists()
    assert err.startswith(f"speechanim.generate: error: {packed}: clip s1/bbaf2n has audio at 8000 Hz")
    assert "16000 Hz" in err and "\n" not in err


def test_missing_inputs_are_clear_errors(ckpt, packed, tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--h5", str(packed), "--out", str(tmp_path / "o.h5")]) == 1
    assert "none.pt: no such checkpoint file" in capsys.readouterr().err
    assert main(["--checkpoint", str(ckpt), "--h5", str(tmp_path / "none.h5"), "--out", str(tmp_path / "o.h5")]) == 1
    assert "none.h5: no such packed file" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()



def test_an_imported_authors_model_generates_on_the_packed_crops(packed, tmp_path):
    """An authors' checkpoint (speechanim import-sda) at another size and rate than the packed clips:
    the still is warped onto its mean face, the audio resampled, the frames warped back."""
    from test_sda import fake_dat

    from speechanim.sda import convert_file

    ckpt = convert_file(fake_dat(tmp_path / "grid.dat", img_size=(64, 48), audio_rate=16000), tmp_path / "grid.pt")
    out = generate_file(ckpt, packed, tmp_path / "pretrained.h5", videos=tmp_path / "videos", limit_videos=1,
                        progress=False)
    with h5py.File(out, "r") as h5, h5py.File(packed, "r") as src:
        for utt, n in CLIPS.items():
            frames = h5[f"s1/{utt}"]["frames"][()]
            assert frames.shape == (n, 3, *SIZE) and frames.dtype == np.uint8
            assert frames.std() > 1.0
        assert h5.attrs["variant"] == "sda"
    assert probe(video_path(tmp_path / "videos", "s1/bbaf2n")).n_frames == 75
