"""Packed HDF5 files of drawn talking faces whose mouth opening follows the audio envelope.

Training tests (and ``benchmarks/bench_train.py``) need data in which the video depends on the
audio, small enough to write in a second. Each clip is one "speaker": a face oval of its own skin
tone on its own background, eyes that blink at random (motion in the upper half that the audio
does not explain), and a dark mouth in the lower half whose height follows the loudness envelope
of a voiced "syllable" train (harmonic tones with Hann-shaped envelopes and silent gaps). Frame
``k`` shows the envelope at its centre time ``(k + 0.5) / fps``, where audio window ``k`` is centred
(speechanim.audio), so the opening can be read from that window's loudness.

Files are written with :func:`speechanim.packing.write_clip`, the product's own format. The
landmark arrays are zeros: no training code reads them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from speechanim.packing import AtomicH5, Clip, write_clip

FPS = 25.0
# The tiny networks the training tests train: drawn faces of 32 x 24 pixels, 8 kHz audio.
TINY_SIZE, TINY_RATE = (32, 24), 8000
TINY_MODEL = dict(image_size=list(TINY_SIZE), sample_rate=TINY_RATE, width=0.125, id_dim=8, audio_feat_dim=16,
                  context_dim=16, noise_dim=4, seq_disc_image_dim=8, seq_disc_audio_dim=8, seq_disc_hidden=16,
                  seq_disc_classifier_hidden=8)


@dataclass
class Face:
    """One drawn identity: positions are fractions of the image size, colours RGB 0-255."""

    background: np.ndarray
    skin: np.ndarray
    centre: tuple[float, float]  # (row, column) of the face centre
    mouth_row: float
    mouth_half_width: float
    blink_frames: np.ndarray  # frame indices with the eyes closed


MOUTH_COLOUR = np.array([40.0, 8.0, 16.0])
EYE_COLOUR = np.array([20.0, 20.0, 30.0])
MAX_OPEN = 0.09  # mouth half-height at full opening, as a fraction of H


def envelope(n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A syllable-train loudness envelope in [0, 1]: Hann bumps of 0.12-0.32 s with gaps."""
    env = np.zeros(n_samples)
    t = rng.uniform(0.25, 0.6)
    end = n_samples / sample_rate - 0.3
    while t < end:
        dur = rng.uniform(0.12, 0.32)
        a, b = int(t * sample_rate), min(n_samples, int((t + dur) * sample_rate))
        env[a:b] = rng.uniform(0.55, 1.0) * np.hanning(b - a) if b - a > 1 else 0.0
        t += dur + (rng.uniform(0.25, 0.5) if rng.random() < 0.2 else rng.uniform(0.02, 0.12))
    return env


def voiced(env: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A harmonic tone (random pitch, gently gliding) shaped by ``env``, plus faint noise, peak 1."""
    n = len(env)
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(100, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = sum(np.sin(h * phase) / h for h in range(1, 6) if h * 240 < sample_rate / 2)
    audio = env * tone + 0.003 * rng.standard_normal(n)
    audio -= audio.mean()
    return (audio / np.abs(audio).max()).astype(np.float32)


def random_face(rng: np.random.Generator, n_frames: int) -> Face:
    n_blinks = rng.integers(0, 3)
    blinks = np.concatenate([np.arange(s, s + 3) for s in rng.integers(0, n_frames - 3, n_blinks)]) \
        if n_blinks else np.zeros(0, int)
    return Face(background=rng.uniform(30, 220, 3), skin=rng.uniform(120, 240, 3) * np.array([1.0, 0.85, 0.75]),
                centre=(0.5 + rng.uniform(-0.04, 0.04), 0.5 + rng.uniform(-0.05, 0.05)),
                mouth_row=0.72 + rng.uniform(-0.03, 0.03), mouth_half_width=rng.uniform(0.13, 0.19),
                blink_frames=blinks)


def draw(face: Face, openings: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of ``face`` with the mouth opened by ``openings`` (T,) in [0, 1]."""
    h, w = size
    rows = (np.arange(h)[:, None] + 0.5) / h
    cols = (np.arange(w)[None, :] + 0.5) / w
    cy, cx = face.centre
    base = np.empty((h, w, 3))
    base[:] = face.background
    oval = ((rows - cy) / 0.42) ** 2 + ((cols - cx) / 0.40) ** 2 <= 1
    base[oval] = face.skin
    eyes = np.zeros((h, w), bool)
    for side in (-1, 1):
        eyes |= ((rows - (cy - 0.12)) / 0.045) ** 2 + ((cols - (cx + side * 0.17)) / 0.07) ** 2 <= 1
    frames = np.repeat(base[None], len(openings), 0)
    open_eyes = np.ones(len(openings), bool)
    open_eyes[face.blink_frames[face.blink_frames < len(openings)]] = False
    frames[open_eyes] = np.where(eyes[..., None], EYE_COLOUR, frames[open_eyes])
    half_height = 0.012 + MAX_OPEN * openings  # (T,)
    mouth = ((rows[None] - face.mouth_row) / half_height[:, None, None]) ** 2 \
        + ((cols[None] - cx) / face.mouth_half_width) ** 2 <= 1
    frames[mouth] = MOUTH_COLOUR
    return np.clip(frames, 0, 255).astype(np.uint8)


def mouth_box(face: Face, size: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns that hold the mouth at any opening."""
    h, w = size
    r0, r1 = face.mouth_row - 0.012 - MAX_OPEN, face.mouth_row + 0.012 + MAX_OPEN
    c0, c1 = face.centre[1] - face.mouth_half_width, face.centre[1] + face.mouth_half_width
    return slice(int(np.floor(r0 * h)), int(np.ceil(r1 * h))), slice(int(np.floor(c0 * w)), int(np.ceil(c1 * w)))


def mouth_darkness(frames: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """How open the drawn mouth looks in each frame: mean darkness (1 - brightness) inside ``box``.

    ``frames`` ``(T, 3, H, W)`` in [-1, 1] (the model's range) -> ``(T,)``.
    """
    region = frames[:, :, box[0], box[1]]
    return 1 - (region.mean(axis=(1, 2, 3)) + 1) / 2


def write_talking_faces(path: str | Path, n_clips: int, *, n_frames: int = 75, image_size=(64, 48),
                        sample_rate: int = 8000, seed: int = 0, mirror: bool = False,
                        nan_audio_clips: tuple[int, ...] = (), speaker_prefix: str = "s") -> dict:
    """Write ``n_clips`` clips (plus mirrored copies if ``mirror``) to ``path``.

    Returns ``{key: (face, openings)}`` so that tests can compare generated mouths with the truth.
    ``nan_audio_clips`` lists clip numbers whose audio is set to NaN (a damaged file).
    """
    rng = np.random.default_rng(seed)
    spf = int(round(sample_rate / FPS))
    truth = {}
    with AtomicH5(path) as h5:
        for i in range(n_clips):
            env = envelope(n_frames * spf, sample_rate, rng)
            audio = voiced(env, sample_rate, rng)
            if i in nan_audio_clips:
                audio[:] = np.nan
            openings = env[((np.arange(n_frames) + 0.5) * spf).astype(int)]
            face = random_face(rng, n_frames)
            frames = draw(face, openings, image_size)
            clips = [Clip(f"{speaker_prefix}{i}", "u0", frames, audio, np.zeros((n_frames, 478, 2), np.float32),
                          FPS, sample_rate, "bin blue at f two now", False, f"synthetic/{i}")]
            if mirror:
                clips.append(Clip(f"{speaker_prefix}{i}", "u0", frames[:, :, ::-1], audio, clips[0].landmarks, FPS,
                                  sample_rate, clips[0].words, True, clips[0].source))
            for clip in clips:
                write_clip(h5, clip)
                truth[clip.key] = (replace(face, centre=(face.centre[0], 1 - face.centre[1])) if clip.mirrored
                                   else face, openings)
    return truth



def write_train_val(root: Path, n_train: int, n_val: int, *, n_frames: int, image_size=TINY_SIZE,
                    sample_rate: int = TINY_RATE, mirror: bool = False) -> Path:
    """``root/train.h5`` (speakers s0.., seed 0) and ``root/val.h5`` (other faces, speakers v0.., seed 1): the
    training tests' packed pair. Returns ``root``."""
    write_talking_faces(root / "train.h5", n_train, n_frames=n_frames, image_size=image_size, sample_rate=sample_rate,
                        seed=0, mirror=mirror)
    write_talking_faces(root / "val.h5", n_val, n_frames=n_frames, image_size=image_size, sample_rate=sample_rate,
                        seed=1, speaker_prefix="v")
    return root

# --------------------------------------------------------------------------------------------------
# The embedded corpus itself, built as the DAG builds it


def _build_and_align_speaker(job: tuple[str, int, str, tuple[int, int]]) -> tuple[str, int, dict]:
    """One synthgrid speaker: synthesised (synth.corpus) and aligned (preprocess.align_speaker)."""
    from speechanim.align import AlignConfig
    from speechanim.preprocess import AlignJob, align_speaker
    from speechanim.synth import corpus

    speaker, n_clips, root, size = job
    root = Path(root)
    corpus.build_speaker(speaker, root / "raw", n_clips, 0, progress=False)
    result = align_speaker(root / "raw" / speaker, root / "aligned" / f"{speaker}.h5", root / "skipped" / f"{speaker}.tsv",
                           AlignJob(AlignConfig(size=size), sample_rate=16000, fps=25.0), progress=False)
    return speaker, result.clips, dict(result.skipped)


def embedded_corpus(root: Path, clips: dict[str, int], split: dict[str, str], size: tuple[int, int],
                    workers: int = 2) -> dict[str, Path]:
    """Synthgrid speakers (``clips``: speaker -> utterances) synthesised and aligned at ``size`` in
    ``workers`` processes, then packed per part of ``split`` with the training part mirrored, by the
    product's own functions; returns part -> packed file."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from speechanim.preprocess import pack
    from speechanim.splits import write_split

    jobs = [(speaker, n, str(root), tuple(size)) for speaker, n in clips.items()]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for speaker, made, skipped in pool.map(_build_and_align_speaker, jobs):
            if made != clips[speaker]:
                raise RuntimeError(f"{speaker}: {made} of {clips[speaker]} clips aligned; skipped {skipped}")
    split_path = write_split(root / "split.tsv", split)
    aligned = [root / "aligned" / f"{speaker}.h5" for speaker in clips]
    out = {}
    for part in sorted(set(split.values())):
        out[part] = root / f"{part}.h5"
        pack(split_path, part, aligned, out[part], mirror=part == "train", progress=False)
    return out
