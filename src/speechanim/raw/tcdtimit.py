"""TCD-TIMIT's raw stage: import one speaker of a registered local copy into the normalised layout.

The corpus
----------
TCD-TIMIT (Harte & Gillen, "TCD-TIMIT: An Audio-Visual Corpus of Continuous Speech", IEEE
Transactions on Multimedia 17(5):603-615, 2015, doi:10.1109/TMM.2015.2407694) holds 62 speakers
reading TIMIT sentences: 59 *volunteers* (32 male, 27 female, ids ``01M`` ... ``59F``: two digits
plus ``M``/``F``) saying 98 sentences each, and 3 professional *lipspeakers* (``Lipspkr1`` ...
``Lipspkr3``, all female) saying 377 each; 6913 sentences in all.  Each sentence was filmed by two
synchronised Sony PMW-EX3 cameras, straight on (``straightcam``) and at 30 degrees (``30degcam``),
recording 1920x1080 frames "at 30fps" with the clip-on microphone as the audio of both views; the
release re-clipped every sentence with ffmpeg/libx264 into MP4 (H.264 video, audio in the same
file).  Sources: the paper, sections IV-B, V-A and VI (its text is reproduced in
https://github.com/matthijsvk/multimodalSR, ``code/Experiments/Shakespeare/shakespeare_input.txt``).
Whether the release's rate is exactly 30 or 30000/1001 fps was not confirmed here: later stages read
it from each file (:func:`speechanim.media.probe`) rather than assume it.

Where to get it.  The corpus is free for research use but needs a registration: request an account
and log in at the Sigmedia downloads site https://sigmedia.tcd.ie/ (the TCD-TIMIT area is
https://sigmedia.tcd.ie/TCDTIMIT/; the project page is https://sigmedia.github.io/datasets/tcd_timit/,
formerly http://www.mee.tcd.ie/~sigmedia/Resources/TCD-TIMIT; questions to sigmedia_database@tcd.ie
with the subject starting ``[TCDTimit Question]``).  The files come one download per speaker and
camera (``.../TCDTIMIT/filebrowser/download/<n>``); public download scripts
(https://github.com/matthijsvk/TCDTIMITprocessing, ``downloadTCDTIMIT/getTCD-TIMIT.sh`` and
``downloadLocations.txt``) save each speaker's ``straightcam.zip`` into ``<speaker>/Clips/`` and unzip
it there.  The resulting on-disk layout, the one this module reads, is::

    <source_dir>/volunteers/<NN><M|F>/Clips/straightcam/<sentence>.mp4    e.g. volunteers/01M/Clips/straightcam/sa1.mp4
    <source_dir>/volunteers/<NN><M|F>/Clips/30degcam/<sentence>.mp4      the 30-degree view (not imported)
    <source_dir>/lipspeakers/Lipspkr<N>/Clips/straightcam/<sentence>.mp4
    <source_dir>/volunteer_labelfiles.mlf, lipspeaker_labelfiles.mlf      phoneme alignments (HTK MLF)

``<sentence>`` is the TIMIT sentence id, lower case: ``sa1``, ``sa2``, ``sx<n>`` and ``si<n>``.  The
same paths appear in the corpus's own label files, whose entries are headed by the clip's path
(``"Q:/Videos/TCD-TIMIT/volunteers/01M/Clips/straightcam/sa1.rec"`` in the original; rewritten to
``.../lipspeakers/Lipspkr1/Clips/straightcam/sa1.mp4`` in TCDTIMITprocessing's ``MLFfiles/``), and in
the preprocessing scripts of other public projects (``<data>/volunteers/<spk>/Clips/<camera>/<id>.mp4``).
The MLF files carry phonemes with HTK times (100 ns units) but no words, so they are not imported.

Audio and text:

* **Audio.**  The paper says a WAV was made for every clip for the audio-only baselines (mono,
  16 kHz in its experiments), and TCDTIMITprocessing's ``extractTCDTIMITaudio.py`` copies
  ``<group>/<spk>/Clips/straightcam/<sentence>.wav`` from its copy of the corpus; most other public
  loaders take the audio from the MP4 itself.  So: when ``<sentence>.wav`` lies beside the video it is
  imported as is (after checking that it decodes); otherwise ``<utt>.wav`` is the MP4's own audio
  track, decoded by the ffmpeg that imageio-ffmpeg bundles into 16-bit PCM mono at the track's own
  sample rate.
* **Text.**  The release has no per-sentence word transcripts that could be confirmed (its
  transcriptions are the phoneme MLFs).  The spoken sentence is taken, when available, from a
  transcript beside the clip, ``<sentence>.txt`` (plain text, or TIMIT's ``<start> <end> <words>``),
  or else from TIMIT's own prompt table, ``PROMPTS.TXT`` of LDC93S1 (lines ``<sentence text>
  (<sentence id>)``, ``;`` comments; https://catalog.ldc.upenn.edu/docs/LDC93S1/PROMPTS.TXT), placed
  in ``source_dir`` (any case of the name).  Without either, the manifest's ``text`` is empty.

Corpus notes (``TCD-TIMIT Additional Info.xlsx`` of the release, copied in TCDTIMITprocessing's
``background/``): several volunteers reuse another's script (48M=27M, 52M=35M, 53M=02M, 54M=23M,
55F=01M, 56M=21M, 57M=24M, 58F=36F, 59F=28M), so the same sentence id can be said by two speakers;
names are unique only within a speaker, which is what the layout needs.  The download list of
TCDTIMITprocessing names speaker 30F "30M", so a copy may hold either folder.

The recommended split
---------------------
The paper's audio-only baseline (section VII-A) "used a 70-30 split ... The speakers in the train and
test subsets are given in Table V [Recommended TCD-TIMIT train-test split] ... This particular split is
the recommended train-test division"; volunteers 27M, 35M and 53M were left out for their non-Irish
accents, leaving 56 volunteers: 39 train, 17 test.  Table V itself is an image in the paper; the 17
test volunteers below are those that matthijsvk/multimodalSR hard-codes as TCD-TIMIT's test speakers
(``testVolunteerNumbers`` in ``code/combinedSR/*.py`` and ``code/lipreading/*.py``), whose count and
gender balance (8 F, 9 M) match the paper's 70-30 division of 56.  :data:`RECOMMENDED_TEST_VOLUNTEERS`
and :data:`RECOMMENDED_TRAIN_VOLUNTEERS` record it; the lipspeakers are outside it.  Vougioukas et
al. (BMVC 2018, section 4.1) use "the recommended data split" and move some test speakers to
validation (:func:`speechanim.splits.recommended_split`).

Job
---
``speaker <id>`` checks that every clip decodes (its video stream and its audio) and places it in a
temporary folder beside ``<out>/<id>/``: the video hard-linked to the corpus's file when both lie on
one filesystem and copied otherwise (never modify files under ``data/raw``), the WAV beside it, then
renames the folder into place and writes ``manifest.tsv`` last.  A clip that cannot be used (no
audio track, an unreadable or truncated video or WAV, a name found twice) is listed in
``skipped.tsv`` with the reason and the rest go on; a speaker with no usable clip is an error and
nothing is marked done.

CLI::

    python -m speechanim.raw.tcdtimit speaker 01M --source DIR --out data/raw/tcdtimit [--camera straightcam]
    python -m speechanim.raw.tcdtimit list --source DIR
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import imageio_ffmpeg

from speechanim.raw.layout import MANIFEST, Utterance, replace_dir, write_manifest, write_skipped
from speechanim.fileio import refuse_clashing_paths

log = logging.getLogger("speechanim.raw.tcdtimit")

#: The config key that names the local copy of the corpus.
CONFIG_KEY = "datasets.tcdtimit.source_dir"
#: Where the corpus is obtained (registration needed).
REGISTRATION_URL = "https://sigmedia.tcd.ie/"
PROJECT_URL = "https://sigmedia.github.io/datasets/tcd_timit/"
#: The speaker groups of the corpus, each a folder of ``source_dir``.
GROUPS = ("volunteers", "lipspeakers")
#: The camera views; the frontal one is imported by default.
CAMERAS = ("straightcam", "30degcam")
DEFAULT_CAMERA = "straightcam"

#: The 59 volunteers (paper, section VI; ids and genders from the release's speaker sheet).
VOLUNTEERS = (
    "01M", "02M", "03F", "04M", "05F", "06M", "07F", "08F", "09F", "10M", "11F", "12M", "13F", "14M", "15F",
    "16M", "17F", "18M", "19M", "20M", "21M", "22M", "23M", "24M", "25M", "26M", "27M", "28M", "29M", "30F",
    "31F", "32F", "33F", "34M", "35M", "36F", "37F", "38F", "39M", "40F", "41M", "42M", "43F", "44F", "45F",
    "46F", "47M", "48M", "49F", "50F", "51F", "52M", "53M", "54M", "55F", "56M", "57M", "58F", "59F",
)
LIPSPEAKERS = ("Lipspkr1", "Lipspkr2", "Lipspkr3")
#: Volunteers the paper's speaker-independent baseline left out (non-Irish accents, section VII-A).
ACCENT_EXCLUDED_VOLUNTEERS = ("27M", "35M", "53M")
#: Test volunteers of the recommended split (paper, Table V; list as in matthijsvk/multimodalSR).
RECOMMENDED_TEST_VOLUNTEERS = (
    "13F", "15F", "21M", "23M", "24M", "25M", "28M", "29M", "30F", "31F", "34M", "36F", "37F", "43F", "47M",
    "51F", "54M",
)
#: Training volunteers of the recommended split: the other 39 of the 56 Irish-accented volunteers.
RECOMMENDED_TRAIN_VOLUNTEERS = tuple(
    v for v in VOLUNTEERS if v not in RECOMMENDED_TEST_VOLUNTEERS and v not in ACCENT_EXCLUDED_VOLUNTEERS
)

_SPEAKER_ID = re.compile(r"[A-Za-z0-9_-]+")
# ffmpeg's messages at ``-v error`` that do not mean the input is damaged.
_HARMLESS = ("Warning MVs not available",)
# TIMIT's PROMPTS.TXT: "<sentence text> (<sentence id>)".
_PROMPT_LINE = re.compile(r"^(?P<text>.*\S)\s*\((?P<id>s[aix]\d+)\)\s*$", re.IGNORECASE)
# TIMIT's per-sentence .txt: "<first sample> <last sample> <words>".
_TIMIT_TXT = re.compile(r"^\s*\d+\s+\d+\s+(?P<text>.*)$", re.DOTALL)


class TcdTimitError(RuntimeError):
    """The TCD-TIMIT raw stage cannot go on; the message says why."""


class SourceError(TcdTimitError):
    """``source_dir`` is not set or does not hold TCD-TIMIT."""


def _how_to_get_it(problem: str) -> str:
    return (
        f"{problem}. TCD-TIMIT (Harte & Gillen 2015: 59 volunteers and 3 lipspeakers reading TIMIT "
        f"sentences, filmed in 1080p) is free for research but needs a registration, so the pipeline cannot "
        f"download it: request an account at {REGISTRATION_URL} (see {PROJECT_URL}), download each "
        f"speaker's straightcam.zip into <folder>/volunteers/<id>/Clips/ or <folder>/lipspeakers/LipspkrN/Clips/ "
        f"and unzip it there, then set {CONFIG_KEY} in config.yaml to <folder>, the folder that holds "
        f"volunteers/ and lipspeakers/"
    )


def check_source(source_root: str | os.PathLike | None) -> Path:
    """``source_root`` as a path if it holds a ``volunteers/`` or ``lipspeakers/`` folder, else :class:`SourceError`."""
    if source_root is None or not str(source_root).strip():
        raise SourceError(_how_to_get_it(f"no TCD-TIMIT folder is configured ({CONFIG_KEY} is not set)"))
    root = Path(source_root).expanduser()
    if not root.exists():
        raise SourceError(_how_to_get_it(f"the TCD-TIMIT folder {root} ({CONFIG_KEY}) does not exist"))
    if not root.is_dir():
        raise SourceError(_how_to_get_it(f"the TCD-TIMIT folder {root} ({CONFIG_KEY}) is not a folder"))
    if any((root / group).is_dir() for group in GROUPS):
        return root
    nested = sorted(p for p in root.iterdir() if p.is_dir() and any((p / g).is_dir() for g in GROUPS))
    hint = f"; {nested[0]} does, set {CONFIG_KEY} to it" if nested else ""
    raise SourceError(_how_to_get_it(f"{root} ({CONFIG_KEY}) holds neither volunteers/ nor lipspeakers/{hint}"))


def _speaker_dirs(root: Path) -> dict[str, Path]:
    """Speaker id -> its folder, for every folder of the groups that looks like a speaker."""
    found: dict[str, Path] = {}
    for group in GROUPS:
        group_dir = root / group
        if not group_dir.is_dir():
            continue
        for path in sorted(group_dir.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            if not _SPEAKER_ID.fullmatch(path.name):
                log.warning("%s: not a speaker id (letters, digits, _ and - only); ignored", path)
                continue
            if path.name in found:
                raise TcdTimitError(f"speaker {path.name} is in two places: {found[path.name]} and {path}")
            found[path.name] = path
    return found


def _has_camera(speaker_dir: Path, camera: str) -> bool:
    clips = speaker_dir / "Clips"
    return (clips / camera).is_dir() or (clips / f"{camera}.zip").is_file()


def list_speakers(source_root: str | os.PathLike | None, camera: str = DEFAULT_CAMERA) -> list[str]:
    """The speakers of the local copy that have the ``camera`` view (``Clips/<camera>/`` or its zip), sorted."""
    root = check_source(source_root)
    speakers = sorted(s for s, d in _speaker_dirs(root).items() if _has_camera(d, camera))
    if not speakers:
        raise SourceError(_how_to_get_it(f"{root} holds no speaker with a Clips/{camera}/ folder"))
    return speakers


# --------------------------------------------------------------------------------------------------
# Finding the clips


@dataclass(frozen=True)
class Clip:
    """One sentence clip of the corpus: its video and, when the corpus copy has them, WAV and transcript."""

    utterance: str
    video: Path
    wav: Path | None = None
    transcript: Path | None = None


def _is_junk(path: Path) -> bool:
    return path.name.startswith((".", "._")) or "__MACOSX" in path.parts


def _sibling(path: Path, suffix: str) -> Path | None:
    """The file beside ``path`` with its stem and ``suffix`` (any case), if there is one."""
    exact = path.with_suffix(suffix)
    if exact.is_file():
        return exact
    want = (path.stem + suffix).lower()
    return next((p for p in sorted(path.parent.iterdir()) if p.name.lower() == want and p.is_file()), None)


def find_clips(camera_dir: Path) -> tuple[list[Clip], dict[str, str]]:
    """The clips under ``camera_dir`` (searched recursively), and the names skipped as ambiguous.

    Utterance names are the video file stems; two videos whose stems differ only in case, or that
    sit in different subfolders under one name, are both skipped, so that names are unique per speaker.
    """
    by_name: dict[str, list[Path]] = {}
    for path in sorted(camera_dir.rglob("*")):
        if path.is_file() and path.suffix.lower() == ".mp4" and not _is_junk(path.relative_to(camera_dir)):
            by_name.setdefault(path.stem.lower(), []).append(path)
    clips: list[Clip] = []
    skipped: dict[str, str] = {}
    for paths in by_name.values():
        if len(paths) > 1:
            names = ", ".join(str(p.relative_to(camera_dir)) for p in paths)
            for p in paths:
                skipped[p.stem] = f"{len(paths)} videos share the name {p.stem!r} ({names}); kept none"
            continue
        video = paths[0]
        if not _SPEAKER_ID.fullmatch(video.stem):
            skipped[video.stem] = f"{video.name}: not usable as an utterance name (letters, digits, _ and - only)"
            continue
        clips.append(Clip(video.stem, video, _sibling(video, ".wav"), _sibling(video, ".txt")))
    return clips, skipped


def read_timit_prompts(path: Path) -> dict[str, str]:
    """TIMIT's ``PROMPTS.TXT`` as sentence id (lower case) -> sentence text."""
    prompts: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.lstrip().startswith(";"):
            continue
        m = _PROMPT_LINE.match(line.strip())
        if m:
            prompts[m["id"].lower()] = " ".join(m["text"].split())
    return prompts


def find_prompts(root: Path) -> dict[str, str]:
    """The TIMIT prompt table placed in ``source_dir`` (``PROMPTS.TXT`` in any case), or ``{}``."""
    path = next((p for p in sorted(root.iterdir()) if p.name.lower() == "prompts.txt" and p.is_file()), None)
    if path is None:
        return {}
    prompts = read_timit_prompts(path)
    log.info("%s: %d TIMIT sentence prompts", path, len(prompts))
    return prompts


def read_transcript(path: Path) -> str:
    """The words of a sentence transcript: plain text or TIMIT's ``<start> <end> <words>``, on one line."""
    text = path.read_text(encoding="utf-8", errors="replace")
    m = _TIMIT_TXT.match(text)
    return " ".join((m["text"] if m else text).split())


# --------------------------------------------------------------------------------------------------
# Checking and placing one clip


def _first_problem(stderr: bytes) -> str | None:
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not any(h in line for h in _HARMLESS):
            return line
    return None


def _run_ffmpeg(stream: ffmpeg.nodes.OutputStream) -> str | None:
    """Run ``stream``; the first problem ffmpeg reports (a failure or a decoding error), if any."""
    try:
        _, err = stream.global_args("-v", "error", "-nostdin").run(
            cmd=imageio_ffmpeg.get_ffmpeg_exe(), capture_stdout=True, capture_stderr=True, overwrite_output=True
        )
    except ffmpeg.Error as e:
        return _first_problem(e.stderr) or "ffmpeg failed"
    return _first_problem(err)


def _explain(problem: str, video: Path, wav: Path | None) -> str:
    """A reason for skipped.tsv from an ffmpeg message, naming the file it is about."""
    index = re.search(r"\bin#(\d+)|Stream map '(\d+):", problem)
    number = next((g for g in index.groups() if g is not None), "0") if index else "0"
    about = wav if wav is not None and (number == "1" or str(wav) in problem) else video
    detail = re.sub(r"^\[[^\]]*\]\s*", "", problem).replace(f"{about}: ", "")  # drop "[in#0 @ 0x..]", the path
    if "matches no streams" in problem:
        if about == wav:
            return f"{wav.name}: holds no audio"
        if "0:v" in problem:
            return f"{video.name}: has no video stream"
        return f"{video.name}: has no audio track and no {video.stem}.wav lies beside it"
    if any(s in problem for s in ("moov atom not found", "Invalid data found", "Error opening input", "End of file")):
        return f"{about.name}: unreadable ({detail})"
    return f"{about.name}: corrupt or truncated ({detail})"


def _wav_frames(path: Path) -> int:
    """The number of sample frames of a PCM WAV (0 when it cannot be read)."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (OSError, EOFError, wave.Error):
        return 0


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (same filesystem), else copy it."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def place_clip(clip: Clip, dest_dir: Path) -> str | None:
    """Check that ``clip`` decodes and write ``<utt>.mp4`` and ``<utt>.wav`` into ``dest_dir``.

    The problem, when the clip cannot be used (then nothing of it is left in ``dest_dir``).
    """
    video, wav = dest_dir / f"{clip.utterance}.mp4", dest_dir / f"{clip.utterance}.wav"
    src = ffmpeg.input(str(clip.video))
    if clip.wav is not None:  # the corpus's own WAV: check both files decode, then take them as they are
        stream = ffmpeg.output(src["v:0"], ffmpeg.input(str(clip.wav))["a:0"], "-", format="null")
    else:  # decode the video to nowhere and its audio track into the WAV, in one pass
        stream = ffmpeg.merge_outputs(
            src["a:0"].output(str(wav), ac=1, acodec="pcm_s16le"),
            src["v:0"].output("-", format="null"),
        )
    problem = _run_ffmpeg(stream)
    if problem is None and clip.wav is None and _wav_frames(wav) == 0:
        problem = f"{clip.video.name}: its audio track is empty"
    if problem is not None:
        wav.unlink(missing_ok=True)
        return _explain(problem, clip.video, clip.wav)
    _link_or_copy(clip.video, video)
    if clip.wav is not None:
        _link_or_copy(clip.wav, wav)
    return None


# --------------------------------------------------------------------------------------------------
# One speaker


def speaker_camera_dir(root: Path, speaker: str, camera: str = DEFAULT_CAMERA) -> Path:
    """``<root>/<group>/<speaker>/Clips/<camera>``; :class:`TcdTimitError` naming what is missing."""
    if not _SPEAKER_ID.fullmatch(speaker):
        raise TcdTimitError(f"{speaker!r} is not a speaker id (such as 01M or Lipspkr1)")
    if camera not in CAMERAS:
        raise TcdTimitError(f"unknown camera {camera!r}; choose one of {', '.join(CAMERAS)}")
    dirs = _speaker_dirs(root)
    if speaker not in dirs:
        known = sorted(dirs)
        example = f" (it has {len(known)}, e.g. {', '.join(known[:3])})" if known else ""
        raise TcdTimitError(
            f"speaker {speaker} not found: no {root}/volunteers/{speaker}/ or {root}/lipspeakers/{speaker}/{example}"
        )
    camera_dir = dirs[speaker] / "Clips" / camera
    if camera_dir.is_dir():
        return camera_dir
    if camera_dir.with_suffix(".zip").is_file():
        raise TcdTimitError(f"{camera_dir.with_suffix('.zip')} is not unzipped: unzip it in {camera_dir.parent}")
    raise TcdTimitError(f"{camera_dir}: missing; download speaker {speaker}'s {camera}.zip and unzip it in {camera_dir.parent}")


def import_speaker(
    source_root: str | os.PathLike | None,
    speaker: str,
    out_dir: str | os.PathLike,
    *,
    camera: str = DEFAULT_CAMERA,
) -> Path:
    """Import ``speaker``'s ``camera`` clips into ``<out_dir>/<speaker>/`` (the normalised layout); returns the manifest.

    Every clip is checked and placed in a temporary folder beside the speaker folder, which then
    replaces it whole; ``manifest.tsv`` is written last, so a failure leaves nothing marked done.
    """
    root = check_source(source_root)
    camera_dir = speaker_camera_dir(root, speaker, camera)
    clips, skipped = find_clips(camera_dir)
    if not clips and not skipped:
        raise TcdTimitError(f"{camera_dir}: holds no .mp4 clip")
    prompts = find_prompts(root)

    out = Path(out_dir)
    final = out / speaker
    (final / MANIFEST).unlink(missing_ok=True)  # whatever happens next, the old state is not "done"
    tmp = out / f".{speaker}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    utterances: list[Utterance] = []
    try:
        for i, clip in enumerate(clips, 1):
            problem = place_clip(clip, tmp)
            if problem is not None:
                skipped[clip.utterance] = problem
                log.warning("%s/%s: skipped: %s", speaker, clip.utterance, problem)
                continue
            text = read_transcript(clip.transcript) if clip.transcript else prompts.get(clip.utterance.lower(), "")
            utterances.append(Utterance(clip.utterance, f"{clip.utterance}.mp4", f"{clip.utterance}.wav", "", text))
            if i % 25 == 0:
                log.info("%s: %d/%d clips", speaker, i, len(clips))
        if not utterances:
            example = next(iter(skipped.values()), "none")
            raise TcdTimitError(f"{speaker}: no usable clip in {camera_dir} ({len(skipped)} skipped, e.g. {example})")
        write_skipped(tmp, skipped)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = write_manifest(final, utterances)
    untexted = sum(not u.text for u in utterances)
    if untexted:
        log.warning("%s: %d of %d utterances have no text (no <sentence>.txt beside them, no PROMPTS.TXT in %s)",
                    speaker, untexted, len(utterances), root)
    log.info("%s: %d utterances in %s, %d skipped", speaker, len(utterances), final, len(skipped))
    return manifest


# --------------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speechanim.raw.tcdtimit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speaker = sub.add_parser("speaker", help="import one speaker into the normalised layout")
    speaker.add_argument("speaker", help="speaker id: a volunteer (01M..59F) or a lipspeaker (Lipspkr1..3)")
    speaker.add_argument("--source", required=True, help=f"the TCD-TIMIT folder ({CONFIG_KEY})")
    speaker.add_argument("--out", required=True, type=Path, help="the dataset's raw folder, e.g. data/raw/tcdtimit")
    speaker.add_argument("--camera", choices=CAMERAS, default=DEFAULT_CAMERA, help="camera view (default %(default)s)")
    listing = sub.add_parser("list", help="print the speakers of the local copy, one a line")
    listing.add_argument("--source", required=True, help=f"the TCD-TIMIT folder ({CONFIG_KEY})")
    listing.add_argument("--camera", choices=CAMERAS, default=DEFAULT_CAMERA, help="camera view (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "speaker":  # the speaker folder is replaced whole: it must not hold the corpus, nor lie in it
        refuse_clashing_paths(parser, {"--source": args.source}, {"--out": args.out / args.speaker})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "list":
            print("\n".join(list_speakers(args.source, args.camera)))
        else:
            import_speaker(args.source, args.speaker, args.out, camera=args.camera)
    except (TcdTimitError, ValueError, OSError) as e:
        print(f"speechanim.raw.tcdtimit: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
