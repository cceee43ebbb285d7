"""The preprocessing stage (paper, section 4.1): raw clips -> aligned speakers -> splits -> packed HDF5.

"As part of our preprocessing all faces are aligned to the canonical face and images are
normalized. We increase the size of the training set by mirroring the training videos."
The audio "is divided into overlapping frames each corresponding to 0.16 seconds" (section 3.1);
the windows are cut when the data is read (:mod:`speechanim.packing`), so a packed clip stores the
whole normalised track, exactly ``samples_per_frame`` samples per video frame.

One code path serves every dataset (GRID, TCD-TIMIT, synthgrid): everything reads the normalised raw
layout ``data/raw/<dataset>/<speaker>/`` (:mod:`speechanim.raw.layout`).  Four jobs, each a CLI that
the Snakemake rules call::

    python -m speechanim.preprocess align --raw data/raw/<ds>/<speaker> --out data/aligned/<ds>/<speaker>.h5 \\
        --skipped results/<ds>/skipped/<speaker>.tsv [--size 128 96] [--sample-rate 16000] \\
        [--smooth-window 7] [--max-gap 5] [--min-frames 25] [--fps 25]
    python -m speechanim.preprocess split --dataset <ds> --speakers s1 s2 ... --out results/<ds>/split.tsv \\
        [--ratios 0.5 0.2 0.3] [--seed 0] [--recommended-test 13F ... --val 15F ...] [--exclude ...]
    python -m speechanim.preprocess split --dataset <ds> --by-utterance data/raw/<ds>/<speaker> ... \\
        --out results/<ds>/split.tsv [--ratios 0.8 0.1 0.1] [--seed 0]
    python -m speechanim.preprocess pack --split results/<ds>/split.tsv --part train|val|test [--mirror] \\
        --out data/packed/<ds>/<part>.h5 data/aligned/<ds>/<speaker>.h5 ...
    python -m speechanim.preprocess skiplist --out results/<ds>/skipped.tsv results/<ds>/skipped/*.tsv

align
    For each manifest row, in order: decode the video and the video's own audio track at
    ``--sample-rate`` (it is in sync with the frames; the ``.wav`` beside it is used only when the
    video has no audio track), in one ffmpeg process when the file decodes cleanly
    (:func:`speechanim.media.read_video_and_audio`), remove the DC offset and scale to a peak of 1
    (:func:`speechanim.audio.normalise`), trim or pad to exactly ``T * samples_per_frame`` samples, align
    every frame to the canonical face (:func:`speechanim.align.align_video`) and add the clip to the
    speaker's HDF5 file.  A clip that cannot be used (unreadable or truncated video, no face or too
    long a gap without one, silent or missing audio, audio that ends well before the video, too few
    frames) is listed in the skip list with the reason, naming the file, and the rest go on.  The
    raw stage's own ``skipped.tsv`` rows for the speaker are carried into the skip list.  The output
    file is always written (possibly with no clip) unless the manifest cannot be read.

split
    Speaker-independent splits (:mod:`speechanim.splits`): GRID and synthgrid by ratios (paper:
    50/20/30); TCD-TIMIT by the corpus's recommended split with 7 of its 17 test volunteers moved to
    validation (:func:`tcdtimit_validation`).  ``--by-utterance``: the utterances of the raw speaker
    folders' manifests split by ratios (speaker-dependent; for a corpus of one speaker).

pack
    Copies the clips of one part (its speakers', or its utterances' for an utterance split) into one
    file, group by group without decoding (``h5py`` ``Group.copy`` keeps the chunking and
    compression), and with ``--mirror`` (training
    only) adds each clip's mirror image (:func:`speechanim.align.mirror_clip`: frames flipped
    left-right, landmarks ``x -> W - 1 - x`` re-indexed by the template's mirror permutation, audio
    unchanged) as ``<speaker>/<utterance>_mirror``.

skiplist
    Merges the per-speaker skip lists into one table (``speaker, item, reason``).

Files: an aligned speaker file holds the groups of :mod:`speechanim.packing` under one speaker and
root attributes ``speaker``, ``size``, ``sample_rate``, ``smooth_window``, ``max_gap``, ``n_skipped``;
a packed file has root attributes ``part``, ``mirrored`` and ``speakers``.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from .align import AlignConfig, AlignedClip, AlignmentError, align_video, mirror_clip
from .audio import SilentAudioError, fit_length, normalise, samples_per_frame
from .fileio import refuse_clashing_paths
from .gridformat import GridFormatError, read_align
from .media import MediaError, read_audio, read_video_and_audio
from .packing import AtomicH5, Clip, clip_group, clip_keys, read_clip, write_clip
from .raw.layout import MANIFEST, SKIPPED, Utterance, atomic_write_text, read_manifest
from .raw.tcdtimit import LIPSPEAKERS, RECOMMENDED_TEST_VOLUNTEERS
from .splits import (SPLITS, is_utterance_split, part_of, ratio_split, read_split, recommended_split, utterance_split,
                     write_split)

#: Audio sample rate of the packed clips (Hz).  The paper does not state it; 16 kHz is a whole number
#: of samples per frame at GRID's 25 fps (640), and the 0.16 s window (section 3.1) is 2560 samples.
DEFAULT_SAMPLE_RATE = 16_000

#: Clips with fewer frames are skipped: one second of video holds no sentence of GRID (3 s clips) or
#: TCD-TIMIT, so a shorter clip is a cut-off recording (an inference, not a value from the paper).
DEFAULT_MIN_FRAMES = 25

#: An audio track may end this much before the last video frame; the rest is zero-padded.  GRID's MP2
#: tracks end 0.02 s before their 3.00 s of video; a larger shortfall means lost audio.
MAX_AUDIO_SHORTFALL_S = 0.1

#: The paper's GRID split (section 4.1): "50% - 20% - 30%" of the speakers.
GRID_RATIOS = (0.5, 0.2, 0.3)

#: How many of TCD-TIMIT's 17 recommended test volunteers become validation speakers.  The paper says
#: only "exclude some of the test speakers and use them as a validation set"; its Table 1 gives 686
#: validation and 977 test clips, 7 and 10 volunteers of 98 sentences each (686 = 7 x 98, 980 - 3).
TCDTIMIT_N_VALIDATION = 7


NO_AUDIO_TRACK = "has no audio track"


class PreprocessError(RuntimeError):
    """A preprocessing job cannot go on; the message names the file and the problem."""


class SkipClip(ValueError):
    """This clip cannot be used; the message names its file and says why."""


# --------------------------------------------------------------------------------------------------
# align: one speaker of the raw layout -> one HDF5 file of aligned clips


@dataclass(frozen=True)
class AlignJob:
    """The settings of the align job (see the CLI)."""

    align: AlignConfig = AlignConfig()
    sample_rate: int = DEFAULT_SAMPLE_RATE
    min_frames: int = DEFAULT_MIN_FRAMES
    fps: float | None = None  # resample videos at another rate to this one (None: keep each video's)


@dataclass
class SpeakerResult:
    speaker: str
    clips: int = 0
    frames: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def _words(speaker_dir: Path, utt: Utterance) -> str:
    """The spoken sentence: the manifest's text, else the words of the ``.align`` file, else ``""``."""
    if utt.text.strip():
        return " ".join(utt.text.split())
    if utt.align:
        try:
            return " ".join(w.word for w in read_align(speaker_dir / utt.align))
        except (OSError, GridFormatError, UnicodeDecodeError) as err:
            tqdm.write(f"warning: {speaker_dir / utt.align}: no words taken from it ({err})", file=sys.stderr)
    return ""


def _audio(speaker_dir: Path, utt: Utterance, video: Path, sample_rate: int) -> np.ndarray:
    """The clip's audio track: the video's own, or the ``.wav`` beside it when the video has none."""
    try:
        return read_audio(video, sample_rate)
    except MediaError as err:
        if not str(err).endswith(NO_AUDIO_TRACK):  # media.read_audio's words for a video without audio
            raise
    if not utt.audio:
        raise SkipClip(f"{video}: has no audio track and the manifest names no audio file")
    wav = speaker_dir / utt.audio
    if not wav.is_file():
        raise SkipClip(f"{video}: has no audio track and {wav} is missing")
    return read_audio(wav, sample_rate)


def load_clip(speaker_dir: str | os.PathLike, utt: Utterance, job: AlignJob = AlignJob()) -> Clip:
    """Decode, normalise and align one utterance of the raw layout; :class:`SkipClip` if it cannot be used."""
    speaker_dir = Path(speaker_dir)
    video = speaker_dir / utt.video
    try:
        frames, fps, track = read_video_and_audio(video, job.sample_rate, fps=job.fps)
        n = len(frames)
        if n < job.min_frames:
            raise SkipClip(f"{video}: only {n} frames (at least {job.min_frames} needed)")
        try:
            spf = samples_per_frame(job.sample_rate, fps)
        except ValueError as err:
            raise SkipClip(f"{video}: {err}; choose a --sample-rate that is a multiple of the frame rate") from None
        audio = _audio(speaker_dir, utt, video, job.sample_rate) if track is None else track
        shortfall = (n * spf - len(audio)) / job.sample_rate
        if shortfall > MAX_AUDIO_SHORTFALL_S:
            raise SkipClip(f"{video}: audio ends {shortfall:.2f} s before the video "
                           f"({len(audio) / job.sample_rate:.2f} s of audio, {n / fps:.2f} s of video)")
        audio = fit_length(normalise(audio, source=str(video)), n, spf)
        aligned = align_video(frames, job.align, name=str(video))
    except (MediaError, SilentAudioError, AlignmentError) as err:
        raise SkipClip(str(err)) from None
    return Clip(speaker=speaker_dir.name, utterance=utt.utterance, frames=aligned.frames, audio=audio,
                landmarks=aligned.landmarks.astype(np.float32), fps=fps, sample_rate=job.sample_rate,
                words=_words(speaker_dir, utt), mirrored=False, source=str(video))


def read_skip_list(path: str | os.PathLike, columns: tuple[str, ...] = ("item", "reason")) -> list[dict[str, str]]:
    """Rows of a skip list TSV with the given header; :class:`PreprocessError` naming the file otherwise."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if reader.fieldnames is None or list(reader.fieldnames[:len(columns)]) != list(columns):
                raise PreprocessError(f"{path}: not a skip list (header {reader.fieldnames}, expected {list(columns)})")
            return [{c: (row.get(c) or "") for c in columns} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PreprocessError(f"{path}: cannot read the skip list ({err})") from None


def write_skip_list(path: str | os.PathLike, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Path:
    """Write a skip list TSV atomically (tabs and newlines inside a value become spaces)."""
    def clean(value: str) -> str:
        return " ".join(str(value).replace("\t", " ").splitlines())

    lines = ["\t".join(columns)] + ["\t".join(clean(row[c]) for c in columns) for row in rows]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def manifest_problem(speaker_dir: Path, utt: Utterance, seen: set[str]) -> str | None:
    """Why a manifest row cannot be used as it stands (None if it can): an utterance named twice, an
    utterance name that is not a plain name, or a file outside the speaker's folder."""
    if utt.utterance in seen:
        return f"{speaker_dir / MANIFEST}: utterance {utt.utterance!r} is listed more than once; the first row is used"
    if not utt.utterance or "/" in utt.utterance or utt.utterance in (".", ".."):
        return f"{speaker_dir / MANIFEST}: utterance name {utt.utterance!r} is not a plain name"
    root = speaker_dir.resolve()
    for column in ("video", "audio", "align"):
        name = getattr(utt, column)
        if name and not (speaker_dir / name).resolve().is_relative_to(root):
            return f"{speaker_dir / MANIFEST}: the {column} file {name!r} of {utt.utterance} lies outside the speaker's folder"
    return None


def align_speaker(raw_dir: str | os.PathLike, out: str | os.PathLike, skipped: str | os.PathLike,
                  job: AlignJob = AlignJob(), *, progress: bool = True) -> SpeakerResult:
    """Align every clip of one speaker of the raw layout into ``out``; write the skip list ``skipped``."""
    raw_dir = Path(raw_dir)
    manifest = raw_dir / MANIFEST
    try:
        utterances = read_manifest(manifest)
    except (OSError, UnicodeDecodeError, csv.Error, TypeError) as err:
        raise PreprocessError(f"{manifest}: cannot read the manifest ({err})") from None
    result = SpeakerResult(raw_dir.name)
    carried = []
    if (raw_dir / SKIPPED).is_file():
        carried = [{"item": r["item"], "reason": f"raw stage: {r['reason']}"} for r in read_skip_list(raw_dir / SKIPPED)]
    with AtomicH5(out) as h5:
        h5.attrs.update(speaker=result.speaker, size=list(job.align.size), sample_rate=job.sample_rate,
                        smooth_window=job.align.smooth_window, max_gap=job.align.max_gap)
        bar = tqdm(utterances, desc=f"align {result.speaker}", unit="clip", disable=None if progress else True, file=sys.stderr)
        seen: set[str] = set()
        duplicates = []
        for utt in bar:
            problem = manifest_problem(raw_dir, utt, seen)
            if problem is not None:
                if utt.utterance in seen:  # keep the first row's result under the name; list the repeat apart
                    duplicates.append({"item": utt.utterance, "reason": problem})
                else:
                    result.skipped[utt.utterance] = problem
                bar.write(f"skipped {utt.utterance}: {problem}", file=sys.stderr)
                continue
            seen.add(utt.utterance)
            try:
                clip = load_clip(raw_dir, utt, job)
            except SkipClip as err:
                result.skipped[utt.utterance] = str(err)
                bar.write(f"skipped {utt.utterance}: {err}", file=sys.stderr)
                continue
            write_clip(h5, clip)
            result.clips += 1
            result.frames += len(clip.frames)
        h5.attrs["n_skipped"] = len(result.skipped) + len(duplicates)
    rows = carried + duplicates + [{"item": k, "reason": v} for k, v in result.skipped.items()]
    write_skip_list(skipped, sorted(rows, key=lambda r: r["item"]), ("item", "reason"))
    return result


# --------------------------------------------------------------------------------------------------
# split


def tcdtimit_validation(test: tuple[str, ...] = RECOMMENDED_TEST_VOLUNTEERS,
                        n_val: int = TCDTIMIT_N_VALIDATION) -> tuple[str, ...]:
    """The test volunteers moved to validation: every other one, by sex, in id order.

    Volunteer ids end in ``M`` or ``F``.  Within each sex, sorted by id, the 2nd, 4th, ... are taken,
    alternating between the sexes starting with the larger group, until ``n_val`` are chosen.  With
    the recommended 17 (8 F, 9 M) this moves 4 M + 3 F, leaving a test set of 5 F + 5 M: both sets keep
    the corpus's balance, and the choice depends on nothing but the list.
    """
    by_sex = {s: sorted(v for v in test if v.endswith(s)) for s in "MF"}
    picks = {s: ids[1::2] for s, ids in by_sex.items()}
    order = sorted("MF", key=lambda s: -len(by_sex[s]))
    chosen: list[str] = []
    while len(chosen) < n_val and any(picks.values()):
        for s in order:
            if picks[s] and len(chosen) < n_val:
                chosen.append(picks[s].pop(0))
    if len(chosen) < n_val:
        raise ValueError(f"cannot move {n_val} of {len(test)} test speakers to validation")
    return tuple(sorted(chosen))


def make_split(dataset: str, speakers: list[str], *, ratios: tuple[float, float, float] = GRID_RATIOS, seed: int = 0,
               recommended_test: list[str] | None = None, val: list[str] | None = None,
               exclude: list[str] | None = None) -> dict[str, str]:
    """Speaker -> ``train``/``val``/``test`` for one dataset.

    ``recommended_test`` given (or dataset ``tcdtimit``): the recommended split, the ``val`` speakers
    (default :func:`tcdtimit_validation`) moved from test to validation and every other speaker in
    training.  For TCD-TIMIT the lipspeakers are excluded by default: Table 1's 8218 training samples
    are 2 x 4109, 42 volunteers of 98 sentences (the 39 recommended training volunteers and the 3 left
    out for their accents) less 7 clips, with no room for the lipspeakers' 3 x 377.
    Otherwise: :func:`speechanim.splits.ratio_split` (paper: 50/20/30 of GRID's speakers).
    """
    if dataset == "tcdtimit" and recommended_test is None:
        recommended_test = list(RECOMMENDED_TEST_VOLUNTEERS)
        val = list(tcdtimit_validation()) if val is None else val
        exclude = list(LIPSPEAKERS) if exclude is None else exclude
    kept = [s for s in speakers if s not in set(exclude or ())]
    if not kept:
        raise ValueError("no speakers left to split")
    if recommended_test is not None:
        if val is None:
            raise ValueError("--val is needed with --recommended-test (the test speakers moved to validation)")
        split = recommended_split(kept, recommended_test, val)
        empty = [p for p in SPLITS if p not in split.values()]
        if empty:
            raise ValueError(f"the recommended split of {len(kept)} speakers leaves no {' or '.join(empty)} speaker")
        return split
    return ratio_split(kept, tuple(ratios), seed)


def split_utterances(raw_dirs: list[str | os.PathLike], *, ratios: tuple[float, float, float], seed: int = 0) -> dict[str, str]:
    """The utterances of raw speaker folders (their manifests) split by ratios: a speaker-dependent split.

    Every manifest row counts, including clips the alignment will later skip, so the split depends on
    the corpus's file list alone, not on what mediapipe finds.
    """
    pairs = []
    for raw_dir in map(Path, raw_dirs):
        try:
            rows = read_manifest(raw_dir)
        except (OSError, UnicodeDecodeError, csv.Error, TypeError) as err:
            raise PreprocessError(f"{raw_dir / MANIFEST}: cannot read the manifest ({err})") from None
        pairs += [(raw_dir.name, u.utterance) for u in rows]
    if not pairs:
        raise PreprocessError(f"no utterances to split in {', '.join(map(str, raw_dirs))}")
    return utterance_split(pairs, tuple(ratios), seed)


# --------------------------------------------------------------------------------------------------
# pack


def _speaker_of(path: Path, h5: h5py.File) -> str:
    if "speaker" not in h5.attrs:
        raise PreprocessError(f"{path}: not an aligned speaker file (no 'speaker' attribute)")
    speaker = str(h5.attrs["speaker"])
    others = sorted(set(h5) - {speaker})
    if others:
        raise PreprocessError(f"{path}: holds clips of {', '.join(others)}, not only of speaker {speaker}")
    return speaker


def mirror_packed(clip: Clip) -> Clip:
    """The mirror image of a stored clip (:func:`speechanim.align.mirror_clip` on its frames and landmarks).

    The stored clip keeps no warp transforms (mirror_clip only composes the flip into them), so
    identities stand in for them here and are dropped again.
    """
    t = len(clip.frames)
    aligned = AlignedClip(frames=clip.frames, landmarks=clip.landmarks.astype(np.float64),
                          transforms=np.tile(np.eye(3), (t, 1, 1)), found=np.ones(t, bool), mirrored=clip.mirrored)
    flipped = mirror_clip(aligned)
    return Clip(clip.speaker, clip.utterance, flipped.frames, clip.audio, flipped.landmarks.astype(np.float32),
                clip.fps, clip.sample_rate, clip.words, flipped.mirrored, clip.source)


def pack(split_path: str | os.PathLike, part: str, inputs: list[str | os.PathLike], out: str | os.PathLike, *,
         mirror: bool = False, progress: bool = True) -> int:
    """Copy the clips of ``part`` from their speakers' aligned files into ``out``; returns the clip count.

    Inputs whose speaker has nothing in ``part`` are ignored; a speaker of ``part`` without an input is
    an error.  With an utterance split only the part's utterances are copied (clips the split names but
    the alignment skipped are simply absent).  All clips must share one crop size and sample rate (the
    Datasets batch them together).
    """
    if part not in SPLITS:
        raise PreprocessError(f"unknown part {part!r}; choose one of {', '.join(SPLITS)}")
    if mirror and part != "train":
        raise PreprocessError(f"--mirror is for the training set only (paper 4.1), not {part}")
    split_path = Path(split_path)
    try:
        split = read_split(split_path)
    except (OSError, KeyError, csv.Error) as err:
        raise PreprocessError(f"{split_path}: cannot read the split ({err})") from None
    bad = sorted({p for p in split.values() if p not in SPLITS})
    if bad:
        raise PreprocessError(f"{split_path}: unknown split name(s) {', '.join(bad)}")
    by_utterance = is_utterance_split(split)
    wanted = sorted({key.split("/", 1)[0] for key, p in split.items() if p == part})
    files: dict[str, Path] = {}
    for path in map(Path, inputs):
        try:
            with h5py.File(path, "r") as h5:
                speaker = _speaker_of(path, h5)
        except OSError as err:
            raise PreprocessError(f"{path}: cannot open as HDF5 ({err})") from None
        if speaker in files:
            raise PreprocessError(f"speaker {speaker} given twice: {files[speaker]} and {path}")
        files[speaker] = path
    missing = [s for s in wanted if s not in files]
    if missing:
        raise PreprocessError(f"{split_path}: {part} speaker(s) {', '.join(missing)} have no aligned file among the inputs")
    n = 0
    shape: tuple | None = None
    with AtomicH5(out) as dst:
        dst.attrs.update(part=part, mirrored=bool(mirror), speakers=list(wanted),
                         split_by="utterance" if by_utterance else "speaker")
        for speaker in tqdm(wanted, desc=f"pack {part}", unit="speaker", disable=None if progress else True, file=sys.stderr):
            with h5py.File(files[speaker], "r") as src:
                for key in clip_keys(src):
                    if part_of(split, speaker, key.split("/", 1)[1]) != part:
                        continue
                    g = clip_group(src, key)  # checked: copy() would bring along what it links to
                    this = (g["frames"].shape[1:], int(g.attrs["sample_rate"]))
                    if shape is None:
                        shape, first = this, f"{files[speaker]}:{key}"
                    elif this != shape:
                        raise PreprocessError(f"{files[speaker]}:{key}: frames {this[0]} at {this[1]} Hz do not match "
                                              f"{first}: {shape[0]} at {shape[1]} Hz")
                    src.copy(g, dst.require_group(speaker), name=key.split("/", 1)[1])
                    n += 1
                    if mirror:
                        write_clip(dst, mirror_packed(read_clip(src, key)))
                        n += 1
    return n


# --------------------------------------------------------------------------------------------------
# skiplist


def merge_skip_lists(inputs: list[str | os.PathLike], out: str | os.PathLike) -> int:
    """One table ``speaker, item, reason`` from per-speaker skip lists named ``<speaker>.tsv``."""
    rows = []
    for path in map(Path, inputs):
        rows += [{"speaker": path.stem, **r} for r in read_skip_list(path)]
    rows.sort(key=lambda r: (r["speaker"], r["item"]))
    write_skip_list(out, rows, ("speaker", "item", "reason"))
    return len(rows)


# --------------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m speechanim.preprocess", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("align", help="align one speaker of the raw layout into an HDF5 file")
    a.add_argument("--raw", required=True, type=Path, help="data/raw/<dataset>/<speaker> (holds manifest.tsv)")
    a.add_argument("--out", required=True, type=Path, help="data/aligned/<dataset>/<speaker>.h5")
    a.add_argument("--skipped", required=True, type=Path, help="skip list to write (TSV: item, reason)")
    a.add_argument("--size", nargs=2, type=int, default=list(AlignConfig.size), metavar=("H", "W"),
                   help="crop height and width (default 128 96, the authors' GRID crop)")
    a.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE, help="audio rate in Hz (default 16000)")
    a.add_argument("--smooth-window", type=int, default=AlignConfig.smooth_window,
                   help="frames the stable landmarks are averaged over (default 7, as the authors)")
    a.add_argument("--max-gap", type=int, default=AlignConfig.max_gap,
                   help="longest run of frames without a face that is interpolated (default 5)")
    a.add_argument("--fps", type=float, default=None,
                   help="resample videos at another frame rate to this one (e.g. TCD-TIMIT's 30 fps to 25)")
    a.add_argument("--min-frames", type=int, default=DEFAULT_MIN_FRAMES, help="skip shorter clips (default 25)")

    s = sub.add_parser("split", help="speaker-independent (or, --by-utterance, speaker-dependent) train/val/test split")
    s.add_argument("--dataset", required=True)
    by = s.add_mutually_exclusive_group(required=True)
    by.add_argument("--speakers", nargs="+", help="split these speakers")
    by.add_argument("--by-utterance", nargs="+", type=Path, metavar="RAW_SPEAKER_DIR",
                    help="split the utterances of these raw speaker folders (speaker-dependent: one-speaker corpora)")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--ratios", nargs=3, type=float, default=list(GRID_RATIOS), metavar=("TRAIN", "VAL", "TEST"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--recommended-test", nargs="+", help="the corpus's recommended test speakers")
    s.add_argument("--val", nargs="+", help="test speakers moved to validation (with --recommended-test)")
    s.add_argument("--exclude", nargs="*", help="speakers left out of every set (tcdtimit default: the lipspeakers; "
                   "--exclude alone keeps every speaker)")

    k = sub.add_parser("pack", help="pack the clips of one part of the split into one HDF5 file")
    k.add_argument("--split", required=True, type=Path)
    k.add_argument("--part", required=True, choices=SPLITS)
    k.add_argument("--mirror", action="store_true", help="add the mirror image of every clip (train only)")
    k.add_argument("--out", required=True, type=Path)
    k.add_argument("inputs", nargs="+", type=Path, help="aligned speaker files")

    m = sub.add_parser("skiplist", help="merge per-speaker skip lists")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("inputs", nargs="*", type=Path)
    return p


def _paths(args: argparse.Namespace) -> tuple[dict, dict]:
    """What each subcommand reads and writes, for :func:`~speechanim.fileio.refuse_clashing_paths`."""
    if args.command == "align":
        return {"--raw": args.raw}, {"--out": args.out, "--skipped": args.skipped}
    if args.command == "split":
        return {"--by-utterance": args.by_utterance}, {"--out": args.out}
    if args.command == "pack":
        return {"--split": args.split, "the aligned file": args.inputs}, {"--out": args.out}
    return {"the skip list": args.inputs}, {"--out": args.out}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    refuse_clashing_paths(parser, *_paths(args))
    try:
        if args.command == "align":
            job = AlignJob(AlignConfig(size=tuple(args.size), smooth_window=args.smooth_window, max_gap=args.max_gap),
                           args.sample_rate, args.min_frames, args.fps)
            r = align_speaker(args.raw, args.out, args.skipped, job)
            reasons = Counter(v.split(": ", 1)[-1][:60] for v in r.skipped.values())
            print(f"{r.speaker}: {r.clips} clips ({r.frames} frames) in {args.out}, {len(r.skipped)} skipped"
                  + (f" ({'; '.join(f'{n} x {why}' for why, n in reasons.most_common(3))})" if reasons else ""),
                  file=sys.stderr)
        elif args.command == "split":
            if args.by_utterance:
                split = split_utterances(args.by_utterance, ratios=tuple(args.ratios), seed=args.seed)
            else:
                split = make_split(args.dataset, args.speakers, ratios=tuple(args.ratios), seed=args.seed,
                                   recommended_test=args.recommended_test, val=args.val, exclude=args.exclude)
            write_split(args.out, split)
            counts = Counter(split.values())
            unit = "utterances (speaker-dependent)" if args.by_utterance else "speakers"
            print(f"{args.dataset}: " + ", ".join(f"{p} {counts[p]}" for p in SPLITS) + f" {unit} -> {args.out}",
                  file=sys.stderr)
        elif args.command == "pack":
            n = pack(args.split, args.part, args.inputs, args.out, mirror=args.mirror)
            print(f"{args.part}: {n} clips -> {args.out}", file=sys.stderr)
        elif args.command == "skiplist":
            n = merge_skip_lists(args.inputs, args.out)
            print(f"{n} skipped items -> {args.out}", file=sys.stderr)
    except (PreprocessError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
