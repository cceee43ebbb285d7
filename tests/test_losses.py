"""The samplers and snippet cutters of speechanim.losses on inputs whose answer is known (tests/test_train.py
has the losses' values for known logits, tests/test_sync_disc.py the snippets' statistics)."""
from __future__ import annotations

import math

import pytest
import torch

from speechanim.losses import (LAMBDA_L1, Batch, GANLoss, frame_l1, frame_snippets, lower_half_l1, min_snippet_steps,
                               sample_frame_indices, sample_snippet_starts)


def test_frame_indices_come_from_the_given_generator_only():
    state = torch.get_rng_state()
    a = sample_frame_indices(50, 7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    assert torch.equal(a, sample_frame_indices(50, 7, generator=torch.Generator().manual_seed(3)))
    assert a.shape == (50,) and a.dtype == torch.int64 and 0 <= a.min() and a.max() <= 6


class _Const(torch.nn.Module):
    """A frame or sequence discriminator answering one logit whatever it is shown."""

    def forward(self, frames, *rest, **kw):
        n = frames[0].shape[0] if isinstance(frames, list) else frames.shape[0]
        out = torch.full((n,), 0.5)
        return out if not isinstance(frames, list) else torch.stack([out] * (len(frames) + bool(kw.get("mismatched"))))


class _Sync(torch.nn.Module):
    """A stand-in D_sync of 5 frames and 5 x 10 audio samples: the snippet's mean minus its audio's."""

    frames, audio_samples = 5, 50

    def forward(self, frames, audio):
        return frames.mean((1, 2, 3, 4)) - audio.mean(1)


class _Wrapped(torch.nn.Module):
    """What DistributedDataParallel looks like to GANLoss: the discriminator under ``.module``."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)


def _batch(b: int = 2, t: int = 16) -> tuple[Batch, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(b, t, 3, 8, 6, generator=g)
    return Batch(torch.zeros(b, 3, 8, 6), real, torch.rand(b, t, 30, generator=g)), torch.rand(b, t, 3, 8, 6, generator=g)


@pytest.mark.parametrize("variant", ["l1_advimg", "full", "static", "full_sync"])
def test_every_draw_of_the_losses_comes_from_the_given_generator(variant):
    """Seeded: the same seed gives the same losses, and the global RNG stream is neither read nor moved."""
    nets = {"l1_advimg": (_Const(), None, None), "static": (_Const(), None, None), "full": (_Const(), _Const(), None),
            "full_sync": (_Const(), _Const(), _Wrapped(_Sync()))}[variant]
    loss = GANLoss(variant, nets[0], nets[1], sync_disc=nets[2], samples_per_frame=10 if nets[2] else None,
                   seq_mismatch=0.5 if nets[1] else 0.0)
    batch, fake = _batch()
    state = torch.get_rng_state()
    runs = [(loss.discriminator(batch, fake, generator=torch.Generator().manual_seed(5))[1],
             loss.generator(batch, fake, generator=torch.Generator().manual_seed(5))[1]) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    (d1, g1), (d2, g2) = runs
    assert d1.keys() == d2.keys() and all(torch.equal(d1[k], d2[k]) for k in d1)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[k], g2[k]) for k in g1)


def test_gan_loss_settings_and_their_errors():
    assert min_snippet_steps(5) == 14 and min_snippet_steps(1) == 2
    assert sample_snippet_starts(3, 2, 1, generator=torch.Generator().manual_seed(0))[0].shape == (3,)
    assert not GANLoss("l1").adversarial and GANLoss("static", _Const()).adversarial
    assert LAMBDA_L1 == 400
    batch, fake = _batch()
    total, parts = GANLoss("l1", lambda_l1=10.0).generator(batch, fake)
    assert total.item() == pytest.approx(10 * frame_l1(fake, batch.real).item(), rel=1e-6)
    assert parts["g_total"].item() == pytest.approx(total.item()) and not parts["g_total"].requires_grad
    loss = GANLoss("full_sync", _Const(), _Const(), sync_disc=_Wrapped(_Sync()), samples_per_frame=10)
    assert loss.sync_frames == 5 and loss.lambda_sync == 0.8 and loss.samples_per_frame == 10
    with pytest.raises(ValueError, match=r"^unknown variant 'both'; one of l1, l1_advimg, full, static, full_sync$"):
        GANLoss("both")
    with pytest.raises(ValueError, match=r"^variant 'static' needs the frame discriminator$"):
        GANLoss("static")
    with pytest.raises(ValueError, match=r"^variant 'l1' does not use the sequence discriminator$"):
        GANLoss("l1", seq_disc=_Const())
    with pytest.raises(ValueError, match=r"^the sync discriminator's 50 audio samples must span its 5 frames \(None "
                                         r"samples per frame\): set sync_disc_audio_s to sync_disc_frames / fps$"):
        GANLoss("full_sync", _Const(), _Const(), sync_disc=_Sync())
    with pytest.raises(ValueError, match=r"^lambda_sync must be >= 0, got -0\.1$"):
        GANLoss("full_sync", _Const(), _Const(), sync_disc=_Sync(), samples_per_frame=10, lambda_sync=-0.1)
    GANLoss("full_sync", _Const(), _Const(), sync_disc=_Sync(), samples_per_frame=10, lambda_sync=0.0)
    with pytest.raises(ValueError, match=r"^seq_mismatch must be >= 0, got -1\.0$"):
        GANLoss("full", _Const(), _Const(), seq_mismatch=-1.0)
    for l1 in (frame_l1, lower_half_l1):
        with pytest.raises(ValueError, match=r"^generated frames \(1, 3, 4, 4\) and real frames \(1, 3, 4, 5\) differ "
                                             r"in shape$"):
            l1(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def _sp(x: float) -> float:
    """``log(1 + e^x)``: BCE with logits of logit ``x`` is ``sp(-x)`` against 1 and ``sp(x)`` against 0."""
    return math.log1p(math.exp(x))


class _ConstSync(torch.nn.Module):
    """A D_sync of 5 frames and 5 x 10 audio samples answering logit 1 whatever it is shown."""

    frames, audio_samples = 5, 50

    def forward(self, frames, audio):
        return torch.ones(frames.shape[0], device=frames.device)


def test_discriminator_total_adds_every_term_of_full_sync():
    """Frame and sequence logits 0.5, D_sync's 1: d_img = d_seq = sp(-0.5) + sp(0.5) (real against 1, fake
    against 0), d_sync = sp(-1) + (sp(1) + sp(1)) / 2 (real against 1; shifted and generated against 0,
    half each); the discriminators' total is their sum."""
    loss = GANLoss("full_sync", _Const(), _Const(), sync_disc=_ConstSync(), samples_per_frame=10)
    batch, fake = _batch()
    total, parts = loss.discriminator(batch, fake, generator=torch.Generator().manual_seed(0))
    pair = _sp(-0.5) + _sp(0.5)
    assert parts["d_img"].item() == pytest.approx(pair, rel=1e-6) and parts["d_seq"].item() == pytest.approx(pair, rel=1e-6)
    assert parts["d_sync"].item() == pytest.approx(_sp(-1) + _sp(1), rel=1e-6)
    assert total.item() == pytest.approx(2 * pair + _sp(-1) + _sp(1), rel=1e-6)


class _Seen(torch.nn.Module):
    """A frame discriminator that records the value of each frame it is shown (frame ``t`` holds ``t``)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, frames, still):
        self.seen += frames[:, 0, 0, 0].tolist()
        return frames[:, 0, 0, 0]


def test_generators_frame_term_draws_from_every_time_step():
    """S(G(z)) is uniform over all T = 16 frames of the generated clip (not over its 3 channels): with 200
    clips every frame is drawn (each is missed with probability (15/16)^200 < 1e-5), and clip b's frame is
    the b-th index of the seeded generator's first draw."""
    b, t = 200, 16
    fake = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1, 1).expand(b, t, 3, 4, 4)
    disc = _Seen()
    batch = Batch(torch.zeros(b, 3, 4, 4), torch.zeros(b, t, 3, 4, 4), torch.zeros(b, t, 30))
    GANLoss("static", disc).generator(batch, fake, generator=torch.Generator().manual_seed(4))
    assert set(disc.seen) == set(range(t))
    assert disc.seen == sample_frame_indices(b, t, generator=torch.Generator().manual_seed(4)).float().tolist()


# PyTorch loads its "meta" device kernels at their first use (2-3 s): load them when this file is imported, so that
# test runs forked after collection (mutmut's, one per mutant) start with them loaded
torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(1, device="meta"), torch.zeros(1, device="meta"))
torch.randint(0, 2, (1,), device="meta")


class _OnDevice(_Const):
    """_Const, answering on the device of the frames it is shown."""

    def forward(self, frames, *rest, **kw):
        return super().forward(frames, *rest, **kw).to(frames[0].device if isinstance(frames, list) else frames.device)


def test_samplers_and_losses_make_their_tensors_on_the_inputs_device():
    """On a GPU every index, start and loss must be made on the batch's device: one made on the CPU mixes
    devices and fails there. PyTorch's "meta" device (shapes, no values) stands in for the GPU: a CPU tensor
    added to or multiplied with a meta tensor raises, as it would with a CUDA one."""
    meta = torch.device("meta")
    assert sample_frame_indices(3, 7, meta).device == meta
    start, shifted = sample_snippet_starts(3, 16, 5, meta)
    assert start.device == meta and shifted.device == meta
    video = torch.zeros(3, 16, 3, 8, 6, device=meta)
    assert frame_snippets(video, start, 5).shape == (3, 5, 3, 8, 6)
    batch = Batch(torch.zeros(2, 3, 8, 6, device=meta), torch.zeros(2, 16, 3, 8, 6, device=meta),
                  torch.zeros(2, 16, 30, device=meta))
    loss = GANLoss("full_sync", _OnDevice(), _OnDevice(), sync_disc=_Sync(), samples_per_frame=10)
    for total, parts in (loss.discriminator(batch, batch.real), loss.generator(batch, batch.real)):
        assert total.device == meta and all(v.device == meta for v in parts.values())
