"""The embedded synthetic corpus ("synthgrid"): GRID-format clips of rendered talking faces.

**This corpus is NOT GRID.**  It is synthesised on the spot so that the whole pipeline (alignment,
packing, training, generation, metrics) runs end to end with no download and no registration.  The
speech is eSpeak NG's, the faces are cartoons, and the mouth is driven by rule from the phonemes;
every number measured on it (PSNR, SSIM, CPBD, WER, ACD, ...) describes this toy corpus and is **not
comparable with the paper's numbers**, which are measured on GRID and TCD-TIMIT.

What it imitates of GRID (Cooke et al. 2006; paper section 4.1)
----------------------------------------------------------------
* Sentences of GRID's six-word grammar (command, colour, preposition, letter, digit, adverb), named
  like GRID's files (``bbaf2n`` = "bin blue at f two now"), drawn at random without repetition within
  a speaker.
* 3 s clips: 75 frames at 25 fps, MPEG-1 video 360x288 with the audio muxed (MPEG audio layer II,
  44.1 kHz) as GRID's ``.mpg`` files; silence before (0.3-0.7 s) and after the sentence.
* A word alignment per clip in GRID's ``.align`` format (``sil`` at both ends), from eSpeak's own
  word timings.
* Speakers ``s1``, ``s2``, ...: one face (:func:`speechanim.synth.face.random_identity`), one voice
  (eSpeak variant, pitch, range and rate) and one set of motion habits
  (:func:`speechanim.synth.motion.random_style`) each.

Per clip the mouth follows the phonemes (:func:`speechanim.synth.visemes.mouth_track`), and blinks,
brows, gaze, head pose and light move independently of the speech (:mod:`speechanim.synth.motion`).
Every frame's renderer parameters are saved beside the clip (``<utt>.npz``) as ground truth.

Layout and determinism
----------------------
A speaker's folder follows the normalised raw layout (:mod:`speechanim.raw.layout`):
``<utt>.mpg``, ``<utt>.wav`` (the same audio, 22.05 kHz mono 16-bit), ``<utt>.align``, ``<utt>.npz``,
then ``skipped.tsv`` and, last, ``manifest.tsv``.  The face, voice and habits derive only from
``(seed, speaker)``, the sentence of candidate ``i`` from a per-speaker permutation of all 64000
sentences, and everything else about candidate ``i`` from ``(seed, speaker, i)``: the same seed
gives the same decoded frames and audio samples, and the first clips of a speaker do not depend on
how many are asked for.  A candidate eSpeak cannot speak as six separate words, or whose speech does
not fit the clip, is listed in ``skipped.tsv`` and the next candidate is used.

CLI::

    python -m speechanim.synth.corpus speaker s1 --out data/raw/synthgrid --utterances 50 --seed 0 \\
        [--fps 25 --seconds 3.0] [--no-progress]
    python -m speechanim.synth.corpus samples data/raw/synthgrid --out results/synthgrid/samples.png \\
        [--speakers 4 --frames 4]

Cost: about 0.2-0.3 s of CPU per clip (rendering ~1.5 ms a frame, MPEG encoding, eSpeak ~10 ms): the
embedded default's 24 speakers x 20 clips take 1-2 minutes on 2 cores (alignment then costs ~3 times that).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechanim import gridformat
from speechanim.media import MediaError, read_video, write_video, write_wav
from speechanim.raw.layout import Utterance, atomic_write_text, read_manifest, write_manifest, write_skipped
from speechanim.synth import tts
from speechanim.synth.face import FaceIdentity, random_identity, render_frames, states_from_arrays
from speechanim.synth.motion import Motion, MotionStyle, motion_tracks, random_style
from speechanim.synth.visemes import PARAMETERS, mouth_track

from ..fileio import atomic_path, files_in, refuse_clashing_paths, write_bytes_atomic

log = logging.getLogger("speechanim.synth.corpus")

#: GRID's frame size (W x H) and rate; a clip is 3 s (75 frames).
WIDTH, HEIGHT = 360, 288
FPS = 25.0
SECONDS = 3.0
#: Silence before the sentence, uniform in this range (s), shortened when the sentence is long so
#: that at least TRAIL_MIN_S of silence follows it.  Real GRID clips start speaking at ~0.3-0.9 s.
LEAD_S = (0.3, 0.7)
TRAIL_MIN_S = 0.1
#: eSpeak voices: a language voice and a variant (f1-f5 female, m1-m7 male timbres).
LANGUAGES = ("en-us", "en", "en-gb-x-rp")
VARIANTS = tuple(f"f{i}" for i in range(1, 6)) + tuple(f"m{i}" for i in range(1, 8))
#: Speaking rate range (words per minute); at tts.GRID_RATE (150) the slowest voice's longest
#: sentence lasts ~2.4 s, so every sentence fits a 3 s clip after the shortest lead.
RATE_WPM = (tts.GRID_RATE, 185)
#: A faint noise floor (RMS, full scale 1) so that the silences are not digital zeros.
NOISE_RMS = 3e-4
#: Extensions of a clip's files.
CLIP_FILES = (".mpg", ".wav", ".align", ".npz")

# Random streams: numpy SeedSequence(seed, spawn_key=(speaker number, stream[, candidate])).
_IDENTITY, _VOICE, _SENTENCES, _STYLE, _UTTERANCE = range(5)
_SPEAKER_RE = re.compile(r"^s([1-9][0-9]*)$")
#: Each slot's words, without duplicates (GRID writes zero as "z"; "0" is the same word).
_SLOTS = tuple(sorted(set(table.values())) for table in gridformat.GRAMMAR)
N_SENTENCES = int(np.prod([len(s) for s in _SLOTS]))  # 4 * 4 * 4 * 25 * 10 * 4 = 64000


class CorpusError(RuntimeError):
    """The corpus cannot be built or read; the message names the speaker or file."""


# --------------------------------------------------------------------------------------------------
# Speakers: everything derives from (seed, speaker)
# --------------------------------------------------------------------------------------------------


def speaker_number(speaker: str) -> int:
    """``"s12"`` -> 12; synthetic speakers are named s1, s2, ..."""
    match = _SPEAKER_RE.match(speaker)
    if not match:
        raise ValueError(f"speaker {speaker!r}: synthetic speakers are named s1, s2, s3, ...")
    return int(match.group(1))


def _rng(seed: int, speaker: str, stream: int, *more: int) -> np.random.Generator:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    sequence = np.random.SeedSequence(seed, spawn_key=(speaker_number(speaker), stream, *more))
    return np.random.Generator(np.random.PCG64(sequence))


def speaker_identity(seed: int, speaker: str) -> FaceIdentity:
    """The speaker's face."""
    return random_identity(_rng(seed, speaker, _IDENTITY))


def speaker_voice(seed: int, speaker: str) -> tts.Voice:
    """The speaker's voice: eSpeak language and variant, pitch, intonation range and rate."""
    rng = _rng(seed, speaker, _VOICE)
    name = f"{LANGUAGES[rng.integers(len(LANGUAGES))]}+{VARIANTS[rng.integers(len(VARIANTS))]}"
    return tts.Voice(name=name, rate=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
                     pitch=int(rng.integers(30, 71)), pitch_range=int(rng.integers(30, 81)))


def speaker_style(seed: int, speaker: str) -> MotionStyle:
    """The speaker's motion habits (blink rate, head sway, ...)."""
    return random_style(_rng(seed, speaker, _STYLE))


def sentence_words(index: int) -> list[str]:
    """The six words of sentence ``index`` of the 64000 GRID sentences (mixed-radix over the slots)."""
    if not 0 <= index < N_SENTENCES:
        raise ValueError(f"sentence index must lie in [0, {N_SENTENCES}), got {index}")
    words = []
    for slot in reversed(_SLOTS):
        index, k = divmod(index, len(slot))
        words.append(slot[k])
    return words[::-1]


def speaker_sentences(seed: int, speaker: str) -> np.ndarray:
    """The order in which the speaker's candidates take the 64000 sentences (a permutation)."""
    return _rng(seed, speaker, _SENTENCES).permutation(N_SENTENCES)


# --------------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusConfig:
    fps: float = FPS
    seconds: float = SECONDS
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def n_frames(self) -> int:
        return int(round(self.fps * self.seconds))

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.seconds <= 0:
            raise ValueError(f"fps and seconds must be positive, got {self.fps} and {self.seconds}")
        if abs(self.fps * self.seconds - round(self.fps * self.seconds)) > 1e-6:
            raise ValueError(f"{self.seconds} s at {self.fps} fps is not a whole number of frames")


@dataclass
class Clip:
    """A synthesised utterance before it is written: frames, audio and everything that made them."""

    name: str
    words: list[str]
    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # float32 mono at tts.SAMPLE_RATE
    speech: tts.Speech  # padded to the clip: word and phoneme segments in clip time
    lead_s: float
    tracks: dict[str, np.ndarray]  # every FaceState field, per frame
    motion: Motion

    @property
    def text(self) -> str:
        return " ".join(self.words)


class SkipCandidate(Exception):
    """A candidate sentence that cannot be used (the reason is the message)."""


def synthesize_clip(seed: int, speaker: str, candidate: int, *, config: CorpusConfig = CorpusConfig(),
                    identity: FaceIdentity | None = None, voice: tts.Voice | None = None,
                    style: MotionStyle | None = None, sentences: np.ndarray | None = None) -> Clip:
    """Candidate ``candidate`` of a speaker, rendered; raises :class:`SkipCandidate` if it cannot be used.

    ``identity``, ``voice``, ``style`` and ``sentences`` default to the speaker's (pass them to
    avoid recomputing them per clip).
    """
    identity = identity or speaker_identity(seed, speaker)
    voice = voice or speaker_voice(seed, speaker)
    style = style or speaker_style(seed, speaker)
    sentences = speaker_sentences(seed, speaker) if sentences is None else sentences
    words = sentence_words(int(sentences[candidate % N_SENTENCES]))
    name = gridformat.name_from_words(words)
    rng = _rng(seed, speaker, _UTTERANCE, candidate)

    try:
        speech = tts.synthesize_words(words, voice)
    except tts.TTSError as e:
        if isinstance(e, tts.TTSUnavailableError):
            raise
        raise SkipCandidate(f"eSpeak: {e}") from None
    room = config.seconds - speech.duration - TRAIL_MIN_S
    if room < LEAD_S[0]:
        raise SkipCandidate(f"{speech.duration:.2f} s of speech does not fit a {config.seconds} s clip")
    lead = min(float(rng.uniform(*LEAD_S)), room)
    clip = tts.pad_to(speech, config.seconds, lead)
    audio = clip.samples + rng.normal(0.0, NOISE_RMS, len(clip.samples)).astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    n = config.n_frames
    mouth = mouth_track(clip.phonemes, n, config.fps)
    motion = motion_tracks(rng, style, n, config.fps)
    tracks = {**mouth.as_dict(), **motion.tracks}
    frames = render_frames(identity, states_from_arrays(tracks, n), config.height, config.width)
    return Clip(name, words, frames, audio, clip, lead, tracks, motion)


def _npz_bytes(clip: Clip, *, seed: int, speaker: str, candidate: int, config: CorpusConfig,
               identity: FaceIdentity, voice: tts.Voice, style: MotionStyle) -> bytes:
    phon = clip.speech.phonemes
    meta = dict(seed=seed, speaker=speaker, candidate=candidate, utterance=clip.name, text=clip.text,
                fps=config.fps, seconds=config.seconds, width=config.width, height=config.height,
                sample_rate=tts.SAMPLE_RATE, lead_s=clip.lead_s, identity=identity.to_dict(),
                voice=asdict(voice), style=style.to_dict(), mouth_parameters=list(PARAMETERS),
                espeak=tts.engine_version())
    arrays = {name: np.asarray(values, np.float32) for name, values in clip.tracks.items()}
    arrays.update(
        phoneme_labels=np.array([p.label for p in phon], dtype=np.str_),
        phoneme_times=np.array([[p.start, p.end] for p in phon], np.float64).reshape(-1, 2),
        word_labels=np.array([w.label for w in clip.speech.words], dtype=np.str_),
        word_times=np.array([[w.start, w.end] for w in clip.speech.words], np.float64).reshape(-1, 2),
        blinks=np.array(clip.motion.blinks, np.float64).reshape(-1, 2),
        brow_raises=np.array(clip.motion.brow_raises, np.float64).reshape(-1, 2),
        frowns=np.array(clip.motion.frowns, np.float64).reshape(-1, 2),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def read_parameters(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """A clip's ``.npz``: its arrays (per-frame parameters, segments, events) and its metadata."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
        meta = json.loads(str(data["meta"]))
    return arrays, meta


# --------------------------------------------------------------------------------------------------
# One speaker
# --------------------------------------------------------------------------------------------------


def build_speaker(speaker: str, out: str | os.PathLike, n_utterances: int = 50, seed: int = 0, *,
                  config: CorpusConfig = CorpusConfig(), progress: bool = True) -> Path:
    """Synthesise ``n_utterances`` clips of ``speaker`` into ``out/<speaker>/``; returns the manifest's path."""
    speaker_number(speaker)
    if n_utterances < 1:
        raise ValueError(f"--utterances must be >= 1, got {n_utterances}")
    folder = Path(out) / speaker
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.tsv").unlink(missing_ok=True)  # the folder is incomplete until the end
    identity = speaker_identity(seed, speaker)
    voice = speaker_voice(seed, speaker)
    style = speaker_style(seed, speaker)
    sentences = speaker_sentences(seed, speaker)
    log.info("%s: voice %s, %d utterances, seed %d", speaker, voice, n_utterances, seed)

    made: list[Utterance] = []
    skipped: dict[str, str] = {}
    max_candidates = min(N_SENTENCES, 4 * n_utterances + 20)
    candidate = 0
    started = _cpu_seconds()
    bar = tqdm(total=n_utterances, desc=f"synthgrid {speaker}", unit="clip", disable=None if progress else True)
    with bar:
        while len(made) < n_utterances:
            if candidate >= max_candidates:
                raise CorpusError(f"{speaker}: only {len(made)} of {n_utterances} utterances after "
                                  f"{candidate} candidates; see the reasons in {folder / 'skipped.tsv'}")
            try:
                clip = synthesize_clip(seed, speaker, candidate, config=config, identity=identity, voice=voice,
                                       style=style, sentences=sentences)
            except SkipCandidate as e:
                words = sentence_words(int(sentences[candidate]))
                skipped[gridformat.name_from_words(words)] = f"candidate {candidate}: {e}"
                candidate += 1
                continue
            base = folder / clip.name
            write_video(base.with_suffix(".mpg"), clip.frames, config.fps, clip.audio, tts.SAMPLE_RATE, codec="mpeg1")
            write_wav(base.with_suffix(".wav"), clip.audio, tts.SAMPLE_RATE)
            atomic_write_text(base.with_suffix(".align"), tts.align_text(clip.speech.words, config.seconds))
            _atomic_write_bytes(base.with_suffix(".npz"),
                                _npz_bytes(clip, seed=seed, speaker=speaker, candidate=candidate, config=config,
                                           identity=identity, voice=voice, style=style))
            made.append(Utterance(clip.name, f"{clip.name}.mpg", f"{clip.name}.wav", f"{clip.name}.align",
                                  clip.text))
            candidate += 1
            bar.update(1)
    _remove_stale(folder, {u.utterance for u in made})
    write_skipped(folder, skipped)
    manifest = write_manifest(folder, made)
    cpu = _cpu_seconds() - started
    log.info("%s: %d clips, %d skipped, %.2f s of CPU per clip (rendering, speech, encoding)", speaker,
             len(made), len(skipped), cpu / len(made))
    return manifest


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the ffmpeg encoders)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete clip files of an earlier build that this build did not make (GRID-named files only)."""
    for path in folder.iterdir():
        if path.suffix not in CLIP_FILES or path.stem in keep or not path.is_file():
            continue
        try:
            gridformat.words_from_name(path.stem)
        except gridformat.GridFormatError:
            continue
        path.unlink()


# --------------------------------------------------------------------------------------------------
# The samples figure
# --------------------------------------------------------------------------------------------------


def _speaker_key(path: Path) -> tuple[int, str]:
    match = _SPEAKER_RE.match(path.name)
    return (int(match.group(1)) if match else 1 << 30, path.name)


def sample_frames(root: str | os.PathLike, n_speakers: int = 4,
                  n_frames: int = 4) -> list[tuple[str, str, list[int], np.ndarray]]:
    """``(speaker, utterance, frame indices, frames)`` for the first utterance of the first speakers.

    Frames are evenly spaced over the middle of the clip, where the sentence is spoken.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: no such folder")
    folders = sorted((p for p in root.iterdir() if (p / "manifest.tsv").is_file()), key=_speaker_key)
    if not folders:
        raise CorpusError(f"{root}: no speaker folder with a manifest.tsv (build speakers first)")
    rows = []
    for folder in folders[:n_speakers]:
        utterances = read_manifest(folder)
        if not utterances:
            raise CorpusError(f"{folder / 'manifest.tsv'}: lists no utterances")
        utt = utterances[0]
        frames, _ = read_video(folder / utt.video)
        t = len(frames)
        idx = np.linspace(0.2 * (t - 1), 0.8 * (t - 1), n_frames).round().astype(int).tolist()
        rows.append((folder.name, utt.utterance, idx, frames[idx]))
    return rows


def samples_figure(root: str | os.PathLike, out: str | os.PathLike, n_speakers: int = 4, n_frames: int = 4) -> Path:
    """A grid of thumbnails: one row per speaker, ``n_frames`` frames of its first utterance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if n_speakers < 1 or n_frames < 1:
        raise ValueError(f"--speakers and --frames must be >= 1, got {n_speakers} and {n_frames}")
    rows = sample_frames(root, n_speakers, n_frames)
    h, w = rows[0][3].shape[1:3]
    fig_h = 2.0 * len(rows) + 0.5
    fig, axes = plt.subplots(len(rows), n_frames, figsize=(2.0 * n_frames * w / h, fig_h), squeeze=False)
    for r, (speaker, utt, idx, frames) in enumerate(rows):
        for c in range(n_frames):
            ax = axes[r][c]
            ax.imshow(frames[c])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{speaker}/{utt} frame {idx[c]}", fontsize=7)
    fig.suptitle("synthgrid: synthetic GRID-format corpus (NOT GRID)", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.4 / fig_h))
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speechanim.synth.corpus",
                                     description="The embedded synthetic GRID-format corpus (NOT GRID).")
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("speaker", help="synthesise one speaker's clips")
    sp.add_argument("speaker", help="speaker id: s1, s2, ...")
    sp.add_argument("--out", required=True, type=Path, help="the dataset's raw folder, e.g. data/raw/synthgrid")
    sp.add_argument("--utterances", type=int, default=50, help="clips per speaker (default %(default)s)")
    sp.add_argument("--seed", type=int, default=0, help="corpus seed (default %(default)s)")
    sp.add_argument("--fps", type=float, default=FPS, help="video frame rate (default %(default)s, GRID's)")
    sp.add_argument("--seconds", type=float, default=SECONDS, help="clip length (default %(default)s, GRID's)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sm = sub.add_parser("samples", help="a figure of a few frames of a few speakers")
    sm.add_argument("root", type=Path, help="the dataset's raw folder, e.g. data/raw/synthgrid")
    sm.add_argument("--out", required=True, type=Path, help="PNG to write, e.g. results/synthgrid/samples.png")
    sm.add_argument("--speakers", type=int, default=4, help="rows (default %(default)s)")
    sm.add_argument("--frames", type=int, default=4, help="columns (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "samples":  # it reads the speaker folders' files: the figure may go beside them, not over
        refuse_clashing_paths(parser, {"the raw file": files_in([args.root], "*/*")}, {"--out": args.out})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "speaker":
            build_speaker(args.speaker, args.out, args.utterances, args.seed,
                          config=CorpusConfig(fps=args.fps, seconds=args.seconds), progress=not args.no_progress)
        else:
            samples_figure(args.root, args.out, args.speakers, args.frames)
    except (CorpusError, MediaError, tts.TTSError, ValueError, OSError) as e:
        print(f"speechanim.synth.corpus: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
