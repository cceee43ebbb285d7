"""GRID's raw stage: download the official archives and extract one speaker into the normalised layout.

The official distribution
-------------------------
The GRID audio-visual sentence corpus (Cooke, Barker, Cunningham, Shao 2006; CC BY 4.0) is published
as the Zenodo record 3625687 (https://zenodo.org/records/3625687, DOI 10.5281/zenodo.3625687).  Its
files, each downloadable as ``https://zenodo.org/records/3625687/files/<name>?download=1``:

==================  ===========================================================================
``s1.zip`` ...      one per speaker, ``s1`` to ``s34`` **without** ``s21`` (speaker 21 has no
``s34.zip``         video); members ``s<N>/<utt>.mpg``: the 1000 "normal quality" MPEG-1 videos
                    of the speaker (360x288, 25 fps, 3 s, with a 44.1 kHz MPEG audio track).
                    ``s1.zip`` is about 423.5 MB (md5 ``cbd6556668f061b5c3681bc722659b39``),
                    ``s2.zip`` 394,644,122 bytes (md5 ``36e513652d9abec68c721221ede557df``).
``audio_25k.zip``   every speaker's audio, ``audio_25k/s<N>/<utt>.wav`` (25 kHz WAV; all 34
                    speakers, s21 included, 1000 clips each, 34000 in all); about 2.6 GB, md5
                    ``4b3ac37b1a258f55d1eebe657de491a9``.
``alignments.zip``  word alignments, ``alignments/s<N>/<utt>.align`` (``start end word`` in
                    1/25000 s, ``sil`` at both ends).
``jasagrid.pdf``    the corpus paper (not used here).
==================  ===========================================================================

Zenodo's record API, ``https://zenodo.org/api/records/3625687``, lists every file as
``{"key": "s1.zip", "size": <bytes>, "checksum": "md5:<hex>", "links": {"self": ".../content"}}``;
:func:`parse_record` reads it (and the older ``filename``/``filesize`` spelling) so that every
archive is checked against its published size and md5.  Zenodo answers ``Range`` requests with
``206`` and an exact ``Content-Range``, so interrupted downloads resume.

Sources: the member paths and the per-speaker archives are what public download scripts for this
record read (lhotse's recipe, https://github.com/lhotse-speech/lhotse/blob/master/lhotse/recipes/grid.py,
extracts every zip into one folder and reads ``alignments/<speaker>/<utt>.align``,
``audio_25k/...`` and ``<speaker>/<utt>.mpg``; scripts that list the zips' members remotely read
``audio_25k/s<N>/<utt>.wav`` and ``s<N>/<utt>.mpg``; a data README citing the record gives the
sizes and md5 checksums above and that ``s1.zip`` holds ``s1/*.mpg`` rather than JPEG frames, as one
widely copied README claims).  Some scripts skip ``__MACOSX/`` and ``._*`` members defensively;
they are ignored here too.

Two known problems of this record, handled or flagged here:

* **Mislabelled alignment folders.**  Several folders of ``alignments.zip`` hold another speaker's
  alignments (lhotse pull requests #1501 and #1502,
  https://github.com/lhotse-speech/lhotse/pull/1502, map e.g. s5<->s6, s10<-s13, s20<-s21; another
  script reports that s11, s12 and s15 match 0 of their 1000 videos).  Rather than hard-code a
  map, :func:`choose_folder` takes the speaker's own folder when its file names cover most of the
  speaker's videos, and otherwise the folder whose names do (GRID speakers read different sentence
  lists, so a folder that covers most of a speaker's 1000 utterance names belongs to that speaker);
  the choice is logged.  The same check guards the audio archive.
* **The 25 kHz audio is endpointed.**  The WAVs of ``audio_25k.zip`` are shorter than the 3 s
  videos (1.1-2.5 s measured by others; lhotse PR #1501 recommends taking the audio from the
  videos instead), so they are not sample-synchronous with the video frames.  ``audio_source=
  "video"`` (``--audio-source video``) writes each ``<utt>.wav`` from the video's own audio track
  instead (25 kHz mono 16-bit, through the bundled ffmpeg); the default, ``"archive"``, keeps the
  corpus's ``audio_25k`` files.

Jobs
----
``shared`` downloads ``audio_25k.zip`` and ``alignments.zip`` once; ``speaker <id>`` (one job per
speaker, never per video) downloads ``<id>.zip``, extracts its videos plus the speaker's members of
the shared archives into a temporary folder, renames that folder to ``<out>/<id>/`` and only then
writes ``manifest.tsv`` (:func:`speechanim.raw.layout.write_manifest`).  Utterances with a video but
no audio or alignment (or an unreadable one) are listed in ``skipped.tsv`` with the reason.  A
corrupt archive (not a zip, a CRC error, a checksum mismatch) stops the job with an error naming the
archive and leaves no manifest; a corrupt video archive is deleted so that the next run fetches it
again.

CLI::

    python -m speechanim.raw.grid shared --base-url URL --downloads DIR [--record-url URL]
    python -m speechanim.raw.grid speaker s1 --base-url URL --downloads DIR --out data/raw/grid \\
        [--record-url URL] [--audio-source archive|video]

both with ``--retries N --backoff S --timeout S --no-progress``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from collections.abc import Iterable
from typing import Literal
from urllib.parse import quote, urlsplit

from speechanim.gridformat import GridFormatError, parse_align, sentence_from_name
from speechanim.fileio import refuse_clashing_paths
from speechanim.raw.http import DownloadError, RetryPolicy, download, fetch_bytes
from speechanim.raw.layout import MANIFEST, Utterance, atomic_write_text, replace_dir, write_manifest, write_skipped

log = logging.getLogger("speechanim.raw.grid")

DEFAULT_BASE_URL = "https://zenodo.org/records/3625687/files"
DEFAULT_RECORD_URL = "https://zenodo.org/api/records/3625687"
AUDIO_ARCHIVE = "audio_25k.zip"
ALIGN_ARCHIVE = "alignments.zip"
SHARED_ARCHIVES = (AUDIO_ARCHIVE, ALIGN_ARCHIVE)
#: GRID speakers s1..s34; speaker 21 has no video archive.
SPEAKERS_WITHOUT_VIDEO = frozenset({"s21"})
SPEAKERS = tuple(f"s{i}" for i in range(1, 35) if f"s{i}" not in SPEAKERS_WITHOUT_VIDEO)
#: Sample rate of the corpus's audio_25k files, and of the WAVs taken from the videos.
AUDIO_RATE = 25_000
#: Where the record metadata is cached beside the downloads (used when the API cannot be reached).
RECORD_CACHE = "record.json"
#: A folder of a shared archive is taken as a speaker's when it holds at least this share of the
#: speaker's utterance names.
MIN_FOLDER_MATCH = 0.5

AudioSource = Literal["archive", "video"]
DEFAULT_POLICY = RetryPolicy()
_SPEAKER_ID = re.compile(r"[A-Za-z0-9_-]+")


class GridError(RuntimeError):
    """The GRID raw stage cannot go on; the message says why in one line."""


class ArchiveError(GridError):
    """An archive is corrupt or unusable; ``archive`` is its path and the message names it."""

    def __init__(self, archive: Path, problem: str) -> None:
        super().__init__(f"{archive}: {problem}")
        self.archive = Path(archive)
        self.problem = problem


@dataclass(frozen=True)
class FileInfo:
    """What the record publishes about one file."""

    name: str
    size: int | None = None
    md5: str | None = None


# --------------------------------------------------------------------------------------------------
# Record metadata and downloads


def archive_url(base_url: str, name: str) -> str:
    """The URL of archive ``name`` under ``base_url`` (Zenodo gets ``?download=1``)."""
    url = f"{base_url.rstrip('/')}/{quote(name)}"
    host = urlsplit(base_url).hostname or ""
    if host == "zenodo.org" or host.endswith(".zenodo.org"):
        url += "?download=1"
    return url


def parse_record(data: dict) -> dict[str, FileInfo]:
    """File name -> :class:`FileInfo` from a Zenodo record (``files`` as a list or ``{"entries": ...}``)."""
    files = data.get("files") if isinstance(data, dict) else None
    if isinstance(files, dict):
        files = files.get("entries", files)
    if isinstance(files, dict):
        files = list(files.values())
    if not isinstance(files, list):
        raise ValueError("the record metadata has no list of files")
    out: dict[str, FileInfo] = {}
    for entry in files:
        if not isinstance(entry, dict):
            continue
        name = entry.get("key") or entry.get("filename")
        if not isinstance(name, str):
            continue
        size = entry.get("size", entry.get("filesize"))
        algorithm, _, value = str(entry.get("checksum") or "").rpartition(":")
        md5 = value.lower() if (algorithm or "md5").lower() == "md5" and re.fullmatch(r"[0-9a-fA-F]{32}", value) else None
        out[name] = FileInfo(name, int(size) if isinstance(size, (int, float)) else None, md5)
    return out


def _unverified(problem: str, verify: bool) -> dict[str, FileInfo]:
    if verify:
        raise GridError(f"{problem}: the archives' sizes and checksums cannot be verified; to download them "
                        f"unverified anyway pass --no-verify (config: datasets.grid.verify: false)")
    log.warning("%s: archive sizes and checksums will not be verified (--no-verify)", problem)
    return {}


def load_record(record_url: str | None, downloads: Path, policy: RetryPolicy, verify: bool = True) -> dict[str, FileInfo]:
    """The record's files, fetched (and cached in ``downloads``) or from the cache. When neither can be had,
    :class:`GridError` (``verify``), or ``{}`` and a warning (``verify=False``: nothing is checked against it)."""
    if not record_url:
        return _unverified("no record metadata URL", verify)
    cache = Path(downloads) / RECORD_CACHE
    try:
        data = json.loads(fetch_bytes(record_url, policy=policy).decode("utf-8"))
        files = parse_record(data)
        atomic_write_text(cache, json.dumps({"record_url": record_url, "record": data}))
        log.info("record metadata from %s: %d files", record_url, len(files))
        return files
    except (DownloadError, ValueError, UnicodeDecodeError) as e:
        problem = str(e)
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("record_url") == record_url:
            log.warning("record metadata unavailable (%s); using the copy cached in %s", problem, cache)
            return parse_record(cached["record"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return _unverified(f"record metadata unavailable from {record_url} ({problem}) and not cached in {cache}", verify)


def fetch_archive(
    name: str,
    *,
    base_url: str,
    downloads: Path,
    record: dict[str, FileInfo],
    policy: RetryPolicy,
    progress: bool = True,
) -> Path:
    """Download archive ``name`` into ``downloads`` (verified against ``record`` when it lists it)."""
    info = record.get(name)
    if record and info is None:
        log.warning("%s is not listed in the record metadata: it will not be verified", name)
    info = info or FileInfo(name)
    return download(
        archive_url(base_url, name), Path(downloads) / name, size=info.size, md5=info.md5, policy=policy,
        progress=progress,
    )


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as e:
        raise ArchiveError(path, f"not a valid zip archive ({e})") from None
    except FileNotFoundError:
        raise GridError(f"{path}: missing") from None


def check_archive(path: Path, *, full: bool) -> None:
    """Open ``path`` as a zip (its central directory); with ``full``, also test every member's CRC."""
    with _open_zip(path) as zf:
        if full:
            try:
                bad = zf.testzip()
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                raise ArchiveError(path, f"corrupt archive ({e})") from None
            if bad is not None:
                raise ArchiveError(path, f"corrupt archive: member {bad} fails its CRC check")


def download_shared(
    base_url: str,
    downloads: str | os.PathLike,
    *,
    record_url: str | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    only: Iterable[str] | None = None,
    progress: bool = True,
    verify: bool = True,
) -> dict[str, Path]:
    """Download (once) the archives that hold every speaker: ``audio_25k.zip`` and ``alignments.zip``.

    Each is opened as a zip after download; when the record gives no md5 to trust, every member's
    CRC is tested too.  A corrupt archive is deleted and :class:`ArchiveError` names it.
    """
    downloads = Path(downloads)
    names = list(only) if only else list(SHARED_ARCHIVES)
    unknown = sorted(set(names) - set(SHARED_ARCHIVES))
    if unknown:
        raise GridError(f"not a shared GRID archive: {', '.join(unknown)} (choose from {', '.join(SHARED_ARCHIVES)})")
    record = load_record(record_url, downloads, policy, verify)
    paths = {}
    for name in names:
        path = fetch_archive(name, base_url=base_url, downloads=downloads, record=record, policy=policy, progress=progress)
        try:
            check_archive(path, full=not (record.get(name) and record[name].md5))
        except ArchiveError as e:
            path.unlink(missing_ok=True)
            raise ArchiveError(path, f"{e.problem}; deleted it, run again to download it afresh") from None
        paths[name] = path
    return paths


# --------------------------------------------------------------------------------------------------
# Extraction


def _is_junk(member: str) -> bool:
    parts = PurePosixPath(member).parts
    return member.endswith("/") or "__MACOSX" in parts or (bool(parts) and parts[-1].startswith("._"))


def index_members(zf: zipfile.ZipFile, suffix: str) -> dict[str, dict[str, zipfile.ZipInfo]]:
    """Members ending in ``suffix``, by folder (the member's parent folder name) and then by utterance."""
    out: dict[str, dict[str, zipfile.ZipInfo]] = {}
    for info in zf.infolist():
        path = PurePosixPath(info.filename)
        if _is_junk(info.filename) or path.suffix.lower() != suffix:
            continue
        folder = path.parent.name
        out.setdefault(folder, {}).setdefault(path.stem, info)
    return out


def choose_folder(folders: dict[str, dict[str, zipfile.ZipInfo]], speaker: str, utterances: set[str]) -> str | None:
    """The folder that holds ``speaker``'s files: its own when it covers most of ``utterances``,
    otherwise the folder that does (``None`` when none does and the speaker has no folder)."""

    def covered(folder: str) -> int:
        return len(utterances & folders[folder].keys())

    need = MIN_FOLDER_MATCH * len(utterances)
    own = covered(speaker) if speaker in folders else 0
    if speaker in folders and own >= need:
        return speaker
    best = max(folders, key=covered, default=None)
    if best is not None and best != speaker and covered(best) >= need and covered(best) > own:
        log.warning(
            "%s: folder %r covers %d of the speaker's %d utterances (its own folder %d): using it",
            speaker, best, covered(best), len(utterances), own,
        )
        return best
    return speaker if speaker in folders else None


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path) -> None:
    try:
        with zf.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise ArchiveError(archive, f"corrupt member {info.filename} ({e})") from None


def _wav_from_video(video: Path, wav: Path) -> str | None:
    """Write the video's audio track as 25 kHz mono 16-bit ``wav``; the problem, if it cannot."""
    from speechanim import media  # numpy/scipy/ffmpeg only when this option is used

    try:
        media.write_wav(wav, media.read_audio(video, AUDIO_RATE), AUDIO_RATE)
    except media.MediaError as e:
        return f"cannot take the audio from the video: {e}"
    return None


def _videos(vz: zipfile.ZipFile, archive: Path, skipped: dict[str, str]) -> dict[str, zipfile.ZipInfo]:
    """The ``.mpg`` members of a video archive by utterance (a name found twice is skipped)."""
    videos: dict[str, zipfile.ZipInfo] = {}
    twice: set[str] = set()
    for info in vz.infolist():
        path = PurePosixPath(info.filename)
        if _is_junk(info.filename) or path.suffix.lower() != ".mpg":
            continue
        if path.stem in videos:
            twice.add(path.stem)
        videos[path.stem] = info
    for stem in twice:
        del videos[stem]
        skipped[stem] = f"two videos named {stem}.mpg in {archive.name}; kept neither"
    if not videos and not twice:
        raise ArchiveError(archive, "holds no .mpg video")
    return videos


def _speaker_members(zf: zipfile.ZipFile, suffix: str, speaker: str, wanted: set[str]) -> dict[str, zipfile.ZipInfo]:
    """The members of a shared archive that belong to ``speaker`` (see :func:`choose_folder`)."""
    folders = index_members(zf, suffix)
    folder = choose_folder(folders, speaker, wanted)
    return folders.get(folder, {}) if folder is not None else {}


def _check_align(path: Path, member: str, text: str, where: str) -> str | None:
    """The problem with an extracted ``.align`` that makes it unusable, if any."""
    try:
        words = parse_align(path.read_text(encoding="utf-8"), f"{ALIGN_ARCHIVE}:{member}")
    except (GridFormatError, UnicodeDecodeError) as e:
        return f"unreadable alignment ({e})"
    spoken = [w.word for w in words if not w.is_silence]
    if spoken != text.split():  # a warning only: the timing is still the corpus's
        log.warning("%s: alignment words %r differ from the name's sentence %r", where, " ".join(spoken), text)
    return None


def extract_speaker(
    speaker: str,
    video_zip: Path,
    audio_zip: Path | None,
    align_zip: Path,
    dest: Path,
) -> tuple[list[Utterance], dict[str, str]]:
    """Extract ``speaker``'s usable utterances into ``dest``; returns them and the skipped ones with reasons.

    Each ``<utt>.wav`` comes from ``audio_zip`` (``audio_25k.zip``) or, when it is ``None``, from the
    video's own audio track.  Raises :class:`ArchiveError` for a corrupt archive.
    """
    skipped: dict[str, str] = {}
    utterances: list[Utterance] = []
    with contextlib.ExitStack() as stack:
        vz = stack.enter_context(_open_zip(video_zip))
        az = stack.enter_context(_open_zip(align_zip))
        wz = stack.enter_context(_open_zip(audio_zip)) if audio_zip is not None else None
        videos = _videos(vz, video_zip, skipped)
        aligns = _speaker_members(az, ".align", speaker, set(videos))
        audios = _speaker_members(wz, ".wav", speaker, set(videos)) if wz is not None else {}
        for stem in sorted(videos):
            try:
                text = sentence_from_name(stem)
            except GridFormatError as e:
                skipped[stem] = f"not a GRID utterance name ({e})"
                continue
            missing = []
            if wz is not None and stem not in audios:
                missing.append(f"no audio in {AUDIO_ARCHIVE}")
            elif wz is not None and audios[stem].file_size == 0:
                missing.append(f"empty audio file in {AUDIO_ARCHIVE}")
            if stem not in aligns:
                missing.append(f"no alignment in {ALIGN_ARCHIVE}")
            if missing:
                skipped[stem] = "; ".join(missing)
                continue
            align, video, wav = dest / f"{stem}.align", dest / f"{stem}.mpg", dest / f"{stem}.wav"
            _extract_member(az, aligns[stem], align, align_zip)
            problem = _check_align(align, aligns[stem].filename, text, f"{speaker}/{stem}")
            if problem is None:
                _extract_member(vz, videos[stem], video, video_zip)
                if wz is not None and audio_zip is not None:
                    _extract_member(wz, audios[stem], wav, audio_zip)
                else:
                    problem = _wav_from_video(video, wav)
            if problem is not None:
                for path in (align, video, wav):
                    path.unlink(missing_ok=True)
                skipped[stem] = problem
                continue
            utterances.append(Utterance(stem, video.name, wav.name, align.name, text))
    return utterances, skipped


def check_speaker(speaker: str) -> str:
    """``speaker`` if it can name a GRID video archive; otherwise :class:`GridError`."""
    if not _SPEAKER_ID.fullmatch(speaker):
        raise GridError(f"{speaker!r} is not a speaker id (such as s1)")
    if speaker in SPEAKERS_WITHOUT_VIDEO:
        raise GridError(f"GRID speaker {speaker} has no video: the corpus ships no {speaker}.zip")
    return speaker


def prepare_speaker(
    speaker: str,
    *,
    base_url: str,
    downloads: str | os.PathLike,
    out: str | os.PathLike,
    record_url: str | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    audio_source: AudioSource = "archive",
    progress: bool = True,
    verify: bool = True,
) -> Path:
    """Download ``<speaker>.zip`` and write ``<out>/<speaker>/`` in the normalised layout; returns the manifest.

    The shared archives must already be in ``downloads`` (:func:`download_shared`).  Files are
    extracted into a temporary folder beside the speaker folder, which replaces it whole; the
    manifest is written last.  On any error nothing is marked done.
    """
    check_speaker(speaker)
    if audio_source not in ("archive", "video"):
        raise GridError(f"audio_source must be 'archive' or 'video', not {audio_source!r}")
    downloads, out = Path(downloads), Path(out)
    align_zip = downloads / ALIGN_ARCHIVE
    audio_zip = downloads / AUDIO_ARCHIVE if audio_source == "archive" else None
    for needed in (align_zip, audio_zip):
        if needed is not None and not needed.is_file():
            raise GridError(f"{needed}: missing; download the shared archives first (python -m speechanim.raw.grid shared)")

    record = load_record(record_url, downloads, policy, verify)
    name = f"{speaker}.zip"
    video_zip = fetch_archive(name, base_url=base_url, downloads=downloads, record=record, policy=policy, progress=progress)

    final = out / speaker
    (final / MANIFEST).unlink(missing_ok=True)  # whatever happens next, the old state is not "done"
    tmp = out / f".{speaker}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            utterances, skipped = extract_speaker(speaker, video_zip, audio_zip, align_zip, tmp)
        except ArchiveError as e:
            if e.archive == video_zip:
                video_zip.unlink(missing_ok=True)
                raise ArchiveError(video_zip, f"{e.problem}; deleted it, run again to download it afresh") from None
            raise
        if not utterances:
            example = next(iter(skipped.values()), "none")
            raise GridError(f"{speaker}: no usable utterance ({len(skipped)} skipped, e.g. {example})")
        write_skipped(tmp, skipped)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = write_manifest(final, utterances)
    log.info("%s: %d utterances in %s, %d skipped", speaker, len(utterances), final, len(skipped))
    return manifest


# --------------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speechanim.raw.grid", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"where the archives are (default {DEFAULT_BASE_URL})")
    common.add_argument("--record-url", default=None,
                        help=f"record metadata with sizes and md5s, e.g. {DEFAULT_RECORD_URL}; without it nothing is verified")
    common.add_argument("--downloads", required=True, type=Path, help="folder for the downloaded archives")
    common.add_argument("--retries", type=int, default=RetryPolicy.attempts,
                        help="attempts per file (default %(default)s)")
    common.add_argument("--backoff", type=float, default=RetryPolicy.backoff_s,
                        help="first retry delay in seconds, doubling (default %(default)s)")
    common.add_argument("--timeout", type=float, default=RetryPolicy.timeout_s,
                        help="socket timeout in seconds (default %(default)s)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    common.add_argument("--no-verify", action="store_true",
                        help="download even when the record metadata (sizes, md5s) cannot be had: nothing is verified")
    sub = parser.add_subparsers(dest="command", required=True)
    shared = sub.add_parser("shared", parents=[common], help=f"download {' and '.join(SHARED_ARCHIVES)} (once)")
    shared.add_argument("--only", action="append", choices=SHARED_ARCHIVES, help="just this archive (repeatable)")
    speaker = sub.add_parser("speaker", parents=[common], help="download and extract one speaker")
    speaker.add_argument("speaker", help="speaker id, s1..s34 (no s21)")
    speaker.add_argument("--out", required=True, type=Path, help="the dataset's raw folder, e.g. data/raw/grid")
    speaker.add_argument("--audio-source", choices=("archive", "video"), default="archive",
                         help="each clip's .wav from audio_25k.zip (default) or from the video's own audio track")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "speaker":  # the speaker folder is replaced whole: it must not hold the downloads
        read = [args.downloads / name for name in (f"{args.speaker}.zip", *SHARED_ARCHIVES, RECORD_CACHE)]
        refuse_clashing_paths(parser, {"--downloads": read}, {"--out": args.out / args.speaker})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        policy = RetryPolicy(attempts=args.retries, backoff_s=args.backoff, timeout_s=args.timeout)
        if args.command == "shared":
            download_shared(args.base_url, args.downloads, record_url=args.record_url, policy=policy,
                            only=args.only, progress=not args.no_progress, verify=not args.no_verify)
        else:
            prepare_speaker(args.speaker, base_url=args.base_url, downloads=args.downloads, out=args.out,
                            record_url=args.record_url, policy=policy, audio_source=args.audio_source,
                            progress=not args.no_progress, verify=not args.no_verify)
    except (GridError, DownloadError, GridFormatError, ValueError, OSError) as e:
        message = " ".join(str(e).split())
        print(f"speechanim.raw.grid: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
