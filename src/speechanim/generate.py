"""Generate the test set's videos with a trained generator (paper, section 4: evaluation).

Every clip of a packed test file is animated from its still, the clip's first aligned frame, and
its audio, "divided into overlapping frames each corresponding to 0.16 seconds" (paper, 3.1) —
exactly what :class:`speechanim.packing.WholeClips` gives.  The whole clip goes through the
generator in one pass (the GRUs are causal, so clips of different lengths share a batch: the
shorter ones are zero-padded at the end and cut back).

The noise ``z ~ N(0, 0.33)`` that feeds the noise generator (paper, 3.1.3) is drawn on the CPU
from a ``torch.Generator`` seeded with the run's ``--seed`` and the clip's key, so a clip's
video does not depend on the batch size, the device, or which other clips are in the file.

Output: an HDF5 file with one group per clip, under the input's keys, holding ``frames`` uint8
``(T, 3, H, W)`` (lossless, lzf, one frame a chunk: what the metrics read) and attributes
``speaker``, ``utterance``, ``words``, ``fps``, ``sample_rate``, ``variant``, ``checkpoint``;
the file's own attributes name the checkpoint, variant, source file and seed.  With
``--videos``, the first clips are also written as mp4 (H.264 + AAC with the clip's audio).

A checkpoint imported from the authors' files (``speechanim import-sda``, the DAG's ``pretrained:``)
has its own crop, alignment and audio rate: each still is warped from this project's canonical face
onto the checkpoint's ``mean_face`` at its size (by the authors' stable points), the audio resampled
to its rate the authors' way (FFT) and cut with its window length (one window per frame of the clip),
the frames scaled as theirs (``125 * G + 125``) and warped back, so that they line up with the real
test frames the metrics compare them to (:class:`ImportedAdapter`).

Nothing is written from NaN: every generated frame is checked finite (:func:`to_uint8`), and an error
names the checkpoint and the clip. A full disk ends the run with an error naming the output file,
and no temporary file is left (:class:`speechanim.packing.AtomicH5`)::

    python -m speechanim.generate --checkpoint results/grid/models/full/generator.pt \\
        --h5 data/packed/grid/test.h5 --out results/grid/generated/full.h5 \\
        [--videos results/grid/videos/full] [--limit-videos 4] [--seed 0] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
import h5py
import numpy as np
import torch
from tqdm import tqdm

from .audio import frame_audio
from .checkpoint import CheckpointError, load_generator
from .fileio import refuse_clashing_paths
from .media import MediaError, write_video
from .models import Generator, device as default_device
from .packing import COMPRESSION, AtomicH5, WholeClips, clip_group, clip_keys, to_unit_range
from .sda import authors_resample, is_converted


__all__ = ["GenerationError", "NonFiniteFramesError", "pick_device", "clip_seed", "clip_noise", "to_uint8",
           "generate_batch", "check_compatible", "video_path", "generate_file", "main"]


class GenerationError(ValueError):
    """The packed file cannot be animated with this generator; the message names the file."""


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """``None`` -> CUDA when there is a GPU, else the CPU; ``"cuda"`` without a GPU is an error."""
    if name is None:
        return default_device()
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {name!r}: not a torch device (cpu, cuda or cuda:N): {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested, but torch sees no CUDA GPU on this machine (use --device cpu)")
    return dev


def clip_seed(seed: int, key: str) -> int:
    """A 63-bit seed for one clip's noise, from the run's seed and the clip's key (stable across runs)."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def clip_noise(generator: Generator, n_frames: int, seed: int) -> torch.Tensor:
    """``(n_frames, noise_dim)`` noise ~ N(0, noise_std), drawn on the CPU from ``seed`` (same on any device)."""
    rng = torch.Generator().manual_seed(int(seed))
    return generator.sample_noise(1, n_frames, torch.device("cpu"), rng)[0]


class NonFiniteFramesError(GenerationError):
    """The generator made NaN or infinite values; converted to uint8 they would be a black video."""


def to_uint8(frames: torch.Tensor, source: str = "generated frames", *, authors: bool = False) -> torch.Tensor:
    """Generator output in ``[-1, 1]`` -> uint8 ``[0, 255]`` (the inverse of :func:`packing.to_unit_range`);
    ``authors``: ``125 * G + 125``, 0 to 250, rounded, as the authors' ``VideoAnimator`` returns its frames
    (sda/sda.py), for a model imported from their files (:func:`speechanim.sda.is_converted`).

    Every generated frame passes here before it is written: NaN or infinity is refused
    (:class:`NonFiniteFramesError` naming ``source``: the checkpoint, the clip) instead of becoming black.
    """
    bad = int((~torch.isfinite(frames)).sum())
    if bad:
        raise NonFiniteFramesError(f"{source}: the generator made {bad:,} NaN or infinite values of "
                                   f"{frames.numel():,} (check the checkpoint's weights and the audio); nothing is "
                                   "written from them")
    if authors:
        return (frames.clamp(-1.0, 1.0) * 125.0 + 125.0).round().to(torch.uint8)
    return ((frames.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate_batch(generator: Generator, stills: torch.Tensor, audio: list[torch.Tensor],
                   noise: list[torch.Tensor], names: list[str] | None = None, *,
                   authors: bool = False) -> list[torch.Tensor]:
    """Animate clips of possibly different lengths in one pass.

    ``stills (B, 3, H, W)`` in [-1, 1], ``audio[i] (T_i, window)``, ``noise[i] (T_i, noise_dim)``,
    all on the generator's device -> ``B`` uint8 tensors ``(T_i, 3, H, W)``.  Shorter clips are
    zero-padded at the end; the generator is causal, so the padding cannot reach their frames.
    ``names``: what each clip is called in the error :func:`to_uint8` raises for NaN frames;
    ``authors``: the authors' output scaling (:func:`to_uint8`).
    """
    lengths = [len(a) for a in audio]
    t_max = max(lengths)
    audio_b = torch.stack([torch.nn.functional.pad(a, (0, 0, 0, t_max - len(a))) for a in audio])
    noise_b = torch.stack([torch.nn.functional.pad(n, (0, 0, 0, t_max - len(n))) for n in noise])
    frames = generator(stills, audio_b, noise_b)
    names = names or [f"clip {i}" for i in range(len(audio))]
    return [to_uint8(f[:t], name, authors=authors) for f, t, name in zip(frames, lengths, names)]


def check_compatible(generator: Generator, h5: h5py.File, keys: list[str], path: Path) -> None:
    """The packed clips must have the generator's sample rate and frame size (clear error otherwise)."""
    cfg = generator.cfg
    for key in keys:
        g = h5[key]
        missing = [a for a in ("speaker", "utterance", "words", "fps", "sample_rate", "samples_per_frame")
                   if a not in g.attrs] + [d for d in ("frames", "audio") if d not in g]
        if missing:
            raise GenerationError(f"{path}: clip {key} is not a packed clip (lacks {', '.join(missing)})")
        rate = int(g.attrs["sample_rate"])
        if rate != cfg.sample_rate:
            raise GenerationError(f"{path}: clip {key} has audio at {rate} Hz but the generator was trained on "
                                  f"{cfg.sample_rate} Hz windows of {cfg.audio_window_s} s; pack the data at the "
                                  f"model's rate")
        size = tuple(g["frames"].shape[2:])
        if size != tuple(cfg.image_size):
            raise GenerationError(f"{path}: clip {key} has {size[0]}x{size[1]} (HxW) frames but the generator makes "
                                  f"{cfg.image_size[0]}x{cfg.image_size[1]}")
        spf = int(g.attrs["samples_per_frame"])
        if cfg.window < spf:
            raise GenerationError(f"{path}: the generator's {cfg.window}-sample audio window is shorter than one "
                                  f"video frame of clip {key} ({spf} samples)")


def video_path(videos: Path, key: str) -> Path:
    """``<videos>/<speaker>/<utterance>.mp4`` for clip ``<speaker>/<utterance>``."""
    return Path(videos) / f"{key}.mp4"


def generate_file(checkpoint: str | os.PathLike, h5_path: str | os.PathLike, out_path: str | os.PathLike, *,
                  videos: str | os.PathLike | None = None, limit_videos: int | None = None, seed: int = 0,
                  batch_size: int = 8, device: str | torch.device | None = None, progress: bool = True) -> Path:
    """Animate every clip of ``h5_path`` with the generator of ``checkpoint``; write ``out_path`` (HDF5).

    With ``videos``, the first ``limit_videos`` clips (all when None), in key order, are also
    written as ``<videos>/<speaker>/<utterance>.mp4`` with the clip's audio.  Returns ``out_path``.
    An imported authors' checkpoint goes through :func:`generate_imported` (one clip at a time).
    """
    checkpoint, h5_path, out_path = Path(checkpoint), Path(h5_path), Path(out_path)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if limit_videos is not None and limit_videos < 0:
        raise ValueError(f"--limit-videos must be >= 0, got {limit_videos}")
    dev = pick_device(device)
    generator, payload = load_generator(checkpoint, map_location=dev)
    variant = str(payload.get("variant", ""))
    if not h5_path.is_file():
        raise GenerationError(f"{h5_path}: no such packed file")
    try:
        source = h5py.File(h5_path, "r")
    except OSError as e:
        raise GenerationError(f"{h5_path}: not a readable HDF5 file ({e})") from None
    with source:
        keys = clip_keys(source)
        if not keys:
            raise GenerationError(f"{h5_path}: holds no clips")
        if payload.get("alignment") is not None:
            batch_size = 1
            adapter = ImportedAdapter(generator, payload, clip_group(source, keys[0]), checkpoint)
        else:
            adapter = None
            check_compatible(generator, source, keys, h5_path)
        clips = WholeClips(h5_path, window_s=generator.cfg.audio_window_s)
        n_videos = len(keys) if limit_videos is None else min(limit_videos, len(keys))
        if videos is not None:
            Path(videos).mkdir(parents=True, exist_ok=True)  # even with no video to write: the folder is an output
        with AtomicH5(out_path) as out:
            out.attrs.update(checkpoint=str(checkpoint), variant=variant, source=str(h5_path), seed=int(seed),
                             dataset=str(payload.get("dataset", "")), epoch=int(payload.get("epoch", -1)))
            with tqdm(total=len(keys), unit="clip", desc=f"generate {variant or checkpoint.name}",
                      disable=None if progress else True) as bar:
                for start in range(0, len(keys), batch_size):
                    items = [clips[i] for i in range(start, min(start + batch_size, len(keys)))]
                    if adapter is not None:
                        items = [adapter.inputs(it, clip_group(source, it["key"])) for it in items]
                    stills = torch.stack([it["still"] for it in items]).to(dev)
                    audio = [it["audio"].to(dev) for it in items]
                    noise = [clip_noise(generator, len(it["audio"]), clip_seed(seed, it["key"])).to(dev)
                             for it in items]
                    made = generate_batch(generator, stills, audio, noise,
                                          [f"{checkpoint} on {h5_path}, clip {it['key']}" for it in items],
                                          authors=is_converted(payload))
                    if adapter is not None:
                        made = [adapter.back(f) for f in made]
                    for i, (item, frames) in enumerate(zip(items, made)):
                        frames = frames.cpu().numpy()
                        src = clip_group(source, item["key"])
                        _write_generated(out, src, item["key"], frames, variant, checkpoint)
                        if videos is not None and start + i < n_videos:
                            write_video(video_path(videos, item["key"]), frames.transpose(0, 2, 3, 1),
                                        float(src.attrs["fps"]), src["audio"][()], int(src.attrs["sample_rate"]))
                    bar.update(len(items))
    return out_path


class ImportedAdapter:
    """Inputs and outputs of an imported authors' checkpoint on this project's packed clips.

    The packed stills are aligned to the canonical face (:func:`speechanim.align.load_template`) at
    the packed size; the checkpoint wants its ``mean_face`` at its own size. One similarity transform
    (the canonical face's points at the authors' stable points, :data:`speechanim.align.STABLE_POINTS_68`,
    onto the checkpoint's) maps one crop onto the other: the still goes through it, the generated frames
    through its inverse. The audio (packed at its own rate, peak-normalised) is resampled to the
    checkpoint's rate the authors' way (:func:`speechanim.sda.authors_resample`) and cut into its
    windows, one per clip frame (their padding: ``(window - stride) // 2`` zeros before).
    """

    def __init__(self, generator: Generator, payload: dict, first: h5py.Group, checkpoint: Path):
        from .align import STABLE_POINTS_68, estimate_transforms, load_template, stable_positions

        self.cfg = generator.cfg
        self.packed_size = tuple(first["frames"].shape[2:])
        target = np.asarray(payload["alignment"]["stable_points"], np.float64)
        source = stable_positions(load_template(self.packed_size).points, STABLE_POINTS_68)
        self.forward = estimate_transforms(source[None], target, clip=str(checkpoint))[0]
        self.inverse = np.linalg.inv(self.forward)

    def inputs(self, item: dict, group: h5py.Group) -> dict:
        from .align import warp_frames

        still = group["frames"][0].transpose(1, 2, 0)[None]
        warped = warp_frames(still, self.forward[None], tuple(self.cfg.image_size))[0]
        rate = int(group.attrs["sample_rate"])
        samples = authors_resample(group["audio"][()], rate, self.cfg.sample_rate)
        n = len(item["audio"])
        stride = int(self.cfg.sample_rate / float(group.attrs["fps"]))
        windows = frame_audio(samples, n, self.cfg.sample_rate, float(group.attrs["fps"]), self.cfg.audio_window_s,
                              stride=stride, trim=False)
        return {**item, "still": torch.from_numpy(to_unit_range(warped.transpose(2, 0, 1).copy())),
                "audio": torch.from_numpy(windows)}

    def back(self, frames: torch.Tensor) -> torch.Tensor:
        """Generated uint8 ``(T, 3, h, w)`` at the checkpoint's size -> ``(T, 3, H, W)`` on the packed crop."""
        from .align import warp_frames

        video = frames.cpu().numpy().transpose(0, 2, 3, 1)
        back = warp_frames(video, np.repeat(self.inverse[None], len(video), 0), self.packed_size)
        return torch.from_numpy(back.transpose(0, 3, 1, 2).copy())


def _write_generated(out: h5py.File, src: h5py.Group, key: str, frames: np.ndarray, variant: str,
                     checkpoint: Path) -> None:
    h, w = frames.shape[2:]
    g = out.create_group(key)
    g.create_dataset("frames", data=frames, chunks=(1, 3, h, w), compression=COMPRESSION)
    a = src.attrs
    g.attrs.update(speaker=str(a["speaker"]), utterance=str(a["utterance"]), words=str(a["words"]),
                   fps=float(a["fps"]), sample_rate=int(a["sample_rate"]), variant=variant,
                   checkpoint=str(checkpoint))


# --------------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speechanim.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a training checkpoint (generator.pt)")
    parser.add_argument("--h5", required=True, type=Path, help="the packed test file, e.g. data/packed/grid/test.h5")
    parser.add_argument("--out", required=True, type=Path, help="the HDF5 of generated frames to write")
    parser.add_argument("--videos", type=Path, default=None, help="also write mp4s (with audio) into this folder")
    parser.add_argument("--limit-videos", type=int, default=None, help="mp4s for only the first N clips (default all)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per generator pass (default %(default)s)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.limit_videos is not None and args.videos is None:
        parser.error("--limit-videos needs --videos")
    refuse_clashing_paths(parser, {"--checkpoint": args.checkpoint, "--h5": args.h5},
                          {"--out": args.out, "--videos": args.videos})
    try:
        generate_file(args.checkpoint, args.h5, args.out, videos=args.videos, limit_videos=args.limit_videos,
                      seed=args.seed, batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    except (GenerationError, CheckpointError, MediaError, ValueError, OSError) as e:
        message = " ".join(str(e).split())
        print(f"speechanim.generate: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

