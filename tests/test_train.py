"""Training (paper, section 3.3): losses, variants, learning, resuming, NaN stops, the CLI, DDP."""
from __future__ import annotations

import csv
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speechanim.checkpoint import load_checkpoint, load_generator
from speechanim.losses import (
    VARIANT_TERMS,
    Batch,
    GANLoss,
    discriminator_bce,
    frame_l1,
    generator_bce,
    lower_half_l1,
    sample_frame_indices,
    sample_frames,
)
from speechanim.models import FrameDiscriminator, ModelConfig, SequenceDiscriminator
from speechanim.packing import TrainingWindows, WholeClips
from speechanim.train import (
    TrainConfig,
    TrainingError,
    build_networks,
    build_optimisers,
    lr_factor,
    main,
    train,
    variant_model_config,
)
from train_fixtures import TINY_MODEL, TINY_RATE, TINY_SIZE, embedded_corpus, write_talking_faces, write_train_val

REPO = Path(__file__).resolve().parents[1]
SIZE, RATE = TINY_SIZE, TINY_RATE
TINY_TRAINING = dict(batch_size=4, n_frames=8, max_epochs=2, steps_per_epoch=3, num_workers=0, val_clips=4)


def tiny_model(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY_MODEL, **kw})


def tiny_training(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY_TRAINING, **kw})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def packed(tmp_path_factory):
    """Drawn talking faces (mouth opening = audio loudness), packed like the product's files."""
    root = tmp_path_factory.mktemp("packed")
    write_train_val(root, 12, 4, n_frames=24, image_size=SIZE, sample_rate=RATE, mirror=True)
    write_talking_faces(root / "nan.h5", 12, n_frames=24, image_size=SIZE, sample_rate=RATE, seed=0,
                        nan_audio_clips=tuple(range(12)))
    write_talking_faces(root / "learn.h5", 56, n_frames=30, image_size=SIZE, sample_rate=RATE, seed=2)
    return root


def batch_of(items: list[dict]) -> Batch:
    return Batch(*(torch.stack([it[k] for it in items]) for k in ("still", "frames", "audio")))


def history_rows(out: Path) -> list[dict]:
    with open(out / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_train(packed: Path, out: Path, variant: str = "full", train_file: str = "train.h5", **training) -> dict:
    return train(dataset="tiny", variant=variant, train_path=packed / train_file, val_path=packed / "val.h5",
                 out_dir=out, model_cfg=tiny_model(), train_cfg=tiny_training(**training), progress=False)


def cli_args(packed: Path, out: Path, variant: str = "full", train_file: str = "train.h5", model: dict | None = None,
             **training) -> list[str]:
    import json

    return ["--dataset", "tiny", "--variant", variant, "--train", str(packed / train_file), "--val",
            str(packed / "val.h5"), "--out", str(out), "--model", json.dumps(model or TINY_MODEL),
            "--training", json.dumps({**TINY_TRAINING, **training}), "--no-progress"]


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------ losses (eqs. 1-3)


def test_lower_half_l1_is_the_mean_over_the_lower_half_only():
    real = torch.zeros(2, 3, 3, 8, 6)
    fake = torch.zeros_like(real)
    fake[..., 4:, :] = 0.5  # the lower half differs by 0.5 everywhere
    fake[..., :4, :] = -7.0  # the upper half differs wildly
    assert lower_half_l1(fake, real).item() == pytest.approx(0.5)
    fake[..., :4, :] = 3.0
    assert lower_half_l1(fake, real).item() == pytest.approx(0.5)
    fake[0, 0, 0, 7, 0] += 432  # 2 x 3 x 3 x 4 x 6 = 432 lower-half values: a mean moves by 1, a sum by 432
    assert lower_half_l1(fake, real).item() == pytest.approx(1.5)
    odd = torch.zeros(1, 3, 5, 4)
    other = odd.clone()
    other[..., 2:, :] = 1.0  # H = 5: rows 2, 3, 4 are the lower half
    assert lower_half_l1(other, odd).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        lower_half_l1(odd, torch.zeros(1, 3, 4, 4))


def test_bce_terms_are_the_log_terms_of_equation_1():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected_d = -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean())
    assert discriminator_bce(real, fake).item() == pytest.approx(expected_d.item(), rel=1e-6)
    assert generator_bce(fake).item() == pytest.approx(-torch.log(torch.sigmoid(fake)).mean().item(), rel=1e-6)
    zero = torch.zeros(4)
    assert discriminator_bce(zero, zero).item() == pytest.approx(2 * math.log(2))  # D undecided
    assert discriminator_bce(torch.full((4,), 30.0), torch.full((4,), -30.0)).item() < 1e-10  # D certain and right


def test_frame_sampling_is_uniform_and_picks_the_indexed_frame():
    video = torch.arange(3 * 5, dtype=torch.float32).view(3, 5, 1, 1, 1).expand(3, 5, 3, 4, 2)
    idx = torch.tensor([4, 0, 2])
    assert sample_frames(video, idx)[:, 0, 0, 0].tolist() == [4.0, 5.0, 12.0]
    draws = sample_frame_indices(20000, 5, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=5).float()
    assert draws.min() == 0 and draws.max() == 4
    assert (counts / 20000 - 0.2).abs().max() < 0.015


def test_gan_loss_terms_follow_the_variant():
    cfg = tiny_model()
    torch.manual_seed(0)
    d_img, d_seq = FrameDiscriminator(cfg), SequenceDiscriminator(cfg)
    b, t = 2, 4
    batch = Batch(torch.rand(b, 3, *SIZE) * 2 - 1, torch.rand(b, t, 3, *SIZE) * 2 - 1, torch.randn(b, t, cfg.window))
    fake = torch.rand(b, t, 3, *SIZE) * 2 - 1
    l1 = lower_half_l1(fake, batch.real).item()

    total, parts = GANLoss("l1").generator(batch, fake)
    whole = frame_l1(fake, batch.real).item()  # the L1-only model: L1 on the entire frame (paper Fig. 4a)
    assert whole != pytest.approx(l1, rel=1e-3)
    assert set(parts) == {"g_l1", "g_total"} and total.item() == pytest.approx(400 * whole, rel=1e-6)
    total, parts = GANLoss("full", d_img, d_seq).generator(batch, fake)
    assert set(parts) == {"g_l1", "g_adv_img", "g_adv_seq", "g_total"}
    assert total.item() == pytest.approx(400 * l1 + parts["g_adv_img"].item() + parts["g_adv_seq"].item(), rel=1e-5)
    total, parts = GANLoss("full", d_img, d_seq, lambda_l1=10.0).discriminator(batch, fake)
    assert set(parts) >= {"d_img", "d_seq", "d_img_real", "d_img_fake", "d_seq_real", "d_seq_fake"}
    assert total.item() == pytest.approx(parts["d_img"].item() + parts["d_seq"].item(), rel=1e-6)
    _, parts = GANLoss("static", d_img).generator(batch, fake)
    assert "g_adv_img" in parts and "g_adv_seq" not in parts
    # the matching-aware term (ours, off by default): real videos with another clip's audio count as fake
    torch.manual_seed(1)
    _, plain = GANLoss("full", d_img, d_seq).discriminator(batch, fake)
    assert "d_seq_mismatched" not in plain
    torch.manual_seed(1)
    _, parts = GANLoss("full", d_img, d_seq, seq_mismatch=0.5).discriminator(batch, fake)
    d_seq.train()
    with torch.no_grad():
        m = d_seq(batch.real, batch.audio.roll(-1, 0))
    extra = 0.5 * F.binary_cross_entropy_with_logits(m, torch.zeros_like(m)).item()
    assert parts["d_seq"].item() == pytest.approx(plain["d_seq"].item() + extra, rel=1e-4)
    assert parts["d_seq_mismatched"].item() == pytest.approx(torch.sigmoid(m).mean().item(), rel=1e-4)
    assert GANLoss("static", d_img, seq_mismatch=1.0).seq_mismatch == 0.0  # no sequence discriminator, no term
    with pytest.raises(ValueError, match="seq_mismatch"):
        GANLoss("full", d_img, d_seq, seq_mismatch=-1.0)
    with pytest.raises(ValueError, match="needs the sequence"):
        GANLoss("full", d_img)
    with pytest.raises(ValueError, match="does not use the frame"):
        GANLoss("l1", d_img)
    with pytest.raises(ValueError, match="unknown variant"):
        GANLoss("both")


def _softplus(x: float) -> float:
    """``log(1 + e^x)``: BCE with logits of logit ``x`` is ``softplus(-x)`` against 1 and ``softplus(x)`` against 0."""
    return math.log1p(math.exp(x))


class _PixelFrameDisc(torch.nn.Module):
    """A frame discriminator whose logit is the frame's bottom-right red pixel, so that the logits of
    the real and the generated frames are known whichever frames S draws."""

    def forward(self, frames, still):
        return frames[:, 0, -1, -1]


class _PixelSeqDisc(torch.nn.Module):
    """A sequence discriminator with known logits: ``3 x`` the last frame's bottom-right red pixel plus
    the clip's audio level (``audio[:, -1, 0]``); takes a list of videos and ``mismatched`` (the first
    video with the next clip's audio) like :class:`SequenceDiscriminator`."""

    def forward(self, frames, audio, lengths=None, mismatched=False):
        level = audio[:, -1, 0]
        if isinstance(frames, torch.Tensor) and not mismatched:
            return 3 * frames[:, -1, 0, -1, -1] + level
        rows = [3 * v[:, -1, 0, -1, -1] + level for v in frames]
        if mismatched:
            rows.append(3 * frames[0][:, -1, 0, -1, -1] + level.roll(-1, 0))
        return torch.stack(rows)


def test_gan_loss_values_for_known_logits_in_every_variant():
    """Every loss of every variant against values worked out by hand (BCE with logits of known
    constants), so that flipping a target (the generator's "real" to "fake", a discriminator's real
    and fake), dropping or swapping a term, or the L1's region fails: the parts are not taken from
    the code's own output.

    Real frames: 0.2 in the upper half, 0.8 in the lower; generated: 0.5 and -0.3. So the lower-half
    L1 is 1.1 and the whole-frame L1 (0.3 + 1.1) / 2 = 0.7; the frame logits are 0.8 (real) and -0.3
    (fake); with audio levels 0 and 1 the sequence logits are 2.4, 3.4 (real), -0.9, 0.1 (fake) and,
    with the next clip's audio, 3.4, 2.4 (mismatched)."""
    b, t, h, w = 2, 3, 8, 6
    real = torch.full((b, t, 3, h, w), 0.8)
    real[..., : h // 2, :] = 0.2
    fake = torch.full((b, t, 3, h, w), -0.3)
    fake[..., : h // 2, :] = 0.5
    audio = torch.zeros(b, t, 5)
    audio[1] = 1.0
    batch = Batch(torch.zeros(b, 3, h, w), real, audio)
    d_img, d_seq = _PixelFrameDisc(), _PixelSeqDisc()
    sp = _softplus  # BCE(x, 1) = sp(-x), BCE(x, 0) = sp(x)
    g_img = sp(0.3)  # -log D(G(z)) for the fake frame's logit -0.3
    g_seq = (sp(0.9) + sp(-0.1)) / 2  # the fake videos' logits -0.9 and 0.1, against "real"
    d_img_loss = sp(-0.8) + sp(-0.3)  # real 0.8 against 1, fake -0.3 against 0
    d_seq_loss = (sp(-2.4) + sp(-3.4)) / 2 + (sp(-0.9) + sp(0.1)) / 2

    total, parts = GANLoss("l1").generator(batch, fake)
    assert total.item() == pytest.approx(400 * 0.7, rel=1e-6)  # the entire frame (paper Fig. 4a)
    for variant in ("l1_advimg", "static"):
        total, parts = GANLoss(variant, d_img).generator(batch, fake)
        assert parts["g_l1"].item() == pytest.approx(1.1, rel=1e-6)  # the lower half only (eq. 2)
        assert parts["g_adv_img"].item() == pytest.approx(g_img, rel=1e-6), variant
        assert total.item() == pytest.approx(400 * 1.1 + g_img, abs=1e-3), variant
        total, parts = GANLoss(variant, d_img).discriminator(batch, fake.detach())
        assert parts["d_img"].item() == pytest.approx(d_img_loss, rel=1e-6), variant
        assert total.item() == pytest.approx(d_img_loss, rel=1e-6), variant
        assert parts["d_img_real"].item() == pytest.approx(1 / (1 + math.exp(-0.8)), rel=1e-6)
        assert parts["d_img_fake"].item() == pytest.approx(1 / (1 + math.exp(0.3)), rel=1e-6)
    total, parts = GANLoss("full", d_img, d_seq).generator(batch, fake)
    assert parts["g_adv_img"].item() == pytest.approx(g_img, rel=1e-6)
    assert parts["g_adv_seq"].item() == pytest.approx(g_seq, rel=1e-6)
    assert total.item() == pytest.approx(400 * 1.1 + g_img + g_seq, abs=1e-3)
    total, parts = GANLoss("full", d_img, d_seq).discriminator(batch, fake.detach())
    assert parts["d_img"].item() == pytest.approx(d_img_loss, rel=1e-6)
    assert parts["d_seq"].item() == pytest.approx(d_seq_loss, rel=1e-6)
    assert total.item() == pytest.approx(d_img_loss + d_seq_loss, rel=1e-6)
    assert parts["d_seq_real"].item() == pytest.approx((1 / (1 + math.exp(-2.4)) + 1 / (1 + math.exp(-3.4))) / 2)
    assert parts["d_seq_fake"].item() == pytest.approx((1 / (1 + math.exp(0.9)) + 1 / (1 + math.exp(-0.1))) / 2)
    # the matching-aware term: real videos with the other clip's audio (logits 3.4, 2.4) judged fake
    _, parts = GANLoss("full", d_img, d_seq, seq_mismatch=0.5).discriminator(batch, fake.detach())
    assert parts["d_seq"].item() == pytest.approx(d_seq_loss + 0.5 * (sp(3.4) + sp(2.4)) / 2, rel=1e-6)
    total, parts = GANLoss("l1").discriminator(batch, fake.detach())
    assert total.item() == 0.0 and parts == {}  # no discriminator, no discriminator loss


# ------------------------------------------------------------------ variants, schedules, configs


def test_variants_build_the_right_networks():
    built = {v: build_networks(v, variant_model_config(v, tiny_model())) for v in VARIANT_TERMS}
    assert set(built["l1"]) == {"generator"}
    assert set(built["l1_advimg"]) == {"generator", "frame_discriminator"}
    assert set(built["full"]) == {"generator", "frame_discriminator", "sequence_discriminator"}
    assert set(built["static"]) == {"generator", "frame_discriminator"}
    static_gen = built["static"]["generator"]
    assert static_gen.static and not any(isinstance(m, torch.nn.GRU) for m in static_gen.modules())
    assert static_gen.init_state(2).context is None
    for v in ("l1", "l1_advimg", "full"):
        gen = built[v]["generator"]
        assert not gen.static and gen.context_encoder.rnn.num_layers == 2 and gen.noise_generator.rnn is not None
    with pytest.raises(TrainingError, match="--variant static"):
        variant_model_config("full", tiny_model(static=True))


def test_learning_rates_follow_the_paper():
    assert [lr_factor(e, 20, 0.1) for e in (1, 20, 21, 22, 30)] == pytest.approx([1, 1, 0.9, 0.81, 0.9**10])
    cfg = TrainConfig()
    assert (cfg.lr_generator, cfg.lr_frame_disc, cfg.lr_seq_disc, cfg.lambda_l1, cfg.patience) == \
        (2e-4, 1e-3, 5e-5, 400.0, 10)
    nets = build_networks("full", tiny_model())
    opts, scheds = build_optimisers(nets, cfg)
    assert all(o.defaults["betas"] == (0.5, 0.999) for o in opts.values())
    seen = []
    for epoch in range(1, 24):
        seen.append({n: o.param_groups[0]["lr"] for n, o in opts.items()})
        for o, s in zip(opts.values(), scheds.values()):
            o.step()  # no gradients: changes nothing, but schedulers expect an optimiser step first
            s.step()
    assert seen[19]["generator"] == pytest.approx(2e-4) and seen[19]["frame_discriminator"] == pytest.approx(1e-3)
    assert seen[20]["generator"] == pytest.approx(2e-4 * 0.9)
    assert seen[22]["frame_discriminator"] == pytest.approx(1e-3 * 0.729)
    assert all(s["sequence_discriminator"] == 5e-5 for s in seen)


def test_train_config_refuses_bad_values():
    with pytest.raises(ValueError, match="val_metric"):
        TrainConfig(val_metric="ssim")
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay=1.5)
    assert TrainConfig(betas=[0.9, 0.99]).betas == (0.9, 0.99)
    assert TrainConfig().seq_disc_mismatch == 0.0  # the paper's equation 1
    with pytest.raises(ValueError, match="seq_disc_mismatch must be >= 0"):
        TrainConfig(seq_disc_mismatch=-0.5)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        TrainConfig(seq_disc_mismatch=1.0, batch_size=1)


# ------------------------------------------------------------------ learning


def test_overfitting_one_batch_drives_l1_down(packed):
    cfg = tiny_model()
    torch.manual_seed(0)
    nets = build_networks("l1", cfg)
    opts, _ = build_optimisers(nets, TrainConfig(lr_generator=1e-3))
    gen, criterion = nets["generator"], GANLoss("l1")
    ds = TrainingWindows(packed / "learn.h5", 12, seed=0)
    batch = batch_of([ds[0], ds[1]])
    losses = []
    for _ in range(60):
        loss, parts = criterion.generator(batch, gen(batch.still, batch.audio))
        opts["generator"].zero_grad()
        loss.backward()
        opts["generator"].step()
        losses.append(parts["g_l1"].item())
    assert losses[-1] < losses[0] / 3, losses[::10]


def test_discriminators_learn_to_tell_real_from_mismatched(packed):
    """D_seq learns the audio-video correspondence (real pair vs the video with another clip's audio);
    D_img learns the identity condition (a frame next to its own still vs another clip's still)."""
    cfg = tiny_model()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    np.random.seed(0)  # TrainingWindows draws each window's start from numpy's global generator
    ds = TrainingWindows(packed / "learn.h5", 12)
    # Test windows: frames 6-17 (0.24-0.72 s) of 8 unseen clips, which always hold some speech (it starts
    # by 0.6 s); a window of silence in two clips is the same pair whichever audio goes with it.
    whole = WholeClips(packed / "learn.h5")
    test_batch = batch_of([{k: whole[i][k][6:18] if k != "still" else whole[i][k] for k in ("still", "frames", "audio")}
                           for i in range(48, 56)])
    d_seq, d_img = SequenceDiscriminator(cfg), FrameDiscriminator(cfg)
    opt = torch.optim.Adam([*d_seq.parameters(), *d_img.parameters()], 2e-3, betas=(0.5, 0.999))
    for _ in range(120):
        b = batch_of([ds[i] for i in rng.choice(48, 8, replace=False)])  # a new window of each clip
        other_audio, other_still = b.audio.roll(1, 0), b.still.roll(1, 0)
        frame = sample_frames(b.real, sample_frame_indices(8, b.real.shape[1]))
        loss = (discriminator_bce(d_seq(b.real, b.audio), d_seq(b.real, other_audio))
                + discriminator_bce(d_img(frame, b.still), d_img(frame, other_still)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Judged in training mode (batch statistics), the only mode GAN training ever runs them in.
    b = test_batch  # 8 clips never seen in training, each against 3 others' audio / stills
    with torch.no_grad():
        seq_real = d_seq(b.real, b.audio)
        seq_fake = torch.stack([d_seq(b.real, b.audio.roll(k, 0)) for k in (1, 2, 3)])
        frame = b.real[:, 3]
        img_real = d_img(frame, b.still)
        img_fake = torch.stack([d_img(frame, b.still.roll(k, 0)) for k in (1, 2, 3)])
    seq_acc = ((seq_real > 0).float().mean() + (seq_fake < 0).float().mean()).item() / 2
    img_acc = ((img_real > 0).float().mean() + (img_fake < 0).float().mean()).item() / 2
    assert seq_acc >= 0.75 and (seq_real > seq_fake).float().mean() >= 0.8, (seq_real, seq_fake)
    assert img_acc >= 0.9, (img_real, img_fake)


# Four synthgrid speakers to train on (mirrored, as the DAG packs them), one held out; the crop of
# the embedded default. D_seq needs this much data: trained on 3 speakers x 12 clips it learnt its
# training pairs by heart and stayed at chance on new ones; on 4 speakers x 15 (mirrored) it ranked
# 86% of held-out pairs right, on 4 x 25 all of them (one seed each, measured while writing this).
SYNTH_CLIPS = {"s1": 20, "s2": 20, "s3": 20, "s4": 20, "s5": 12}
SYNTH_SPLIT = {"s1": "train", "s2": "train", "s3": "train", "s4": "train", "s5": "test"}
SYNTH_SIZE = (64, 48)


@pytest.fixture(scope="session")
def synthgrid_packed(tmp_path_factory) -> dict[str, Path]:
    """The embedded corpus, built, aligned and packed as the DAG does it (two processes)."""
    return embedded_corpus(tmp_path_factory.mktemp("synthgrid-d"), SYNTH_CLIPS, SYNTH_SPLIT, SYNTH_SIZE)


def test_discriminators_tell_real_from_shuffled_audio_on_the_embedded_corpus(synthgrid_packed):
    """Brief training (400 steps) on four synthgrid speakers. D_seq ranks a held-out speaker's real
    (video, audio) pairs above the same videos with the audio of that speaker's other clips; D_img tells
    a frame beside its own still from one beside another speaker's still.

    Each step takes 4 windows of two training speakers each. The audio negatives come from the same
    speaker's other clips (the same voice), so D_seq must learn the lips' sync with the speech, not
    which voice goes with which face; the still negatives come from the other speaker."""
    ranked, seq_real, seq_fake, img_acc = train_discriminators_on_embedded(synthgrid_packed, seed=0)
    assert ranked >= 0.75 and seq_real.mean() > seq_fake.mean(), (ranked, seq_real, seq_fake)
    assert img_acc >= 0.75, img_acc  # seeds 0-3 gave 0.83-1.0 (D_seq ranked 0.97-1.0)


def train_discriminators_on_embedded(synthgrid_packed: dict[str, Path], seed: int):
    """(share of (real, shuffled-audio) pairs D_seq ranks right, real logits, shuffled logits, D_img
    accuracy) after the brief training of the test above."""
    cfg = ModelConfig(image_size=SYNTH_SIZE, sample_rate=16000, width=0.125, id_dim=8, audio_feat_dim=16,
                      context_dim=16, noise_dim=4, seq_disc_image_dim=8, seq_disc_audio_dim=8, seq_disc_hidden=16,
                      seq_disc_classifier_hidden=8)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # TrainingWindows draws each window's start from numpy's global generator
    n_frames = 16
    ds = TrainingWindows(synthgrid_packed["train"], n_frames)
    by_speaker: dict[str, list[int]] = {}
    for i, j in enumerate(ds.index):
        by_speaker.setdefault(ds.reader.keys[j].split("/")[0], []).append(i)
    assert sorted(by_speaker) == ["s1", "s2", "s3", "s4"] and all(len(v) == 40 for v in by_speaker.values())
    # another clip of the same speaker (or a clip's mirror image, which carries the same audio but is
    # cut at another random window: out of sync too, but for a chance overlap)
    same_voice = torch.tensor([1, 2, 3, 0, 5, 6, 7, 4])
    other_face = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])  # a clip of the other speaker
    d_seq, d_img = SequenceDiscriminator(cfg), FrameDiscriminator(cfg)
    # 1e-3: at 2e-3 and above D_seq settled at a constant output (loss log 4) on this corpus
    opt = torch.optim.Adam([*d_seq.parameters(), *d_img.parameters()], 1e-3, betas=(0.5, 0.999))
    speakers = sorted(by_speaker)
    for _ in range(400):
        a, b_ = rng.choice(len(speakers), 2, replace=False)
        picks = [*rng.choice(by_speaker[speakers[a]], 4, replace=False), *rng.choice(by_speaker[speakers[b_]], 4, replace=False)]
        b = batch_of([ds[int(i)] for i in picks])
        frame = sample_frames(b.real, sample_frame_indices(8, b.real.shape[1]))
        loss = (discriminator_bce(d_seq(b.real, b.audio), d_seq(b.real, b.audio[same_voice]))
                + discriminator_bce(d_img(frame, b.still), d_img(frame, b.still[other_face])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the held-out speaker's 12 clips, frames 13-28 (0.52-1.16 s; synthgrid's speech starts at frames
    # 8-19, so every window holds speech), judged in training mode as GAN training runs them
    test = WholeClips(synthgrid_packed["test"])
    assert len(test) == 12
    start = 13
    items = [test[i] for i in range(len(test))]
    b = batch_of([{k: it[k][start:start + n_frames] if k != "still" else it[k] for k in ("still", "frames", "audio")}
                  for it in items])
    train_stills = torch.stack([ds[by_speaker[s][0]]["still"] for s in speakers[:3]])
    with torch.no_grad():
        seq_real = d_seq(b.real, b.audio)
        seq_fake = torch.stack([d_seq(b.real, b.audio.roll(k, 0)) for k in (1, 2, 3)])
        frame = b.real[:, 3]
        img_real = d_img(frame, b.still)
        img_fake = torch.stack([d_img(frame, s.expand_as(b.still)) for s in train_stills])
    ranked = (seq_real > seq_fake).float().mean().item()  # of 36 (real, shuffled) pairs; chance 0.5
    img_acc = ((img_real > 0).float().mean() + (img_fake < 0).float().mean()).item() / 2
    return ranked, seq_real, seq_fake, img_acc


# ------------------------------------------------------------------ the training loop


@pytest.mark.parametrize("variant", ["l1", "static"])
def test_train_writes_every_output(packed, tmp_path, variant):
    out = tmp_path / variant
    result = run_train(packed, out, variant=variant, max_epochs=2)
    for name in ("generator.pt", "history.csv", "losses.png", "work/last.pt", "work/best.pt"):
        assert (out / name).is_file(), name
    assert (out / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = history_rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2"] and result["epochs"] == 2
    assert all(float(r["val_psnr"]) > 0 and float(r["seconds"]) > 0 for r in rows)
    assert (rows[0]["d_img"] == "") == (variant == "l1") and all(r["d_seq"] == "" for r in rows)
    last = load_checkpoint(out / "work" / "last.pt")
    assert last["epoch"] == 2 and last["variant"] == variant and last["dataset"] == "tiny"
    assert ("frame_discriminator" in last) == (variant != "l1") and "sequence_discriminator" not in last
    assert set(last["optimisers"]) == set(last["schedulers"]) == set(build_networks(variant, variant_model_config(
        variant, tiny_model())))
    assert last["best"]["epoch"] == result["best_epoch"] and len(last["history"]) == 2
    gen, payload = load_generator(out / "generator.pt")
    assert gen.static == (variant == "static") and payload["epoch"] == result["best_epoch"]
    with torch.no_grad():
        assert gen(torch.zeros(1, 3, *SIZE), torch.zeros(1, 3, gen.cfg.window)).shape == (1, 3, 3, *SIZE)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_precision_is_the_arithmetic_of_the_steps(packed, tmp_path, monkeypatch, precision):
    """precision "bf16": the generator's convolutions run in bfloat16 during the steps (autocast), its
    weights stay fp32 and the losses are finite; validation runs in fp32 either way."""
    seen = []
    real_forward = torch.nn.Conv2d.forward

    def spy(self, x):
        y = real_forward(self, x)
        seen.append((torch.is_grad_enabled(), y.dtype))
        return y

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    out = tmp_path / precision
    run_train(packed, out, variant="full", max_epochs=1, precision=precision)
    training = {dtype for grad, dtype in seen if grad}
    validation = {dtype for grad, dtype in seen if not grad}
    assert training == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert validation == {torch.float32}
    gen, payload = load_generator(out / "generator.pt")
    assert all(p.dtype == torch.float32 for p in gen.parameters())
    assert payload["train_config"]["precision"] == precision
    rows = history_rows(out)
    assert math.isfinite(float(rows[0]["g_l1"])) and math.isfinite(float(rows[0]["val_psnr"]))
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        TrainConfig(precision="fp16")


def test_the_loader_moves_uint8_frames_and_the_steps_see_the_stored_frames_in_unit_range(packed, tmp_path,
                                                                                       monkeypatch):
    """The trainer's loader gives the stored uint8 frames (a quarter of float32's bytes to load, pin and copy);
    every training step sees them as float32 ``x / 127.5 - 1``, bit for bit the still of a packed clip."""
    import h5py

    import speechanim.train as train_module
    from speechanim.packing import clip_keys

    seen = []
    real_step = train_module.train_step

    def spy(nets, opts, criterion, batch, **kw):
        seen.append(batch)
        return real_step(nets, opts, criterion, batch, **kw)

    monkeypatch.setattr(train_module, "train_step", spy)
    _, _, loader, _, _ = train_module.make_loaders(train_module.Dist(0, 1, torch.device("cpu")),
                                                   packed / "train.h5", packed / "val.h5", tiny_model(),
                                                   tiny_training(), per_rank=2)
    item = next(iter(loader))
    assert item["frames"].dtype == torch.uint8 and item["still"].dtype == torch.uint8
    run_train(packed, tmp_path / "out", variant="l1", max_epochs=1)
    with h5py.File(packed / "train.h5", "r") as h5:  # stored (T, 3, H, W) uint8
        expected = [torch.from_numpy(h5[k]["frames"][0].astype(np.float32) / np.float32(127.5) - np.float32(1))
                    for k in clip_keys(h5)]
    assert seen
    for batch in seen:
        assert batch.real.dtype == torch.float32 and batch.still.dtype == torch.float32
        for still, frames in zip(batch.still, batch.real):
            assert any(torch.equal(still, e) for e in expected)
            stored = ((frames + 1) * 127.5).round().to(torch.uint8)  # the uint8 values these frames came from
            assert torch.equal(frames, stored.float() / 127.5 - 1)


def test_the_matching_aware_sequence_discriminator_trains_and_is_logged(packed, tmp_path):
    run_train(packed, tmp_path / "plain", max_epochs=1)
    run_train(packed, tmp_path / "aware", max_epochs=1, seq_disc_mismatch=1.0)
    plain, aware = history_rows(tmp_path / "plain")[0], history_rows(tmp_path / "aware")[0]
    assert plain["d_seq_mismatched"] == "" and 0 < float(aware["d_seq_mismatched"]) < 1
    assert float(aware["d_seq"]) > float(plain["d_seq"])  # a third term in its loss
    assert load_checkpoint(tmp_path / "aware" / "generator.pt")["train_config"]["seq_disc_mismatch"] == 1.0
    # benchmarks/seq_disc_audio.py: what the discriminator says of real windows with their own, shifted and
    # another clip's audio, and of generated ones (here a 3-step model: the figures, not their order)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from seq_disc_audio import KINDS, probe

    ckpt = tmp_path / "aware" / "generator.pt"
    got = probe(ckpt, packed / "train.h5", windows=8, shift=3, batch=4)
    assert got["windows"] == 8 and all(0 < got[k] < 1 for k in KINDS) and 0 <= got["real_above_shifted"] <= 1
    assert len({round(got[k], 6) for k in KINDS}) == 4  # the four inputs are judged apart
    assert probe(ckpt, packed / "train.h5", windows=8, shift=3, batch=4) == got  # seeded
    with pytest.raises(SystemExit, match="no sequence discriminator"):
        probe(run_train(packed, tmp_path / "static", variant="static", max_epochs=1)["generator"], packed / "train.h5")


def test_resumed_training_equals_uninterrupted_training(packed, tmp_path, capsys):
    whole = tmp_path / "whole"
    run_train(packed, whole, max_epochs=2)
    split = tmp_path / "split"
    run_train(packed, split, max_epochs=1)
    capsys.readouterr()
    run_train(packed, split, max_epochs=2, keep_epochs=True)  # max_epochs, keep_epochs may change without starting over
    assert "resumed at epoch 1" in capsys.readouterr().err
    assert sorted(p.name for p in (split / "epochs").iterdir()) == ["epoch002.pt"]  # kept from the switch on
    kept = load_checkpoint(split / "epochs" / "epoch002.pt")
    assert kept["epoch"] == 2 and kept["history"] == load_checkpoint(split / "work" / "last.pt")["history"]
    a, b = load_checkpoint(whole / "work" / "last.pt"), load_checkpoint(split / "work" / "last.pt")
    for net in ("generator", "frame_discriminator", "sequence_discriminator"):
        for k, v in a[net].items():
            torch.testing.assert_close(b[net][k], v, rtol=0, atol=0, msg=f"{net}.{k}")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(history_rows(whole)) == drop(history_rows(split))


def test_other_settings_start_over(packed, tmp_path, capsys):
    out = tmp_path / "run"
    run_train(packed, out, max_epochs=1)
    capsys.readouterr()
    run_train(packed, out, max_epochs=1, lambda_l1=100.0)
    err = capsys.readouterr().err
    assert "train_config.lambda_l1 differ" in err and "starting over" in err
    assert load_checkpoint(out / "work" / "last.pt")["train_config"]["lambda_l1"] == 100.0
    assert [r["epoch"] for r in history_rows(out)] == ["1"]


def test_patience_stops_training_and_keeps_the_best(packed, tmp_path, capsys, monkeypatch):
    """Stop after `patience` epochs without a better validation score; generator.pt is the best epoch."""
    import speechanim.train as train_module

    scores = iter([20.0, 22.0, 21.0, 21.5, 21.9, 30.0])  # PSNR per epoch: best at epoch 2, then 3 worse
    real_validate = train_module.validate

    def scripted(*args, **kw):
        return {**real_validate(*args, **kw), "val_psnr": next(scores)}

    monkeypatch.setattr(train_module, "validate", scripted)
    out = tmp_path / "run"
    result = run_train(packed, out, max_epochs=10, patience=3, steps_per_epoch=1)
    rows = history_rows(out)
    assert [r["best"] for r in rows] == ["True", "True", "False", "False", "False"]
    assert result["epochs"] == 5 and result["best_epoch"] == 2 and result["best"] == 22.0
    assert load_generator(out / "generator.pt")[1]["epoch"] == 2
    assert load_checkpoint(out / "work" / "best.pt")["epoch"] == 2
    assert "no better validation psnr for 3 epochs (best: epoch 2)" in capsys.readouterr().err
    run_train(packed, out, max_epochs=10, patience=3, steps_per_epoch=1)  # already finished: trains no more
    assert len(history_rows(out)) == 5


def test_nan_loss_stops_with_an_error_and_keeps_the_last_checkpoint(packed, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(cli_args(packed, out, max_epochs=1)) == 0
    before = (out / "work" / "last.pt").read_bytes()
    capsys.readouterr()
    # same settings, so it resumes at epoch 1; the damaged file's audio is NaN: the first clip read is refused by name
    assert main(cli_args(packed, out, train_file="nan.h5", max_epochs=2)) == 1
    assert re.search(rf"error: {re.escape(str(packed / 'nan.h5'))}: clip s\d+/u0 has NaN or infinite audio",
                     capsys.readouterr().err)
    assert (out / "work" / "last.pt").read_bytes() == before
    # NaN that gets past the input checks (as a diverging network makes it) stops epoch 2 at once
    import speechanim.packing

    monkeypatch.setattr(speechanim.packing, "finite_audio", lambda samples, group: samples)
    assert main(cli_args(packed, out, train_file="nan.h5", max_epochs=2)) == 1
    err = capsys.readouterr().err
    assert "speechanim.train: error: non-finite loss at epoch 2, step 1/3" in err
    assert "last good checkpoint" in err and "(epoch 1) is kept" in err
    assert (out / "work" / "last.pt").read_bytes() == before
    assert load_checkpoint(out / "work" / "last.pt")["epoch"] == 1
    load_generator(out / "work" / "last.pt")


def test_cli_errors_name_the_problem(packed, tmp_path, capsys):
    cases = [
        (dict(train_file="missing.h5"), "missing.h5: no such file (training set)"),
        (dict(model={**TINY_MODEL, "image_size": [64, 48]}),
         "frames are 32x24 (HxW) but the model is configured for 64x48"),
        (dict(model={**TINY_MODEL, "sample_rate": 16000}), "audio is at 8000 Hz"),
        (dict(model={**TINY_MODEL, "widht": 1}), "--model: unknown setting(s) widht"),
        (dict(batch_size=100), "fewer than one batch of 100"),
        (dict(val_metric="ssim"), "--training: val_metric must be one of psnr, l1"),
    ]
    for kw, message in cases:
        assert main(cli_args(packed, tmp_path / "x", **kw)) == 1
        err = capsys.readouterr().err
        assert err.startswith("speechanim.train: error:") and message in err, err
    args = cli_args(packed, tmp_path / "x")
    args[args.index("--training") + 1] = "{batch_size: 4}"
    assert main(args) == 1 and "--training: not valid JSON" in capsys.readouterr().err


def test_cli_resumes_after_sigkill(packed, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "speechanim.train", *cli_args(packed, out, max_epochs=3)]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = out / "work" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err
    saved = load_checkpoint(last)["epoch"]
    assert 1 <= saved < 3
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resumed at epoch {saved}" in done.stderr
    assert [r["epoch"] for r in history_rows(out)] == ["1", "2", "3"]
    assert load_checkpoint(last)["epoch"] == 3 and (out / "generator.pt").is_file()


def test_torchrun_two_processes_on_gloo(packed, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "speechanim.train",
           *cli_args(packed, out, max_epochs=1, steps_per_epoch=2, batch_size=4)]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x 2 processes" in done.stderr
    assert done.stderr.count("epoch 1: L1") == 1  # rank 0 alone logs and writes
    rows = history_rows(out)
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["steps"] == "2"
    last = load_checkpoint(out / "work" / "last.pt")
    assert len(last["rng"]) == 2  # each process's random state, for an exact resume
    assert not any(k.startswith("module.") for k in last["generator"])  # saved unwrapped
    load_generator(out / "generator.pt")
