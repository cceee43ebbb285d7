"""The temporal GAN of Vougioukas, Petridis and Pantic (BMVC 2018), sections 3.1-3.2.

Generator (Fig. 3a)::

    still ──IdentityEncoder──> z_id (+ feature maps for the U-Net skips)
    audio windows ──ContextEncoder (1-D CNN per window, then a 2-layer GRU)──> z_c, one per frame
    Gaussian noise ──NoiseGenerator (1-layer GRU)──> z_n, one per frame
    [z_id, z_c, z_n] ──FrameDecoder (strided transposed convs + skips)──> frame in [-1, 1]

Discriminators (section 3.2): ``FrameDiscriminator`` judges one frame next to the still image;
``SequenceDiscriminator`` judges a whole (video, audio) pair with a GRU.

The paper gives the layer types and the sizes of z_id, z_c and z_n; it leaves channel counts,
kernels and strides to its supplementary material. For those this file follows the authors'
released inference code, GitHub DinoMan/speech-driven-animation (read only, nothing copied):
``sda/encoder_image.py`` (identity encoder), ``sda/encoder_audio.py`` (audio frame encoder),
``sda/rnn_audio.py`` (context GRU), ``sda/img_generator.py`` (frame decoder, noise GRU) and
``sda/sda.py`` (how they are wired, the noise distribution). Comments cite the file a fact comes from.
The discriminators are not in that code; where the paper is silent about them the choices are ours
and marked so.

Shapes: images are ``(3, H, W)`` with ``H`` rows and ``W`` columns (the GRID model is 128 x 96, a
portrait crop); audio is one window of ``window`` raw samples per video frame, ``(B, T, window)``.
Everything here works on CPU or GPU; :func:`device` picks CUDA when there is one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def device() -> torch.device:
    """The device to run on: CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: The U-Net skip levels ModelConfig.unet_skips names.
UNET_SKIPS = ("authors", "all")


@dataclass
class ModelConfig:
    """Every size of the networks. Defaults are the paper's GRID model."""

    # (H, W) of the still and the generated frames: 128 rows x 96 columns in the authors' GRID model
    # (sda/sda.py resizes to model_dict["img_size"]; their example still is 96 wide, 128 high).
    image_size: tuple[int, int] = (128, 96)
    # Raw-audio sample rate. The project packs at 16 kHz; an imported authors' checkpoint (speechanim.sda) brings
    # its own (their GRID audio is 50 kHz; the files' first audio conv sizes suggest 40-48 kHz for grid/timit.dat).
    sample_rate: int = 16000
    # "divided into overlapping frames each corresponding to 0.16 seconds" (paper, 3.1).
    audio_window_s: float = 0.16
    # First audio conv: 5 ms kernel, 1 ms stride, scaled by the rate
    # (sda/sda.py: RNN(..., init_kernel=0.005, init_stride=0.001)).
    audio_init_kernel_s: float = 0.005
    audio_init_stride_s: float = 0.001
    # z_id: "reduces the input image to a 50 dimensional encoding" (paper, 3.1.1);
    # the authors' released checkpoints use 128.
    id_dim: int = 50
    # Per-window audio embedding fed to the context GRU. The paper says only "an embedding of the
    # desired size" (3.1.2); the authors' code reads it from the checkpoint (sda/sda.py aud_enc_dim).
    # 256 is our choice; the size of their released GRID checkpoint (221,179,358 bytes, LFS pointer
    # sda/data/grid.dat) matches this module's generator built with id_dim=128, audio_feat_dim=256,
    # 0.2 s windows at 40-50 kHz to within a few kB (an inference, not a documented value).
    audio_feat_dim: int = 256
    # z_c: "a 2 layer GRU, which produces a context encoding z_c with 256 elements" (paper, 3.1.2).
    context_dim: int = 256
    context_layers: int = 2
    # z_n: "The 10-dimensional z_n vector is obtained from a Noise Generator, which is a 1-layer GRU
    # that takes Gaussian noise as input" (paper, 3.1.3).
    noise_dim: int = 10
    # Noise is N(0, 0.33) (sda/sda.py: normal_(0, 0.33)).
    noise_std: float = 0.33
    # Image CNNs start at 64 feature maps and double per strided layer
    # (sda/encoder_image.py: num_feature_maps=64); the decoder mirrors them (sda/sda.py).
    image_channels: int = 64
    # The audio CNN starts at 16 feature maps and doubles per layer after the first
    # (sda/encoder_audio.py: num_feature_maps=16).
    audio_channels: int = 16
    # Multiplier on every convolutional width (1.0 = the paper's model; smaller for CPU tests).
    width: float = 1.0
    # Static baseline (paper, 4.4): each frame from its own audio window and the still, no GRUs.
    static: bool = False
    # The U-Net's skip levels (paper 3.1.3 names no levels): "authors" leaves out the encoder's
    # shallowest map, as sda/img_generator.py does (finest skip a quarter of the frame size);
    # "all" uses every map and the still itself at full resolution (docs/generator-ceiling.md).
    unet_skips: str = "authors"
    # --- Discriminators: the paper gives only their layout (3.2); these sizes are our choices. ---
    # Frame discriminator: the identity encoder's layout (6 layers at 128 x 96) on 6 channels.
    frame_disc_channels: int = 64
    # Sequence discriminator: per-frame image code, per-window audio code, 2-layer GRU, classifier.
    seq_disc_channels: int = 64
    seq_disc_image_dim: int = 128
    seq_disc_audio_dim: int = 256
    seq_disc_hidden: int = 256  # "fed into a 2-layer GRU" (paper, 3.2.2); size ours (= z_c's)
    seq_disc_layers: int = 2
    seq_disc_classifier_hidden: int = 128  # "A small (2-layer) classifier" (paper, 3.2.2)
    leaky_slope: float = 0.2  # discriminators use LeakyReLU (DCGAN convention; ours)
    # --- Synchronisation discriminator: not in the paper; the authors' journal version (Vougioukas et al.,
    # "Realistic Speech-Driven Facial Animation with GANs", IJCV 2020), used by the full_sync variant only. ---
    # "fixed-length snippets (corresponding to 0.2 s) of the original video and audio": 5 frames at 25 fps,
    # the lower half of the face (the mouth), as reimplementations take it (tuantran1810/face-image-generation).
    sync_disc_frames: int = 5
    sync_disc_audio_s: float = 0.2  # must equal sync_disc_frames / fps (the trainer checks)
    sync_disc_channels: int = 64    # the video encoder's first width, doubling per layer (ours: as D_img)
    sync_disc_dim: int = 256        # each stream's embedding (tuantran1810's 256; the journal gives none)

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))  # YAML gives a list
        image_plan(self.image_size)  # fail early on a size the strided CNNs cannot halve down
        if self.unet_skips not in UNET_SKIPS:
            raise ValueError(f"unet_skips must be one of {UNET_SKIPS}, got {self.unet_skips!r}")

    def channels(self, base: int) -> int:
        """A convolutional width scaled by :attr:`width` (at least 1)."""
        return max(1, int(round(base * self.width)))

    @property
    def window(self) -> int:
        """Audio samples per window (0.16 s at 16 kHz -> 2560)."""
        return int(round(self.audio_window_s * self.sample_rate))


# ----------------------------------------------------------------------------------------------
# Layer plans derived from the input sizes


def image_plan(image_size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """Number of stride-2 layers and the (h, w) they leave, for an ``(H, W)`` image.

    As in sda/encoder_image.py: ``log2(max(H, W)) - 2`` halvings leave a 4-row map, which a final
    convolution with that whole map as its kernel turns into a vector. 128 x 96 -> 5 halvings to
    4 x 3, plus the final layer: the paper's 6 layers.
    """
    h, w = image_size
    n = int(math.log2(max(h, w))) - 2
    if n < 1 or h % 2**n or w % 2**n:
        raise ValueError(f"image size {image_size}: both sides must divide by 2**{n} (e.g. 128x96, 64x48, 32x24)")
    return n, (h >> n, w >> n)


def _prime_factors(n: int) -> list[int]:
    factors, f = [], 2
    while f * f <= n:
        while n % f == 0:
            factors.append(f)
            n //= f
        f += 1
    if n > 1:
        factors.append(n)
    return factors


@dataclass(frozen=True)
class ConvSpec:
    kernel: int
    stride: int
    padding: int


def _same_conv(length: int, kernel: int, stride: int) -> tuple[ConvSpec, int]:
    """A conv that maps ``length`` to about ``ceil(length / stride)``, and its true output length.

    The padding rule of the authors' utils (sda/utils.py calculate_padding; sda/encoder_audio.py
    pads ``ceil(total / 2)`` on each side).
    """
    total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
    pad = math.ceil(total / 2)
    return ConvSpec(kernel, stride, pad), (length + 2 * pad - kernel) // stride + 1


def audio_plan(window: int, sample_rate: int, init_kernel_s: float, init_stride_s: float) -> tuple[list[ConvSpec], int]:
    """Strided 1-D convs for one audio window, and the length left for the last (full-length) conv.

    As sda/encoder_audio.py: a first conv with a 5 ms kernel and 1 ms stride (a 0.16 s window becomes
    160 steps at any rate), then convs with stride ``s`` and kernel ``2s`` for the prime factors ``s``
    of that length in increasing order but the last (160 = 2^5 * 5: five stride-2 layers leave 5),
    then a conv whose kernel covers the remaining length.
    """
    k0 = max(1, round(init_kernel_s * sample_rate))
    s0 = max(1, round(init_stride_s * sample_rate))
    first, length = _same_conv(window, k0, s0)
    specs = [first]
    for s in _prime_factors(length)[:-1]:
        spec, length = _same_conv(length, 2 * s, s)
        specs.append(spec)
    return specs, length


def init_weights(module: nn.Module) -> None:
    """Convolution weights ~ N(0, 0.02), biases 0 ("Initialise the weights for the network with
    gaussians with 0 mean and 0.02 std. dev", first version of sda/img_generator.py). Skipped on the
    ``meta`` device (shapes only: speechanim.checkpoint counts parameters so; torch draws meta normals slowly)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)) and not module.weight.is_meta:
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------
# Shared building blocks


class ImageEncoder(nn.Module):
    """Strided 2-D CNN from an image to a vector, keeping its intermediate feature maps.

    ``n`` layers of conv(4x4, stride 2, padding 1) [+ batch norm] + ReLU (LeakyReLU if ``leaky``),
    doubling the channels from ``base_channels`` (sda/encoder_image.py: kernel 4, stride 2, no conv
    bias), then a conv whose kernel is the whole remaining map (4 x 3 for 128 x 96) down to
    ``out_dim``, followed by ``out_activation`` (none: raw logits).
    """

    def __init__(self, image_size: tuple[int, int], in_channels: int, base_channels: int, out_dim: int,
                 leaky: bool = False, batch_norm_first: bool = True,
                 out_activation: nn.Module | None = None, leaky_slope: float = 0.2):
        super().__init__()
        n, final_size = image_plan(image_size)
        self.channels = [base_channels * 2**i for i in range(n)]
        self.layers = nn.ModuleList()
        c_in = in_channels
        for i, c_out in enumerate(self.channels):
            act = nn.LeakyReLU(leaky_slope) if leaky else nn.ReLU()
            norm = nn.BatchNorm2d(c_out) if (i > 0 or batch_norm_first) else nn.Identity()
            self.layers.append(nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False), norm, act))
            c_in = c_out
        self.out = nn.Conv2d(c_in, out_dim, final_size, bias=out_activation is None)
        self.out_activation = out_activation if out_activation is not None else nn.Identity()
        self.out_dim = out_dim
        self.apply(init_weights)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(N, C, H, W)`` -> code ``(N, out_dim)`` and the feature maps, shallowest first."""
        maps = []
        for layer in self.layers:
            x = layer(x)
            maps.append(x)
        return self.out_activation(self.out(x)).flatten(1), maps


class AudioFrameEncoder(nn.Module):
    """1-D CNN from one raw audio window to a vector (the paper's 3.1.2 CNN; sda/encoder_audio.py).

    Layers: see :func:`audio_plan`; each strided conv is followed by batch norm and ReLU, channels
    ``16, 32, 64, ...`` (doubling after the first), and the final full-length conv by tanh.
    """

    def __init__(self, cfg: ModelConfig, out_dim: int):
        super().__init__()
        specs, remaining = audio_plan(cfg.window, cfg.sample_rate, cfg.audio_init_kernel_s, cfg.audio_init_stride_s)
        self.window = cfg.window
        layers: list[nn.Module] = []
        c_in, c_out = 1, cfg.channels(cfg.audio_channels)
        for i, spec in enumerate(specs):
            if i > 0:
                c_out = 2 * c_in
            layers += [nn.Conv1d(c_in, c_out, spec.kernel, spec.stride, spec.padding), nn.BatchNorm1d(c_out), nn.ReLU()]
            c_in = c_out
        layers += [nn.Conv1d(c_in, out_dim, remaining), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, audio: Tensor) -> Tensor:
        """``(..., window)`` -> ``(..., out_dim)``."""
        lead = audio.shape[:-1]
        x = self.net(audio.reshape(-1, 1, self.window))
        return x.reshape(*lead, -1)


# ----------------------------------------------------------------------------------------------
# Generator


class IdentityEncoder(ImageEncoder):
    """Still image -> z_id (paper 3.1.1: 6 strided conv layers, batch norm + ReLU, 50-d code).

    Final activation tanh, batch norm on every strided layer including the first
    (sda/encoder_image.py).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.image_size, 3, cfg.channels(cfg.image_channels), cfg.id_dim, out_activation=nn.Tanh())


class ContextEncoder(nn.Module):
    """Audio windows -> z_c per frame (paper 3.1.2): the audio CNN then a 2-layer unidirectional GRU
    (sda/rnn_audio.py: nn.GRU(enc_code_size, rnn_code_size, 2, batch_first=True)).

    With ``cfg.static`` the GRU is replaced by a per-frame 2-layer MLP (no memory across frames).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.audio_encoder = AudioFrameEncoder(cfg, cfg.audio_feat_dim)
        self.static = cfg.static
        if cfg.static:
            self.rnn = None
            self.per_frame = nn.Sequential(nn.Linear(cfg.audio_feat_dim, cfg.context_dim), nn.ReLU(),
                                           nn.Linear(cfg.context_dim, cfg.context_dim), nn.Tanh())
        else:
            self.rnn = nn.GRU(cfg.audio_feat_dim, cfg.context_dim, cfg.context_layers, batch_first=True)
            self.per_frame = None

    def forward(self, audio: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``(B, T, window)`` and the GRU state ``(layers, B, context_dim)`` (None = zeros) ->
        z_c ``(B, T, context_dim)`` and the new state (None when static)."""
        x = self.audio_encoder(audio)
        if self.rnn is None:
            return self.per_frame(x), None
        return self.rnn(x, h)


class NoiseGenerator(nn.Module):
    """Gaussian noise -> z_n per frame (paper 3.1.3): a 1-layer GRU followed by tanh
    (sda/img_generator.py: rnn_noise = nn.GRU(aux_size, aux_size), rnn_noise_squashing = Tanh).

    With ``cfg.static`` there is no noise RNN: z_n is the noise itself, drawn anew for each frame.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.rnn = None if cfg.static else nn.GRU(cfg.noise_dim, cfg.noise_dim, 1, batch_first=True)

    def forward(self, noise: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``(B, T, noise_dim)`` -> z_n ``(B, T, noise_dim)`` and the GRU state ``(1, B, noise_dim)``."""
        if self.rnn is None:
            return noise, None
        out, h = self.rnn(noise, h)
        return torch.tanh(out), h


def _split_conv(conv: nn.Conv2d | nn.ConvTranspose2d, x: Tensor, shared: Tensor, t: int) -> Tensor:
    """``conv(cat[x, shared])`` for ``x (B * t, C, h, w)`` and ``shared (B, S, h, w)`` repeated over
    each clip's ``t`` frames: ``conv(x; W_x) + conv(shared; W_s)`` (stride 1, same padding; no bias
    on the shared part). The weight's input channels lie on dim 1 of a conv, dim 0 of a transposed one."""
    c = x.shape[1]
    if isinstance(conv, nn.ConvTranspose2d):
        w_x, w_s, op = conv.weight[:c], conv.weight[c:], F.conv_transpose2d
    else:
        w_x, w_s, op = conv.weight[:, :c], conv.weight[:, c:], F.conv2d
    y = op(x, w_x, conv.bias, padding=conv.padding)
    s = op(shared, w_s, None, padding=conv.padding)
    return (y.unflatten(0, (-1, t)) + s[:, None]).flatten(0, 1)


class UNetBlock(nn.Module):
    """Concatenate a skip map, mix with a 3x3 transposed conv, then upsample x2 with a 4x4 stride-2
    transposed conv; batch norm + ReLU after each (sda/img_generator.py UnetBlock)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.mix = nn.Sequential(nn.ConvTranspose2d(in_channels + skip_channels, in_channels, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(in_channels), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: Tensor, skip: Tensor, t: int = 1) -> Tensor:
        """``x (B * t, C, h, w)`` and the clip's ``skip (B, S, h, w)``, shared by its ``t`` frames.

        ``mix(cat[x, skip])`` computed as ``conv(x; W_x) + conv(skip; W_skip)``, the skip's share once
        per clip: the same numbers as concatenating the skip to every frame, without the copies."""
        return self.up(self.mix[1:](_split_conv(self.mix[0], x, skip, t)))


class FrameDecoder(nn.Module):
    """Latent ``[z_id, z_c, z_n]`` -> frame in [-1, 1] (paper 3.1.3), as sda/img_generator.py:

    * a transposed conv with a 4 x 3 kernel (for 128 x 96) from the latent vector to a map with the
      identity encoder's deepest width (1024 at full width), batch norm + ReLU;
    * one :class:`UNetBlock` per halving but one, each taking the identity encoder's map of the same
      size as a skip (deepest first; the shallowest map is not used, as in the authors' code);
    * a 4x4 stride-2 transposed conv to 3 channels and tanh.

    With ``cfg.unet_skips == "all"`` every level is joined, as in U-Net: one block per halving (the
    last also takes the shallowest map and stays as wide), then the still itself is concatenated at
    full resolution and a 3x3 conv gives the 3 channels.
    """

    def __init__(self, cfg: ModelConfig, latent_dim: int, encoder_channels: Sequence[int]):
        super().__init__()
        _, final_size = image_plan(cfg.image_size)
        deep_first = list(encoder_channels)[::-1]
        self.all_levels = cfg.unet_skips == "all"
        self.project = nn.Sequential(nn.ConvTranspose2d(latent_dim, deep_first[0], final_size, bias=False),
                                     nn.BatchNorm2d(deep_first[0]), nn.ReLU())
        if self.all_levels:  # the last block keeps its width, back at the frame size
            widths = zip(deep_first, deep_first[1:] + deep_first[-1:])
            self.to_rgb = nn.Conv2d(deep_first[-1] + 3, 3, 3, padding=1, bias=False)
        else:
            widths = zip(deep_first[:-1], deep_first[1:])
            self.to_rgb = nn.ConvTranspose2d(deep_first[-1], 3, 4, stride=2, padding=1, bias=False)
        self.blocks = nn.ModuleList(UNetBlock(c, c, c_next) for c, c_next in widths)
        self.apply(init_weights)

    def forward(self, latent: Tensor, skips: Sequence[Tensor], t: int = 1) -> Tensor:
        """``latent (B * t, latent_dim)``: ``t`` frames of each of B clips; ``skips`` deepest first,
        each ``(B, C, h, w)``, shared by a clip's frames (with all levels the last one is the still
        ``(B, 3, H, W)``) -> ``(B * t, 3, H, W)``."""
        expected = len(self.blocks) + self.all_levels
        if len(skips) != expected:
            raise ValueError(f"the decoder takes {expected} skip maps, got {len(skips)}")
        if latent.shape[0] != skips[0].shape[0] * t:
            raise ValueError(f"{latent.shape[0]} latent vectors for {skips[0].shape[0]} clips of {t} frames")
        x = self.project(latent[:, :, None, None])
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip, t)
        if self.all_levels:  # to_rgb(cat[x, still])
            return torch.tanh(_split_conv(self.to_rgb, x, skips[-1], t))
        return torch.tanh(self.to_rgb(x))


@dataclass
class IdentityCode:
    """The still image's encoding, computed once per clip and reused for every frame."""

    z_id: Tensor  # (B, id_dim)
    skips: list[Tensor]  # the decoder's skip maps, deepest first, each (B, C, h, w)


@dataclass
class GeneratorState:
    """The recurrent state carried from one frame to the next (None fields in the static variant)."""

    context: Tensor | None  # (context_layers, B, context_dim)
    noise: Tensor | None  # (1, B, noise_dim)


class Generator(nn.Module):
    """The paper's generator (Fig. 3a): still + audio windows -> video.

    Whole clip: ``frames = G(still, audio)``. Streaming, frame by frame::

        identity = G.encode_identity(still)
        state = G.init_state(batch)
        for k in range(T):
            frame, state = G.step(identity, audio[:, k], state, noise[:, k])

    gives the same frames as ``G(still, audio, noise)`` (in eval mode; in train mode batch norm
    statistics depend on how many frames are in the batch).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.identity_encoder = IdentityEncoder(cfg)
        self.context_encoder = ContextEncoder(cfg)
        self.noise_generator = NoiseGenerator(cfg)
        latent = cfg.id_dim + cfg.context_dim + cfg.noise_dim
        self.frame_decoder = FrameDecoder(cfg, latent, self.identity_encoder.channels)

    @property
    def static(self) -> bool:
        return self.cfg.static

    def encode_identity(self, still: Tensor) -> IdentityCode:
        """``(B, 3, H, W)`` -> z_id and the skip maps the decoder uses (deepest first; with every
        U-Net level, all the encoder's maps and then the still)."""
        z_id, maps = self.identity_encoder(still)
        if self.cfg.unet_skips == "all":
            return IdentityCode(z_id, maps[::-1] + [still])
        return IdentityCode(z_id, maps[1:][::-1])

    def sample_noise(self, batch: int, steps: int, device: torch.device | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """``(batch, steps, noise_dim)`` noise ~ N(0, noise_std), drawn one step at a time so that
        streaming with the same ``generator`` draws the same numbers."""
        draws = [self._draw_noise(batch, device, generator) for _ in range(steps)]
        return torch.stack(draws, 1)

    def _draw_noise(self, batch: int, device: torch.device | None, generator: torch.Generator | None) -> Tensor:
        dev = device if device is not None else next(self.parameters()).device
        return torch.randn(batch, self.cfg.noise_dim, device=dev, generator=generator) * self.cfg.noise_std

    def init_state(self, batch: int, device: torch.device | None = None) -> GeneratorState:
        """Zero GRU states (the same start the whole-clip pass uses)."""
        if self.static:
            return GeneratorState(None, None)
        dev = device if device is not None else next(self.parameters()).device
        return GeneratorState(torch.zeros(self.cfg.context_layers, batch, self.cfg.context_dim, device=dev),
                              torch.zeros(1, batch, self.cfg.noise_dim, device=dev))

    def forward(self, still: Tensor, audio: Tensor, noise: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """``still (B, 3, H, W)``, ``audio (B, T, window)``, optional ``noise (B, T, noise_dim)``
        -> frames ``(B, T, 3, H, W)`` in [-1, 1].

        The GRUs are causal, so padding at the end of a shorter clip does not change its frames.
        """
        b, t = audio.shape[:2]
        if noise is None:
            noise = self.sample_noise(b, t, audio.device, generator)
        frames, _ = self.run(self.encode_identity(still), audio, noise)
        return frames

    def run(self, identity: IdentityCode, audio: Tensor, noise: Tensor,
            state: GeneratorState | None = None) -> tuple[Tensor, GeneratorState]:
        """The frames of ``T`` consecutive steps from ``state`` (None: the start of a clip): ``audio
        (B, T, window)``, ``noise (B, T, noise_dim)`` -> ``frames (B, T, 3, H, W)`` and the state after
        them. The whole-clip pass, a chunk of a long clip and one streamed frame are all this."""
        b, t = audio.shape[:2]
        state = state or GeneratorState(None, None)
        z_c, h_c = self.context_encoder(audio, state.context)
        z_n, h_n = self.noise_generator(noise, state.noise)
        frames = self._decode(identity, z_c, z_n)
        return frames.view(b, t, *frames.shape[1:]), GeneratorState(h_c, h_n)

    def step(self, identity: IdentityCode, audio_window: Tensor, state: GeneratorState,
             noise: Tensor | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, GeneratorState]:
        """One frame: ``audio_window (B, window)``, optional ``noise (B, noise_dim)`` ->
        ``frame (B, 3, H, W)`` and the next state."""
        b = audio_window.shape[0]
        if noise is None:
            noise = self._draw_noise(b, audio_window.device, generator)
        frames, state = self.run(identity, audio_window[:, None], noise[:, None], state)
        return frames[:, 0], state

    def _decode(self, identity: IdentityCode, z_c: Tensor, z_n: Tensor) -> Tensor:
        """Decode ``T`` frames per clip: z_c, z_n ``(B, T, .)`` -> ``(B * T, 3, H, W)``."""
        b, t = z_c.shape[:2]
        z_id = identity.z_id[:, None].expand(b, t, -1)
        latent = torch.cat([z_id, z_c, z_n], -1).reshape(b * t, -1)  # [z_id, z_c, z_n] (paper 3.1.3)
        return self.frame_decoder(latent, identity.skips, t)


# ----------------------------------------------------------------------------------------------
# Discriminators


class FrameDiscriminator(nn.Module):
    """Is this frame real? (paper 3.2.1): a 6-layer CNN (at 128 x 96) on the frame concatenated
    channel-wise with the still image, one logit per frame.

    Layout ours: the identity encoder's (5 strided 4x4 convs doubling from 64, then a 4 x 3 conv to
    one logit), with LeakyReLU and no batch norm on the first layer (DCGAN convention).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = ImageEncoder(cfg.image_size, 6, cfg.channels(cfg.frame_disc_channels), 1,
                                leaky=True, batch_norm_first=False, leaky_slope=cfg.leaky_slope)

    def forward(self, frames: Tensor, still: Tensor) -> Tensor:
        """``frames (N, 3, H, W)`` and ``still (N, 3, H, W)`` -> logits ``(N,)``; or
        ``frames (B, T, 3, H, W)`` and ``still (B, 3, H, W)`` -> logits ``(B, T)``."""
        if frames.dim() == 5:
            b, t = frames.shape[:2]
            still = still[:, None].expand_as(frames)
            logits = self.forward(frames.reshape(b * t, *frames.shape[2:]), still.reshape(b * t, *still.shape[2:]))
            return logits.view(b, t)
        logit, _ = self.net(torch.cat([frames, still], 1))
        return logit[:, 0]


class SequenceDiscriminator(nn.Module):
    """Is this (video, audio) pair real? (paper 3.2.2, Fig. 3b).

    Each frame is encoded by a CNN and each audio window by an audio CNN (the context encoder's
    layout, :class:`AudioFrameEncoder`); their concatenation feeds a 2-layer GRU, and a 2-layer
    classifier on the GRU output at each sequence's last valid step gives one logit per sequence.
    Sizes ours (see :class:`ModelConfig`).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.image_encoder = ImageEncoder(cfg.image_size, 3, cfg.channels(cfg.seq_disc_channels),
                                          cfg.seq_disc_image_dim, leaky=True, batch_norm_first=False,
                                          out_activation=nn.Tanh(), leaky_slope=cfg.leaky_slope)
        self.audio_encoder = AudioFrameEncoder(cfg, cfg.seq_disc_audio_dim)
        self.rnn = nn.GRU(cfg.seq_disc_image_dim + cfg.seq_disc_audio_dim, cfg.seq_disc_hidden, cfg.seq_disc_layers,
                          batch_first=True)
        self.classifier = nn.Sequential(nn.Linear(cfg.seq_disc_hidden, cfg.seq_disc_classifier_hidden),
                                        nn.LeakyReLU(cfg.leaky_slope),
                                        nn.Linear(cfg.seq_disc_classifier_hidden, 1))

    def forward(self, frames: Tensor | Sequence[Tensor], audio: Tensor,
                lengths: Tensor | Sequence[int] | None = None, mismatched: bool = False) -> Tensor:
        """``frames (B, T, 3, H, W)``, ``audio (B, T, window)``, optional valid ``lengths (B,)``
        -> logits ``(B,)``. Steps past a sequence's length are ignored (never encoded).

        ``frames`` may also be a list of N videos of that shape, each judged with the same audio
        (real and generated, in the discriminator's step) -> logits ``(N, B)``: the same numbers as N
        calls, but the audio is encoded once and the GRU runs once on all N. Each video goes through
        the image CNN on its own, so that its batch-norm statistics are its own, as in N calls.

        ``mismatched``: also judge the first video with the audio of the next clip in the batch (clip
        ``i`` with clip ``i + 1``'s, the last with the first's): one more row of logits, ``(N + 1, B)``,
        from the codes already computed (a matching-aware discriminator, Reed et al. 2016; not the
        paper's). Needs ``B >= 2`` and no ``lengths``.
        """
        videos = [frames] if isinstance(frames, Tensor) else list(frames)
        b, t = videos[0].shape[:2]
        if any(v.shape != videos[0].shape for v in videos):
            raise ValueError(f"videos judged together must have one shape, got {[tuple(v.shape) for v in videos]}")
        if mismatched and (b < 2 or lengths is not None):
            raise ValueError(f"mismatched pairs need >= 2 clips of one length, got {b} clips"
                             f"{' with lengths' if lengths is not None else ''}")
        dev = videos[0].device
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=dev)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=dev)
        if lengths.min() < 1 or lengths.max() > t:
            raise ValueError(f"lengths must lie in [1, {t}], got {lengths.tolist()}")
        # Encode only the valid steps, so padding never enters batch-norm statistics.
        valid = (torch.arange(t, device=dev)[None] < lengths[:, None]).reshape(-1)
        padded = not bool(valid.all())

        def encode(x: Tensor, encoder) -> Tensor:
            """(B * T, ...) -> (B * T, code) with zeros past the ends (no copies when nothing is padded)."""
            if not padded:
                return encoder(x)
            code = encoder(x[valid])
            out = code.new_zeros(b * t, code.shape[1])
            out[valid] = code
            return out

        aud = encode(audio.reshape(b * t, -1), self.audio_encoder)
        img = [encode(v.reshape(b * t, *v.shape[2:]), lambda x: self.image_encoder(x)[0]) for v in videos]
        pairs = [torch.cat([i, aud], 1) for i in img]
        if mismatched:  # the first video with the next clip's audio codes
            pairs.append(torch.cat([img[0], aud.view(b, t, -1).roll(-1, 0).reshape(b * t, -1)], 1))
        n = len(pairs)
        # causal: outputs up to a sequence's end ignore what follows
        out, _ = self.rnn(torch.cat(pairs).view(n * b, t, -1))
        last = out[torch.arange(n * b, device=dev), lengths.repeat(n) - 1]
        logits = self.classifier(last)[:, 0]
        return logits if isinstance(frames, Tensor) and not mismatched else logits.view(n, b)


class SyncDiscriminator(nn.Module):
    """Are this mouth and this audio in sync? The synchronisation discriminator of the authors' journal
    version (IJCV 2020; not in the BMVC paper).

    Two streams: a video-snippet encoder on the lower half of ``sync_disc_frames`` consecutive frames
    (stacked channel-wise, the frame discriminator's layout) and an audio encoder on the same
    ``sync_disc_audio_s`` of raw audio (the context encoder's layout, :class:`AudioFrameEncoder`), each
    ending in a tanh embedding; "the Euclidean distance between the 2 embeddings is calculated and fed
    into a single layer perceptron" (the journal): one logit per pair.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, w = cfg.image_size
        if h % 2:
            raise ValueError(f"the sync discriminator sees the lower half of the frame: image height {h} must be even")
        self.frames = cfg.sync_disc_frames
        self.video_encoder = ImageEncoder((h // 2, w), 3 * self.frames, cfg.channels(cfg.sync_disc_channels),
                                          cfg.sync_disc_dim, leaky=True, batch_norm_first=False,
                                          out_activation=nn.Tanh(), leaky_slope=cfg.leaky_slope)
        audio_cfg = replace(cfg, audio_window_s=cfg.sync_disc_audio_s)
        self.audio_samples = audio_cfg.window
        self.audio_encoder = AudioFrameEncoder(audio_cfg, cfg.sync_disc_dim)
        self.perceptron = nn.Linear(1, 1)

    def distance(self, frames: Tensor, audio: Tensor) -> Tensor:
        """``frames (N, n, 3, H, W)`` (whole frames; the lower half is taken here), ``audio (N, samples)``
        -> the Euclidean distance of their embeddings ``(N,)``, divided by the square root of their size
        (so it lies in [0, 2] whatever ``sync_disc_dim`` is, and the perceptron starts unsaturated)."""
        n_clips, n = frames.shape[:2]
        if n != self.frames or audio.shape[-1] != self.audio_samples:
            raise ValueError(f"the sync discriminator takes {self.frames} frames and {self.audio_samples} audio "
                             f"samples, got {n} and {audio.shape[-1]}")
        mouth = frames[..., frames.shape[-2] // 2:, :]
        video, _ = self.video_encoder(mouth.reshape(n_clips, n * mouth.shape[2], *mouth.shape[3:]))
        sound = self.audio_encoder(audio)
        return (video - sound).square().mean(1).add(1e-12).sqrt()

    def forward(self, frames: Tensor, audio: Tensor) -> Tensor:
        """``frames (N, n, 3, H, W)``, ``audio (N, samples)`` -> logits ``(N,)`` (in sync: real)."""
        return self.perceptron(self.distance(frames, audio)[:, None])[:, 0]


__all__ = [
    "ModelConfig", "device", "image_plan", "audio_plan", "init_weights", "count_parameters",
    "ImageEncoder", "AudioFrameEncoder", "IdentityEncoder", "ContextEncoder", "NoiseGenerator", "UNetBlock",
    "FrameDecoder", "IdentityCode", "GeneratorState", "Generator", "FrameDiscriminator", "SequenceDiscriminator",
    "SyncDiscriminator",
]
