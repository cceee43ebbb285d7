"""HDF5 storage of preprocessed clips, and the torch Datasets that read them.

One HDF5 file holds many clips, one group per clip (``<speaker>/<utterance>``, with ``_mirror``
appended to the utterance for the mirrored copy of a training clip):

* ``frames``    uint8 ``(T, 3, H, W)``: the aligned face crops, in chunks of :data:`CHUNK_FRAMES` frames, uncompressed
* ``audio``     float32 ``(T * samples_per_frame,)``: the normalised audio at ``sample_rate``; the
  0.16 s windows are cut on the fly (:func:`speechanim.audio.frame_audio`), so frame ``k`` maps to
  samples ``[k * spf, (k + 1) * spf)``
* ``landmarks`` float32 ``(T, 478, 2)``: mediapipe landmarks in crop pixel coordinates
* attributes: ``speaker``, ``utterance``, ``words``, ``fps``, ``sample_rate``, ``samples_per_frame``,
  ``mirrored``, ``source`` (the raw video it came from)

Files are written under a temporary name and renamed when complete.  The Datasets open the file
lazily in each worker process, so they work with ``num_workers > 0`` and never load a whole file.

A file read here is data, never a pointer elsewhere, and declares no more than it holds: every reader
lists clips with :func:`clip_keys` and opens them with :func:`clip_group`, which refuse (raising
:class:`PackedFileError` naming the file and the clip or dataset) external and soft links, datasets
whose data live in other files (HDF5 external storage, virtual datasets), datasets that declare more
bytes than the file stores (an uncompressed one must store them all, a compressed one at most
:data:`MAX_INFLATION` times fewer: a 10^8-frame dataset in a small file is refused before it is read),
and audio holding NaN or infinity (it would make NaN frames).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .audio import frame_audio

#: Compression of generated frames (:mod:`speechanim.generate`).
COMPRESSION = "lzf"

#: How many times more bytes a compressed dataset may declare than it stores (lzf packs a black frame 83x).
MAX_INFLATION = 128

#: Compression of the clips written here: none.  lzf saved 4% of the real GRID crops (0.6% of the
#: audio, landmarks grew 0.8%; 20-25% of synthgrid's flat-shaded crops) and cost about 0.55 ms per
#: frame, a tenth of the whole align job (benchmarks/bench_align_speaker.py).
CLIP_COMPRESSION = None

#: Frames per chunk of a clip's ``frames`` (None: the whole clip in one chunk): 75, a whole GRID clip (2.76 MB at
#: 128x96) and a paper-size training window. Chosen by benchmarks/loader.py (docs/performance.md, "Packing and
#: loading at the paper's size"): the training loader spent 13-20% less CPU per batch reading 75-frame chunks
#: than one frame a chunk (the layout before) from a 6.1 GB file; lzf took 1.7-3.4x and gzip (level 1) 2.1-4.7x
#: the CPU of uncompressed frames for 4% and 19% fewer bytes, hence no compression (CLIP_COMPRESSION). A
#: longer clip's window spans at most two chunks, read in part (uncompressed chunks need not be read whole).
CHUNK_FRAMES = 75


class PackedFileError(OSError):
    """A packed or aligned clip file whose contents cannot be used as they are; the message names the file and
    the clip or dataset. An OSError, as h5py's own errors for a damaged file are."""


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


def write_clip(h5: h5py.File, clip: Clip, *, chunk_frames: int | None = CHUNK_FRAMES,
               compression: str | None = CLIP_COMPRESSION, compression_opts=None) -> None:
    """Add one clip to an open HDF5 file; its frames in chunks of ``chunk_frames`` frames (None: the whole
    clip) compressed by ``compression`` (the defaults are the packed layout; benchmarks/loader.py tries others)."""
    t, h, w, _ = clip.frames.shape
    spf = int(round(clip.sample_rate / clip.fps))
    if len(clip.audio) != t * spf:
        raise ValueError(f"{clip.key}: {len(clip.audio)} audio samples for {t} frames of {spf} samples")
    g = h5.create_group(clip.key)
    g.create_dataset("frames", data=np.ascontiguousarray(clip.frames.transpose(0, 3, 1, 2)),
                     chunks=(max(1, min(t, chunk_frames or t)), 3, h, w), compression=compression,
                     compression_opts=compression_opts)
    g.create_dataset("audio", data=clip.audio.astype(np.float32), compression=CLIP_COMPRESSION)
    g.create_dataset("landmarks", data=clip.landmarks.astype(np.float32), compression=CLIP_COMPRESSION)
    g.attrs.update(speaker=clip.speaker, utterance=clip.utterance, words=clip.words, fps=float(clip.fps),
                   sample_rate=int(clip.sample_rate), samples_per_frame=spf, mirrored=bool(clip.mirrored),
                   source=clip.source)


def read_clip(h5: h5py.File, key: str) -> Clip:
    g = clip_group(h5, key)
    a = g.attrs
    return Clip(str(a["speaker"]), str(a["utterance"]), g["frames"][()].transpose(0, 2, 3, 1),
                finite_audio(g["audio"][()], g), g["landmarks"][()], float(a["fps"]), int(a["sample_rate"]),
                str(a["words"]), bool(a["mirrored"]), str(a["source"]))


def _hard(group: h5py.Group, name: str) -> str:
    """``name``, after checking it is a plain (hard) link in ``group``: an external link reads another file,
    a soft link another place. A name that is not there is a KeyError, as ``group[name]``'s."""
    if not group.id.links.exists(name.encode()):
        raise KeyError(f"{group.file.filename}: no {group.name.rstrip('/')}/{name}")
    if group.id.links.get_info(name.encode()).type != h5py.h5l.TYPE_HARD:
        link = group.get(name, getlink=True)
        kind = f"an external link to {link.filename}:{link.path}" if isinstance(link, h5py.ExternalLink) \
            else "a soft link" if isinstance(link, h5py.SoftLink) else "a user-defined link"
        raise PackedFileError(f"{group.file.filename}: {group.name.rstrip('/')}/{name} is {kind}, not data "
                              "stored in this file: refused")
    return name


def _hard_links(group: h5py.Group) -> list[str]:
    """The names in ``group``, every one checked by :func:`_hard`."""
    return [_hard(group, name) for name in group]


def clip_keys(h5: h5py.File) -> list[str]:
    """Every clip group in a file, sorted; a link to elsewhere (external or soft) is refused."""
    return sorted(f"{s}/{u}" for s in _hard_links(h5) for u in _hard_links(h5[s]))


def _check_stored(ds: h5py.Dataset, where: str) -> None:
    """Refuse a dataset whose data are not all in this file (external storage, a virtual dataset) or that
    declares more bytes than the file stores for it (see the module doc)."""
    plist = ds.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise PackedFileError(f"{where}: a virtual dataset (its data are read from other files): refused")
    if plist.get_external_count():
        files = ", ".join(str(entry[0], "utf-8", "replace") if isinstance(entry[0], bytes) else str(entry[0])
                          for entry in (ds.external or []))
        raise PackedFileError(f"{where}: its data are stored in another file ({files}): refused")
    declared, stored = ds.size * ds.dtype.itemsize, ds.id.get_storage_size()
    allowed = stored if plist.get_nfilters() == 0 else MAX_INFLATION * stored + (1 << 20)
    if declared > allowed:
        raise PackedFileError(f"{where}: declares {declared:,} bytes (shape {ds.shape}) but the file stores "
                              f"{stored:,} for it: refused before reading")


def clip_group(h5: h5py.File, key: str) -> h5py.Group:
    """Clip ``key``'s group, after checking that it and everything in it are hard links and that it holds
    only datasets, each stored in this file as it declares (:func:`_check_stored`). Every reader of clip
    data opens clips so."""
    speaker, utterance = key.split("/", 1)
    g = h5[_hard(h5, speaker)][_hard(h5[speaker], utterance)]
    for name in _hard_links(g):
        obj = g[name]
        if not isinstance(obj, h5py.Dataset):
            raise PackedFileError(f"{h5.filename}: clip {key}: {name} is a {type(obj).__name__}, not a dataset: "
                                  "a clip holds datasets only: refused")
        _check_stored(obj, f"{h5.filename}: clip {key}, dataset {name}")
    return g


def frame_count(h5: h5py.File, key: str) -> int:
    """Clip ``key``'s number of frames, from its ``frames`` dataset's shape (nothing read; the link checked,
    since even a shape read through an external link opens the other file)."""
    g = h5[key]
    return int(g[_hard(g, "frames")].shape[0])


def finite_audio(samples: np.ndarray, group: h5py.Group) -> np.ndarray:
    """``samples`` of a clip's audio, refused when they hold NaN or infinity (a damaged file: NaN frames, a
    black video), naming the file and the clip."""
    if not np.isfinite(samples).all():
        raise PackedFileError(f"{group.file.filename}: clip {group.name.lstrip('/')} has NaN or infinite audio "
                              "samples: refused")
    return samples


#: The errors of a write that found no room: no space, a file larger than allowed, a quota.
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class AtomicH5:
    """``with AtomicH5(path) as h5:`` writes ``path`` through a temporary file renamed on success."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    def __enter__(self) -> h5py.File:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # no raw-data chunk cache: each chunk is written when its dataset is, so a full disk raises there (with a
        # cache HDF5 fails later, inside its own clean-up, and crashed the process); chunks are written once anyway
        self.file = h5py.File(self.tmp, "w", rdcc_nbytes=0)
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close and rename on success; on any failure (the block's, or closing's) remove the temporary file.
        The block's own error is the one raised, except a full disk, which HDF5 reports naming only the
        temporary file: that becomes an OSError naming ``path``."""
        done = False
        try:
            try:
                self.file.close()
            except (OSError, RuntimeError) as e:  # h5py raises either when HDF5 cannot flush
                if exc_type is None:
                    exc = e
            if exc is None:
                os.replace(self.tmp, self.path)
                done = True
        finally:
            if not done:
                self.tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise OSError(f"{self.path}: cannot write it ({os.strerror(exc.errno)}); nothing was written") from None
        if exc is not None and exc_type is None:  # the block ended well but closing failed: HDF5 could not flush
            raise OSError(f"{self.path}: cannot write it ({exc}); nothing was written") from None


def to_unit_range(frames_uint8: np.ndarray) -> np.ndarray:
    """uint8 ``[0, 255]`` -> float32 ``[-1, 1]`` (the generator's output range, as in the authors' code);
    ``x / 127.5 - 1`` in place on one new array (a third faster than with temporaries, the same bits)."""
    out = frames_uint8.astype(np.float32)
    np.divide(out, np.float32(127.5), out=out)
    np.subtract(out, np.float32(1.0), out=out)
    return out


def unit_range(frames_uint8):
    """:func:`to_unit_range` of a torch tensor, bit for bit, wherever it lies: a loader that gives uint8 frames
    (``TrainingWindows(..., uint8=True)``) leaves this to the training device, with a quarter of the bytes to move."""
    return frames_uint8.float().div_(127.5).sub_(1.0)


class _H5Reader:
    """Lazily opened, per-process HDF5 handle (h5py handles must not cross a fork)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._checked: set[str] = set()
        with h5py.File(self.path, "r") as h5:
            self.keys = clip_keys(h5)
            self.lengths = [frame_count(h5, k) for k in self.keys]

    def group(self, key: str) -> h5py.Group:
        """Clip ``key``'s group, checked by :func:`clip_group` the first time it is read (training reads each
        clip every epoch; the check costs about 0.5 ms)."""
        if key in self._checked:
            return self.h5[key]
        g = clip_group(self.h5, key)
        self._checked.add(key)
        return g

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
    by :func:`worker_init`); pass ``seed`` for a fixed start per clip. With ``uint8=True`` ``still`` and
    ``frames`` are the stored uint8 values, for :func:`unit_range` on the training device.
    """

    def __init__(self, path, n_frames: int, window_s: float = 0.16, seed: int | None = None, uint8: bool = False):
        self.reader = _H5Reader(path)
        self.n_frames = n_frames
        self.window_s = window_s
        self.seed = seed
        self.uint8 = uint8
        self.index = [i for i, n in enumerate(self.reader.lengths) if n >= n_frames]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        torch = _torch()
        key = self.reader.keys[self.index[i]]
        g = self.reader.group(key)
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
        audio = finite_audio(g["audio"][lo * spf:hi * spf], g)
        windows = frame_audio(audio, hi - lo, rate, fps, self.window_s)[start - lo:start - lo + self.n_frames]
        frames = g["frames"][start:start + self.n_frames]
        still = frames[0].copy() if start == 0 else g["frames"][0]  # a whole-clip window holds the still
        convert = (lambda x: x) if self.uint8 else to_unit_range
        return {
            "still": torch.from_numpy(convert(still)),
            "frames": torch.from_numpy(convert(frames)),
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
        g = self.reader.group(key)
        frames = g["frames"][()]
        windows = frame_audio(finite_audio(g["audio"][()], g), len(frames), int(g.attrs["sample_rate"]),
                              float(g.attrs["fps"]), self.window_s)
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
