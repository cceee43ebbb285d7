"""The LipNet lipreader that scores WER (paper 4.2): error rates, CTC decoding, the mouth box, and a
tiny model that learns to read real GRID clips of grid-mini, through the Python API and the CLI."""
from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from speechanim.align import AlignConfig, align_video, load_template
from speechanim.audio import fit_length
from speechanim.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from speechanim.lipreader import (
    BLANK,
    VOCABULARY,
    LipNet,
    LipReader,
    LipReaderConfig,
    LipReaderError,
    augment,
    cer,
    ctc_grammar_decode,
    ctc_greedy_decode,
    decode,
    decode_labels,
    edit_distance,
    encode_text,
    history_path,
    load_mouth_clips,
    main,
    mouth_box,
    mouth_crops,
    normalise_text,
    standardise,
    train,
    wer,
)
from speechanim.media import read_audio, read_video
from speechanim.packing import AtomicH5, Clip, write_clip

SIZE = (64, 48)  # small aligned frames keep the test fast; the box scales with the frame
OVERFIT_CLIPS = ("bbaf2n", "lrwp9a")
OTHER_CLIPS = ("pwij3p", "sbia1a")
# A lipreader small enough to memorise two clips in a few seconds of CPU.
TINY = dict(mouth_size=[16, 24], channels=[8, 16, 24], gru_hidden=128, gru_layers=1, dropout=0.0, lr=0.005,
            lr_schedule="constant", batch_size=2, epochs=200, patience=200)


# ----------------------------------------------------------------------------------------------
# Error rates and decoding


def test_edit_distance_known_pairs():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3 and edit_distance("", "") == 0
    assert edit_distance("bin blue at f two now".split(), "bin blue at f two now".split()) == 0
    assert edit_distance("bin blue at f two now".split(), "bin red at f now".split()) == 2  # 1 sub + 1 del
    assert edit_distance("a b".split(), "x a b y".split()) == 2  # 2 insertions
    assert edit_distance([1, 2, 3], [3, 2, 1]) == 2


def test_wer_and_cer_on_known_pairs():
    assert wer(["bin blue at f two now"], ["bin blue at f two now"]) == 0.0
    assert wer(["bin blue at f two now"], ["bin blue at two now"]) == pytest.approx(1 / 6)
    assert wer(["bin blue at f two now"], [""]) == 1.0
    assert wer(["set white"], ["set white with p two soon"]) == pytest.approx(4 / 2)  # insertions count
    # corpus level: errors and reference words are summed over sentences, not averaged per sentence
    assert wer(["a b", "c d e f"], ["a x", "c d e f"]) == pytest.approx(1 / 6)
    # texts are normalised: case, punctuation and spacing do not count
    assert wer(["Bin BLUE, at f... two now!"], ["bin blue at  f two now"]) == 0.0
    assert cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
    assert cer(["bin now"], ["bin"]) == pytest.approx(4 / 7)  # " now" deleted, space included
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no words"):
        wer([""], ["a"])
    with pytest.raises(TypeError):
        wer("bin blue", "bin blue")


def test_text_encoding_round_trip():
    assert normalise_text("  Don't  PLACE-red\tat 7 ") == "dont place red at"
    labels = encode_text("bin blue")
    assert BLANK not in labels and len(labels) == 8
    assert decode_labels(labels) == "bin blue"
    assert len(VOCABULARY) + 1 == 28  # space + 26 letters + blank


def _one_hot_logits(frames: list[str]) -> torch.Tensor:
    """Logits that put the maximum on the class of each frame's character ('_' = blank)."""
    logits = torch.randn(len(frames), len(VOCABULARY) + 1, generator=torch.Generator().manual_seed(0))
    for t, ch in enumerate(frames):
        logits[t, BLANK if ch == "_" else VOCABULARY.index(ch) + 1] += 20.0
    return logits


def test_ctc_greedy_decode_known_sequence():
    # repeats merge, blanks separate a doubled letter and are dropped
    frames = list("__hh_e_ll_lo__ o_nn") + ["_"] * 3
    logits = _one_hot_logits(frames)
    assert ctc_greedy_decode(logits) == "hello on"
    assert ctc_greedy_decode(logits.log_softmax(-1).numpy()) == "hello on"  # log-probs, numpy
    assert ctc_greedy_decode(logits, length=9) == "hel"  # frames past the length are ignored
    assert ctc_greedy_decode(_one_hot_logits(["_"] * 5)) == ""
    with pytest.raises(ValueError, match="scores must be"):
        ctc_greedy_decode(torch.zeros(4, 10))


def test_grammar_decoder_snaps_to_the_grid_grammar():
    # a clean path reads the same either way
    clean = _one_hot_logits(list("__bin_ blue a_t f  tw_o nnow___"))
    assert ctc_greedy_decode(clean) == ctc_grammar_decode(clean) == "bin blue at f two now"
    # a path with two misread letters: greedy gives non-words, the grammar the nearest sentence
    noisy = _one_hot_logits(list("__bin_ bllue a_t f  tw_ nnoa___"))
    assert ctc_greedy_decode(noisy) == "bin blue at f tw noa"
    assert ctc_grammar_decode(noisy) == decode(noisy, "grid") == "bin blue at f two now"
    # a doubled letter needs a blank between its two frames ("green", "three")
    doubled = _one_hot_logits(list("_set gre_en _in z _thre_e_ so_on__"))
    assert ctc_grammar_decode(doubled) == ctc_greedy_decode(doubled) == "set green in z three soon"
    # other slots and words can be given; frames past the length are ignored
    assert ctc_grammar_decode(_one_hot_logits(list("_ab_ b__xyz")), [("ab", "ba"), ("b", "c")], length=6) == "ab b"
    with pytest.raises(ValueError, match="too few"):
        ctc_grammar_decode(_one_hot_logits(list("bin")))
    with pytest.raises(ValueError, match="decoder must be"):
        decode(clean, "beam")


def test_grammar_decoder_reads_a_batch_of_clips_as_it_reads_each():
    """Clips of different lengths decoded together (in chunks) give each clip's own sentence:
    the padding past a short clip's end is never read back."""
    from speechanim.lipreader import ctc_grammar_decode_many, decode_many

    gen = torch.Generator().manual_seed(3)
    clips = [torch.randn(int(n), len(VOCABULARY) + 1, generator=gen) * s
             for n, s in zip([75, 40, 60, 75, 33, 52, 75], [0.5, 2, 4, 8, 3, 6, 1])]
    clips.append(_one_hot_logits(list("__bin_ bllue a_t f  tw_ nnoa___")))
    one_by_one = [ctc_grammar_decode(c) for c in clips]
    assert ctc_grammar_decode_many(clips, chunk=3) == ctc_grammar_decode_many(clips) == one_by_one
    assert one_by_one[-1] == "bin blue at f two now" and len(set(one_by_one)) > 3
    assert decode_many(clips, "grid") == one_by_one and decode_many([], "grid") == []
    assert decode_many(clips, "greedy") == [ctc_greedy_decode(c) for c in clips]
    with pytest.raises(ValueError, match="too few"):
        ctc_grammar_decode_many(clips[:2] + [_one_hot_logits(list("bin"))])


# ----------------------------------------------------------------------------------------------
# Configuration and network


def test_config_values_and_errors():
    lipnet = LipReaderConfig.lipnet()
    assert lipnet.channels == (32, 64, 96) and lipnet.gru_hidden == 256 and lipnet.gru_layers == 2
    assert lipnet.kernels == ((3, 5, 5), (3, 5, 5), (3, 3, 3)) and lipnet.mouth_size == (50, 100)
    assert (lipnet.lr, lipnet.lr_schedule, lipnet.batch_size, lipnet.dropout) == (1e-4, "constant", 50, 0.5)
    assert lipnet.feature_size == (3, 6)  # 50 x 100 -> stride 2 -> three 2x2 pools
    cfg = LipReaderConfig.from_overrides({"channels": [4, 8, 8], "mouth_size": [16, 24]})
    assert cfg.channels == (4, 8, 8) and cfg.mouth_size == (16, 24)
    assert LipReaderConfig.from_overrides(cfg.to_dict()) == cfg
    with pytest.raises(LipReaderError, match="unknown LipReaderConfig key.*'gru_size'"):
        LipReaderConfig.from_overrides({"gru_size": 10})
    with pytest.raises(LipReaderError, match="too small"):
        LipReaderConfig.from_overrides({"mouth_size": [8, 8]})
    with pytest.raises(LipReaderError, match="odd"):
        LipReaderConfig.from_overrides({"kernels": [[3, 4, 4], [3, 5, 5], [3, 3, 3]]})


def test_lipnet_shapes_and_padding():
    cfg = LipReaderConfig(mouth_size=(16, 24), channels=(4, 8, 8), gru_hidden=16)
    model = LipNet(cfg).eval()
    g = torch.Generator().manual_seed(1)
    short, long = torch.randn(30, 16, 24, generator=g), torch.randn(45, 16, 24, generator=g)
    batch = torch.zeros(2, 45, 16, 24)
    batch[0, :30], batch[1] = short, long
    with torch.no_grad():
        out = model(batch, [30, 45])
        alone = model(short[None], [30])
    assert out.shape == (2, 45, 28)
    # the padding after a shorter clip does not leak into its outputs (the backward GRU starts at its end)
    torch.testing.assert_close(out[0, :30], alone[0], atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# The mouth box


@pytest.mark.parametrize("size", [(128, 96), SIZE])
def test_mouth_box_lies_on_the_template_mouth(size):
    top, bottom, left, right = mouth_box(size)
    p = load_template(size).points + 0.5  # pixel edges
    h, w = size

    def inside(i):
        return top < p[i][1] < bottom and left < p[i][0] < right

    # mouth corners, inner lips and the outer-lip midpoints (0 upper, 17 lower) are inside
    assert all(inside(i) for i in (61, 291, 13, 14, 0, 17))
    # the nose tip, the chin and the eyes are not
    assert not any(inside(i) for i in (1, 152, 33, 263))
    assert (left + right) / 2 == pytest.approx(w / 2, abs=1e-6)  # centred: the template is symmetric
    assert 0 <= top < bottom <= h and 0 <= left < right <= w
    # the box keeps its place relative to the face when the frame is scaled
    big = np.array(mouth_box((2 * h, 2 * w)))
    np.testing.assert_allclose(big, 2 * np.array([top, bottom, left, right]), atol=1e-6)


def test_mouth_crops_cut_the_box():
    h, w = SIZE
    top, bottom, left, right = mouth_box(SIZE)
    frames = np.zeros((3, h, w, 3), np.uint8)
    frames[:, int(np.floor(top)):int(np.ceil(bottom)), int(np.floor(left)):int(np.ceil(right))] = (100, 200, 50)
    crops = mouth_crops(frames, LipReaderConfig(mouth_size=(20, 28)))
    assert crops.shape == (3, 20, 28) and crops.dtype == torch.uint8
    luma = 0.299 * 100 + 0.587 * 200 + 0.114 * 50  # 146.1
    assert (crops == round(luma)).all()
    flat = standardise(crops)  # a constant clip: zeros, no division by zero
    assert flat.dtype == torch.float32 and bool((flat == 0).all())
    varied = standardise(torch.arange(3 * 20 * 28).reshape(3, 20, 28).remainder(256).to(torch.uint8))
    assert abs(float(varied.mean())) < 1e-5 and float(varied.std()) == pytest.approx(1.0, abs=1e-5)
    # channels-first input (as stored in the HDF5) gives the same crops
    torch.testing.assert_close(mouth_crops(frames.transpose(0, 3, 1, 2), LipReaderConfig(mouth_size=(20, 28)),
                                           channels_first=True), crops)
    with pytest.raises(LipReaderError, match="uint8"):
        mouth_crops(frames.astype(np.float32))
    with pytest.raises(LipReaderError, match="RGB"):
        mouth_crops(frames[..., 0])


# ----------------------------------------------------------------------------------------------
# Real clips: grid-mini aligned to the canonical face and packed


@pytest.fixture(scope="module")
def aligned(grid_mini):
    """Aligned frames, landmarks and audio of four grid-mini clips at 64 x 48."""
    words = dict(line.split("\t") for line in (grid_mini / "transcripts.tsv").read_text().splitlines()[1:])
    out = {}
    for name in OVERFIT_CLIPS + OTHER_CLIPS:
        frames, fps = read_video(grid_mini / f"{name}.mpg")
        clip = align_video(frames, AlignConfig(size=SIZE), name=name)
        audio = fit_length(read_audio(grid_mini / f"{name}.mpg", 16000), len(frames), 640)
        out[name] = (clip, audio, words[name])
    return out


def _pack(path: Path, aligned, names) -> Path:
    with AtomicH5(path) as h5:
        for name in names:
            clip, audio, words = aligned[name]
            write_clip(h5, Clip("s1", name, clip.frames, audio, clip.landmarks.astype(np.float32), 25.0, 16000,
                                words, False, f"{name}.mpg"))
    return path


def test_real_lips_stay_inside_the_box(aligned):
    top, bottom, left, right = mouth_box(SIZE)
    for clip, _, _ in aligned.values():
        lips = clip.landmarks[:, [61, 291, 0, 13, 14, 17]] + 0.5
        inside = (lips[..., 0] > left) & (lips[..., 0] < right) & (lips[..., 1] > top) & (lips[..., 1] < bottom)
        assert inside.mean() > 0.99


def test_load_mouth_clips_errors(tmp_path, aligned):
    cfg = LipReaderConfig()
    with pytest.raises(LipReaderError, match="missing.h5: no such packed HDF5 file"):
        load_mouth_clips(tmp_path / "missing.h5", cfg)
    clip, audio, _ = aligned[OVERFIT_CLIPS[0]]
    with AtomicH5(tmp_path / "nowords.h5") as h5:
        write_clip(h5, Clip("s1", "x", clip.frames[:10], audio[:6400], clip.landmarks[:10].astype(np.float32), 25.0,
                            16000, ""))
    with pytest.raises(LipReaderError, match="nowords.h5: clip s1/x has no words"):
        load_mouth_clips(tmp_path / "nowords.h5", cfg)
    with AtomicH5(tmp_path / "short.h5") as h5:
        write_clip(h5, Clip("s1", "x", clip.frames[:10], audio[:6400], clip.landmarks[:10].astype(np.float32), 25.0,
                            16000, "bin blue at f two now"))
    with pytest.raises(LipReaderError, match="short.h5: clip s1/x has 10 frames, too few"):
        load_mouth_clips(tmp_path / "short.h5", cfg)


@contextmanager
def _one_thread():
    """A model this small trains faster on one thread, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, aligned):
    """A tiny lipreader trained through the CLI on two real clips (validated on the same two)."""
    root = tmp_path_factory.mktemp("lipreader")
    h5 = _pack(root / "train.h5", aligned, OVERFIT_CLIPS)
    out = root / "results" / "lipreader.pt"
    with _one_thread():
        rc = main(["train", "--train", str(h5), "--val", str(h5), "--out", str(out), "--config", json.dumps(TINY),
                   "--device", "cpu"])
    assert rc == 0
    return h5, out


def test_tiny_model_overfits_real_clips(overfit, aligned):
    h5, out = overfit
    with open(history_path(out)) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == TINY["epochs"] and list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_wer", "val_cer",
                                                             "lr", "seconds", "best"]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.1 * losses[0]
    payload = load_checkpoint(out)
    assert payload["kind"] == "lipreader" and payload["best"]["val_wer"] == 0.0
    # the checkpoint holds the last epoch that improved on (val WER, val loss)
    assert payload["epoch"] == payload["best"]["epoch"] == max(int(r["epoch"]) for r in rows if r["best"] == "1")
    reader = LipReader.load(out, device="cpu")
    clip, _, words = aligned[OVERFIT_CLIPS[0]]
    assert reader.transcribe(clip.frames) == words
    assert reader.transcribe_many([aligned[n][0].frames for n in OVERFIT_CLIPS]) == [aligned[n][2] for n in OVERFIT_CLIPS]


def test_eval_cli_scores_mismatched_videos_worse(overfit, tmp_path, capsys):
    h5, out = overfit
    report = tmp_path / "wer.json"
    assert main(["eval", "--checkpoint", str(out), "--h5", str(h5), "--out", str(report), "--device", "cpu"]) == 0
    result = json.loads(report.read_text())
    assert result["n_clips"] == 2 and result["n_words"] == 12
    assert result["wer"] == 0.0 and result["cer"] == 0.0 and result["decoder"] == "greedy"
    # grid-mini's sentences are GRID's, so the grammar decoder is scored too
    assert result["by_decoder"] == {"greedy": {"wer": 0.0, "cer": 0.0}, "grid": {"wer": 0.0, "cer": 0.0}}
    assert [c["reference"] for c in result["clips"]] == [c["hypothesis"] for c in result["clips"]]
    # the same reader on inputs that do not match the speech scores far worse
    assert result["controls"]["still_frame"]["wer"] > 0.5
    assert result["controls"]["mismatched_words"]["wer"] > 0.5
    assert "WER 0.000" in capsys.readouterr().out


def test_plateau_halves_the_rate_and_patience_stops(tmp_path, aligned, monkeypatch):
    """With a validation score that never improves after epoch 1, the rate halves every
    ``lr_patience`` epochs and training stops after ``patience`` epochs; the checkpoint keeps epoch 1."""
    import speechanim.lipreader as lipreader

    monkeypatch.setattr(lipreader, "_validate", lambda *args: (1.0, 0.5, 0.25))
    h5 = _pack(tmp_path / "train.h5", aligned, OVERFIT_CLIPS[:1])
    cfg = LipReaderConfig.from_overrides({**TINY, "lr": 0.01, "lr_schedule": "plateau", "lr_patience": 1,
                                          "patience": 3, "epochs": 10})
    with _one_thread():
        rows = train(h5, h5, tmp_path / "lr.pt", cfg, device="cpu", progress=False)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["lr"] for r in rows] == [0.01, 0.01, 0.005, 0.0025]
    assert [r["best"] for r in rows] == [1, 0, 0, 0]
    assert load_checkpoint(tmp_path / "lr.pt")["epoch"] == 1


def test_cli_errors_name_the_file(tmp_path, overfit, capsys):
    h5, out = overfit
    missing = tmp_path / "nope.h5"
    assert main(["train", "--train", str(missing), "--val", str(h5), "--out", str(tmp_path / "x.pt")]) == 2
    assert f"{missing}: no such packed HDF5 file" in capsys.readouterr().err
    assert main(["train", "--train", str(h5), "--val", str(h5), "--out", str(tmp_path / "x.pt"),
                 "--config", '{"gru": 3}']) == 2
    assert "unknown LipReaderConfig key(s) ['gru']" in capsys.readouterr().err
    assert main(["train", "--train", str(h5), "--val", str(h5), "--out", str(tmp_path / "x.pt"),
                 "--config", "[1, 2]"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    other = save_checkpoint(tmp_path / "generator.pt", {"model_config": {}, "generator": {}})
    assert main(["eval", "--checkpoint", str(other), "--h5", str(h5), "--out", str(tmp_path / "y.json")]) == 2
    assert "not a lipreader checkpoint" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["eval", "--checkpoint", str(out), "--h5", str(h5), "--out", str(tmp_path / "y.json"),
                     "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(CheckpointError):
        LipReader.load(tmp_path / "absent.pt")
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.json").exists()


def test_ema_averages_every_float_tensor_and_copies_counts():
    """``_ema_update``: average <- decay * average + (1 - decay) * model on parameters and batch-norm
    statistics; the integer batch count is copied. Decay 0 would be the model itself; bad decays refused."""
    from speechanim.lipreader import _ema_update

    model, average = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(3.0), model.running_mean.fill_(2.0), model.num_batches_tracked.fill_(7)
        average.weight.fill_(1.0), average.running_mean.fill_(0.0)
    _ema_update(average, model, 0.75)
    assert torch.allclose(average.weight, torch.full((3,), 1.5))  # 0.75 * 1 + 0.25 * 3
    assert torch.allclose(average.running_mean, torch.full((3,), 0.5))
    assert int(average.num_batches_tracked) == 7
    assert torch.equal(model.weight, torch.full((3,), 3.0))  # the trained weights are left alone
    for bad in (-0.1, 1.0):
        with pytest.raises(LipReaderError, match="ema must be in"):
            LipReaderConfig.from_overrides({"ema": bad})


def test_augment_draws_from_its_generator():
    crops = torch.arange(75 * 16 * 24).reshape(75, 16, 24).remainder(251).to(torch.uint8)
    cfg = LipReaderConfig(mouth_size=(16, 24), jitter=2, time_stretch=0.2, time_mask=10)
    a, b = augment(crops, cfg, np.random.default_rng(3)), augment(crops, cfg, np.random.default_rng(3))
    assert a.dtype == torch.float32 and a.shape[1:] == (16, 24) and 60 <= len(a) <= 90
    assert torch.equal(a, b)  # same generator state, same variation
    assert not torch.equal(a, augment(crops, cfg, np.random.default_rng(4)))
    # jitter alone shifts the whole clip by up to 2 pixels: the interior reappears shifted
    shifted = augment(crops, LipReaderConfig(mouth_size=(16, 24), jitter=2), np.random.default_rng(0))
    assert shifted.shape == crops.shape
    assert any(torch.equal(shifted[:, 2:-2, 2:-2], crops[:, 2 + dy:14 + dy, 2 + dx:22 + dx].float())
               for dy in range(-2, 3) for dx in range(-2, 3))
    # no augmentation configured: the clip as it is
    assert torch.equal(augment(crops, LipReaderConfig(mouth_size=(16, 24)), np.random.default_rng(0)), crops.float())


def test_same_config_and_seed_give_identical_weights(tmp_path, aligned):
    """Training is reproducible bit for bit on one machine: data order, dropout, augmentation and
    initialisation all come from ``cfg.seed``; another seed gives other weights."""
    h5 = _pack(tmp_path / "train.h5", aligned, OVERFIT_CLIPS)
    base = {**TINY, "epochs": 3, "patience": 3, "dropout": 0.2, "jitter": 1, "time_stretch": 0.1, "time_mask": 8,
            "lr_schedule": "onecycle", "ema": 0.9}

    def weights(name: str, **overrides) -> dict[str, torch.Tensor]:
        with _one_thread():
            train(h5, h5, tmp_path / name, LipReaderConfig.from_overrides({**base, **overrides}), device="cpu",
                  progress=False)
        return load_checkpoint(tmp_path / name)["model"]

    first, second, other = weights("a.pt"), weights("b.pt"), weights("c.pt", seed=1)
    assert list(first) == list(second) and len(first) > 10
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert not all(torch.equal(first[n], other[n]) for n in first if first[n].is_floating_point())
