"""The SyncNet sync scorer (LSE-D / LSE-C): shapes, syncnet_python's scoring on hand-made
embeddings, the offset sign convention, and a tiny SyncNet trained through the CLI on drawn talking
faces whose mouth opening follows the loudness of the audio (tests/train_fixtures.py)."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from speechanim.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from speechanim.syncnet import (
    SyncNet,
    SyncNetConfig,
    SyncNetError,
    SyncScorer,
    audio_features,
    history_path,
    load_sync_clips,
    main,
    score_distances,
    sync_distances,
    train,
)
from speechanim.packing import clip_keys, read_clip
from train_fixtures import FPS, write_talking_faces

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000
SPF = int(RATE / FPS)
# A SyncNet small enough to learn the drawn faces in a few seconds on one CPU thread.
TINY = dict(mouth_size=[16, 24], n_mels=16, video_channels=[8, 16, 16], audio_channels=[8, 16, 16], hidden=32,
            embedding=16, batch_size=32, steps_per_epoch=40, epochs=2, patience=2, lr=3e-3)


def reference_pdist(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> torch.Tensor:
    """syncnet_python's calc_pdist and mean, written out: row j is the offset ``j - vshift``."""
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    dists = [torch.nn.functional.pairwise_distance(video[[i], :].repeat(2 * vshift + 1, 1),
                                                   padded[i:i + 2 * vshift + 1, :]) for i in range(len(video))]
    return torch.stack(dists, 1).mean(1)


# ----------------------------------------------------------------------------------------------
# Scoring on hand-made embeddings


def test_sync_distances_match_syncnet_python_and_the_offset_sign():
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal((40, 8)).astype(np.float32))
    k = 4  # the sound of video window t is in audio window t + k: the audio lags by k frames
    video = torch.from_numpy(rng.standard_normal((40, 8)).astype(np.float32))
    video[: 40 - k] = audio[k:]
    d = sync_distances(video, audio, max_offset=6)
    assert d.shape == (13,)
    torch.testing.assert_close(d, reference_pdist(video, audio, 6))
    score = score_distances(d)
    assert score.offset == +k
    assert score.lse_d == pytest.approx(float(d.min()))
    assert score.lse_c == pytest.approx(float(torch.median(d) - d.min()))
    # windows outside the clip are zero vectors: at offset +6 the last 6 video windows meet zeros
    expected = torch.cat([torch.linalg.vector_norm(video[:34] - audio[6:] + 1e-6, dim=1),
                          torch.linalg.vector_norm(video[34:] + 1e-6, dim=1)]).mean()
    assert float(d[-1]) == pytest.approx(float(expected), rel=1e-5)


def test_score_distances_known_values():
    s = score_distances(np.array([5.0, 4.0, 1.0, 3.0, 6.0], np.float32))  # offsets -2 .. 2
    assert (s.offset, s.lse_d, s.lse_c) == (0, 1.0, 3.0)  # median 4
    s = score_distances(np.array([2.0, 2.0, 2.0], np.float32))
    assert (s.offset, s.lse_c) == (-1, 0.0)  # a flat curve: no confidence; the first minimum wins
    with pytest.raises(SyncNetError, match="odd length"):
        score_distances(np.zeros(4))
    with pytest.raises(SyncNetError, match="one shape"):
        sync_distances(torch.zeros(5, 3), torch.zeros(6, 3))


# ----------------------------------------------------------------------------------------------
# Inputs and the network


def test_network_and_feature_shapes():
    cfg = SyncNetConfig.from_overrides(TINY)
    model = SyncNet(cfg).eval()
    assert model.embed_video(torch.zeros(3, 5, 16, 24)).shape == (3, 16)
    assert model.embed_audio(torch.zeros(3, 16, 20)).shape == (3, 16)
    audio = np.random.default_rng(0).standard_normal(30 * SPF).astype(np.float32)
    mel = audio_features(audio, RATE, FPS, cfg)
    assert mel.shape == (16, 4 * 30)
    assert abs(float(mel.mean())) < 1e-4 and float(mel.std()) == pytest.approx(1.0, abs=1e-3)
    with torch.no_grad():
        v, a = model.clip_embeddings(torch.zeros(30, 16, 24), mel)
    assert v.shape == a.shape == (26, 16)
    # the default (embedded) size builds, and says where SyncNet's 0.2 s comes from
    assert SyncNetConfig().mel_steps == 20 and SyncNetConfig().window == 5


def test_config_errors_name_the_key():
    with pytest.raises(SyncNetError, match="unknown SyncNetConfig key"):
        SyncNetConfig.from_overrides({"windw": 5})
    with pytest.raises(SyncNetError, match="min_shift"):
        SyncNetConfig.from_overrides({"min_shift": 0})
    assert main(["train", "--train", "x.h5", "--val", "y.h5", "--out", "z.pt", "--config", "[1]"]) == 2
    with pytest.raises(SyncNetError, match="whole number"):
        audio_features(np.zeros(100, np.float32), 16000, 25.0, SyncNetConfig())  # 100 is not 640k


# ----------------------------------------------------------------------------------------------
# A tiny SyncNet trained on drawn talking faces


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("syncnet")
    paths = {"train": root / "train.h5", "val": root / "val.h5"}
    write_talking_faces(paths["train"], 12, sample_rate=RATE, seed=1, mirror=True)
    write_talking_faces(paths["val"], 4, sample_rate=RATE, seed=2, speaker_prefix="v")
    return paths


@pytest.fixture(scope="module")
def trained(corpus) -> Path:
    out = corpus["train"].parent / "syncnet.pt"
    assert main(["train", "--train", str(corpus["train"]), "--val", str(corpus["val"]), "--out", str(out),
                 "--config", json.dumps(TINY), "--device", "cpu"]) == 0
    return out


def test_training_writes_a_syncnet_checkpoint_and_history(trained):
    payload = load_checkpoint(trained)
    assert payload["kind"] == "syncnet" and payload["sample_rate"] == RATE and payload["fps"] == FPS
    assert payload["n_train_clips"] == 24 and payload["n_val_clips"] == 4
    rows = history_path(trained).read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_offset_accuracy") and len(rows) == 1 + TINY["epochs"]
    assert payload["best"]["val_accuracy"] >= 0.75


def test_same_seed_same_weights_bit_for_bit(trained, corpus, tmp_path):
    again = tmp_path / "again.pt"
    train(corpus["train"], corpus["val"], again, SyncNetConfig.from_overrides(TINY), device="cpu", progress=False)
    a, b = load_checkpoint(trained)["model"], load_checkpoint(again)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = tmp_path / "other.pt"
    train(corpus["train"], corpus["val"], other, SyncNetConfig.from_overrides({**TINY, "seed": 1, "epochs": 1}),
          device="cpu", progress=False)
    c = load_checkpoint(other)["model"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_delayed_audio_is_found_at_plus_k_and_a_still_image_has_no_confidence(trained, corpus):
    scorer = SyncScorer.load(trained, device="cpu")
    with h5py.File(corpus["val"], "r") as h5:
        clips = [read_clip(h5, key) for key in clip_keys(h5)]
    for clip in clips:
        real = scorer.score(clip.frames, clip.audio, RATE, FPS)
        assert abs(real.offset) <= 1 and real.distances.shape == (31,)
        for k in (3, -6):  # audio delayed by 3 frames, then advanced by 6
            late = scorer.score(clip.frames, np.roll(clip.audio, k * SPF), RATE, FPS)
            assert abs(late.offset - k) <= 1, (clip.key, k, late.offset)
        still = scorer.score(np.repeat(clip.frames[:1], len(clip.frames), 0), clip.audio, RATE, FPS)
        assert still.lse_c < 0.5 * real.lse_c, (clip.key, still.lse_c, real.lse_c)


def test_bad_inputs_give_clear_errors(trained, corpus, tmp_path):
    scorer = SyncScorer.load(trained, device="cpu")
    with h5py.File(corpus["val"], "r") as h5:
        clip = read_clip(h5, clip_keys(h5)[0])
    with pytest.raises(SyncNetError, match="uint8"):
        scorer.score(clip.frames.astype(np.float32), clip.audio, RATE, FPS)
    with pytest.raises(SyncNetError, match="shorter than SyncNet's 5-frame window"):
        scorer.score(clip.frames[:4], clip.audio[: 4 * SPF], RATE, FPS)
    with pytest.raises(SyncNetError, match="does not match the video's 75 frames"):
        scorer.score(clip.frames, clip.audio[: 50 * SPF], RATE, FPS)
    with pytest.raises(SyncNetError, match="trained on 8000 Hz"):
        scorer.score(clip.frames, clip.audio, 16000, FPS)
    with pytest.raises(SyncNetError, match="no such packed HDF5 file"):
        load_sync_clips(tmp_path / "missing.h5", scorer.cfg)
    not_syncnet = save_checkpoint(tmp_path / "lipreader.pt", {"kind": "lipreader", "model": {}})
    with pytest.raises(CheckpointError, match="not a SyncNet checkpoint"):
        SyncScorer.load(not_syncnet)
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--h5", str(corpus["val"]),
                 "--out", str(tmp_path / "s.json")]) == 2


def test_eval_cli_writes_the_checks(trained, corpus, tmp_path):
    out = tmp_path / "sync.json"
    assert main(["eval", "--checkpoint", str(trained), "--h5", str(corpus["val"]), "--out", str(out),
                 "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["n_clips"] == 4 and len(result["clips"]) == 4
    assert result["offset_accuracy"] >= 0.75 and result["shift_accuracy"] >= 0.75
    assert result["real"]["lse_c"] > 2 * result["still_image"]["lse_c"]
    assert result["real"]["lse_c"] > result["shifted_audio"]["lse_c"]
    assert result["real"]["lse_d"] < result["still_image"]["lse_d"]
    assert result["real"]["lse_c"] > result["other_audio"]["lse_c"]
    assert result["shifted_audio"]["frames"] == 10 and result["shifted_audio"]["offset_accuracy"] >= 0.75
