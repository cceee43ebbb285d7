"""The study set: mp4s for the user study and the Turing test of the paper's section 4.5, and a manifest.

    python -m speechanim.study.build --dataset synthgrid --test data/packed/synthgrid/test.h5 \\
        --generated results/synthgrid/generated [--dataset ... --test ... --generated ...] \\
        --out results/study [--max-clips 60] [--pairs 30] [--fake 6] [--real 4] [--seed 0]

From each dataset, up to ``--max-clips`` test clips (a seeded draw) give

* one **preference pair**: the proposed model (``full``) and the static baseline (``static``) on the same
  still and audio, left and right drawn per pair (seeded) and recorded in the manifest;
* two **Turing-test** entries: the proposed model's video (fake) and the real aligned clip (real),
  each with the clip's audio.

Every video is written as mp4 (H.264 + AAC, :func:`speechanim.media.write_video`) under
``<out>/media/`` with a name made by hashing the seed, the clip and its role, so nothing in a file name
says which clip is real or which method made it.  ``<out>/manifest.json`` says which is which; the server
reads it and never serves it (it serves ``media/`` only).  The manifest is written last, so its presence
means the set is complete, and the same inputs and settings give the same manifest bytes.  A rebuild deletes
only the previous manifest's videos it no longer lists; an ``--out`` holding an input, a ``manifest.json``
that is not a study's or a ``media/`` file that is not a study video is refused before anything is written.
The participant counts (``--pairs``, ``--fake``, ``--real``; the paper's 30, 6 and 4) go into the
manifest as the server's defaults.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from pathlib import Path

import h5py
import numpy as np

from ..fileio import check_outputs_apart, refuse_clashing_paths, write_text_atomic
from ..media import MediaError, write_video
from ..packing import clip_group, clip_keys

PROPOSED, BASELINE = "full", "static"
MANIFEST, MEDIA = "manifest.json", "media"
FORMAT = 1
#: A study video's name (16 hex digits), and that or the temporary name it has while it is written.
VIDEO_NAME = re.compile(r"[0-9a-f]{16}\.mp4")
STUDY_FILE = re.compile(r"[0-9a-f]{16}\.mp4|\.[0-9a-f]{16}\.mp4\.tmp[0-9]+|\.[0-9a-f]{16}\.tmp[0-9]+\.mp4")


class StudyBuildError(ValueError):
    """The inputs cannot make a study set; the message names the file and the problem."""


def media_name(seed: int, dataset: str, clip: str, role: str) -> str:
    """A file name that looks random but is fixed by the seed, the clip and its role (16 hex digits + .mp4)."""
    return hashlib.sha256(f"{seed}\0{dataset}\0{clip}\0{role}".encode()).hexdigest()[:16] + ".mp4"


def draw_clips(keys: list[str], n: int | None, seed: int, dataset: str) -> list[str]:
    """Up to ``n`` of ``keys`` (all when None), a seeded draw that does not depend on the order given; sorted."""
    order = sorted(keys, key=lambda k: hashlib.sha256(f"{seed}\0{dataset}\0{k}".encode()).digest())
    return sorted(order if n is None else order[:n])


def _open(path: Path, what: str) -> h5py.File:
    if not path.is_file():
        raise StudyBuildError(f"{path}: no such file ({what})")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise StudyBuildError(f"{path}: not a readable HDF5 file ({what}): {e}") from None


def _frames(h5: h5py.File, key: str, path: Path) -> np.ndarray:
    frames = clip_group(h5, key)["frames"][()]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise StudyBuildError(f"{path}: clip {key}: frames must be uint8 (T, 3, H, W), got {frames.dtype} {frames.shape}")
    return frames.transpose(0, 2, 3, 1)


def dataset_entries(dataset: str, test_h5: Path, generated: Path, out_media: Path, *, max_clips: int | None,
                    seed: int) -> tuple[list[dict], list[dict]]:
    """Write one dataset's videos into ``out_media``; return its preference pairs and Turing entries."""
    test_h5, generated = Path(test_h5), Path(generated)
    paths = {m: generated / f"{m}.h5" for m in (PROPOSED, BASELINE)}
    pairs, turing = [], []
    with _open(test_h5, "the real test clips") as real, _open(paths[PROPOSED], "the proposed model's videos") as full, \
            _open(paths[BASELINE], "the static baseline's videos") as static:
        gen = {PROPOSED: full, BASELINE: static}
        keys = set(clip_keys(real))
        for method, h5 in gen.items():
            missing = sorted(keys - set(clip_keys(h5)))
            if missing:
                raise StudyBuildError(f"{paths[method]}: lacks {len(missing)} test clip(s) of {test_h5}, "
                                      f"e.g. {missing[0]}")
        if not keys:
            raise StudyBuildError(f"{test_h5}: holds no clips")
        for key in draw_clips(sorted(keys), max_clips, seed, dataset):
            g = clip_group(real, key)
            try:
                fps, rate, audio = float(g.attrs["fps"]), int(g.attrs["sample_rate"]), g["audio"][()]
            except KeyError as e:
                raise StudyBuildError(f"{test_h5}: clip {key} is not a packed clip (no {e})") from None
            videos = {"real": _frames(real, key, test_h5)}
            videos.update({m: _frames(gen[m], key, paths[m]) for m in gen})
            names = {role: media_name(seed, dataset, key, role)
                     for role in ("pair:" + PROPOSED, "pair:" + BASELINE, "turing:" + PROPOSED, "turing:real")}
            for role, name in names.items():
                write_video(out_media / name, videos[role.split(":")[1]], fps, audio, rate)
            sides = [PROPOSED, BASELINE]
            random.Random(f"{seed}\0{dataset}\0{key}").shuffle(sides)
            pairs.append({"dataset": dataset, "clip": key,
                          "left": {"file": names["pair:" + sides[0]], "method": sides[0]},
                          "right": {"file": names["pair:" + sides[1]], "method": sides[1]}})
            turing.append({"dataset": dataset, "clip": key, "file": names["turing:" + PROPOSED], "truth": "fake",
                           "method": PROPOSED})
            turing.append({"dataset": dataset, "clip": key, "file": names["turing:real"], "truth": "real",
                           "method": "real"})
    return pairs, turing


def build_paths(datasets: list[tuple[str, Path, Path]], out: Path) -> tuple[dict, dict]:
    """What a build reads and what it writes, for :func:`speechanim.fileio.check_outputs_apart`."""
    reads = {"--test": [test for _, test, _ in datasets],
             "--generated": [Path(g) / f"{m}.h5" for _, _, g in datasets for m in (PROPOSED, BASELINE)]}
    return reads, {"--out's manifest": Path(out) / MANIFEST, "--out's media folder": Path(out) / MEDIA}


def manifest_files(manifest: dict) -> set[str]:
    """The video files a manifest lists."""
    return ({p[s]["file"] for p in manifest["pairs"] for s in ("left", "right")}
            | {t["file"] for t in manifest["turing"]})


def previous_files(out: Path) -> set[str]:
    """The videos of the study set already in ``out`` (none in a new folder), which a rebuild may delete.

    A rebuild overwrites ``manifest.json`` and deletes the previous set's videos it no longer lists, and
    nothing else: a folder whose ``manifest.json`` is not a study manifest, or whose ``media/`` holds a file
    that is not a study video, is refused (StudyBuildError naming it) before anything is written.  Videos a
    killed build left unlisted are never deleted (a rebuild with the same seed writes them again)."""
    previous: set[str] = set()
    path = out / MANIFEST
    if path.exists():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if "speechanim study set" not in manifest.get("about", ""):
                raise KeyError("about")
            previous = manifest_files(manifest)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise StudyBuildError(f"{path}: exists and is not a study set's manifest ({type(e).__name__}: {e}); "
                                  "nothing was written: choose an empty or new --out folder") from None
    if (out / MEDIA).is_dir():
        foreign = sorted(f.name for f in (out / MEDIA).iterdir() if not (f.is_file() and STUDY_FILE.fullmatch(f.name)))
        if foreign:
            raise StudyBuildError(f"{out / MEDIA}: holds {len(foreign)} file(s) that are not study videos, e.g. "
                                  f"{foreign[0]}; nothing was written or deleted: choose an empty or new --out folder")
    return {f for f in previous if isinstance(f, str) and VIDEO_NAME.fullmatch(f)}  # never a path elsewhere


def build_study(datasets: list[tuple[str, Path, Path]], out: Path, *, max_clips: int | None = 60, pairs: int = 30,
                fake: int = 6, real: int = 4, seed: int = 0) -> Path:
    """Build the study set of ``datasets`` (name, packed test file, generated folder) in ``out``; return the manifest.
    Refuses an ``out`` that holds an input or files it did not write (:func:`previous_files`)."""
    out = Path(out)
    check_outputs_apart(*build_paths(datasets, out))
    previous = previous_files(out)
    media = out / MEDIA
    media.mkdir(parents=True, exist_ok=True)
    all_pairs, all_turing = [], []
    for name, test_h5, generated in datasets:
        p, t = dataset_entries(name, test_h5, generated, media, max_clips=max_clips, seed=seed)
        all_pairs += p
        all_turing += t
    keep = {p[s]["file"] for p in all_pairs for s in ("left", "right")} | {t["file"] for t in all_turing}
    for stale in sorted(previous - keep):  # the previous build's videos this one does not list; nothing else
        (media / stale).unlink(missing_ok=True)
    manifest = {
        "format": FORMAT,
        "about": "speechanim study set (paper 4.5): which video is which. Never served.",
        "settings": {"pairs": pairs, "turing_fake": fake, "turing_real": real, "max_clips": max_clips, "seed": seed},
        "methods": {"proposed": PROPOSED, "baseline": BASELINE},
        "datasets": [name for name, _, _ in datasets],
        "pairs": all_pairs,
        "turing": all_turing,
    }
    return write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.study.build", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", required=True, help="dataset name (repeat, in order)")
    p.add_argument("--test", action="append", required=True, type=Path, help="its packed test file (test.h5)")
    p.add_argument("--generated", action="append", required=True, type=Path,
                   help="its folder of generated videos (holds full.h5 and static.h5)")
    p.add_argument("--out", required=True, type=Path, help="the study folder to write (results/study)")
    p.add_argument("--max-clips", type=int, default=60, help="test clips per dataset (0: all; default %(default)s)")
    p.add_argument("--pairs", type=int, default=30, help="preference trials per participant (paper: 30)")
    p.add_argument("--fake", type=int, default=6, help="generated videos in each participant's Turing test (paper: 6)")
    p.add_argument("--real", type=int, default=4, help="real videos in each participant's Turing test (paper: 4)")
    p.add_argument("--seed", type=int, default=0, help="the draw of clips, sides and file names")
    args = p.parse_args(argv)
    if not len(args.dataset) == len(args.test) == len(args.generated):
        p.error("give one --test and one --generated per --dataset")
    if min(args.max_clips, args.pairs, args.fake, args.real) < 0:
        p.error("counts must be >= 0")
    refuse_clashing_paths(p, *build_paths(list(zip(args.dataset, args.test, args.generated)), args.out))
    try:
        previous_files(args.out)  # an --out of files it did not write is a bad command line too (exit code 2)
    except StudyBuildError as e:
        p.error(str(e))
    try:
        manifest = build_study(list(zip(args.dataset, args.test, args.generated)), args.out,
                               max_clips=args.max_clips or None, pairs=args.pairs, fake=args.fake, real=args.real,
                               seed=args.seed)
    except (StudyBuildError, MediaError, OSError) as e:
        print(f"speechanim.study.build: error: {e}", file=sys.stderr)
        return 1
    data = json.loads(manifest.read_text())
    print(f"{manifest}: {len(data['pairs'])} preference pairs, {len(data['turing'])} Turing-test videos",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
