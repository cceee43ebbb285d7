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

__all__ = ["PRECISIONS", "FastDecoder", "PreparedIdentity", "FastGenerator"]

#: The arithmetic FastGenerator can run its decoder in.
PRECISIONS = ("fp32", "bf16", "int8")

#: A transposed conv over at most this many input pixels (batch x height x width) runs as a matrix
#: product and fold when it upsamples (stride 2) or runs in bfloat16; otherwise PyTorch's own kernel is
#: as fast or faster (CPU time per layer at batch 1 and 75, 1 thread, on an AVX-512 BF16 CPU).
GEMM_PIXELS = 48


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class _ConvT:
    """A transposed conv, its batch norm folded in: ``weight (Cin, Cout, kh, kw)``, ``bias (Cout,)`` or None.

    ``int8``: its matrix-product path (few pixels: where the weights, not the arithmetic, cost the
    time) uses int8 weights (per output channel) and dynamically quantised activations (PyTorch's
    fbgemm ``quantize_dynamic``), a quarter of fp32's memory traffic; the other path stays in ``dtype``.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, k, stride, padding, dtype: torch.dtype, int8: bool = False):
        self.weight = weight.detach().to(dtype).contiguous()
        self.bias = None if bias is None else bias.detach().to(dtype)
        self.k, self.stride, self.padding = tuple(k), tuple(stride), tuple(padding)
        matrix = weight.detach().float().reshape(weight.shape[0], -1).t().contiguous()  # (Cout kh kw, Cin)
        self.matrix = matrix.to(dtype)
        self.qlinear = _int8_linear(matrix) if int8 else None

    @classmethod
    def of(cls, conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None, dtype: torch.dtype, int8: bool = False) -> _ConvT:
        w = conv.weight.detach()
        bias = None
        if bn is not None:
            scale, bias = _bn_affine(bn)
            w = w * scale[None, :, None, None]
        return cls(w, bias, conv.kernel_size, conv.stride, conv.padding, dtype, int8)

    def split(self, channels: int) -> tuple[_ConvT, _ConvT]:
        """The conv over the first ``channels`` input channels (with the bias) and the one over the rest."""
        w, args = self.weight.float(), (self.k, self.stride, self.padding, self.weight.dtype, self.qlinear is not None)
        return _ConvT(w[:channels], self.bias, *args), _ConvT(w[channels:], None, *args)

    def __call__(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        low = self.weight.dtype == torch.bfloat16 or self.qlinear is not None
        if not (n * h * w <= GEMM_PIXELS and (max(self.stride) > 1 or low)):
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding)
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.stride, self.padding
        out_size = ((h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw)
        if self.qlinear is not None:
            rows = self.qlinear(x.float().reshape(n, c, h * w).transpose(1, 2).reshape(n * h * w, c))
            cols = rows.reshape(n, h * w, -1).transpose(1, 2).to(x.dtype)
        else:
            cols = self.matrix @ x.reshape(n, c, h * w)  # (N, Cout kh kw, h w)
        y = F.fold(cols, out_size, self.k, stride=self.stride, padding=self.padding)
        return y if self.bias is None else y + self.bias[None, :, None, None]


def _int8_linear(matrix: Tensor) -> nn.Module:
    """``x @ matrix.T`` with int8 weights per output channel and dynamically quantised inputs (CPU, fbgemm)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    linear = nn.Linear(matrix.shape[1], matrix.shape[0], bias=False)
    linear.weight.data.copy_(matrix)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(nn.Sequential(linear), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


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
    def __init__(self, decoder: FrameDecoder, id_dim: int, dtype: torch.dtype = torch.float32, int8: bool = False):
        if decoder.training:
            raise ValueError("FastDecoder needs the decoder in eval mode (batch norm's running statistics)")
        self.dtype = dtype
        conv, bn = decoder.project[0], decoder.project[1]
        self.project_id, self.project_rest = _ConvT.of(conv, bn, dtype, int8).split(id_dim)
        self.mix, self.mix_skip, self.up = [], [], []
        for block in decoder.blocks:
            x_part, skip_part = _ConvT.of(block.mix[0], block.mix[1], dtype, int8).split(block.mix[0].in_channels // 2)
            self.mix.append(x_part)
            self.mix_skip.append(skip_part)
            self.up.append(_ConvT.of(block.up[0], block.up[1], dtype, int8))
        self.all_levels = decoder.all_levels
        if self.all_levels:  # a 3x3 conv over cat([x, still])
            w = decoder.to_rgb.weight.detach().to(dtype)
            self.rgb_weight, self.rgb_still_weight = w[:, :-3].contiguous(), w[:, -3:].contiguous()
        else:
            self.to_rgb = _ConvT.of(decoder.to_rgb, None, dtype)

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
    float rounding in fp32). The identity code it takes is :meth:`encode_identity`'s.

    ``precision``: ``"fp32"``, ``"bf16"`` (the decoder in bfloat16) or ``"int8"`` (bf16, and int8
    weights for the few-pixel layers of streaming; CPU only).
    """

    def __init__(self, generator: Generator, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dev = next(generator.parameters()).device
        if precision == "int8" and dev.type != "cpu":
            raise ValueError(f"precision int8 runs on the CPU only (fbgemm); this generator is on {dev}")
        self.generator = generator.eval()
        self.cfg = generator.cfg
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        self.decoder = FastDecoder(generator.frame_decoder, generator.cfg.id_dim, dtype, int8=precision == "int8")

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
