"""The raw stage of a ``folder`` dataset: import a folder of talking-face videos into the normalised layout.

For recordings that are no known corpus (your own videos, a copy of GRID, any talking heads), the
source folder holds videos that ffmpeg reads, each with its audio track (``.mp4 .mpg .mpeg .avi
.mov .mkv .webm``, any case; hidden and other files are ignored), in one of two layouts::

    <root>/<utterance>.mp4               one speaker: its id is given (default "s1")
    <root>/<speaker>/<utterance>.mp4     one speaker per subfolder (no videos directly in <root>)

Videos both directly in ``<root>`` and in subfolders are an error, as is a speaker folder whose name
is not an id (letters, digits, ``_`` and ``-``).  The utterance id is the file stem; two videos of a
speaker with one stem (``a.mp4`` and ``a.avi``) are an error.

Text, for the metrics that need words (WER): ``transcripts.tsv`` (header ``utterance<TAB>text``) in
``<root>`` and/or in a speaker folder (the speaker folder's lines win), else the sentence that a
GRID file name encodes (``bbaf2n`` -> "bin blue at f two now"), else none.  A speaker whose videos
have no text at all is imported with empty text (WER is then not available); one where some videos
have text and others have none is an error, since a partial transcript is most likely a mistake.

Checks.  Each clip is decoded once, video and audio, by ffmpeg (:func:`check_clip`, about 0.05 s per
3 s clip of 360x288): a clip that does not decode cleanly (unreadable, truncated, damaged), has no
audio track, or has fewer than ``min_frames`` frames is listed in ``skipped.tsv`` with the reason
and the rest go on.  All usable clips of a speaker must share one frame rate (or equal ``fps`` when
given): mixed rates are an error listing them, to be resolved by resampling or removing clips.  A
speaker with no usable clip is an error.

Output: ``<out>/<speaker>/<utterance>.<ext>`` is a copy of the video (the source is never linked
to or modified; its audio is the video's own track, so the manifest's ``audio`` column is empty),
assembled in a temporary folder beside it and renamed into place; ``manifest.tsv`` is written last.

CLI::

    python -m speechanim.raw.folder speakers --root DIR [--single-speaker s1]
    python -m speechanim.raw.folder speaker SPEAKER --root DIR --out data/raw/<dataset> \\
        [--single-speaker s1] [--fps 25] [--min-frames N] [--jobs N]
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from speechanim import media
from speechanim.fileio import refuse_clashing_paths
from speechanim.gridformat import GridFormatError, sentence_from_name
from speechanim.media import MediaError, VideoInfo
from speechanim.raw.layout import MANIFEST, Utterance, replace_dir, write_manifest, write_skipped

log = logging.getLogger("speechanim.raw.folder")

#: File name endings (any case) taken as videos.
VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm")
#: The transcript table looked for in the root and in each speaker folder.
TRANSCRIPTS = "transcripts.tsv"
TRANSCRIPT_HEADER = ("utterance", "text")
#: The speaker id of a one-speaker folder unless the caller names another.
DEFAULT_SINGLE_SPEAKER = "s1"
#: Two frame rates closer than this are one rate.
FPS_TOLERANCE = 0.01

_ID = re.compile(r"[A-Za-z0-9_-]+")
_SHOWN = 5  # names shown in a message listing many


class FolderError(RuntimeError):
    """The folder dataset's raw stage cannot go on; the message says why."""


# --------------------------------------------------------------------------------------------------
# The folder's layout


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _videos_in(folder: Path) -> list[Path]:
    """The videos directly in ``folder`` (not in its subfolders), sorted by name."""
    return sorted(p for p in folder.iterdir() if _is_video(p))


def _check_root(root: str | os.PathLike) -> Path:
    if root is None or not str(root).strip():
        raise FolderError("no source folder is given (the folder of videos to import)")
    path = Path(root).expanduser()
    if not path.exists():
        raise FolderError(f"{path}: no such folder")
    if not path.is_dir():
        raise FolderError(f"{path}: not a folder")
    return path


def _check_id(name: str, what: str) -> str:
    if not _ID.fullmatch(name):
        raise FolderError(f"{what} {name!r} is not a usable speaker id: use letters, digits, _ and - only")
    return name


def speaker_folders(root: str | os.PathLike, single_speaker: str = DEFAULT_SINGLE_SPEAKER) -> dict[str, Path]:
    """Speaker id -> the folder holding its videos, for either layout; :class:`FolderError` if there is none."""
    root = _check_root(root)
    direct = _videos_in(root)
    subdirs = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    with_videos = {name: p for name, p in subdirs.items() if _videos_in(p)}
    if direct and with_videos:
        raise FolderError(
            f"{root}: holds videos both directly (e.g. {direct[0].name}) and in subfolders (e.g. "
            f"{next(iter(with_videos))}/): put all videos directly in it (one speaker) or each speaker's in its "
            f"own subfolder <speaker>/ (nothing directly in it)")
    if direct:
        return {_check_id(single_speaker, "the one-speaker id"): root}
    if not with_videos:
        raise FolderError(f"{root}: holds no video files ({', '.join(VIDEO_SUFFIXES)}), "
                          f"neither directly nor in a subfolder <speaker>/")
    for name, path in with_videos.items():
        _check_id(name, f"the speaker folder {path}:")
    return with_videos


def list_speakers(root: str | os.PathLike, single_speaker: str = DEFAULT_SINGLE_SPEAKER) -> list[str]:
    """The speakers of the folder, sorted: ``[single_speaker]`` when the videos lie directly in ``root``,
    else the names of its subfolders that hold videos."""
    return sorted(speaker_folders(root, single_speaker))


def _utterance_videos(folder: Path) -> dict[str, Path]:
    """Utterance id (the file stem) -> video; :class:`FolderError` if two videos share a stem (in any case)."""
    by_key: dict[str, list[Path]] = {}
    for path in _videos_in(folder):
        by_key.setdefault(path.stem.lower(), []).append(path)
    clashes = [by_key[key] for key in sorted(by_key) if len(by_key[key]) > 1]
    if clashes:
        named = "; ".join(" and ".join(p.name for p in paths) for paths in clashes[:_SHOWN])
        more = f" (and {len(clashes) - _SHOWN} more)" if len(clashes) > _SHOWN else ""
        raise FolderError(f"{folder}: two videos share an utterance name (the file name without its extension): "
                          f"{named}{more}; rename or remove one of each")
    return {paths[0].stem: paths[0] for paths in by_key.values()}


# --------------------------------------------------------------------------------------------------
# Transcripts


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """A ``transcripts.tsv`` (header ``utterance<TAB>text``, one utterance a line) as utterance -> text."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise FolderError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise FolderError(f"{path}: cannot be read ({err.strerror})") from None
    header = tuple(c.strip().lower() for c in lines[0].split("\t")) if lines else ()
    if header != TRANSCRIPT_HEADER:
        got = repr(lines[0]) if lines else "an empty file"
        raise FolderError(f"{path}: its first line must be the header 'utterance<TAB>text', got {got}")
    texts: dict[str, str] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 2:
            raise FolderError(f"{path}:{lineno}: expected 2 tab-separated columns (utterance, text), "
                              f"got {len(cells)}: {line!r}")
        utterance, text = cells[0].strip(), " ".join(cells[1].split())
        if not utterance or not text:
            raise FolderError(f"{path}:{lineno}: empty {'utterance' if not utterance else 'text'}: {line!r}")
        if utterance in texts:
            raise FolderError(f"{path}:{lineno}: utterance {utterance!r} is listed twice")
        texts[utterance] = text
    return texts


def _grid_sentence(utterance: str) -> str | None:
    """The sentence a GRID file name encodes (``bbaf2n``), or None when the name is not one."""
    if len(utterance) != 6:
        return None
    try:
        return sentence_from_name(utterance + ".x")  # (a suffix, so that no dot in the name is taken for one)
    except GridFormatError:
        return None


def transcripts_for(root: Path, speaker_dir: Path, utterances: list[str]) -> dict[str, str]:
    """Utterance -> text for a speaker's videos: ``transcripts.tsv`` (the speaker folder's lines over the
    root's), else the GRID name's sentence, else ``""`` when no video of the speaker has any text.

    :class:`FolderError` naming the folder when some videos have text and others none.
    """
    table: dict[str, str] = {}
    tables = []
    for folder in dict.fromkeys([root, speaker_dir]):  # the root's first, so that the speaker's lines win
        path = folder / TRANSCRIPTS
        if path.is_file():
            table.update(read_transcripts(path))
            tables.append(path)
    texts = {u: table.get(u) or _grid_sentence(u) for u in utterances}
    missing = sorted(u for u, t in texts.items() if not t)
    if len(missing) == len(utterances):
        if tables:
            raise FolderError(f"{speaker_dir}: none of its videos is listed in {' or '.join(map(str, tables))} "
                              f"(e.g. {', '.join(missing[:3])}): is it the right transcripts file?")
        return {u: "" for u in utterances}
    if missing:
        names = ", ".join(missing[:_SHOWN]) + (f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else "")
        where = " or ".join(map(str, tables)) if tables else f"{speaker_dir / TRANSCRIPTS} (there is none)"
        raise FolderError(
            f"{speaker_dir}: {len(utterances) - len(missing)} of its {len(utterances)} videos have a transcript but "
            f"these do not, names that are neither GRID names nor in transcripts.tsv: {names}; add a line "
            f"'<utterance><TAB><text>' for each to {where}, or remove those videos")
    return {u: t or "" for u, t in texts.items()}


def has_transcripts(root: str | os.PathLike, single_speaker: str = DEFAULT_SINGLE_SPEAKER) -> bool:
    """Whether any speaker of the folder has text (a GRID name or a ``transcripts.tsv`` line), before any
    clip is checked: the DAG trains a lipreader (WER) only for such a dataset."""
    root = _check_root(root)
    for folder in speaker_folders(root, single_speaker).values():
        try:
            if any(transcripts_for(root, folder, list(_utterance_videos(folder))).values()):
                return True
        except FolderError:  # text for some videos only: the raw stage reports it; there is text
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Checking one clip

_STREAM_COUNT = re.compile(r"Output stream #0:(\d+) \((video|audio)\): (\d+) frames encoded(?: \((\d+) samples\))?")
_DECODE_ERRORS = re.compile(r"Input stream #\d+:\d+ \((?:video|audio)\):.*?(\d+) decode errors")
_FINAL_FRAME = re.compile(r"frame=\s*(\d+)")


def _clean(line: str, path: Path) -> str:
    """An ffmpeg log line without its ``[ctx @ 0x..]`` prefixes and the file's path."""
    return re.sub(r"^(?:\[[^\]]*\]\s*)+", "", line).replace(f"{path}: ", "").strip()


def check_clip(path: str | os.PathLike) -> VideoInfo:
    """Decode a video's first video and first audio stream to nowhere, in one ffmpeg; what :func:`media.probe`
    tells (frames decoded, rate, size, audio), or :class:`MediaError` naming the file if it does not decode
    cleanly (unreadable, truncated or damaged: any error ffmpeg reports), has no frames or an empty audio track.
    """
    path = Path(path)
    media._check_exists(path)
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+verbose", "-i", str(path),
           "-map", "0:v:0", "-map", "0:a:0?", "-fps_mode", "passthrough", "-f", "null", "-"]
    run = subprocess.run(cmd, capture_output=True)
    text, problems = media._split_log(run.stderr)
    problem = media._first_problem(problems)
    head = text.split("\nStream mapping:")[0]  # what ffmpeg says about the input
    if run.returncode != 0:
        if any(s in head for s in ("Invalid data found", "Error opening input", "moov atom not found")):
            raise MediaError(f"{path}: not a video ffmpeg can read ({_clean(problem or 'Invalid data', path)})")
        media._parse_streams(path, head)  # "has no video stream", when that is why
        raise MediaError(f"{path}: cannot decode ({_clean(problem or 'ffmpeg failed', path)})")
    width, height, fps, rate, channels, has_audio = media._parse_streams(path, head)
    errors = sum(int(n) for n in _DECODE_ERRORS.findall(text))
    if problem or errors:
        detail = _clean(problem, path) if problem else f"{errors} decode errors"
        raise MediaError(f"{path}: corrupt or truncated ({detail})")
    counts = {kind: (int(frames), int(samples or 0)) for _, kind, frames, samples in _STREAM_COUNT.findall(text)}
    if "video" in counts:
        n_frames = counts["video"][0]
    else:  # no per-stream summary (another ffmpeg build): the final progress line
        finals = _FINAL_FRAME.findall(text)
        n_frames = int(finals[-1]) if finals else 0
    if n_frames <= 0:
        raise MediaError(f"{path}: video stream has no frames")
    if has_audio and "audio" in counts and counts["audio"][1] == 0:
        raise MediaError(f"{path}: its audio track is empty")
    return VideoInfo(path, n_frames, fps, width, height, n_frames / fps, has_audio, rate, channels)


@dataclass(frozen=True)
class _Checked:
    utterance: str
    video: Path
    info: VideoInfo | None
    problem: str | None


def _check(utterance: str, video: Path, min_frames: int) -> _Checked:
    try:
        info = check_clip(video)
    except MediaError as err:
        return _Checked(utterance, video, None, str(err))
    if not info.has_audio:
        return _Checked(utterance, video, info, f"{video}: has no audio track")
    if info.n_frames < min_frames:
        return _Checked(utterance, video, info, f"{video}: only {info.n_frames} frames (at least {min_frames} needed)")
    return _Checked(utterance, video, info, None)


def _rate_groups(clips: list[_Checked]) -> list[tuple[float, list[Path]]]:
    """The clips' frame rates (those within :data:`FPS_TOLERANCE` are one), each with its videos, most common first."""
    groups: list[tuple[float, list[Path]]] = []
    for c in clips:
        group = next((g for g in groups if abs(g[0] - c.info.fps) <= FPS_TOLERANCE), None)
        if group is None:
            groups.append((c.info.fps, [c.video]))
        else:
            group[1].append(c.video)
    return sorted(groups, key=lambda g: (-len(g[1]), g[0]))


def _describe_rates(groups: list[tuple[float, list[Path]]]) -> str:
    return "; ".join(f"{fps:g} fps: {len(paths)} clip{'s' if len(paths) > 1 else ''}, e.g. {paths[0]}"
                     for fps, paths in groups)


def _check_rates(speaker: str, folder: Path, clips: list[_Checked], fps: float | None) -> float:
    """The speaker's one frame rate; :class:`FolderError` listing the rates when they differ (or are not ``fps``)."""
    groups = _rate_groups(clips)
    if fps is not None:
        wrong = [g for g in groups if abs(g[0] - fps) > FPS_TOLERANCE]
        if wrong:
            raise FolderError(
                f"{speaker}: clips in {folder} are not at the expected {fps:g} fps ({_describe_rates(groups)}); "
                f"resample them to {fps:g} fps (e.g. ffmpeg -i IN -r {fps:g} OUT) or set the expected rate to theirs")
        return fps
    if len(groups) > 1:
        raise FolderError(
            f"{speaker}: clips in {folder} have mixed frame rates ({_describe_rates(groups)}); all clips of a "
            f"speaker must share one: resample them to one rate (e.g. ffmpeg -i IN -r {groups[0][0]:g} OUT), "
            f"remove the others, or set the expected rate")
    return groups[0][0]


# --------------------------------------------------------------------------------------------------
# One speaker


def _inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies under it."""
    return a == b or b in a.parents


def import_speaker(
    root: str | os.PathLike,
    speaker: str,
    out_dir: str | os.PathLike,
    *,
    single_speaker: str = DEFAULT_SINGLE_SPEAKER,
    fps: float | None = None,
    min_frames: int = 1,
    jobs: int = 1,
) -> Path:
    """Import ``speaker``'s videos of the folder ``root`` into ``<out_dir>/<speaker>/``; returns its manifest.

    ``fps``: the rate every clip must have (``None``: they must share one); ``min_frames``: shorter clips
    are skipped; ``jobs``: clips checked at once.  Every clip is checked and copied into a temporary
    folder beside the speaker folder, which then replaces it whole; ``manifest.tsv`` is written last,
    so a failure leaves nothing marked done.
    """
    if fps is not None and not fps > 0:
        raise FolderError(f"the expected frame rate must be positive, got {fps}")
    root = _check_root(root)
    folders = speaker_folders(root, single_speaker)
    if speaker not in folders:
        if len(folders) == 1 and folders.get(single_speaker) == root:
            raise FolderError(f"speaker {speaker} not found: {root} holds one speaker's videos directly, "
                              f"imported as speaker {single_speaker!r} (the single-speaker id)")
        raise FolderError(f"speaker {speaker} not found: no {root / speaker}/ with videos "
                          f"(the folder has {', '.join(sorted(folders))})")
    folder = folders[speaker]
    out = Path(out_dir)
    real_out, real_root = out.resolve(), root.resolve()
    if _inside(real_out, real_root) or _inside(real_root, real_out):
        raise FolderError(f"the output folder {out} and the source folder {root} overlap: write the import elsewhere")

    videos = _utterance_videos(folder)
    skipped = {u: f"{v}: not usable as an utterance name (letters, digits, _ and - only)"
               for u, v in videos.items() if not _ID.fullmatch(u)}
    videos = {u: v for u, v in videos.items() if u not in skipped}
    texts = transcripts_for(root, folder, list(videos)) if videos else {}
    final = out / speaker
    (final / MANIFEST).unlink(missing_ok=True)  # whatever happens next, the old state is not "done"

    log.info("%s: checking %d clips of %s", speaker, len(videos), folder)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        checked = []
        for i, c in enumerate(pool.map(lambda item: _check(*item, min_frames), videos.items()), 1):
            checked.append(c)
            if c.problem:
                log.warning("%s/%s: skipped: %s", speaker, c.utterance, c.problem)
            if i % 50 == 0:
                log.info("%s: %d/%d clips checked", speaker, i, len(videos))
    usable = [c for c in checked if c.problem is None]
    skipped.update({c.utterance: c.problem for c in checked if c.problem is not None})
    if not usable:
        example = next(iter(skipped.values()), "none")
        raise FolderError(f"{speaker}: no usable clip in {folder} ({len(skipped)} skipped, e.g. {example})")
    rate = _check_rates(speaker, folder, usable, fps)

    tmp = out / f".{speaker}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    utterances: list[Utterance] = []
    try:
        for c in usable:
            name = c.utterance + c.video.suffix.lower()
            shutil.copyfile(c.video, tmp / name)
            utterances.append(Utterance(c.utterance, name, "", "", texts[c.utterance]))
        write_skipped(tmp, skipped)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = write_manifest(final, utterances)
    if not any(u.text for u in utterances):
        log.warning("%s: no transcripts (no %s, no GRID file names): text is empty, WER will not be available",
                    speaker, TRANSCRIPTS)
    log.info("%s: %d utterances at %g fps in %s, %d skipped", speaker, len(utterances), rate, final, len(skipped))
    return manifest


# --------------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speechanim.raw.folder", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speaker = sub.add_parser("speaker", help="import one speaker into the normalised layout")
    speaker.add_argument("speaker", help="speaker id: a subfolder of --root, or the single-speaker id")
    speaker.add_argument("--root", required=True, type=Path, help="the folder of videos")
    speaker.add_argument("--out", required=True, type=Path, help="the dataset's raw folder, e.g. data/raw/<dataset>")
    speaker.add_argument("--fps", type=float, default=None,
                         help="the frame rate every clip must have (default: any, but one for all clips)")
    speaker.add_argument("--min-frames", type=int, default=1, help="skip shorter clips (default %(default)s)")
    speaker.add_argument("--jobs", type=int, default=1, help="clips checked at once (default %(default)s)")
    listing = sub.add_parser("speakers", help="print the speakers of the folder, one a line")
    listing.add_argument("--root", required=True, type=Path, help="the folder of videos")
    for p in (speaker, listing):
        p.add_argument("--single-speaker", default=DEFAULT_SINGLE_SPEAKER,
                       help="the speaker id of a folder holding one speaker's videos directly (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "speaker":  # as import_speaker's own check: the output and the source folder apart
        refuse_clashing_paths(parser, {"--root": args.root}, {"--out": args.out})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "speakers":
            print("\n".join(list_speakers(args.root, args.single_speaker)))
        else:
            import_speaker(args.root, args.speaker, args.out, single_speaker=args.single_speaker, fps=args.fps,
                           min_frames=args.min_frames, jobs=args.jobs)
    except (FolderError, ValueError, OSError) as e:
        print(f"speechanim.raw.folder: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
