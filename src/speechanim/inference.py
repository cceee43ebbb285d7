"""A faster, inference-only form of the trained generator's frame decoder (same fp32 arithmetic).

Three exact rewrites of :class:`speechanim.models.FrameDecoder` in eval mode:

* every batch norm is folded into the convolution before it (eval statistics are an affine map);
* the parts that depend only on the still are computed once per clip: each U-Net block's 3x3 mix
  conv reads ``cat([x, skip])``, and a convolution is linear in its input channels, so
  ``conv(cat([x, skip])) = conv_x(x) + conv_skip(skip)``, with ``conv_skip(skip)`` a per-clip
  constant (about a third of the decoder's multiply-adds); the same holds for z_id's share of the
  first projection and, with every U-Net level, for the still's share of the last conv;
* a transposed conv over few pixels (the deepest blocks when streaming one frame) runs as one
  matrix product and ``fold`` (col2im): oneDNN's kernel is several times slower there, since those
  layers only read weights.

The frames equal the plain decoder's up to float rounding (tests check 1e-4); ``benchmarks/
bench_generator.py`` prints the speed of both.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import FrameDecoder, Generator, GeneratorState, IdentityCode

__all__ = ["FastDecoder", "PreparedIdentity", "FastGenerator"]

#: A transposed conv over at most this many input pixels (batch x height x width) runs as a matrix
#: product and fold when it upsamples (stride 2) or runs in bfloat16; otherwise PyTorch's own kernel is
#: as fast or faster (CPU time per layer at batch 1 and 75, 1 thread, on an AVX-512 BF16 CPU).
GEMM_PIXELS = 48


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class _ConvT:
    """A transposed conv (no bias) followed by batch norm, folded: weight ``(Cin, Cout, kh, kw)``."""

    def __init__(self, conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None, dtype: torch.dtype = torch.float32):
        w = conv.weight.detach()
        if bn is None:
            self.weight, self.bias = w.to(dtype, copy=True), None
        else:
            scale, shift = _bn_affine(bn)
            self.weight, self.bias = (w * scale[None, :, None, None]).to(dtype), shift.detach().to(dtype)
        self.k, self.stride, self.padding = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding)
        self.matrix = self.weight.reshape(self.weight.shape[0], -1).t().contiguous()  # (Cout kh kw, Cin)

    def split(self, channels: int) -> tuple[_ConvT, _ConvT]:
        """The conv over the first ``channels`` input channels and the one over the rest (no bias)."""
        first, rest = _ConvT.__new__(_ConvT), _ConvT.__new__(_ConvT)
        for part, w, b in ((first, self.weight[:channels], self.bias), (rest, self.weight[channels:], None)):
            part.weight, part.bias = w.contiguous(), b
            part.k, part.stride, part.padding = self.k, self.stride, self.padding
            part.matrix = part.weight.reshape(w.shape[0], -1).t().contiguous()
        return first, rest

    def __call__(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        gemm = n * h * w <= GEMM_PIXELS and (max(self.stride) > 1 or self.weight.dtype == torch.bfloat16)
        if not gemm:
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding)
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.stride, self.padding
        out_size = ((h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw)
        cols = self.matrix @ x.reshape(n, c, h * w)  # (N, Cout kh kw, h w)
        y = F.fold(cols, out_size, self.k, stride=self.stride, padding=self.padding)
        return y if self.bias is None else y + self.bias[None, :, None, None]


@dataclass
class PreparedIdentity:
    """Per-clip constants of one still: z_id's share of the projection and each skip's share of the
    block it joins (batch norm bias included), ``(B, C, h, w)`` each."""

    project: Tensor
    blocks: list[Tensor]
    rgb: Tensor | None  # the still's share of the last conv (every U-Net level only)


class FastDecoder:
    """:class:`FrameDecoder` rewritten for inference (see the module docstring); built from a
    decoder's current weights, which must then not change (rebuild after loading new ones)."""

    @torch.no_grad()
    def __init__(self, decoder: FrameDecoder, id_dim: int, dtype: torch.dtype = torch.float32):
        if decoder.training:
            raise ValueError("FastDecoder needs the decoder in eval mode (batch norm's running statistics)")
        self.dtype = dtype
        conv, bn = decoder.project[0], decoder.project[1]
        self.project_id, self.project_rest = _ConvT(conv, bn, dtype).split(id_dim)
        self.mix, self.mix_skip, self.up = [], [], []
        for block in decoder.blocks:
            x_part, skip_part = _ConvT(block.mix[0], block.mix[1], dtype).split(block.mix[0].in_channels // 2)
            self.mix.append(x_part)
            self.mix_skip.append(skip_part)
            self.up.append(_ConvT(block.up[0], block.up[1], dtype))
        self.all_levels = decoder.all_levels
        if self.all_levels:  # a 3x3 conv over cat([x, still])
            w = decoder.to_rgb.weight.detach().to(dtype)
            self.rgb_weight, self.rgb_still_weight = w[:, :-3].contiguous(), w[:, -3:].contiguous()
        else:
            self.to_rgb = _ConvT(decoder.to_rgb, None, dtype)

    @torch.no_grad()
    def prepare(self, identity: IdentityCode) -> PreparedIdentity:
        """The per-clip constants of ``identity`` (skips deepest first, as the decoder takes them)."""
        z_id = identity.z_id[:, :, None, None].to(self.dtype)
        project = self.project_id(z_id)
        blocks = [skip_part(skip.to(self.dtype)) for skip_part, skip in zip(self.mix_skip, identity.skips)]
        rgb = F.conv2d(identity.skips[-1].to(self.dtype), self.rgb_still_weight, padding=1) if self.all_levels else None
        return PreparedIdentity(project, blocks, rgb)

    @torch.no_grad()
    def __call__(self, prepared: PreparedIdentity, latent_rest: Tensor, frames_per_clip: int) -> Tensor:
        """``latent_rest (B * T, context_dim + noise_dim)`` (clip-major) -> frames ``(B * T, 3, H, W)``."""
        t = frames_per_clip

        def add(y: Tensor, const: Tensor) -> Tensor:  # y (B*T, C, h, w) + const (B, C, h, w) per clip
            return (y.view(-1, t, *y.shape[1:]) + const[:, None]).view(y.shape)

        x = torch.relu(add(self.project_rest(latent_rest[:, :, None, None].to(self.dtype)), prepared.project))
        for mix, up, const in zip(self.mix, self.up, prepared.blocks):
            x = up(torch.relu(add(mix(x), const))).relu_()
        if self.all_levels:
            x = add(F.conv2d(x, self.rgb_weight, padding=1), prepared.rgb)
        else:
            x = self.to_rgb(x)
        return torch.tanh(x.float())


class FastGenerator:
    """A :class:`Generator` in eval mode with its decoder replaced by :class:`FastDecoder`; the
    same ``encode_identity`` / ``init_state`` / ``run`` / ``step`` calls, the same frames (up to
    float rounding). The identity code it takes is :meth:`encode_identity`'s."""

    def __init__(self, generator: Generator, dtype: torch.dtype = torch.float32):
        self.generator = generator.eval()
        self.cfg = generator.cfg
        self.decoder = FastDecoder(generator.frame_decoder, generator.cfg.id_dim, dtype)

    @torch.no_grad()
    def encode_identity(self, still: Tensor) -> tuple[IdentityCode, PreparedIdentity]:
        identity = self.generator.encode_identity(still)
        return identity, self.decoder.prepare(identity)

    def init_state(self, batch: int, device: torch.device | None = None) -> GeneratorState:
        return self.generator.init_state(batch, device)

    @torch.no_grad()
    def run(self, identity: tuple[IdentityCode, PreparedIdentity], audio: Tensor, noise: Tensor,
            state: GeneratorState | None = None) -> tuple[Tensor, GeneratorState]:
        """As :meth:`Generator.run`: ``audio (B, T, window)``, ``noise (B, T, noise_dim)`` ->
        ``frames (B, T, 3, H, W)`` and the state after them."""
        g = self.generator
        b, t = audio.shape[:2]
        state = state or GeneratorState(None, None)
        z_c, h_c = g.context_encoder(audio, state.context)
        z_n, h_n = g.noise_generator(noise, state.noise)
        frames = self.decoder(identity[1], torch.cat([z_c, z_n], -1).reshape(b * t, -1), t)
        return frames.view(b, t, *frames.shape[1:]), GeneratorState(h_c, h_n)

    def step(self, identity: tuple[IdentityCode, PreparedIdentity], audio_window: Tensor, state: GeneratorState,
             noise: Tensor) -> tuple[Tensor, GeneratorState]:
        """One frame: ``audio_window (B, window)``, ``noise (B, noise_dim)`` -> ``(B, 3, H, W)`` and the state."""
        frames, state = self.run(identity, audio_window[:, None], noise[:, None], state)
        return frames[:, 0], state
