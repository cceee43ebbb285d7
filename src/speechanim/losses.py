"""The training objective of the temporal GAN (paper, section 3.3).

Equation 1, the adversarial loss, sums one term per discriminator::

    L_adv = E_x[log D_img(S(x), x_1)] + E_z[log(1 - D_img(S(G(z)), x_1))]
          + E_x[log D_seq(x, a)]      + E_z[log(1 - D_seq(G(z), a))]

``S`` samples one frame uniformly from a video and ``x_1`` is the still image (the clip's first
frame); D_seq judges the whole video together with its audio ``a``. Equation 2, the reconstruction
loss, is an L1 distance on the lower half of the frame only ("since it discourages the generation
of facial expressions"), and equation 3 trains ``argmin_G max_D L_adv + lambda * L_L1`` with
``lambda = 400``.

Implementation notes:

* The discriminators return logits (speechanim.models), so every ``log D`` term is a binary cross
  entropy with logits: the discriminators minimise ``BCE(D(real), 1) + BCE(D(fake), 0)``, which is
  ``-L_adv`` averaged over the batch.
* The generator uses the non-saturating form ``BCE(D(G(z)), 1)`` = ``-log D(G(z))`` instead of
  minimising ``log(1 - D(G(z)))``: the same fixed point with useful gradients early in training
  (Goodfellow et al. 2014, section 3). The paper does not say which form it uses.
* ``seq_mismatch`` (ours; 0, the paper's equation 1, by default): the sequence discriminator also
  judges each real video with another clip's audio, as fake, with this weight (a matching-aware
  discriminator, Reed et al. 2016). Trained on equation 1 alone it need not read the audio at all, and
  here it does not (docs/discriminators-and-sync.md).
* ``sync`` (ours, after the authors' journal version, IJCV 2020; the ``full_sync`` variant only): a
  synchronisation discriminator D_sync judges ``sync_disc_frames`` consecutive frames (0.2 s) with the
  same 0.2 s of audio. Real frames with their own audio are real; the same real frames with audio from
  at least one snippet away in the same clip, and generated frames with their audio, are fake ("in-sync
  pairs are treated as real; out-of-sync pairs and generated-video pairs as fake", the authors in their
  repository's issue 54). Its loss ``BCE(real, 1) + (BCE(shifted, 0) + BCE(generated, 0)) / 2`` weighs
  the two kinds of fake equally; the generator adds ``lambda_sync * BCE(D_sync(G(z) snippet, a), 1)``.
  One snippet per clip and step, at a uniform random start.
* Equation 2 writes a sum over the lower-half pixels; we take the mean (over pixels, channels,
  frames and clips), so ``lambda`` does not depend on the image size or batch. ``lambda = 400``
  against a mean L1 on [-1, 1] images is the usual pix2pix-style weighting.

Which terms a model is trained with depends on its variant (paper, Table 2 and section 4.4):
:data:`VARIANT_TERMS`.  The ``l1`` variant (Table 2's "L1 loss" row) applies the L1 loss to the
**entire frame**: Figure 4 shows that model as "(a) L1 loss on entire frame", and Table 2 credits it
with the best PSNR and SSIM, which a model with no loss at all on the upper half of the face could
not reach.  Every adversarial variant uses equation 2's lower-half L1 (:data:`VARIANT_L1`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: "The lambda hyperparameter ... was set to 400 following a tuning procedure on the validation set" (3.3).
LAMBDA_L1 = 400.0

#: The adversarial terms of each variant: ``img`` = frame discriminator, ``seq`` = sequence discriminator.
#: ``l1``, ``l1_advimg`` and ``full`` are the ablation of Table 2 (L1; L1 + Adv_img; L1 + Adv_img +
#: Adv_seq); ``static`` is the baseline of section 4.4: "a combination of an L1 loss and an adversarial
#: loss on individual frames".
VARIANT_TERMS: dict[str, tuple[str, ...]] = {
    "l1": (),
    "l1_advimg": ("img",),
    "full": ("img", "seq"),
    "static": ("img",),
    # beyond the paper: the full model plus the journal version's synchronisation discriminator
    "full_sync": ("img", "seq", "sync"),
}

#: Where each variant's L1 loss applies: the entire frame for the L1-only model (paper, Fig. 4a),
#: the lower half (equation 2) for the others.
VARIANT_L1: dict[str, str] = {"l1": "frame", "l1_advimg": "lower_half", "full": "lower_half", "static": "lower_half",
                              "full_sync": "lower_half"}

#: D_sync's weight in the generator's loss: the journal version's lambda_sync = 0.8 (against 1 for the frame
#: discriminator and 600 for its L1; IJCV 2020, as tuantran1810/face-image-generation reads it).
LAMBDA_SYNC = 0.8


def frame_l1(fake: Tensor, real: Tensor) -> Tensor:
    """Mean absolute difference over the entire frames (the ``l1`` variant, paper Fig. 4a)."""
    if fake.shape != real.shape:
        raise ValueError(f"generated frames {tuple(fake.shape)} and real frames {tuple(real.shape)} differ in shape")
    return (fake - real).abs().mean()


def lower_half_l1(fake: Tensor, real: Tensor) -> Tensor:
    """Equation 2: mean absolute difference over the lower half of the frames.

    ``fake`` and ``real`` ``(..., 3, H, W)``; rows ``H // 2`` to ``H - 1`` count, the upper half
    is ignored. Returns a scalar.
    """
    if fake.shape != real.shape:
        raise ValueError(f"generated frames {tuple(fake.shape)} and real frames {tuple(real.shape)} differ in shape")
    h = fake.shape[-2]
    return (fake[..., h // 2:, :] - real[..., h // 2:, :]).abs().mean()


def sample_frame_indices(batch: int, steps: int, device: torch.device | None = None,
                         generator: torch.Generator | None = None) -> Tensor:
    """The sampling function S: one frame index per clip, uniform over ``0 .. steps - 1``."""
    return torch.randint(0, steps, (batch,), device=device, generator=generator)


def sample_frames(video: Tensor, index: Tensor) -> Tensor:
    """``video (B, T, 3, H, W)`` and ``index (B,)`` -> frame ``index[b]`` of each clip, ``(B, 3, H, W)``."""
    return video[torch.arange(video.shape[0], device=video.device), index]


def min_snippet_steps(length: int) -> int:
    """The shortest training window in which every snippet has an out-of-sync partner (``sample_snippet_starts``)."""
    return 3 * length - 1


def sample_snippet_starts(batch: int, steps: int, length: int, device: torch.device | None = None,
                          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """D_sync's windows: a uniform start of a ``length``-frame snippet in each of ``batch`` clips of ``steps``
    frames, and a second start at least ``length`` frames away from it (out-of-sync audio), uniform over
    those. Every start has such a partner when ``steps >= 3 * length - 1`` (a snippet in the middle of a
    shorter clip has none)."""
    if steps < min_snippet_steps(length):
        raise ValueError(f"out-of-sync snippets need clips of >= {min_snippet_steps(length)} frames, got {steps}")
    last = steps - length  # the last start
    start = torch.randint(0, last + 1, (batch,), device=device, generator=generator)
    before = (start - length + 1).clamp_min(0)     # starts 0 .. start - length
    after = (last - start - length + 1).clamp_min(0)  # starts start + length .. last
    u = (torch.rand(batch, device=device, generator=generator) * (before + after)).long()
    shifted = torch.where(u < before, u, start + length + u - before)
    return start, shifted


def frame_snippets(video: Tensor, start: Tensor, length: int) -> Tensor:
    """``video (B, T, ...)`` -> frames ``start[b] .. start[b] + length - 1`` of each clip, ``(B, length, ...)``."""
    index = start[:, None] + torch.arange(length, device=video.device)
    return video[torch.arange(video.shape[0], device=video.device)[:, None], index]


def audio_snippets(audio: Tensor, start: Tensor, length: int, samples_per_frame: int) -> Tensor:
    """The raw audio under frames ``start[b] .. start[b] + length - 1``, ``(B, length * samples_per_frame)``,
    from the per-frame windows ``audio (B, T, window)``: each window is centred on its frame
    (speechanim.audio), so its middle ``samples_per_frame`` samples are that frame's own span."""
    offset = (audio.shape[-1] - samples_per_frame) // 2
    own = audio[..., offset:offset + samples_per_frame]
    return frame_snippets(own, start, length).flatten(1)


def discriminator_bce(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """A discriminator's loss, ``-(log D(real) + log(1 - D(fake)))`` batch-averaged."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_bce(fake_logits: Tensor) -> Tensor:
    """The generator's non-saturating adversarial loss, ``-log D(G(z))`` batch-averaged."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@dataclass
class Batch:
    """One training batch: ``still (B, 3, H, W)``, ``real (B, T, 3, H, W)`` in [-1, 1], ``audio (B, T, window)``."""

    still: Tensor
    real: Tensor
    audio: Tensor


class GANLoss:
    """Equations 1-3 for one variant.

    ``frame_disc`` and ``seq_disc`` are the discriminators the variant uses (None otherwise).
    :meth:`discriminator` gives the discriminators' loss on a batch and a detached fake video (the
    sequence discriminator judges the real and the fake video in one call, which encodes their
    common audio once: see :class:`speechanim.models.SequenceDiscriminator`);
    :meth:`generator` the generator's total ``L_adv + lambda * L_L1`` on the fake video (not detached).
    Both return ``(total, parts)`` where ``parts`` maps a name to a detached scalar for logging:
    ``d_img``, ``d_seq`` (losses) and ``d_img_real``, ``d_img_fake``, ``d_seq_real``, ``d_seq_fake``
    (mean probability the discriminator gives real and fake inputs; ``d_seq_mismatched`` for real
    videos with another clip's audio when ``seq_mismatch`` > 0); ``g_l1``, ``g_adv_img``,
    ``g_adv_seq``, ``g_total``; with D_sync, ``d_sync``, ``d_sync_real``, ``d_sync_shifted``,
    ``d_sync_fake`` and ``g_adv_sync``.

    ``sync_disc`` (the ``full_sync`` variant) needs ``samples_per_frame`` (audio samples per video frame)
    to cut its audio snippets from the per-frame windows.
    """

    def __init__(self, variant: str, frame_disc: nn.Module | None = None, seq_disc: nn.Module | None = None,
                 lambda_l1: float = LAMBDA_L1, seq_mismatch: float = 0.0, sync_disc: nn.Module | None = None,
                 lambda_sync: float = LAMBDA_SYNC, samples_per_frame: int | None = None):
        if variant not in VARIANT_TERMS:
            raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANT_TERMS)}")
        self.terms = VARIANT_TERMS[variant]
        self.l1 = frame_l1 if VARIANT_L1[variant] == "frame" else lower_half_l1
        for term, net, which in (("img", frame_disc, "frame"), ("seq", seq_disc, "sequence"),
                                 ("sync", sync_disc, "synchronisation")):
            if (term in self.terms) != (net is not None):
                need = "needs" if term in self.terms else "does not use"
                raise ValueError(f"variant {variant!r} {need} the {which} discriminator")
        self.sync_frames = 0
        if sync_disc is not None:
            core = getattr(sync_disc, "module", sync_disc)  # under DistributedDataParallel, the module it wraps
            self.sync_frames = core.frames
            if not samples_per_frame or samples_per_frame * core.frames != core.audio_samples:
                raise ValueError(f"the sync discriminator's {core.audio_samples} audio samples must span its "
                                 f"{core.frames} frames ({samples_per_frame} samples per frame): set "
                                 f"sync_disc_audio_s to sync_disc_frames / fps")
            if lambda_sync < 0:
                raise ValueError(f"lambda_sync must be >= 0, got {lambda_sync}")
        self.sync_disc, self.lambda_sync, self.samples_per_frame = sync_disc, lambda_sync, samples_per_frame
        if seq_mismatch < 0:
            raise ValueError(f"seq_mismatch must be >= 0, got {seq_mismatch}")
        self.frame_disc, self.seq_disc = frame_disc, seq_disc
        self.lambda_l1 = lambda_l1
        self.seq_mismatch = seq_mismatch if "seq" in self.terms else 0.0

    @property
    def adversarial(self) -> bool:
        return bool(self.terms)

    def discriminator(self, batch: Batch, fake: Tensor,
                      generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
        """The discriminators' loss, ``-L_adv`` (eq. 1); ``fake`` should be detached from the generator."""
        total, parts = batch.real.new_zeros(()), {}
        if "img" in self.terms:
            b, t = batch.real.shape[:2]
            # S(x) and S(G(z)): independent uniform draws for the real and the generated video.
            real = sample_frames(batch.real, sample_frame_indices(b, t, batch.real.device, generator))
            fake_frame = sample_frames(fake, sample_frame_indices(b, t, fake.device, generator))
            r, f = self.frame_disc(real, batch.still), self.frame_disc(fake_frame, batch.still)
            parts["d_img"] = loss = discriminator_bce(r, f)
            parts["d_img_real"], parts["d_img_fake"] = torch.sigmoid(r).mean(), torch.sigmoid(f).mean()
            total = total + loss
        if "seq" in self.terms:
            if self.seq_mismatch:  # also the real video with another clip's audio, judged as fake
                r, f, m = self.seq_disc([batch.real, fake], batch.audio, mismatched=True)
                wrong = F.binary_cross_entropy_with_logits(m, torch.zeros_like(m))
                loss = discriminator_bce(r, f) + self.seq_mismatch * wrong
                parts["d_seq_mismatched"] = torch.sigmoid(m).mean()
            else:
                r, f = self.seq_disc([batch.real, fake], batch.audio)  # one audio encoding for both
                loss = discriminator_bce(r, f)
            parts["d_seq"] = loss
            parts["d_seq_real"], parts["d_seq_fake"] = torch.sigmoid(r).mean(), torch.sigmoid(f).mean()
            total = total + loss
        if "sync" in self.terms:
            b, t = batch.real.shape[:2]
            n = self.sync_frames
            start, shifted = sample_snippet_starts(b, t, n, batch.real.device, generator)
            real, sound = frame_snippets(batch.real, start, n), self.snippet_audio(batch.audio, start)
            r = self.sync_disc(real, sound)
            s = self.sync_disc(real, self.snippet_audio(batch.audio, shifted))
            f = self.sync_disc(frame_snippets(fake, start, n), sound)
            bce = F.binary_cross_entropy_with_logits
            parts["d_sync"] = loss = (bce(r, torch.ones_like(r))
                                      + (bce(s, torch.zeros_like(s)) + bce(f, torch.zeros_like(f))) / 2)
            parts["d_sync_real"], parts["d_sync_shifted"], parts["d_sync_fake"] = (
                torch.sigmoid(r).mean(), torch.sigmoid(s).mean(), torch.sigmoid(f).mean())
            total = total + loss
        return total, {k: v.detach() for k, v in parts.items()}

    def snippet_audio(self, audio: Tensor, start: Tensor) -> Tensor:
        """D_sync's audio snippets at ``start`` from the batch's per-frame windows."""
        return audio_snippets(audio, start, self.sync_frames, self.samples_per_frame)

    def generator(self, batch: Batch, fake: Tensor, generator: torch.Generator | None = None,
                  frame_disc: nn.Module | None = None, seq_disc: nn.Module | None = None,
                  sync_disc: nn.Module | None = None) -> tuple[Tensor, dict]:
        """The generator's objective ``L_adv + lambda * L_L1`` (eq. 3).

        ``frame_disc`` / ``seq_disc`` override the discriminators for this call (the trainer passes
        the unwrapped modules under DistributedDataParallel, since their gradients are not wanted).
        """
        parts = {"g_l1": self.l1(fake, batch.real)}
        total = self.lambda_l1 * parts["g_l1"]
        if "img" in self.terms:
            d = frame_disc or self.frame_disc
            frame = sample_frames(fake, sample_frame_indices(fake.shape[0], fake.shape[1], fake.device, generator))
            parts["g_adv_img"] = generator_bce(d(frame, batch.still))
            total = total + parts["g_adv_img"]
        if "seq" in self.terms:
            d = seq_disc or self.seq_disc
            parts["g_adv_seq"] = generator_bce(d(fake, batch.audio))
            total = total + parts["g_adv_seq"]
        if "sync" in self.terms:
            d, n = sync_disc or self.sync_disc, self.sync_frames
            start, _ = sample_snippet_starts(fake.shape[0], fake.shape[1], n, fake.device, generator)
            parts["g_adv_sync"] = generator_bce(d(frame_snippets(fake, start, n), self.snippet_audio(batch.audio, start)))
            total = total + self.lambda_sync * parts["g_adv_sync"]
        parts["g_total"] = total
        return total, {k: v.detach() for k, v in parts.items()}


__all__ = ["LAMBDA_L1", "LAMBDA_SYNC", "VARIANT_L1", "VARIANT_TERMS", "frame_l1", "lower_half_l1", "sample_frame_indices",
           "sample_frames", "min_snippet_steps", "sample_snippet_starts", "frame_snippets", "audio_snippets",
           "discriminator_bce", "generator_bce", "Batch", "GANLoss"]
