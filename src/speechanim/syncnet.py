"""A SyncNet lip-sync scorer trained here, and the LSE-D / LSE-C it gives.

The field measures lip sync with SyncNet (Chung and Zisserman 2016, "Out of time: automated lip
sync in the wild") through Wav2Lip's LSE-D and LSE-C (Prajwal et al. 2020), which run the scoring
of ``syncnet_python`` (``SyncNetInstance.evaluate``).  No pretrained SyncNet can be downloaded, so
the DAG trains one per dataset on the training split of the *real* videos (mirrored copies
included), keeps the epoch with the best offset accuracy on the validation split, and scores real
and generated test videos with it.  Its distances are on its own scale: they compare methods
scored by the same checkpoint, never numbers published with the pretrained SyncNet.

The network (SyncNet's design: two streams, "early fusion" of 5 grayscale mouth frames stacked as
channels, 0.2 s of audio as a spectrogram image)::

    5 mouth crops (5, h, w), stacked as channels ──3 x [Conv2d ─ BatchNorm ─ ReLU ─ MaxPool]── FC ─ FC ─> v
    0.2 s of audio, log-mel (1, n_mels, 20)     ──3 x [Conv2d ─ BatchNorm ─ ReLU ─ MaxPool]── FC ─ FC ─> a

The mouth crops are the lipreader's (:func:`speechanim.lipreader.mouth_crops`: a fixed box on the
aligned face, grayscale), standardised per clip.  Video window ``t`` is frames ``t .. t+4``; its
audio is samples ``[t * spf, (t + 5) * spf)`` (``spf`` = samples per video frame), as log-mel
frames 4t .. 4t+19 of a 100 Hz spectrogram at 25 fps (SyncNet's 20 MFCC steps), standardised per
clip.

Training (SyncNet's): pairs of a video window with its own audio (genuine, y = 1) or
with audio of the same clip shifted by ``min_shift .. max_shift`` frames either way (false,
y = 0), and the contrastive loss on the Euclidean distance ``d = ||v - a||`` of the two outputs,
``E = 1/(2N) sum y d^2 + (1 - y) max(margin - d, 0)^2`` (SyncNet's contrastive loss; its false pairs
shift the audio by up to 2 s; these stay within the ±15-frame search range and skip ±1, which the
evaluation accepts as in sync).  The outputs are not normalised, as SyncNet's fc7 (Wav2Lip's own
"expert" discriminator instead uses cosine similarity and BCE; LSE-D/C use SyncNet's distances).

Scoring (``syncnet_python`` ``calc_pdist`` and ``evaluate``, which Wav2Lip's LSE scripts call):
the audio embeddings are zero-padded by ``max_offset`` windows at both ends; for every video
window ``t`` and offset ``o`` in ``[-max_offset, max_offset]`` the distance between video
embedding ``t`` and audio embedding ``t + o``; the mean over ``t`` per offset is ``distances``;
``LSE-D = min(distances)``, ``LSE-C = median(distances) - min(distances)``, and the AV offset is the
``o`` of the minimum.  Sign convention: ``o`` is how many frames *later* in the audio the sound of
a video window is found, so audio delayed by ``k`` frames (``np.roll(audio, k * spf)``) gives
``+k``.  ``syncnet_python`` reports ``vshift - argmin index``, the opposite sign.  It also drops
the last window (``lastframe = min_length - 5``); here all ``T - 4`` windows count.

CLI (the Snakemake rules call exactly these)::

    python -m speechanim.syncnet train --train train.h5 --val val.h5 --out syncnet.pt [--config JSON]
    python -m speechanim.syncnet eval --checkpoint syncnet.pt --h5 test.h5 --out sync.json
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn
from tqdm import tqdm

from .fileio import atomic_open, refuse_clashing_paths
from .audio import fit_length
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .lipreader import LipReaderConfig, mouth_crops
from .models import device as default_device
from .packing import PackedFileError, clip_group, clip_keys
from .options import parse_device, parse_overrides, write_json

__all__ = [
    "SyncClips",
    "SyncNet",
    "SyncNetConfig",
    "SyncNetError",
    "SyncScore",
    "SyncScorer",
    "audio_features",
    "contrastive_loss",
    "evaluate_h5",
    "history_path",
    "load_sync_clips",
    "score_distances",
    "sync_distances",
    "train",
]

#: Checkpoint ``kind`` of a SyncNet file.
CHECKPOINT_KIND = "syncnet"


class SyncNetError(ValueError):
    """Bad input to the SyncNet scorer: the message names the file or clip and the problem."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class SyncNetConfig:
    """Sizes and training settings.  Defaults are the embedded (small, CPU) scorer; SyncNet's own
    values are given beside each field where the paper has one."""

    # Video frames per window (SyncNet: 5 frames, 0.2 s at 25 fps) and the mouth crop they are
    # resized to, (H, W) (SyncNet: 111 x 111 grayscale; here the lipreader's crop and box).
    window: int = 5
    mouth_size: tuple[int, int] = (24, 32)
    # Audio: log-mel spectrogram, mel_per_frame spectrogram steps per video frame with windows of
    # mel_window_s (SyncNet: 13 MFCCs at 100 Hz over 25 ms windows, i.e. 4 steps per frame at 25 fps).
    n_mels: int = 40
    mel_per_frame: int = 4
    mel_window_s: float = 0.025
    # Conv channels of the three blocks of each stream, the hidden FC width and the embedding size
    # (syncnet_python's model: six conv layers per stream, 64..512 channels (audio) and 96..512
    # (video), then FC 512 - BatchNorm - ReLU - FC 1024 on each stream).
    video_channels: tuple[int, int, int] = (16, 32, 64)
    audio_channels: tuple[int, int, int] = (16, 32, 64)
    hidden: int = 256
    embedding: int = 128
    # Contrastive loss margin (SyncNet's loss; the value is ours) and the false pairs' shifts,
    # |shift| in [min_shift, max_shift] frames, same clip.
    margin: float = 1.0
    min_shift: int = 2
    max_shift: int = 15
    # Training: Adam on batches of genuine and false pairs in equal numbers, a fixed number of
    # batches per epoch, then a validation on val.h5 that keeps the best epoch.
    lr: float = 1e-3
    batch_size: int = 64
    steps_per_epoch: int = 150
    epochs: int = 5  # embedded corpus: validation accuracy 1.0 from epoch 2, best epoch 5 (a 6th was never kept)
    patience: int = 4  # epochs without a better validation accuracy before stopping
    # The offset search range of the validation (syncnet_python's --vshift; Wav2Lip's LSE: 15).
    max_offset: int = 15
    seed: int = 0

    def __post_init__(self) -> None:
        self.mouth_size = tuple(int(v) for v in self.mouth_size)
        self.video_channels = tuple(int(v) for v in self.video_channels)
        self.audio_channels = tuple(int(v) for v in self.audio_channels)
        if len(self.mouth_size) != 2 or min(self.mouth_size) < 8:
            raise ValueError(f"mouth_size must be (H, W) of at least 8 pixels each, got {self.mouth_size}")
        if len(self.video_channels) != 3 or len(self.audio_channels) != 3:
            raise ValueError("video_channels and audio_channels must name 3 conv blocks each")
        if min(self.video_channels + self.audio_channels) < 1 or self.hidden < 1 or self.embedding < 1:
            raise ValueError("channels, hidden and embedding must be positive")
        if self.window < 1 or self.n_mels < 8 or self.mel_per_frame < 1 or self.mel_window_s <= 0:
            raise ValueError("window, mel_per_frame and mel_window_s must be positive and n_mels at least 8")
        if not 1 <= self.min_shift <= self.max_shift:
            raise ValueError(f"need 1 <= min_shift <= max_shift, got {self.min_shift}, {self.max_shift}")
        if self.margin <= 0 or self.lr <= 0:
            raise ValueError("margin and lr must be positive")
        if min(self.batch_size, self.steps_per_epoch, self.epochs, self.patience) < 1:
            raise ValueError("batch_size, steps_per_epoch, epochs and patience must be positive")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (genuine and false pairs)")
        if self.max_offset < 0:
            raise ValueError(f"max_offset must be non-negative, got {self.max_offset}")

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None, source: str = "--config") -> SyncNetConfig:
        """The defaults with ``overrides`` applied; an unknown key or a bad value raises
        :class:`SyncNetError` naming it."""
        overrides = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SyncNetError(f"{source}: unknown SyncNetConfig key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**overrides)
        except (TypeError, ValueError) as e:
            raise SyncNetError(f"{source}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("mouth_size", "video_channels", "audio_channels"):
            d[k] = list(d[k])
        return d

    @property
    def lipreader_config(self) -> LipReaderConfig:
        """The lipreader settings whose mouth box and crop size this scorer uses."""
        return LipReaderConfig(mouth_size=self.mouth_size)

    @property
    def mel_steps(self) -> int:
        """Spectrogram steps per audio window (SyncNet: 20)."""
        return self.window * self.mel_per_frame


# --------------------------------------------------------------------------------------------
# Inputs: mouth crops and log-mel spectrograms
# --------------------------------------------------------------------------------------------


def samples_per_frame(sample_rate: int, fps: float, cfg: SyncNetConfig) -> int:
    """Audio samples per video frame; must be a whole number divisible by ``cfg.mel_per_frame``."""
    spf = sample_rate / fps
    if sample_rate < 1 or fps <= 0 or abs(spf - round(spf)) > 1e-6:
        raise SyncNetError(f"sample rate {sample_rate} Hz is not a whole number of samples per frame at {fps} fps")
    spf = int(round(spf))
    if spf % cfg.mel_per_frame:
        raise SyncNetError(f"{spf} samples per frame do not divide into {cfg.mel_per_frame} spectrogram steps")
    return spf


_MEL_CACHE: dict[tuple, nn.Module] = {}


def audio_features(audio: np.ndarray | Tensor, sample_rate: int, fps: float, cfg: SyncNetConfig) -> Tensor:
    """Log-mel spectrogram ``(n_mels, mel_per_frame * T)`` of ``T`` frames of audio, standardised
    over the clip (zero mean, unit variance).

    Step ``k`` analyses samples ``[k * hop, k * hop + win)`` with ``hop = spf / mel_per_frame``
    (10 ms at 25 fps and 4 steps, as SyncNet's MFCCs) and ``win = mel_window_s``; the signal is
    zero-padded at the end so that every frame has its steps.  ``len(audio)`` must be ``T * spf``.
    """
    spf = samples_per_frame(sample_rate, fps, cfg)
    x = torch.as_tensor(np.asarray(audio, np.float32) if not isinstance(audio, Tensor) else audio).float()
    if x.ndim != 1 or len(x) % spf or len(x) == 0:
        raise SyncNetError(f"audio must be 1-D with a whole number of {spf}-sample frames, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise SyncNetError("audio holds NaN or infinite samples")
    hop = spf // cfg.mel_per_frame
    win = max(hop, int(round(cfg.mel_window_s * sample_rate)))
    key = (sample_rate, hop, win, cfg.n_mels)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=win, win_length=win, hop_length=hop, n_mels=cfg.n_mels,
            center=False, power=2.0)
    mel = _MEL_CACHE[key](F.pad(x, (0, win - hop)))
    mel = torch.log(mel + 1e-6)
    return (mel - mel.mean()) / mel.std().clamp_min(1e-3)


def _standardised(crops: Tensor) -> Tensor:
    """``(T, h, w)`` uint8 crops -> float32, zero mean and unit variance over the clip (a still
    image, with no variance, becomes zeros)."""
    crops = crops.float()
    return (crops - crops.mean()) / crops.std().clamp_min(1.0)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _conv_stream(in_ch: int, channels: Sequence[int], pools: Sequence[tuple[int, int]]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for out_ch, pool in zip(channels, pools):
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
                   nn.MaxPool2d(pool)]
        in_ch = out_ch
    return nn.Sequential(*layers)


def _fc(in_features: int, cfg: SyncNetConfig) -> nn.Sequential:
    # syncnet_python: Linear - BatchNorm1d - ReLU - Linear, the last output unnormalised
    return nn.Sequential(nn.Linear(in_features, cfg.hidden), nn.BatchNorm1d(cfg.hidden), nn.ReLU(inplace=True),
                         nn.Linear(cfg.hidden, cfg.embedding))


class SyncNet(nn.Module):
    """The two streams.  :meth:`embed_video`: ``(B, window, h, w)`` standardised mouth crops ->
    ``(B, embedding)``; :meth:`embed_audio`: ``(B, n_mels, window * mel_per_frame)`` log-mel ->
    ``(B, embedding)``.  In sync, the two embeddings are close in Euclidean distance."""

    VIDEO_POOLS = ((2, 2), (2, 2), (2, 2))
    AUDIO_POOLS = ((2, 2), (2, 2), (2, 1))  # (mel, time): 40 x 20 -> 5 x 5

    def __init__(self, cfg: SyncNetConfig):
        super().__init__()
        self.cfg = cfg
        h, w = cfg.mouth_size
        for ph, pw in self.VIDEO_POOLS:
            h, w = h // ph, w // pw
        m, s = cfg.n_mels, cfg.mel_steps
        for pm, ps in self.AUDIO_POOLS:
            m, s = m // pm, s // ps
        if min(h, w, m, s) < 1:
            raise ValueError(f"inputs too small for three pooled blocks: mouth {cfg.mouth_size}, "
                             f"spectrogram {cfg.n_mels} x {cfg.mel_steps}")
        self.video_cnn = _conv_stream(cfg.window, cfg.video_channels, self.VIDEO_POOLS)
        self.video_fc = _fc(cfg.video_channels[-1] * h * w, cfg)
        self.audio_cnn = _conv_stream(1, cfg.audio_channels, self.AUDIO_POOLS)
        self.audio_fc = _fc(cfg.audio_channels[-1] * m * s, cfg)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")

    def embed_video(self, crops: Tensor) -> Tensor:
        return self.video_fc(self.video_cnn(crops).flatten(1))

    def embed_audio(self, mel: Tensor) -> Tensor:
        return self.audio_fc(self.audio_cnn(mel.unsqueeze(1)).flatten(1))

    def clip_embeddings(self, crops: Tensor, mel: Tensor, batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """Embeddings of every window of one clip: standardised crops ``(T, h, w)`` and log-mel
        ``(n_mels, mel_per_frame * T)`` -> video and audio ``(T - window + 1, embedding)`` each."""
        cfg = self.cfg
        n = crops.shape[0] - cfg.window + 1
        video = crops.unfold(0, cfg.window, 1).permute(0, 3, 1, 2)  # (n, window, h, w)
        audio = mel.unfold(1, cfg.mel_steps, cfg.mel_per_frame).permute(1, 0, 2)[:n]  # (n, n_mels, steps)
        v = torch.cat([self.embed_video(video[i:i + batch_size]) for i in range(0, n, batch_size)])
        a = torch.cat([self.embed_audio(audio[i:i + batch_size]) for i in range(0, n, batch_size)])
        return v, a


def contrastive_loss(video: Tensor, audio: Tensor, genuine: Tensor, margin: float) -> Tensor:
    """SyncNet's contrastive loss: ``mean(y d^2 + (1 - y) max(margin - d, 0)^2) / 2``, ``d = ||v - a||``."""
    d = F.pairwise_distance(video, audio)
    y = genuine.to(d.dtype)
    return 0.5 * (y * d.pow(2) + (1 - y) * (margin - d).clamp_min(0).pow(2)).mean()


# --------------------------------------------------------------------------------------------
# Scoring (syncnet_python's calc_pdist and evaluate)
# --------------------------------------------------------------------------------------------


def sync_distances(video: Tensor, audio: Tensor, max_offset: int = 15) -> Tensor:
    """Mean distance per offset ``(2 * max_offset + 1,)``, offsets ``-max_offset .. max_offset``.

    Entry ``o`` is the mean over video windows ``t`` of ``||video[t] - audio[t + o]||``, audio
    windows outside the clip being zero vectors (``calc_pdist`` pads the audio features with zeros).
    """
    if video.ndim != 2 or video.shape != audio.shape:
        raise SyncNetError(f"video and audio embeddings must be (n, D) of one shape, got {tuple(video.shape)} "
                           f"and {tuple(audio.shape)}")
    n, m = video.shape[0], int(max_offset)
    padded = F.pad(audio, (0, 0, m, m))
    return torch.stack([F.pairwise_distance(video, padded[o:o + n]).mean() for o in range(2 * m + 1)])


@dataclass
class SyncScore:
    """The sync of one clip: ``offset`` (frames the audio lags the video: ``np.roll(audio, k * spf)``
    gives ``+k``), ``lse_d`` (the minimum mean distance), ``lse_c`` (median minus minimum) and the
    mean ``distances`` at offsets ``-max_offset .. max_offset``."""

    offset: int
    lse_d: float
    lse_c: float
    distances: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "lse_d": self.lse_d, "lse_c": self.lse_c,
                "distances": [round(float(d), 5) for d in self.distances]}


def score_distances(distances: Tensor | np.ndarray) -> SyncScore:
    """Offset, LSE-D and LSE-C of the mean distances at offsets ``-m .. m`` (``syncnet_python``:
    ``minval, minidx = min(mdist)``, ``conf = median(mdist) - minval``; the first minimum wins)."""
    d = torch.as_tensor(np.asarray(distances, np.float32) if not isinstance(distances, Tensor) else distances)
    if d.ndim != 1 or len(d) % 2 == 0:
        raise SyncNetError(f"distances must be 1-D of odd length 2 * max_offset + 1, got shape {tuple(d.shape)}")
    m = (len(d) - 1) // 2
    minval, minidx = torch.min(d, 0)
    return SyncScore(offset=int(minidx) - m, lse_d=float(minval), lse_c=float(torch.median(d) - minval),
                     distances=d.detach().cpu().numpy().astype(np.float32))


class SyncScorer:
    """A trained SyncNet: ``SyncScorer.load(path).score(frames, audio, sample_rate, fps)``."""

    def __init__(self, model: SyncNet, sample_rate: int, fps: float, device: torch.device | str | None = None):
        self.cfg = model.cfg
        self.sample_rate, self.fps = int(sample_rate), float(fps)
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str | None = None) -> SyncScorer:
        """A SyncNet checkpoint written by :func:`train`."""
        payload = load_checkpoint(path)
        if payload.get("kind") != CHECKPOINT_KIND or "model" not in payload or "syncnet_config" not in payload:
            raise CheckpointError(f"{path}: not a SyncNet checkpoint (kind {payload.get('kind')!r})")
        cfg = SyncNetConfig.from_overrides(payload["syncnet_config"], source=str(path))
        model = SyncNet(cfg)
        model.load_state_dict(payload["model"])
        return cls(model, payload["sample_rate"], payload["fps"], device)

    def crops(self, frames: np.ndarray | Tensor, *, channels_first: bool = False) -> Tensor:
        """Mouth crops ``(T, h, w)`` uint8 of aligned uint8 RGB frames, as this scorer cuts them."""
        try:
            return mouth_crops(frames, self.cfg.lipreader_config, channels_first=channels_first)
        except ValueError as e:
            raise SyncNetError(str(e)) from e

    def score(self, frames: np.ndarray | Tensor, audio: np.ndarray, sample_rate: int, fps: float,
              max_offset: int = 15) -> SyncScore:
        """Sync of one clip of aligned uint8 RGB frames ``(T, H, W, 3)`` and its audio ``(N,)``.

        The audio must last the video's length to within one frame (it is cut to the shorter of
        the two, as ``syncnet_python`` does); the clip must hold at least one 5-frame window.
        """
        return self.score_crops(self.crops(frames), audio, sample_rate, fps, max_offset)

    @torch.no_grad()
    def score_crops(self, crops: Tensor, audio: np.ndarray | Tensor, sample_rate: int, fps: float,
                    max_offset: int = 15) -> SyncScore:
        """:meth:`score` of mouth crops ``(T, h, w)`` uint8 (:meth:`crops`)."""
        if int(sample_rate) != self.sample_rate or abs(float(fps) - self.fps) > 1e-6:
            raise SyncNetError(f"this SyncNet was trained on {self.sample_rate} Hz audio at {self.fps:g} fps; "
                               f"got {sample_rate} Hz at {fps:g} fps (resample first)")
        if max_offset < 0:
            raise SyncNetError(f"max_offset must be non-negative, got {max_offset}")
        spf = samples_per_frame(sample_rate, fps, self.cfg)
        audio = np.asarray(audio, np.float32) if not isinstance(audio, Tensor) else audio
        if audio.ndim != 1:
            raise SyncNetError(f"audio must be 1-D (N,) samples, got shape {tuple(audio.shape)}")
        t = int(crops.shape[0])
        if abs(len(audio) / spf - t) > 1:
            raise SyncNetError(f"audio of {len(audio)} samples ({len(audio) / spf:.1f} frames of {spf}) does not "
                               f"match the video's {t} frames")
        n = min(t, len(audio) // spf)
        if n < self.cfg.window:
            raise SyncNetError(f"clip of {n} frames is shorter than SyncNet's {self.cfg.window}-frame window")
        mel = audio_features(audio[: n * spf], sample_rate, fps, self.cfg).to(self.device)
        video, audio_emb = self.model.clip_embeddings(_standardised(crops[:n]).to(self.device), mel)
        return score_distances(sync_distances(video.float().cpu(), audio_emb.float().cpu(), max_offset))


# --------------------------------------------------------------------------------------------
# Data: packed HDF5 -> crops and audio in memory
# --------------------------------------------------------------------------------------------


@dataclass
class SyncClips:
    """Mouth crops and audio of the clips of a packed file, all at one sample rate and frame rate."""

    keys: list[str]
    crops: list[Tensor]  # (T, h, w) uint8 each
    audio: list[np.ndarray]  # (T * spf,) float32 each
    sample_rate: int
    fps: float

    def __len__(self) -> int:
        return len(self.keys)


def load_sync_clips(path: str | os.PathLike, cfg: SyncNetConfig, *, skip_mirrored: bool = False,
                    desc: str | None = None) -> SyncClips:
    """Read the clips of a packed HDF5 file (:mod:`speechanim.packing`) as mouth crops and audio.

    ``skip_mirrored`` leaves out the ``*_mirror`` copies.  Raises :class:`SyncNetError` naming the
    file when it is missing or unreadable, holds no clips, or its clips disagree on the rates.
    """
    path = Path(path)
    if not path.is_file():
        raise SyncNetError(f"{path}: no such packed HDF5 file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise SyncNetError(f"{path}: not a readable HDF5 file ({e})") from e
    keys, crops, audio, rates = [], [], [], set()
    with h5:
        names = [k for k in clip_keys(h5) if not (skip_mirrored and k.endswith("_mirror"))]
        if not names:
            raise SyncNetError(f"{path}: holds no clips")
        for key in tqdm(names, desc=desc or f"syncnet: {path.name}", unit="clip", leave=False, disable=None):
            g = clip_group(h5, key)
            if "frames" not in g or "audio" not in g:
                raise SyncNetError(f"{path}: clip {key} lacks frames or audio")
            try:
                sr, fps = int(g.attrs["sample_rate"]), float(g.attrs["fps"])
            except KeyError as e:
                raise SyncNetError(f"{path}: clip {key} has no {e} attribute") from e
            rates.add((sr, fps))
            a = g["audio"][()].astype(np.float32)
            if not np.isfinite(a).all():
                raise SyncNetError(f"{path}: clip {key} has NaN or infinite audio samples")
            try:
                c = mouth_crops(g["frames"][()], cfg.lipreader_config, channels_first=True)
            except ValueError as e:
                raise SyncNetError(f"{path}: clip {key}: {e}") from e
            keys.append(key)
            crops.append(c)
            audio.append(a)
    if len(rates) > 1:
        raise SyncNetError(f"{path}: clips at several sample rates / frame rates {sorted(rates)}")
    (sr, fps), = rates
    return SyncClips(keys, crops, audio, sr, fps)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

HISTORY_FIELDS = ("epoch", "train_loss", "val_offset_accuracy", "val_shift_accuracy", "val_accuracy", "val_lse_d",
                  "val_lse_c", "seconds", "best")

#: Shift of the validation's (and the evaluation's) delayed-audio check, in frames.
CHECK_SHIFT = 5


def history_path(checkpoint: str | os.PathLike) -> Path:
    """The per-epoch CSV written beside a checkpoint: ``syncnet.pt`` -> ``syncnet.csv``."""
    return Path(checkpoint).with_suffix(".csv")


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


class _PairSampler:
    """Genuine and false (video window, audio window) pairs from the clips' crops and spectrograms."""

    def __init__(self, data: SyncClips, cfg: SyncNetConfig, source: str):
        self.cfg = cfg
        self.crops = data.crops
        self.stats = [(float(c.float().mean()), float(c.float().std().clamp_min(1.0))) for c in data.crops]
        self.mels = [audio_features(a[: len(c) * samples_per_frame(data.sample_rate, data.fps, cfg)], data.sample_rate,
                                    data.fps, cfg) for a, c in zip(data.audio, data.crops)]
        self.windows = [len(c) - cfg.window + 1 for c in data.crops]
        for key, n in zip(data.keys, self.windows):
            if n <= cfg.min_shift:
                raise SyncNetError(f"{source}: clip {key} has {n + cfg.window - 1} frames, too few for a window "
                                   f"shifted by {cfg.min_shift}")

    def batch(self, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
        cfg, b = self.cfg, self.cfg.batch_size
        clips = rng.integers(0, len(self.crops), b)
        genuine = np.arange(b) < b // 2
        video, audio = [], []
        for i, c in enumerate(clips):
            n = self.windows[c]
            shift = 0
            if not genuine[i]:
                shift = int(rng.integers(cfg.min_shift, min(cfg.max_shift, n - 1) + 1))
                shift *= 1 if rng.random() < 0.5 else -1
            t = int(rng.integers(max(0, -shift), n - max(0, shift)))
            mean, std = self.stats[c]
            video.append((self.crops[c][t:t + cfg.window].float() - mean) / std)
            s = (t + shift) * cfg.mel_per_frame
            audio.append(self.mels[c][:, s:s + cfg.mel_steps])
        return torch.stack(video), torch.stack(audio), torch.from_numpy(genuine)


def _shifted(audio: np.ndarray, frames: int, spf: int) -> np.ndarray:
    """The audio delayed by ``frames`` video frames, wrapping around (``np.roll``)."""
    return np.roll(audio, frames * spf)


def _validate(scorer: SyncScorer, data: SyncClips, cfg: SyncNetConfig) -> dict[str, float]:
    spf = samples_per_frame(data.sample_rate, data.fps, cfg)
    hits0, hits5, lse_d, lse_c = [], [], [], []
    for crops, audio in zip(data.crops, data.audio):
        real = scorer.score_crops(crops, audio, data.sample_rate, data.fps, cfg.max_offset)
        late = scorer.score_crops(crops, _shifted(audio, CHECK_SHIFT, spf), data.sample_rate, data.fps, cfg.max_offset)
        hits0.append(abs(real.offset) <= 1)
        hits5.append(abs(late.offset - CHECK_SHIFT) <= 1)
        lse_d.append(real.lse_d)
        lse_c.append(real.lse_c)
    return {"val_offset_accuracy": float(np.mean(hits0)), "val_shift_accuracy": float(np.mean(hits5)),
            "val_accuracy": float(np.mean(hits0 + hits5)), "val_lse_d": float(np.mean(lse_d)),
            "val_lse_c": float(np.mean(lse_c))}


def train(
    train_h5: str | os.PathLike,
    val_h5: str | os.PathLike,
    out: str | os.PathLike,
    cfg: SyncNetConfig | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train a SyncNet on the clips of ``train_h5``; after every epoch score the clips of
    ``val_h5`` in sync and with the audio delayed by 5 frames, and keep the epoch whose offsets are
    right (within ±1 frame) most often (ties: the higher mean LSE-C) in the checkpoint ``out``;
    stop after ``cfg.patience`` epochs without improvement or after ``cfg.epochs``.  The
    per-epoch rows are returned and written to :func:`history_path` beside ``out``.
    """
    cfg = cfg or SyncNetConfig()
    dev = torch.device(device) if device is not None else default_device()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_data = load_sync_clips(train_h5, cfg, desc="syncnet: train crops")
    val_data = load_sync_clips(val_h5, cfg, skip_mirrored=True, desc="syncnet: val crops")
    if (val_data.sample_rate, val_data.fps) != (train_data.sample_rate, train_data.fps):
        raise SyncNetError(f"{val_h5}: {val_data.sample_rate} Hz at {val_data.fps:g} fps, but {train_h5} has "
                           f"{train_data.sample_rate} Hz at {train_data.fps:g} fps")
    sampler = _PairSampler(train_data, cfg, str(train_h5))
    model = SyncNet(cfg).to(dev)
    scorer = SyncScorer(model, train_data.sample_rate, train_data.fps, dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "val_accuracy": -1.0, "val_lse_c": -math.inf}
    bar = tqdm(range(1, cfg.epochs + 1), desc="syncnet epochs", unit="epoch", disable=None if progress else True)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        total = 0.0
        for _ in range(cfg.steps_per_epoch):
            video, audio, genuine = sampler.batch(rng)
            v, a = model.embed_video(video.to(dev)), model.embed_audio(audio.to(dev))
            loss = contrastive_loss(v, a, genuine.to(dev), cfg.margin)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"syncnet: non-finite loss at epoch {epoch}; the last checkpoint is kept")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item()
        model.eval()
        val = _validate(scorer, val_data, cfg)
        improved = (val["val_accuracy"], val["val_lse_c"]) > (best["val_accuracy"], best["val_lse_c"])
        row = dict(epoch=epoch, train_loss=round(total / cfg.steps_per_epoch, 5),
                   **{k: round(v, 5) for k, v in val.items()}, seconds=round(time.perf_counter() - start, 2),
                   best=int(improved))
        rows.append(row)
        if improved:
            best = {"epoch": epoch, **val}
            save_checkpoint(out, {
                "kind": CHECKPOINT_KIND,
                "syncnet_config": cfg.to_dict(),
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "sample_rate": train_data.sample_rate,
                "fps": train_data.fps,
                "epoch": epoch,
                "best": best,
                "history": rows,
                "train": str(train_h5),
                "val": str(val_h5),
                "n_train_clips": len(train_data),
                "n_val_clips": len(val_data),
            })
        _write_history(history_path(out), rows)
        bar.set_postfix(loss=row["train_loss"], val_acc=row["val_accuracy"], best=best["epoch"])
        if bar.disable:  # no bar (a log file): one line per epoch instead
            print(f"epoch {epoch}: train loss {row['train_loss']:.4f}, val accuracy {row['val_accuracy']:.3f} "
                  f"(best epoch {best['epoch']})", file=sys.stderr, flush=True)
        if epoch - best["epoch"] >= cfg.patience:
            break
    bar.close()
    return rows


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate_h5(scorer: SyncScorer, h5_path: str | os.PathLike, *, max_offset: int = 15, tolerance: int = 1,
                check_shift: int = CHECK_SHIFT, control_shift: int = 10, progress: bool = True) -> dict[str, Any]:
    """Sync of every real clip of a packed HDF5 file (``*_mirror`` copies left out), per clip and
    overall, with the checks that show the scorer works:

    * ``offset_accuracy``: share of clips whose found offset is 0 (± ``tolerance``);
    * ``shift_accuracy``: share whose audio, delayed by ``check_shift`` frames (``np.roll``), is
      found at ``check_shift`` (± ``tolerance``);
    * mean LSE-D / LSE-C of the real clips, of the real clips with the audio delayed by
      ``control_shift`` frames (wrapping; within the search range, so it is found there and only the
      windows pushed off the end cost confidence), of the still image (frame 0 repeated) with the
      audio, and of each clip with the audio of the clip half the file away (``other_audio``: in a
      file sorted by speaker, another speaker's sentence; absent with a single clip).
    """
    data = load_sync_clips(h5_path, scorer.cfg, skip_mirrored=True, desc=f"syncnet: {Path(h5_path).name}")
    spf = samples_per_frame(data.sample_rate, data.fps, scorer.cfg)
    clips, half = [], len(data) // 2
    for i, (key, crops, audio) in enumerate(tqdm(list(zip(data.keys, data.crops, data.audio)),
                                                 desc="syncnet: scoring", unit="clip", disable=None if progress else True)):
        sr, fps = data.sample_rate, data.fps
        real = scorer.score_crops(crops, audio, sr, fps, max_offset)
        check = scorer.score_crops(crops, _shifted(audio, check_shift, spf), sr, fps, max_offset)
        shifted = scorer.score_crops(crops, _shifted(audio, control_shift, spf), sr, fps, max_offset)
        still = scorer.score_crops(crops[:1].expand_as(crops), audio, sr, fps, max_offset)
        clips.append({"key": key, "offset": real.offset, "lse_d": real.lse_d, "lse_c": real.lse_c,
                      "check_offset": check.offset, "shifted_offset": shifted.offset, "shifted_lse_d": shifted.lse_d,
                      "shifted_lse_c": shifted.lse_c, "still_offset": still.offset, "still_lse_d": still.lse_d,
                      "still_lse_c": still.lse_c})
        if half:
            other_audio = fit_length(data.audio[(i + half) % len(data)], len(crops), spf)
            other = scorer.score_crops(crops, other_audio, sr, fps, max_offset)
            clips[-1].update(other_lse_d=other.lse_d, other_lse_c=other.lse_c)

    def mean(name: str) -> float:
        return float(np.mean([c[name] for c in clips]))

    return {
        "h5": str(h5_path),
        "n_clips": len(clips),
        "max_offset": max_offset,
        "tolerance": tolerance,
        "offset_accuracy": float(np.mean([abs(c["offset"]) <= tolerance for c in clips])),
        "check_shift": check_shift,
        "shift_accuracy": float(np.mean([abs(c["check_offset"] - check_shift) <= tolerance for c in clips])),
        "real": {"lse_d": mean("lse_d"), "lse_c": mean("lse_c")},
        "shifted_audio": {"frames": control_shift, "lse_d": mean("shifted_lse_d"), "lse_c": mean("shifted_lse_c"),
                          "offset_accuracy": float(np.mean([abs(c["shifted_offset"] - control_shift) <= tolerance
                                                            for c in clips]))},
        "still_image": {"lse_d": mean("still_lse_d"), "lse_c": mean("still_lse_c")},
        **({"other_audio": {"lse_d": mean("other_lse_d"), "lse_c": mean("other_lse_c")}} if half else {}),
        "clips": clips,
    }


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_config(text: str | None) -> SyncNetConfig:
    return parse_overrides(text, SyncNetConfig, SyncNetError)


def _parse_device(name: str | None) -> torch.device | None:
    return parse_device(name, SyncNetError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechanim.syncnet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a SyncNet on real videos of a packed dataset")
    p.add_argument("--train", required=True, type=Path, help="packed HDF5 of the training split")
    p.add_argument("--val", required=True, type=Path, help="packed HDF5 of the validation split")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (history CSV beside it)")
    p.add_argument("--config", default=None, help="JSON object of SyncNetConfig overrides")
    p.add_argument("--device", default=None, help="torch device (default: CUDA when available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p = sub.add_parser("eval", help="offsets, LSE-D and LSE-C of the real clips of a packed HDF5 file")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--h5", required=True, type=Path, help="packed HDF5 whose clips to score")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--max-offset", type=int, default=15, help="offsets searched, in frames either way (default 15)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.command == "train":
        refuse_clashing_paths(parser, {"--train": args.train, "--val": args.val},
                              {"--out": args.out, "its history CSV": history_path(args.out)})
    else:
        refuse_clashing_paths(parser, {"--checkpoint": args.checkpoint, "--h5": args.h5}, {"--out": args.out})
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        if args.command == "train":
            cfg = _parse_config(args.config)
            rows = train(args.train, args.val, args.out, cfg, device=_parse_device(args.device))
            best = max(rows, key=lambda r: (r["val_accuracy"], r["val_lse_c"]))
            print(f"syncnet: best epoch {best['epoch']} of {len(rows)}, val accuracy {best['val_accuracy']:.3f} "
                  f"(offset {best['val_offset_accuracy']:.3f}, +{CHECK_SHIFT} frames {best['val_shift_accuracy']:.3f}) "
                  f"-> {args.out}")
        else:
            scorer = SyncScorer.load(args.checkpoint, device=_parse_device(args.device))
            result = {"checkpoint": str(args.checkpoint), **evaluate_h5(scorer, args.h5, max_offset=args.max_offset)}
            write_json(args.out, result)
            print(f"syncnet: {result['n_clips']} clips: offset 0 (±1) {result['offset_accuracy']:.3f}, "
                  f"+{result['check_shift']} found {result['shift_accuracy']:.3f}; LSE-D / LSE-C real "
                  f"{result['real']['lse_d']:.3f} / {result['real']['lse_c']:.3f}, "
                  f"audio +{result['shifted_audio']['frames']} {result['shifted_audio']['lse_d']:.3f} / {result['shifted_audio']['lse_c']:.3f}, still "
                  f"{result['still_image']['lse_d']:.3f} / {result['still_image']['lse_c']:.3f} -> {args.out}")
            if "other_audio" in result:
                print(f"syncnet: another clip's audio: LSE-D / LSE-C {result['other_audio']['lse_d']:.3f} / "
                      f"{result['other_audio']['lse_c']:.3f}")
    except (SyncNetError, CheckpointError, PackedFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
