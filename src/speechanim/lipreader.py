"""A LipNet lipreader trained here, and the word error rate it gives (paper section 4.2).

"The accuracy of the spoken message is measured using the word error rate (WER) achieved by a
pre-trained lip-reading model. We use the LipNet model [2]" (paper, 4.2; 21.4% WER on GRID's real
videos, Table 2).  No lipreader can be downloaded, so the DAG trains one per dataset on the
training split of the *real* videos (mirrored copies included, as augmentation), picks the epoch
with the best WER on the validation split, and then reads real and generated test videos with it.

LipNet (Assael, Shillingford, Whiteson, de Freitas 2016, arXiv:1611.01599, section 3 and its
table of hyperparameters)::

    mouth crops (1, T, H, W) ──3 x [Conv3d ─ BatchNorm ─ ReLU ─ MaxPool3d(1,2,2) ─ Dropout3d]──
      ──flatten per frame──> 2 x bidirectional GRU ──Linear──> characters + blank, per frame ──CTC

Input: the mouth region cut at a *fixed* box of the aligned frames.  Every frame of a packed clip
(and every generated frame) is aligned to the canonical face (:func:`speechanim.align.load_template`),
so the mouth is in the same place in each; the box comes from the template's mouth corners
(61, 291), inner lips (13, 14) and chin (152), scaled to the frame's size, which also works for
generated videos that have no landmarks.  The crop is made grayscale, resized to
``LipReaderConfig.mouth_size`` and standardised per clip (zero mean, unit variance).

Decoding (``LipReaderConfig.decoder``) is either greedy CTC (best path: arg-max per frame, merge
repeats, drop blanks) or ``"grid"``: the best CTC path through GRID's fixed six-slot grammar, a
lexicon-constrained decoder in the spirit of LipNet's beam search with a language model (LipNet's
own beam search is left out).  Evaluation reports the WER under both.  WER is the word-level edit
distance summed over clips divided by the number of reference words; CER likewise on characters.

Its cost, learning curve and WER on the embedded corpus are in docs/research-notes.md ("The lipreader's learning curve").

CLI (the Snakemake rules call exactly these)::

    python -m speechanim.lipreader train --train train.h5 --val val.h5 --out lipreader.pt [--config JSON]
    python -m speechanim.lipreader eval --checkpoint lipreader.pt --h5 test.h5 --out wer.json
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm import tqdm

from .fileio import atomic_open, refuse_clashing_paths
from .metrics.wer import cer, edit_distance, normalise_text, wer  # noqa: F401  (re-exported: the lipreader's API)
from . import gridformat
from .align import load_template
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .models import device as default_device
from .packing import PackedFileError, clip_group, clip_keys
from .options import parse_device, parse_overrides, write_json

__all__ = [
    "BLANK",
    "VOCABULARY",
    "LipNet",
    "LipReader",
    "LipReaderConfig",
    "LipReaderError",
    "cer",
    "ctc_grammar_decode",
    "ctc_grammar_decode_many",
    "ctc_greedy_decode",
    "decode",
    "decode_many",
    "decode_labels",
    "edit_distance",
    "encode_text",
    "evaluate_h5",
    "history_path",
    "load_mouth_clips",
    "mouth_box",
    "mouth_crops",
    "normalise_text",
    "standardise",
    "train",
    "wer",
]

#: Output classes: index 0 is the CTC blank, then space and the 26 letters (LipNet, section 3: "the
#: 26 English letters, space, and the CTC blank").
BLANK = 0
VOCABULARY = " abcdefghijklmnopqrstuvwxyz"
_CHAR_INDEX = {c: i + 1 for i, c in enumerate(VOCABULARY)}

LR_SCHEDULES = ("plateau", "cosine", "onecycle", "constant")
DECODERS = ("greedy", "grid")

#: Checkpoint ``kind`` of a lipreader file (generator checkpoints have none).
CHECKPOINT_KIND = "lipreader"

#: ITU-R BT.601 luma weights for R, G, B.
_LUMA = (0.299, 0.587, 0.114)


class LipReaderError(ValueError):
    """Bad input to the lipreader: the message names the file or clip and the problem."""


# --------------------------------------------------------------------------------------------
# Text, decoding and error rates
# --------------------------------------------------------------------------------------------


def encode_text(text: str) -> list[int]:
    """Class indices (1..27) of the normalised text."""
    return [_CHAR_INDEX[c] for c in normalise_text(text)]


def decode_labels(labels: Iterable[int]) -> str:
    """Text of a sequence of class indices (blanks are skipped)."""
    return "".join(VOCABULARY[i - 1] for i in labels if i != BLANK)


def ctc_greedy_decode(scores: Tensor | np.ndarray, length: int | None = None) -> str:
    """Best-path decoding of one sequence of per-frame class scores ``(T, C)`` (logits or
    log-probabilities): arg-max per frame, merge repeated classes, drop blanks."""
    scores = torch.as_tensor(scores)
    if scores.ndim != 2 or scores.shape[1] != len(VOCABULARY) + 1:
        raise ValueError(f"scores must be (T, {len(VOCABULARY) + 1}), got {tuple(scores.shape)}")
    best = scores[: length if length is not None else scores.shape[0]].argmax(dim=1).tolist()
    labels = [c for i, c in enumerate(best) if c != BLANK and (i == 0 or c != best[i - 1])]
    return decode_labels(labels)


#: GRID's grammar as the "grid" decoder reads it: the words of each of the six slots.
GRID_SLOTS: tuple[tuple[str, ...], ...] = tuple(tuple(sorted(set(table.values()))) for table in gridformat.GRAMMAR)


def ctc_grammar_decode(scores: Tensor | np.ndarray, slots: Sequence[Sequence[str]] = GRID_SLOTS,
                       length: int | None = None) -> str:
    """The sentence of one word from each slot, in order, whose best CTC path scores highest on the
    per-frame class scores ``(T, C)`` (Viterbi through the grammar, words separated by a space).

    A lexicon-constrained decoder: a GRID sentence read with one wrong letter comes out as the
    nearest sentence the grammar allows rather than as a non-word.  Every word of every slot is
    one row of CTC states (blank, l1, blank, ..., blank), all advanced together frame by frame; a
    slot's words are entered from the best word of the slot before, ended one frame earlier.
    """
    scores = torch.as_tensor(scores)
    return ctc_grammar_decode_many([scores[: length if length is not None else len(scores)]], slots)[0]


def _grammar_states(slots: Sequence[Sequence[str]]) -> tuple[np.ndarray, ...]:
    """The CTC state rows of every word of every slot: labels ``(S, W, E)``, which states do not
    exist, which may be reached by skipping a blank, and each word's two end states ``(2, S, W, 1)``."""
    labels = [[encode_text(w if k == 0 else " " + w) for w in words] for k, words in enumerate(slots)]
    n = np.full((len(slots), max(len(words) for words in slots)), 2)  # extended lengths; padding rows: no valid state
    ext = np.zeros((*n.shape, 2 * max(len(l) for ls in labels for l in ls) + 1), np.int64)
    for k, ls in enumerate(labels):
        for i, l in enumerate(ls):
            n[k, i] = 2 * len(l) + 1
            ext[k, i, 1:2 * len(l):2] = l
    invalid = np.arange(ext.shape[2]) >= n[..., None]
    invalid[n == 2] = True
    skip = np.zeros(ext.shape, bool)  # s - 2 -> s: jump the blank between two different labels
    skip[..., 2:] = (ext[..., 2:] != BLANK) & (ext[..., 2:] != ext[..., :-2])
    last = np.stack([n - 1, n - 2])[..., None]  # a word ends on its last label or the blank after it
    return ext, invalid, skip, last


def ctc_grammar_decode_many(scores: Sequence[Tensor | np.ndarray], slots: Sequence[Sequence[str]] = GRID_SLOTS,
                            chunk: int = 32) -> list[str]:
    """:func:`ctc_grammar_decode` of several clips' scores (each ``(T_i, C)``), ``chunk`` clips
    advanced together frame by frame (the same sentences, a fraction of the per-frame overhead)."""
    lps = []
    for y in scores:
        y = torch.as_tensor(y)
        if y.ndim != 2 or y.shape[1] != len(VOCABULARY) + 1:
            raise ValueError(f"scores must be (T, {len(VOCABULARY) + 1}), got {tuple(y.shape)}")
        if len(y) == 0:
            raise ValueError("no frames to decode")
        lps.append(y.double().log_softmax(-1).numpy())
    ext, invalid, skip, last = _grammar_states(slots)
    out = []
    for i in range(0, len(lps), chunk):
        out += _grammar_viterbi(lps[i:i + chunk], slots, ext, invalid, skip, last)
    return out


def _grammar_viterbi(lps: list[np.ndarray], slots, ext, invalid, skip, last) -> list[str]:
    b, n_slots, n_frames = len(lps), len(slots), max(len(lp) for lp in lps)
    lp = np.zeros((n_frames, b, lps[0].shape[1]))
    for j, x in enumerate(lps):
        lp[: len(x), j] = x  # frames past a clip's end are decoded too, but never read back
    score = np.full((b, *ext.shape), -np.inf)
    entry = np.zeros((b, *ext.shape), np.int64)
    slot_end = np.full((b, n_slots), -np.inf)  # best score of a word of each slot ending at the previous frame
    end_word = np.zeros((n_frames, b, n_slots), np.int64)
    end_entry = np.zeros((n_frames, b, n_slots), np.int64)
    done = np.zeros((n_frames, b), bool)  # a whole sentence ends at this frame
    clips, rows = np.arange(b)[:, None], np.arange(n_slots)[None]
    closed = np.where(invalid, -np.inf, 0.0)  # states a word does not have
    no_skip = np.where(skip[..., 2:], 0.0, -np.inf)
    for t in range(n_frames):
        # each state keeps the best of: stay, the state before, a skipped blank, entering the slot
        # (first wins a tie, in that order); ``entry`` carries the frame its word was entered at
        new, ent = score.copy(), entry.copy()
        for shift, extra in ((1, 0.0), (2, no_skip)):
            came = score[..., :-shift] + extra
            better = came > new[..., shift:]
            new[..., shift:] = np.where(better, came, new[..., shift:])
            ent[..., shift:] = np.where(better, entry[..., :-shift], ent[..., shift:])
        first = np.full((b, 1), 0.0 if t == 0 else -np.inf)
        enter = np.concatenate([first, slot_end[:, :-1]], 1)[..., None, None]  # a slot's first blank or label
        better = enter > new[..., :2]
        new[..., :2] = np.where(better, enter, new[..., :2])
        ent[..., :2] = np.where(better, t, ent[..., :2])
        score, entry = new + lp[t][:, ext] + closed, ent
        ends = np.take_along_axis(score[None], last[:, None], 4)[..., 0]  # (2, clips, slots, words)
        at = ends.argmax(0)  # which of the two end states
        ends = ends.max(0)
        word = ends.argmax(2)
        slot_end = ends[clips, rows, word]
        end_word[t] = word
        end_entry[t] = entry[clips, rows, word, last[at[clips, rows, word], rows, word, 0]]
        done[t] = np.isfinite(slot_end[:, -1])
    out = []
    for j, x in enumerate(lps):
        t = len(x) - 1
        if not done[t, j]:
            raise ValueError(f"{len(x)} frames are too few for any sentence of the grammar")
        words = []
        for k in range(n_slots - 1, -1, -1):
            words.append(slots[k][end_word[t, j, k]])
            t = end_entry[t, j, k] - 1
        out.append(" ".join(reversed(words)))
    return out


def decode(scores: Tensor | np.ndarray, decoder: str = "greedy") -> str:
    """One clip's per-frame class scores ``(T, C)`` as text, by ``decoder`` ("greedy" or "grid")."""
    return decode_many([scores], decoder)[0]


def decode_many(scores: Sequence[Tensor | np.ndarray], decoder: str = "greedy") -> list[str]:
    """Several clips' scores (each ``(T_i, C)``) as text, by ``decoder`` ("greedy" or "grid")."""
    if decoder == "greedy":
        return [ctc_greedy_decode(y) for y in scores]
    if decoder == "grid":
        return ctc_grammar_decode_many(scores) if len(scores) else []
    raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")


def _is_grid_sentence(text: str) -> bool:
    words = normalise_text(text).split()
    return len(words) == len(GRID_SLOTS) and all(w in slot for w, slot in zip(words, GRID_SLOTS))


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class LipReaderConfig:
    """Sizes and training settings.  Defaults are the embedded (small, CPU) lipreader; LipNet's
    own values are given beside each field, and :meth:`lipnet` returns them."""

    # Mouth crop fed to the network, (H, W). LipNet: 50 x 100 RGB mouth crops; grayscale here.
    mouth_size: tuple[int, int] = (24, 32)
    # The fixed mouth box on the aligned frame, from the canonical face: width = box_width x the
    # distance between the mouth corners (61, 291), centred on them; top and bottom at
    # box_above / box_below x the lip-to-chin distance above and below the inner-lip centre
    # (13, 14; chin 152). These cover the outer lips of the grid-mini speakers wide open.
    box_width: float = 1.6
    box_above: float = 0.5
    box_below: float = 0.7
    # Spatiotemporal conv blocks. LipNet: 32 / 64 / 96 channels, kernels 3x5x5, 3x5x5, 3x3x3
    # (time x height x width), the first with spatial stride 2, each followed by a 1x2x2 max-pool
    # and dropout 0.5 (here spatial dropout, whole feature maps).
    channels: tuple[int, int, int] = (16, 32, 48)
    kernels: tuple[tuple[int, int, int], ...] = ((3, 5, 5), (3, 5, 5), (3, 3, 3))
    first_stride: int = 2
    dropout: float = 0.1
    # Two bidirectional GRUs. LipNet: 256 units each way.
    gru_hidden: int = 128
    gru_layers: int = 2
    # Training. LipNet: Adam, learning rate 1e-4, mini-batches of 50, dropout 0.5. Here a higher
    # rate, smaller batches and less dropout, which learn much faster on a CPU budget (measured on
    # synthgrid: the LipNet-like 1e-3 / 16 / 0.3 was at 0.85 validation WER after 20 epochs).
    # lr_schedule: "plateau" halves the rate after `lr_patience` epochs without a better validation
    # WER (a short run keeps its full rate, a long one settles); "cosine" decays it to 0 over
    # `epochs`; "onecycle" warms up over `warmup` of the steps, then decays; "constant" keeps it.
    lr: float = 2e-3
    lr_schedule: str = "plateau"
    lr_patience: int = 3
    warmup: float = 0.1  # "onecycle": fraction of the steps spent rising to `lr` before the cosine decay
    # Training augmentation, drawn per clip (the mirrored copies in train.h5 are the paper's own).
    # jitter: the crop shifted by up to this many crop pixels each way (the aligned mouth moves a
    # pixel or two between speakers); time_stretch: the clip resampled in time at a rate in
    # [1 - s, 1 + s] (speaking rate); time_mask: one span of up to this many frames replaced by the
    # clip's mean frame. Brightness and contrast are left out: the per-clip standardisation undoes them.
    jitter: int = 0
    time_stretch: float = 0.0
    time_mask: int = 0
    # ema: validate and keep an exponential moving average of the weights (decay per step; 0 = the
    # weights as trained): it smooths their step-to-step noise (docs/research-notes.md: test WER with and without).
    # LipNet: none.
    ema: float = 0.0
    # Decoding: "greedy" (best path) or "grid" (the best path through GRID's six-slot grammar,
    # a lexicon-constrained CTC decoder; LipNet decodes with a beam search and a language model).
    decoder: str = "greedy"
    batch_size: int = 8
    epochs: int = 40
    patience: int = 8  # epochs without a better validation WER (or loss at equal WER) before stopping
    grad_clip: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.mouth_size = tuple(int(v) for v in self.mouth_size)
        self.channels = tuple(int(v) for v in self.channels)
        self.kernels = tuple(tuple(int(k) for k in ks) for ks in self.kernels)
        if len(self.mouth_size) != 2 or min(self.mouth_size) < 8:
            raise ValueError(f"mouth_size must be (H, W) of at least 8 pixels each, got {self.mouth_size}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if len(self.channels) != 3 or len(self.kernels) != 3 or any(len(k) != 3 for k in self.kernels):
            raise ValueError("channels and kernels must name 3 conv blocks; kernels as (t, h, w)")
        if any(k % 2 == 0 for ks in self.kernels for k in ks):
            raise ValueError(f"kernel sizes must be odd (same padding), got {self.kernels}")
        if min(self.channels) < 1 or self.gru_hidden < 1 or self.gru_layers < 1 or self.first_stride < 1:
            raise ValueError("channels, gru_hidden, gru_layers and first_stride must be positive")
        h, w = self.feature_size
        if h < 1 or w < 1:
            raise ValueError(f"mouth_size {self.mouth_size} is too small for the stride and three 2x2 pools")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.box_width, self.box_above, self.box_below) <= 0:
            raise ValueError("box_width, box_above and box_below must be positive")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")
        if self.jitter < 0 or self.time_mask < 0 or not 0.0 <= self.time_stretch < 0.5:
            raise ValueError("jitter and time_mask must be >= 0 and time_stretch in [0, 0.5)")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.lr_patience < 1:
            raise ValueError(f"lr_patience must be positive, got {self.lr_patience}")
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1 or self.patience < 1:
            raise ValueError("lr, batch_size, epochs and patience must be positive")

    @property
    def feature_size(self) -> tuple[int, int]:
        """Spatial size after the three blocks (per-frame features are channels[-1] x this)."""
        h, w = self.mouth_size
        h, w = -(-h // self.first_stride), -(-w // self.first_stride)
        for _ in range(3):
            h, w = h // 2, w // 2
        return h, w

    @classmethod
    def lipnet(cls, **overrides: Any) -> LipReaderConfig:
        """LipNet's sizes and optimiser (Assael et al. 2016, appendix A), for a GPU."""
        values = dict(mouth_size=(50, 100), channels=(32, 64, 96), kernels=((3, 5, 5), (3, 5, 5), (3, 3, 3)),
                      first_stride=2, dropout=0.5, gru_hidden=256, gru_layers=2, lr=1e-4, lr_schedule="constant",
                      batch_size=50)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None, source: str = "--config") -> LipReaderConfig:
        """The defaults with ``overrides`` (a dict, e.g. parsed JSON) applied; an unknown key or a
        bad value raises :class:`LipReaderError` naming it."""
        overrides = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise LipReaderError(f"{source}: unknown LipReaderConfig key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**overrides)
        except (TypeError, ValueError) as e:
            raise LipReaderError(f"{source}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mouth_size"] = list(self.mouth_size)
        d["channels"] = list(self.channels)
        d["kernels"] = [list(k) for k in self.kernels]
        return d


# --------------------------------------------------------------------------------------------
# Mouth crops
# --------------------------------------------------------------------------------------------


def mouth_box(frame_size: tuple[int, int], cfg: LipReaderConfig | None = None) -> tuple[float, float, float, float]:
    """The fixed mouth box ``(top, bottom, left, right)`` in pixel-edge coordinates of an aligned
    frame of ``frame_size = (H, W)``, from the canonical face scaled to that size; clipped to the
    frame."""
    cfg = cfg or LipReaderConfig()
    h, w = int(frame_size[0]), int(frame_size[1])
    p = load_template((h, w)).points + 0.5  # pixel centres at integers -> edges at integers
    left_corner, right_corner, chin = p[61], p[291], p[152]
    centre_x = (left_corner[0] + right_corner[0]) / 2
    lips_y = (p[13][1] + p[14][1]) / 2
    half_width = cfg.box_width * abs(right_corner[0] - left_corner[0]) / 2
    to_chin = chin[1] - lips_y
    top, bottom = lips_y - cfg.box_above * to_chin, lips_y + cfg.box_below * to_chin
    left, right = centre_x - half_width, centre_x + half_width
    return max(0.0, top), min(float(h), bottom), max(0.0, left), min(float(w), right)


def _box_pixels(frame_size: tuple[int, int], cfg: LipReaderConfig) -> tuple[int, int, int, int]:
    top, bottom, left, right = mouth_box(frame_size, cfg)
    return int(math.floor(top)), int(math.ceil(bottom)), int(math.floor(left)), int(math.ceil(right))


def mouth_crops(frames: np.ndarray | Tensor, cfg: LipReaderConfig | None = None, *, channels_first: bool = False) -> Tensor:
    """Grayscale mouth crops ``(T, h, w)`` uint8 of aligned frames.

    ``frames``: uint8 ``(T, H, W, 3)`` RGB (``channels_first``: ``(T, 3, H, W)``, as stored in the
    packed HDF5).  The box is :func:`mouth_box` rounded outwards to whole pixels, resized with
    antialiasing to ``cfg.mouth_size``.  Kept as uint8 so that a large training split fits in
    memory (32000 GRID clips: 1.8 GB); :func:`standardise` makes the network's input.
    """
    cfg = cfg or LipReaderConfig()
    x = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, Tensor) else frames
    if x.ndim != 4 or x.shape[1 if channels_first else 3] != 3:
        layout = "(T, 3, H, W)" if channels_first else "(T, H, W, 3)"
        raise LipReaderError(f"frames must be RGB {layout}, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise LipReaderError(f"frames must be uint8 in [0, 255], got {x.dtype} (convert generator output in "
                             f"[-1, 1] with ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))")
    if not channels_first:
        x = x.permute(0, 3, 1, 2)
    h, w = int(x.shape[2]), int(x.shape[3])
    top, bottom, left, right = _box_pixels((h, w), cfg)
    region = x[:, :, top:bottom, left:right].float()
    luma = torch.tensor(_LUMA, device=region.device).view(1, 3, 1, 1)
    gray = (region * luma).sum(dim=1, keepdim=True)
    out = F.interpolate(gray, size=cfg.mouth_size, mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0].round_().clamp_(0, 255).to(torch.uint8)


def standardise(crops: Tensor) -> Tensor:
    """Per-clip normalisation of ``(T, h, w)`` crops: float32, zero mean, unit variance over the clip."""
    crops = crops.float()
    return (crops - crops.mean()) / crops.std().clamp_min(1.0)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class LipNet(nn.Module):
    """LipNet (Assael et al. 2016): three spatiotemporal conv blocks, two bidirectional GRUs and a
    linear layer to per-frame character scores.  Input ``(B, T, h, w)`` standardised crops and the
    clip lengths; output ``(B, T, 28)`` logits (class 0 the CTC blank)."""

    def __init__(self, cfg: LipReaderConfig):
        super().__init__()
        self.cfg = cfg
        blocks, in_ch = [], 1
        for i, (out_ch, k) in enumerate(zip(cfg.channels, cfg.kernels)):
            stride = (1, cfg.first_stride, cfg.first_stride) if i == 0 else (1, 1, 1)
            blocks.append(nn.Sequential(
                nn.Conv3d(in_ch, out_ch, k, stride=stride, padding=tuple(s // 2 for s in k), bias=False),
                nn.BatchNorm3d(out_ch),
                nn.ReLU(inplace=True),
                nn.MaxPool3d((1, 2, 2)),
                nn.Dropout3d(cfg.dropout),  # LipNet: spatial dropout after each block
            ))
            in_ch = out_ch
        self.frontend = nn.ModuleList(blocks)
        fh, fw = cfg.feature_size
        self.gru = nn.GRU(cfg.channels[-1] * fh * fw, cfg.gru_hidden, num_layers=cfg.gru_layers,
                          batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * cfg.gru_hidden, len(VOCABULARY) + 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, crops: Tensor, lengths: Tensor | Sequence[int] | None = None) -> Tensor:
        b, t = crops.shape[:2]
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
            if bool((lengths == t).all()):
                lengths = None  # no padding: the unpacked GRU is about twice as fast on the CPU
        x = crops.unsqueeze(1)  # (B, 1, T, h, w)
        if lengths is not None:
            # zero the padded frames after every block, so that the temporal kernels see the zero
            # padding a clip of its own length would see: outputs do not depend on the batch
            keep = (torch.arange(t)[None, :] < lengths[:, None]).to(x.device, x.dtype).view(b, 1, t, 1, 1)
        for block in self.frontend:
            x = block(x)
            if lengths is not None:
                x = x * keep
        x = x.permute(0, 2, 1, 3, 4).reshape(b, t, -1)  # (B, T, C * h' * w')
        if lengths is None:
            x, _ = self.gru(x)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=t)
        return self.classifier(x)


# --------------------------------------------------------------------------------------------
# Data: packed HDF5 -> crops in memory
# --------------------------------------------------------------------------------------------


@dataclass
class MouthClips:
    """Mouth crops of every clip of a packed file, with their sentences."""

    keys: list[str]
    crops: list[Tensor]  # (T, h, w) uint8 each (mouth_crops)
    texts: list[str]  # normalised sentences

    def __len__(self) -> int:
        return len(self.keys)


def load_mouth_clips(path: str | os.PathLike, cfg: LipReaderConfig, *, desc: str | None = None) -> MouthClips:
    """Read every clip of a packed HDF5 file (see :mod:`speechanim.packing`) as mouth crops.

    Raises :class:`LipReaderError` naming the file when it is missing, holds no clips, or a clip
    has no words or is too short for CTC to emit its sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise LipReaderError(f"{path}: no such packed HDF5 file")
    keys, crops, texts = [], [], []
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise LipReaderError(f"{path}: not a readable HDF5 file ({e})") from e
    with h5:
        names = clip_keys(h5)
        if not names:
            raise LipReaderError(f"{path}: holds no clips")
        for key in tqdm(names, desc=desc or f"mouth crops {path.name}", unit="clip", leave=False, disable=None):
            g = clip_group(h5, key)
            if "frames" not in g:
                raise LipReaderError(f"{path}: clip {key} has no frames")
            text = normalise_text(str(g.attrs.get("words", "")))
            if not text:
                raise LipReaderError(f"{path}: clip {key} has no words (attribute 'words' is empty)")
            c = mouth_crops(g["frames"][()], cfg, channels_first=True)
            if len(c) < _ctc_min_frames(encode_text(text)):
                raise LipReaderError(f"{path}: clip {key} has {len(c)} frames, too few for the {len(text)} "
                                     f"characters of {text!r}")
            keys.append(key)
            crops.append(c)
            texts.append(text)
    return MouthClips(keys, crops, texts)


def _ctc_min_frames(labels: Sequence[int]) -> int:
    """Frames CTC needs to emit ``labels``: one each, plus a blank between repeated characters."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def _batch(crops: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Standardised crops of several clips, zero-padded to the longest: ``(B, T, h, w)``, lengths."""
    lengths = torch.tensor([len(c) for c in crops], dtype=torch.int64)
    out = torch.zeros((len(crops), int(lengths.max()), *crops[0].shape[1:]), device=crops[0].device)
    for i, c in enumerate(crops):
        out[i, : len(c)] = standardise(c)
    return out, lengths


def augment(crops: Tensor, cfg: LipReaderConfig, rng: np.random.Generator) -> Tensor:
    """One clip's crops ``(T, h, w)`` varied at random for training (``cfg.jitter``,
    ``cfg.time_stretch``, ``cfg.time_mask``), as float32; every draw comes from ``rng``."""
    x = crops.float()
    if cfg.time_stretch > 0:  # nearest-frame resampling at a random rate
        rate = rng.uniform(1 - cfg.time_stretch, 1 + cfg.time_stretch)
        length = max(1, round(len(x) * rate))
        x = x[torch.from_numpy(np.minimum((np.arange(length) / rate).astype(np.int64), len(x) - 1))]
    if cfg.jitter > 0:  # the whole clip shifted, edges repeated
        j = cfg.jitter
        dy, dx = rng.integers(0, 2 * j + 1, size=2)
        padded = F.pad(x[:, None], (j, j, j, j), mode="replicate")[:, 0]
        x = padded[:, dy:dy + x.shape[1], dx:dx + x.shape[2]]
    if cfg.time_mask > 0:
        span = int(rng.integers(0, cfg.time_mask + 1))
        if 0 < span < len(x):
            at = int(rng.integers(0, len(x) - span + 1))
            x = x.clone()
            x[at:at + span] = x.mean(dim=0)
    return x


# --------------------------------------------------------------------------------------------
# The reader (inference)
# --------------------------------------------------------------------------------------------


class LipReader:
    """A trained lipreader: ``LipReader.load(path).transcribe(frames)``."""

    def __init__(self, model: LipNet, cfg: LipReaderConfig, device: torch.device | str | None = None):
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str | None = None) -> LipReader:
        """A lipreader checkpoint written by :func:`train`."""
        payload = load_checkpoint(path)
        if payload.get("kind") != CHECKPOINT_KIND or "model" not in payload or "lipreader_config" not in payload:
            raise CheckpointError(f"{path}: not a lipreader checkpoint (kind {payload.get('kind')!r})")
        cfg = LipReaderConfig.from_overrides(payload["lipreader_config"], source=str(path))
        model = LipNet(cfg)
        model.load_state_dict(payload["model"])
        return cls(model, cfg, device)

    @torch.no_grad()
    def logits(self, crops: Sequence[Tensor], batch_size: int = 32) -> list[Tensor]:
        """Per-frame class scores ``(T, 28)`` of mouth crops (:meth:`crops`), one tensor per clip."""
        out = []
        for i in range(0, len(crops), batch_size):
            x, lengths = _batch(crops[i:i + batch_size])
            y = self.model(x.to(self.device), lengths).float().cpu()
            out += [y[j, : lengths[j]] for j in range(len(lengths))]
        return out

    def transcribe_crops(self, crops: Sequence[Tensor], batch_size: int = 32, decoder: str | None = None) -> list[str]:
        """Sentences of mouth crops, decoded with ``decoder`` (default: the checkpoint's ``cfg.decoder``)."""
        return decode_many(self.logits(crops, batch_size), decoder or self.cfg.decoder)

    def crops(self, frames: np.ndarray | Tensor, *, channels_first: bool = False) -> Tensor:
        """Mouth crops ``(T, h, w)`` uint8 of aligned uint8 frames, as this reader cuts them."""
        return mouth_crops(frames, self.cfg, channels_first=channels_first)

    def transcribe(self, frames: np.ndarray | Tensor) -> str:
        """The sentence read from one clip of aligned uint8 RGB frames ``(T, H, W, 3)``."""
        return self.transcribe_many([frames])[0]

    def transcribe_many(self, clips: Iterable[np.ndarray | Tensor], batch_size: int = 32) -> list[str]:
        """Sentences of several clips (each uint8 ``(T, H, W, 3)``; lengths and sizes may differ)."""
        return self.transcribe_crops([self.crops(c) for c in clips], batch_size)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_wer", "val_cer", "lr", "seconds", "best")


def history_path(checkpoint: str | os.PathLike) -> Path:
    """The per-epoch CSV written beside a checkpoint: ``lipreader.pt`` -> ``lipreader.csv``."""
    return Path(checkpoint).with_suffix(".csv")


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


@torch.no_grad()
def _ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model, for every float parameter and buffer
    (batch-norm statistics included); integer buffers (batch counts) are copied."""
    for a, m in zip(average.state_dict().values(), model.state_dict().values()):
        if a.is_floating_point():
            a.lerp_(m, 1.0 - decay)
        else:
            a.copy_(m)


def _ctc_loss(model: LipNet, crops: Sequence[Tensor], texts: Sequence[str], dev: torch.device) -> tuple[Tensor, Tensor]:
    x, lengths = _batch(crops)
    logits = model(x.to(dev), lengths)
    labels = [torch.tensor(encode_text(t), dtype=torch.int64) for t in texts]
    targets = torch.cat(labels).to(dev)
    target_lengths = torch.tensor([len(l) for l in labels], dtype=torch.int64)
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, C) for CTC
    loss = F.ctc_loss(log_probs, targets, lengths.to(dev), target_lengths.to(dev), blank=BLANK,
                      reduction="mean", zero_infinity=True)
    return loss, logits.detach()


@torch.no_grad()
def _validate(model: LipNet, data: MouthClips, cfg: LipReaderConfig, dev: torch.device) -> tuple[float, float, float]:
    model.eval()
    total, hyps = 0.0, []
    for i in range(0, len(data), cfg.batch_size):
        crops, texts = data.crops[i:i + cfg.batch_size], data.texts[i:i + cfg.batch_size]
        loss, logits = _ctc_loss(model, crops, texts, dev)
        total += float(loss) * len(crops)
        hyps += decode_many([logits[j, : len(c)].cpu() for j, c in enumerate(crops)], cfg.decoder)
    return total / len(data), wer(data.texts, hyps), cer(data.texts, hyps)


def train(
    train_h5: str | os.PathLike,
    val_h5: str | os.PathLike,
    out: str | os.PathLike,
    cfg: LipReaderConfig | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train a lipreader on the clips of ``train_h5``; keep the epoch with the lowest WER on
    ``val_h5`` (ties: lower validation loss) in the checkpoint ``out``; stop after ``cfg.patience``
    epochs without improvement or after ``cfg.epochs``.  The per-epoch rows are returned and
    written to :func:`history_path` beside ``out``.
    """
    cfg = cfg or LipReaderConfig()
    dev = torch.device(device) if device is not None else default_device()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_data = load_mouth_clips(train_h5, cfg, desc="lipreader: train crops")
    val_data = load_mouth_clips(val_h5, cfg, desc="lipreader: val crops")
    if cfg.decoder == "grid":
        for path, data in ((train_h5, train_data), (val_h5, val_data)):
            bad = [(k, t) for k, t in zip(data.keys, data.texts) if not _is_grid_sentence(t)]
            if bad:
                raise LipReaderError(f"{path}: clip {bad[0][0]} says {bad[0][1]!r}, not a sentence of GRID's grammar; "
                                     f"decoder 'grid' reads GRID-format corpora only (use 'greedy')")
    model = LipNet(cfg).to(dev)
    average = copy.deepcopy(model) if cfg.ema > 0 else model  # the weights validated and kept
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = None
    steps = cfg.epochs * math.ceil(len(train_data) / cfg.batch_size)
    if cfg.lr_schedule == "cosine":  # stepped per batch, reaching 0 at the end of the last epoch
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    elif cfg.lr_schedule == "onecycle":  # warm-up to lr, then cosine down to lr / 1e4 at the end of the last epoch
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=steps,
                                                       pct_start=cfg.warmup, cycle_momentum=False)
    augment_rng = np.random.default_rng([cfg.seed, 1])
    augmenting = cfg.jitter > 0 or cfg.time_stretch > 0 or cfg.time_mask > 0
    lr_changed = 0  # epoch of the last halving ("plateau")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "val_wer": math.inf, "val_loss": math.inf}
    bar = tqdm(range(1, cfg.epochs + 1), desc="lipreader epochs", unit="epoch", disable=None if progress else True)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        order = rng.permutation(len(train_data))
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            crops = [train_data.crops[j] for j in idx]
            if augmenting:
                crops = [augment(c, cfg, augment_rng) for c in crops]
            loss, _ = _ctc_loss(model, crops, [train_data.texts[j] for j in idx], dev)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimiser.step()
            if schedule is not None:
                schedule.step()
            if cfg.ema > 0:
                _ema_update(average, model, cfg.ema)
            total += loss.item() * len(idx)
        val_loss, val_wer, val_cer = _validate(average, val_data, cfg, dev)
        improved = (val_wer, val_loss) < (best["val_wer"], best["val_loss"])
        row = dict(epoch=epoch, train_loss=round(total / len(train_data), 5), val_loss=round(val_loss, 5),
                   val_wer=round(val_wer, 5), val_cer=round(val_cer, 5),
                   lr=float(f"{optimiser.param_groups[0]['lr']:.3g}"), seconds=round(time.perf_counter() - start, 2),
                   best=int(improved))
        rows.append(row)
        if improved:
            best = {"epoch": epoch, "val_wer": val_wer, "val_loss": val_loss, "val_cer": val_cer}
            save_checkpoint(out, {
                "kind": CHECKPOINT_KIND,
                "lipreader_config": cfg.to_dict(),
                "vocabulary": VOCABULARY,
                "model": {k: v.detach().cpu() for k, v in average.state_dict().items()},
                "epoch": epoch,
                "best": best,
                "history": rows,
                "train": str(train_h5),
                "val": str(val_h5),
                "n_train_clips": len(train_data),
                "n_val_clips": len(val_data),
            })
        _write_history(history_path(out), rows)
        bar.set_postfix(loss=row["train_loss"], val_wer=row["val_wer"], best=best["epoch"])
        if bar.disable:  # no bar (a log file): one line per epoch instead
            print(f"epoch {epoch}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
                  f"val WER {row['val_wer']:.3f}, CER {row['val_cer']:.3f} (best epoch {best['epoch']}); "
                  f"{row['seconds']:.0f} s", file=sys.stderr, flush=True)
        if cfg.lr_schedule == "plateau" and epoch - max(best["epoch"], lr_changed) >= cfg.lr_patience:
            for group in optimiser.param_groups:
                group["lr"] *= 0.5
            lr_changed = epoch
        if epoch - best["epoch"] >= cfg.patience:
            break
    bar.close()
    return rows


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate_h5(reader: LipReader, h5_path: str | os.PathLike, *, controls: bool = True,
                progress: bool = True) -> dict[str, Any]:
    """WER and CER of ``reader`` on every clip of a packed HDF5 file, per clip and overall.

    With ``controls``, also the error rates of two inputs that do not match the speech, which a
    useful lipreader must score clearly worse: ``still_frame`` (each clip's first frame repeated
    for the clip's length) and ``mismatched_words`` (each clip's reading scored against the
    sentence of the clip half the file away: in a file sorted by speaker and sentence name that
    is another speaker's clip, and mostly another sentence).
    """
    data = load_mouth_clips(h5_path, reader.cfg, desc=f"lipreader: {Path(h5_path).name}")
    logits = []
    for i in tqdm(range(0, len(data), 32), desc="lipreader: reading", unit="batch", disable=None if progress else True):
        logits += reader.logits(data.crops[i:i + 32])
    hyps = decode_many(logits, reader.cfg.decoder)
    result: dict[str, Any] = {
        "h5": str(h5_path),
        "n_clips": len(data),
        "n_words": sum(len(t.split()) for t in data.texts),
        "decoder": reader.cfg.decoder,
        "wer": wer(data.texts, hyps),
        "cer": cer(data.texts, hyps),
    }
    # the same readings under every decoder that applies (the grammar only to GRID sentences)
    result["by_decoder"] = {}
    for name in DECODERS:
        if name == "grid" and not all(_is_grid_sentence(t) for t in data.texts):
            continue
        decoded = hyps if name == reader.cfg.decoder else decode_many(logits, name)
        result["by_decoder"][name] = {"wer": wer(data.texts, decoded), "cer": cer(data.texts, decoded)}
    if controls:
        stills = [c[:1].expand_as(c) for c in data.crops]
        still_hyps = reader.transcribe_crops(stills)
        half = len(data) // 2 or 1
        shifted = data.texts[half:] + data.texts[:half]
        result["controls"] = {
            "still_frame": {"wer": wer(data.texts, still_hyps), "cer": cer(data.texts, still_hyps)},
            "mismatched_words": {"wer": wer(shifted, hyps), "cer": cer(shifted, hyps)},
        }
    result["clips"] = [
        {"key": k, "reference": r, "hypothesis": h, "wer": wer([r], [h])}
        for k, r, h in zip(data.keys, data.texts, hyps)
    ]
    return result


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_config(text: str | None) -> LipReaderConfig:
    return parse_overrides(text, LipReaderConfig, LipReaderError)


def _parse_device(name: str | None) -> torch.device | None:
    return parse_device(name, LipReaderError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechanim.lipreader", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a lipreader on real videos of a packed dataset")
    p.add_argument("--train", required=True, type=Path, help="packed HDF5 of the training split")
    p.add_argument("--val", required=True, type=Path, help="packed HDF5 of the validation split")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (history CSV beside it)")
    p.add_argument("--config", default=None, help="JSON object of LipReaderConfig overrides")
    p.add_argument("--device", default=None, help="torch device (default: CUDA when available)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); give the cores the job owns")
    p = sub.add_parser("eval", help="WER/CER of a trained lipreader on a packed HDF5 file")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--h5", required=True, type=Path, help="packed HDF5 whose clips to read")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--no-controls", action="store_true", help="skip the still-frame and mismatched-words controls")
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
            best = min(rows, key=lambda r: (r["val_wer"], r["val_loss"]))
            print(f"lipreader: best epoch {best['epoch']} of {len(rows)}, val WER {best['val_wer']:.3f} -> {args.out}")
        else:
            reader = LipReader.load(args.checkpoint, device=_parse_device(args.device))
            result = {"checkpoint": str(args.checkpoint), **evaluate_h5(reader, args.h5, controls=not args.no_controls)}
            write_json(args.out, result)
            print(f"lipreader: WER {result['wer']:.3f}, CER {result['cer']:.3f} on {result['n_clips']} clips -> {args.out}")
    except (LipReaderError, CheckpointError, PackedFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
