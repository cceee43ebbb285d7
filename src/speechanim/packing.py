"""HDF5 storage of preprocessed clips, and the torch Datasets that read them.

One HDF5 file holds many clips, one group per clip (``<speaker>/<utterance>``, with ``_mirror``
appended to the utterance for the mirrored copy of a training clip):

* ``frames``    uint8 ``(T, 3, H, W)``: the aligned face crops, chunked one frame a chunk, uncompressed
* ``audio``     float32 ``(T * samples_per_frame,)``: the normalised audio at ``sample_rate``; the
  0.16 s windows are cut on the fly (:func:`speechanim.audio.frame_audio`), so frame ``k`` maps to
  samples ``[k * spf, (k + 1) * spf)``
* ``landmarks`` float32 ``(T, 478, 2)``: mediapipe landmarks in crop pixel coordinates
* attributes: ``speaker``, ``utterance``, ``words``, ``fps``, ``sample_rate``, ``samples_per_frame``,
  ``mirrored``, ``source`` (the raw video it came from)

Files are written under a temporary name and renamed when complete.  The Datasets open the file
lazily in each worker process, so they work with ``num_workers > 0`` and never load a whole file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .audio import frame_audio

#: Compression of generated frames (:mod:`speechanim.generate`).
COMPRESSION = "lzf"

#: Compression of the clips written here: none.  lzf saved 4% of the real GRID crops (0.6% of the
#: audio, landmarks grew 0.8%; 20-25% of synthgrid's flat-shaded crops) and cost about 0.55 ms per
#: frame, a tenth of the whole align job (benchmarks/bench_align_speaker.py).
CLIP_COMPRESSION = None


@dataclass
class Clip:
    speaker: str
    utterance: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # (T * spf,) float32
    landmarks: np.ndarray  # (T, 478, 2) float32
    fps: float
    sample_rate: int
    words: str = ""
    mirrored: bool = False
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.speaker}/{self.utterance}{'_mirror' if self.mirrored else ''}"


def write_clip(h5: h5py.File, clip: Clip) -> None:
    """Add one clip to an open HDF5 file."""
    t, h, w, _ = clip.frames.shape
    spf = int(round(clip.sample_rate / clip.fps))
    if len(clip.audio) != t * spf:
        raise ValueError(f"{clip.key}: {len(clip.audio)} audio samples for {t} frames of {spf} samples")
    g = h5.create_group(clip.key)
    g.create_dataset("frames", data=np.ascontiguousarray(clip.frames.transpose(0, 3, 1, 2)),
                     chunks=(1, 3, h, w), compression=CLIP_COMPRESSION)
    g.create_dataset("audio", data=clip.audio.astype(np.float32), compression=CLIP_COMPRESSION)
    g.create_dataset("landmarks", data=clip.landmarks.astype(np.float32), compression=CLIP_COMPRESSION)
    g.attrs.update(speaker=clip.speaker, utterance=clip.utterance, words=clip.words, fps=float(clip.fps),
                   sample_rate=int(clip.sample_rate), samples_per_frame=spf, mirrored=bool(clip.mirrored),
                   source=clip.source)


def read_clip(h5: h5py.File, key: str) -> Clip:
    g = h5[key]
    a = g.attrs
    return Clip(str(a["speaker"]), str(a["utterance"]), g["frames"][()].transpose(0, 2, 3, 1), g["audio"][()],
                g["landmarks"][()], float(a["fps"]), int(a["sample_rate"]), str(a["words"]), bool(a["mirrored"]),
                str(a["source"]))


def clip_keys(h5: h5py.File) -> list[str]:
    """Every clip group in a file, sorted."""
    return sorted(f"{s}/{u}" for s in h5 for u in h5[s])


class AtomicH5:
    """``with AtomicH5(path) as h5:`` writes ``path`` through a temporary file renamed on success."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    def __enter__(self) -> h5py.File:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.tmp, "w")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def to_unit_range(frames_uint8: np.ndarray) -> np.ndarray:
    """uint8 ``[0, 255]`` -> float32 ``[-1, 1]`` (the generator's output range, as in the authors' code)."""
    return frames_uint8.astype(np.float32) / 127.5 - 1.0


class _H5Reader:
    """Lazily opened, per-process HDF5 handle (h5py handles must not cross a fork)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        with h5py.File(self.path, "r") as h5:
            self.keys = clip_keys(h5)
            self.lengths = [h5[k]["frames"].shape[0] for k in self.keys]

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        return state


def _torch():
    import torch

    return torch


class TrainingWindows:
    """Random windows of ``n_frames`` consecutive frames, one per clip per epoch (a torch Dataset).

    Each item: ``still`` (3, H, W) the clip's first frame, ``frames`` (N, 3, H, W) and ``audio``
    (N, window) for frames ``start .. start+N-1``, all float32; frames in ``[-1, 1]``. Clips shorter
    than ``n_frames`` are left out. The start is random (numpy's global state is reseeded per worker
    by :func:`worker_init`); pass ``seed`` for a fixed start per clip.
    """

    def __init__(self, path, n_frames: int, window_s: float = 0.16, seed: int | None = None):
        self.reader = _H5Reader(path)
        self.n_frames = n_frames
        self.window_s = window_s
        self.seed = seed
        self.index = [i for i, n in enumerate(self.reader.lengths) if n >= n_frames]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        torch = _torch()
        key = self.reader.keys[self.index[i]]
        g = self.reader.h5[key]
        length = self.reader.lengths[self.index[i]]
        if self.seed is None:
            start = int(np.random.randint(0, length - self.n_frames + 1))
        else:
            start = int(np.random.default_rng((self.seed, i)).integers(0, length - self.n_frames + 1))
        spf = int(g.attrs["samples_per_frame"])
        rate, fps = int(g.attrs["sample_rate"]), float(g.attrs["fps"])
        # read only the samples the windows need: frames start-2 .. start+N+1 at 0.16 s, 25 fps
        half = int(np.ceil((self.window_s * rate - spf) / 2 / spf))
        lo, hi = max(0, start - half), min(length, start + self.n_frames + half)
        audio = g["audio"][lo * spf:hi * spf]
        windows = frame_audio(audio, hi - lo, rate, fps, self.window_s)[start - lo:start - lo + self.n_frames]
        return {
            "still": torch.from_numpy(to_unit_range(g["frames"][0])),
            "frames": torch.from_numpy(to_unit_range(g["frames"][start:start + self.n_frames])),
            "audio": torch.from_numpy(windows),
            "key": key,
            "start": start,
        }


class WholeClips:
    """Whole clips for evaluation (a torch Dataset): ``still``, ``frames`` (T,3,H,W), ``audio`` (T, window)."""

    def __init__(self, path, window_s: float = 0.16):
        self.reader = _H5Reader(path)
        self.window_s = window_s

    def __len__(self) -> int:
        return len(self.reader.keys)

    def __getitem__(self, i: int):
        torch = _torch()
        key = self.reader.keys[i]
        g = self.reader.h5[key]
        frames = g["frames"][()]
        windows = frame_audio(g["audio"][()], len(frames), int(g.attrs["sample_rate"]), float(g.attrs["fps"]),
                              self.window_s)
        return {
            "still": torch.from_numpy(to_unit_range(frames[0])),
            "frames": torch.from_numpy(to_unit_range(frames)),
            "audio": torch.from_numpy(windows),
            "key": key,
        }


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give every worker its own numpy seed from torch's."""
    torch = _torch()
    np.random.seed(torch.initial_seed() % 2**32)
