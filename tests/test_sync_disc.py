"""Beyond the paper: the synchronisation discriminator of the authors' journal version (IJCV 2020), the
full_sync variant. Its snippets, its inputs, its loss values, that it learns to hear the speech, and
that the trainer, the tables and the claims carry the variant."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speechanim.audio import frame_audio
from speechanim.losses import (
    LAMBDA_SYNC,
    Batch,
    GANLoss,
    audio_snippets,
    frame_snippets,
    sample_frame_indices,
    sample_snippet_starts,
)
from speechanim.models import ModelConfig, SyncDiscriminator
from speechanim.packing import TrainingWindows, WholeClips
from speechanim.train import TrainConfig, TrainingError, build_networks, build_optimisers, train
from train_fixtures import TINY_MODEL, TINY_RATE, TINY_SIZE, write_talking_faces, write_train_val

REPO = Path(__file__).resolve().parents[1]
SIZE, RATE = TINY_SIZE, TINY_RATE
SPF = RATE // 25  # samples per frame at the fixtures' 25 fps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY_MODEL, **kw})


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Drawn talking faces whose mouth opening is the audio's loudness (tests/train_fixtures.py)."""
    root = tmp_path_factory.mktemp("sync")
    write_train_val(root, 8, 4, n_frames=24, image_size=SIZE, sample_rate=RATE)
    write_talking_faces(root / "learn.h5", 64, n_frames=30, image_size=SIZE, sample_rate=RATE, seed=2)
    return root


def test_snippet_starts_are_uniform_and_the_shifted_ones_at_least_a_snippet_away():
    g = torch.Generator().manual_seed(0)
    start, shifted = sample_snippet_starts(20000, 16, 5, generator=g)
    assert start.min() == 0 and start.max() == 11 and shifted.min() == 0 and shifted.max() == 11
    assert (start - shifted).abs().min() == 5  # never overlapping the in-sync snippet, and as near as allowed
    counts = torch.bincount(start, minlength=12).float() / 20000
    assert counts.sub(1 / 12).abs().max() < 0.01
    # given start 0, the allowed shifted starts are 5..11, each as likely
    given = torch.bincount(shifted[start == 0], minlength=12)[5:].float()
    assert given.min() > 0 and given.max() / given.min() < 1.4
    for start in range(10):  # every start of a 14-frame clip has a partner; a 13-frame one's start 4 would not
        assert sample_snippet_starts(1, 14, 5, generator=torch.Generator().manual_seed(start))[1].item() in range(10)
    with pytest.raises(ValueError, match=">= 14 frames"):
        sample_snippet_starts(2, 13, 5)


def test_audio_snippets_are_the_raw_audio_under_the_snippets_frames():
    """Cut back out of the per-frame windows (each centred on its frame), the snippet is the signal itself."""
    rng = np.random.default_rng(0)
    t, window = 12, int(0.16 * RATE)
    signals = rng.standard_normal((3, t * SPF)).astype(np.float32)
    windows = torch.from_numpy(np.stack([frame_audio(s, t, RATE, 25.0) for s in signals]))
    assert windows.shape == (3, t, window)
    start = torch.tensor([0, 4, 7])
    got = audio_snippets(windows, start, 5, SPF)
    for i, s in enumerate(start.tolist()):
        np.testing.assert_array_equal(got[i].numpy(), signals[i, s * SPF:(s + 5) * SPF])
    video = torch.arange(3 * t, dtype=torch.float32).view(3, t, 1)
    assert frame_snippets(video, start, 5)[:, :, 0].tolist() == [[0, 1, 2, 3, 4], [16, 17, 18, 19, 20],
                                                                 [31, 32, 33, 34, 35]]


def test_the_sync_discriminator_sees_the_lower_half_and_scores_the_embeddings_distance():
    torch.manual_seed(0)
    d = SyncDiscriminator(tiny_model()).eval()
    frames, audio = torch.rand(4, 5, 3, *SIZE) * 2 - 1, torch.randn(4, 5 * SPF)
    logits = d(frames, audio)
    upper = frames.clone()
    upper[..., : SIZE[0] // 2, :] = 0.0  # the eyes and the nose: not its business
    assert torch.equal(d(upper, audio), logits)
    lower = frames.clone()
    lower[..., SIZE[0] // 2:, :] = 0.0
    assert (d(lower, audio) - logits).abs().min() > 0
    # one perceptron on the Euclidean distance of the two tanh embeddings (scaled by their size)
    mouth = frames[..., SIZE[0] // 2:, :].reshape(4, 15, SIZE[0] // 2, SIZE[1])
    v, a = d.video_encoder(mouth)[0], d.audio_encoder(audio)
    distance = (v - a).norm(dim=1) / math.sqrt(v.shape[1])
    expected = d.perceptron.weight[0, 0] * distance + d.perceptron.bias[0]
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="takes 5 frames and 1600 audio samples"):
        d(frames[:, :4], audio)


class _MouthDisc(torch.nn.Module):
    """A stand-in D_sync with known logits: the mean of the snippet's lower half minus its audio's mean
    (so an in-sync pair and a shifted one score differently by a known amount)."""

    frames, audio_samples = 5, 5 * SPF

    def forward(self, frames, audio):
        return frames[..., frames.shape[-2] // 2:, :].mean((1, 2, 3, 4)) - audio.mean(1)


def test_sync_loss_values_follow_the_journal_and_point_the_right_way():
    """D_sync: real-with-own-audio against 1, real-with-shifted-audio and generated against 0, the two fakes
    weighted 1/2 each; the generator: lambda_sync x BCE(D_sync(generated), 1). Worked out from the
    snippets the same seeded draws pick."""
    b, t = 3, 16
    real = torch.zeros(b, t, 3, *SIZE)
    real[..., SIZE[0] // 2:, :] = torch.linspace(-0.5, 0.5, t).view(1, t, 1, 1, 1)  # a mouth that changes over time
    fake = torch.full_like(real, 0.25)
    audio = torch.linspace(-1, 1, t).view(1, t, 1).expand(b, t, int(0.16 * RATE)).contiguous()
    batch = Batch(torch.zeros(b, 3, *SIZE), real, audio)
    d = _MouthDisc()
    loss = GANLoss("full_sync", _Const(0.0), _Const(0.0), sync_disc=d, samples_per_frame=SPF)
    start, shifted = draws(b, t, frame_draws=2)  # the frame discriminator draws a real and a fake frame first
    own, other = audio_snippets(audio, start, 5, SPF), audio_snippets(audio, shifted, 5, SPF)
    mouth = frame_snippets(real, start, 5)[..., SIZE[0] // 2:, :].mean((1, 2, 3, 4))
    r, s, f = mouth - own.mean(1), mouth - other.mean(1), 0.25 - own.mean(1)
    assert (r - s).abs().min() > 0.1  # the shifted audio is told apart by a known amount
    sp = F.softplus  # BCE(x, 1) = sp(-x), BCE(x, 0) = sp(x)
    want = sp(-r).mean() + (sp(s).mean() + sp(f).mean()) / 2
    _, parts = loss.discriminator(batch, fake, generator=torch.Generator().manual_seed(7))
    assert parts["d_sync"].item() == pytest.approx(want.item(), rel=1e-6)
    assert parts["d_sync_real"].item() == pytest.approx(torch.sigmoid(r).mean().item(), rel=1e-6)
    assert parts["d_sync_shifted"].item() == pytest.approx(torch.sigmoid(s).mean().item(), rel=1e-6)
    assert parts["d_sync_fake"].item() == pytest.approx(torch.sigmoid(f).mean().item(), rel=1e-6)
    # the generator's term: generated snippets with their own audio, against "real"
    start, _ = draws(b, t, frame_draws=1)
    total, parts = loss.generator(batch, fake, generator=torch.Generator().manual_seed(7))
    g_sync = sp(-(0.25 - audio_snippets(audio, start, 5, SPF).mean(1))).mean()
    assert parts["g_adv_sync"].item() == pytest.approx(g_sync.item(), rel=1e-6)
    assert LAMBDA_SYNC == 0.8
    assert total.item() == pytest.approx((400 * parts["g_l1"] + parts["g_adv_img"] + parts["g_adv_seq"]
                                          + 0.8 * g_sync).item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs the synchronisation discriminator"):
        GANLoss("full_sync", _Const(0.0), _Const(0.0))
    with pytest.raises(ValueError, match="does not use the synchronisation discriminator"):
        GANLoss("full", _Const(0.0), _Const(0.0), sync_disc=d, samples_per_frame=SPF)
    with pytest.raises(ValueError, match="sync_disc_audio_s to sync_disc_frames / fps"):
        GANLoss("full_sync", _Const(0.0), _Const(0.0), sync_disc=d, samples_per_frame=SPF + 1)


class _Const(torch.nn.Module):
    """A frame or sequence discriminator that answers one logit whatever it is shown."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = logit

    def forward(self, frames, *rest, **kw):
        n = frames[0].shape[0] if isinstance(frames, list) else frames.shape[0]
        out = torch.full((n,), self.logit)
        return out if not isinstance(frames, list) else torch.stack([out] * len(frames))


def draws(b: int, t: int, frame_draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """D_sync's snippet starts as GANLoss draws them from a generator seeded 7, after the frame discriminator's
    ``frame_draws`` frame indices."""
    g = torch.Generator().manual_seed(7)
    for _ in range(frame_draws):
        sample_frame_indices(b, t, None, g)
    return sample_snippet_starts(b, t, 5, None, g)


def test_d_sync_learns_to_hear_the_speech(packed):
    """Trained alone on its own task (real vs shifted audio), D_sync ranks held-out clips' in-sync snippets
    above their shifted ones: it uses the audio (the sequence discriminator of the paper does not)."""
    cfg = tiny_model()
    torch.manual_seed(0)
    np.random.seed(0)  # TrainingWindows draws each window's start from numpy's global generator
    rng = np.random.default_rng(0)
    ds = TrainingWindows(packed / "learn.h5", 16)
    d = SyncDiscriminator(cfg)
    opt = torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.999))
    for _ in range(150):
        items = [ds[i] for i in rng.choice(56, 8, replace=False)]
        real, audio = torch.stack([it["frames"] for it in items]), torch.stack([it["audio"] for it in items])
        start, shifted = sample_snippet_starts(8, 16, 5)
        frames = frame_snippets(real, start, 5)
        r, s = d(frames, audio_snippets(audio, start, 5, SPF)), d(frames, audio_snippets(audio, shifted, 5, SPF))
        loss = F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + \
            F.binary_cross_entropy_with_logits(s, torch.zeros_like(s))
        opt.zero_grad()
        loss.backward()
        opt.step()
    whole = WholeClips(packed / "learn.h5")
    clips = [whole[i] for i in range(56, 64)]  # never seen
    real = torch.stack([c["frames"][8:24] for c in clips])
    audio = torch.stack([c["audio"][8:24] for c in clips])
    above = []  # each in-sync snippet against every snippet of its clip's audio at least 5 frames away
    with torch.no_grad():  # training mode (batch statistics), as GAN training runs it
        for offset in range(12):
            start = torch.full((8,), offset)
            frames = frame_snippets(real, start, 5)
            r = d(frames, audio_snippets(audio, start, 5, SPF))
            for other in range(12):
                if abs(other - offset) >= 5:
                    s = d(frames, audio_snippets(audio, torch.full((8,), other), 5, SPF))
                    above.append((r > s).float().mean().item())
    assert np.mean(above) >= 0.85, above  # 0.91 when written (chance: 0.5)


def test_the_full_sync_variant_trains_logs_and_saves_its_discriminator(packed, tmp_path):
    from speechanim.checkpoint import load_checkpoint, load_generator

    nets = build_networks("full_sync", tiny_model())
    assert set(nets) == {"generator", "frame_discriminator", "sequence_discriminator", "sync_discriminator"}
    opts, scheds = build_optimisers(nets, TrainConfig(lr_sync_disc=3e-5))
    assert opts["sync_discriminator"].param_groups[0]["lr"] == 3e-5
    for _ in range(25):  # fixed, like the sequence discriminator's
        opts["sync_discriminator"].step()
        scheds["sync_discriminator"].step()
    assert opts["sync_discriminator"].param_groups[0]["lr"] == 3e-5
    assert (TrainConfig().lambda_sync, TrainConfig().lr_sync_disc) == (0.8, 1e-5)  # the journal's
    out = tmp_path / "full_sync"
    cfg = TrainConfig(batch_size=4, n_frames=14, max_epochs=1, steps_per_epoch=2, num_workers=0, val_clips=2)
    train(dataset="tiny", variant="full_sync", train_path=packed / "train.h5", val_path=packed / "val.h5",
          out_dir=out, model_cfg=tiny_model(), train_cfg=cfg, progress=False)
    import csv

    with open(out / "history.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert 0 < float(row["d_sync_real"]) < 1 and 0 < float(row["d_sync_shifted"]) < 1
    assert float(row["d_sync"]) > 0 and float(row["g_adv_sync"]) > 0
    last = load_checkpoint(out / "work" / "last.pt")
    assert "sync_discriminator" in last and last["variant"] == "full_sync"
    gen, _ = load_generator(out / "generator.pt")
    assert not gen.static
    # benchmarks/seq_disc_audio.py probes both of its discriminators (here a 2-step model: the figures' range)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from seq_disc_audio import KINDS, discriminators_in, probe

    ckpt = out / "generator.pt"
    assert discriminators_in(ckpt) == ["sequence_discriminator", "sync_discriminator"]
    got = probe(ckpt, packed / "train.h5", windows=8, shift=6, batch=4, which="sync_discriminator")
    assert got["windows"] == 8 and all(0 < got[k] < 1 for k in KINDS)
    assert 0 <= got["real_above_shifted"] <= 1 and 0 <= got["real_above_other"] <= 1
    assert len({round(got[k], 6) for k in KINDS}) == 4  # the four inputs are judged apart
    assert probe(ckpt, packed / "train.h5", windows=8, shift=6, batch=4, which="sync_discriminator") == got
    with pytest.raises(TrainingError, match="n_frames"):
        train(dataset="tiny", variant="full_sync", train_path=packed / "train.h5", val_path=packed / "val.h5",
              out_dir=tmp_path / "short", model_cfg=tiny_model(),
              train_cfg=TrainConfig(**{**cfg.__dict__, "n_frames": 13}), progress=False)
