"""Animate any face photo with any speech recording: the library API behind ``speechanim animate``.

"a temporal generative adversarial network ... capable of generating a video of a talking head
from an audio signal and a single still image" (paper, section 1).  In the spirit of the authors'
``VideoAnimator`` (GitHub DinoMan/speech-driven-animation, ``sda/sda.py``), with the inputs
prepared exactly as the training data were:

* the photo (any size, RGB/gray/RGBA, array or file) is aligned to the canonical face with the
  same code that aligned the training videos (:func:`speechanim.align.align_image` with
  ``AlignConfig(size=<the model's image size>)``); it must show exactly one face;
* the audio (any file ffmpeg reads, or an array with its rate) is made mono at the model's rate,
  normalised like the packed data (:func:`speechanim.audio.normalise`: DC removed, peak 1) and cut
  into one 0.16 s window per video frame (paper, 3.1) at 25 fps, ``T = ceil(duration * 25)``;
* the noise ``N(0, 0.33)`` (paper, 3.1.3; sda/sda.py) comes from a seeded CPU ``torch.Generator``,
  so the same seed gives the same video on any device.

::

    animator = Animator("results/grid/models/full/generator.pt")
    frames = animator("face.jpg", "speech.wav")            # (T, H, W, 3) uint8, whole clip
    for frame in animator.stream("face.jpg", "speech.wav"):  # the same frames, one at a time
        ...
    for frame in animator.stream("face.jpg", mic_chunks, 16000, gain=1.0):  # live audio chunks
        ...
    animate_file("face.jpg", "speech.wav", "generator.pt", "out.mp4")  # mp4 with the original audio

The whole-clip pass runs the recurrent encoders over the audio and decodes frames in chunks
(``chunk_frames``), carrying the GRU states across chunks; :meth:`Animator.frames` gives it chunk by
chunk in memory that does not grow with the recording (one chunk's windows and frames; a file's
audio decoded a piece at a time), and :func:`animate_file` writes each chunk to the mp4 as it comes.
:meth:`Animator.stream` runs the generator frame by frame (the paper's "synthesize
videos frame-by-frame, which is necessary for real-time applications", 3.1) and gives the same frames,
also from audio still arriving in chunks (:mod:`speechanim.stream`). A checkpoint imported from the
authors' files (:mod:`speechanim.sda`) runs their pipeline instead (its own mean face and their
stable points, full-scale audio, an array's first channel, FFT resampling over the whole recording,
their window stride, padding and frame count, frames ``125 * G + 125``); streamed from chunks, its
audio is resampled as it comes (polyphase), see :meth:`Animator.stream`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np
import torch
from tqdm import tqdm

from .align import STABLE_POINTS, STABLE_POINTS_68, AlignConfig, align_image
from .audio import SilentAudioError, check_mix, mix_to_mono, resample, samples_per_frame, window_samples
from .checkpoint import CheckpointError, load_generator
from .fileio import check_outputs_apart
from .generate import pick_device, to_uint8
from .inference import PRECISIONS, FastGenerator
from .media import SUFFIXES, MediaError, audio_rate
from .media import read_image as _read_photo
from .packing import to_unit_range
from .sda import authors_file_audio, authors_resample, is_converted
from .stream import FILE_CHUNK_SAMPLES, AudioFramer, Mp4Writer, audio_file_chunks, channel_rms, check_rate, iter_chunks

__all__ = ["FPS", "CHUNK_FRAMES", "ImageError", "Animator", "read_image", "as_rgb_uint8", "resample", "audio_rate",
           "animate_file"]

#: Video frame rate of the generated videos: GRID and TCD-TIMIT are 25 fps, and the audio windows
#: are one video frame (sample_rate / 25 samples) apart, as in training.
FPS = 25.0

#: Frames decoded per chunk of the whole-clip pass (bounds memory for long audio; 10 s at 25 fps).
CHUNK_FRAMES = 250

PathLike = Union[str, os.PathLike]


class ImageError(ValueError):
    """A photo that cannot be read or used; the message names the file."""


# --------------------------------------------------------------------------------------------------
# Inputs


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Any common image array -> ``(H, W, 3)`` uint8 RGB.

    Gray ``(H, W)`` or ``(H, W, 1)`` is repeated over three channels; gray + alpha and RGBA are
    composited over white; uint16 is scaled down, floats are taken as ``[0, 1]``, bool as 0/255.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ImageError(f"{name}: image has NaN or infinite values")
        image = np.rint(np.clip(image, 0.0, 1.0) * 255.0)
    elif image.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported image dtype {image.dtype}")
    image = image.astype(np.uint8, copy=False)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise ImageError(f"{name}: expected an image (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    channels = image.shape[2]
    if channels in (2, 4):  # composite the colour over white with the alpha channel
        colour, alpha = image[..., :-1].astype(np.float32), image[..., -1:].astype(np.float32) / 255.0
        image = np.rint(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def read_image(path: PathLike) -> np.ndarray:
    """Read a photo file as ``(H, W, 3)`` uint8 RGB, as a photo viewer shows it
    (:func:`speechanim.media.read_image`: EXIF orientation applied, CMYK, 16-bit, greyscale and
    palette made 8-bit RGB, alpha composited on white, at most ``MAX_IMAGE_PIXELS``)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        return _read_photo(path)
    except MediaError as e:
        raise ImageError(str(e)) from None


def _to_mono_float(audio: np.ndarray, name: str, first_channel: bool = False) -> np.ndarray:
    """An audio array -> mono float64: integers / their dtype's maximum, floats as they are; the
    channels of ``(samples, channels)`` averaged, or the first one (``first_channel``: the authors')."""
    audio = np.asarray(audio)
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float64) / float(np.iinfo(audio.dtype).max)
    elif not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"{name}: audio samples must be numbers, got dtype {audio.dtype}")
    if audio.ndim == 2 and first_channel and audio.shape[1] > 0:
        audio = audio[:, 0]
    elif audio.ndim == 2:  # (samples, channels), as scipy.io.wavfile and soundfile give
        audio = mix_to_mono(audio, source=name)  # refused if the channels cancel out
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"{name}: audio must be a non-empty array (samples,) or (samples, channels), "
                         f"got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError(f"{name}: audio has NaN or infinite samples")
    return audio.astype(np.float64)


# --------------------------------------------------------------------------------------------------
# The animator


class Animator:
    """A trained generator with its input preparation: ``Animator(checkpoint)(image, audio) -> frames``.

    ``device``: ``"cpu"``, ``"cuda"`` or None (CUDA when available). ``trust_checkpoint``: unpickle a
    checkpoint that holds more than weights and plain values (it could run code; refused otherwise,
    see :mod:`speechanim.checkpoint`). ``precision``: ``"fp32"`` (the trained weights' arithmetic;
    frames equal the plain generator's up to float rounding), ``"bf16"`` (the decoder in bfloat16,
    faster on CPUs with AVX-512 BF16) or ``"int8"`` (bf16, and int8 weights where streaming is
    limited by reading them; CPU only); frames within a few grey levels of fp32's (README,
    "Benchmarks"). The decoder runs as :class:`speechanim.inference.FastGenerator`.

    A checkpoint converted from the authors' files (``speechanim import-sda``) runs the authors'
    pipeline here (:mod:`speechanim.sda`): the photo aligned to its ``mean_face`` by their stable points,
    the audio at full scale (not peak-normalised), an array's first channel, FFT resampling, their
    window stride, padding and frame count, and frames ``125 * G + 125``. ``authors`` says which.
    """

    def __init__(self, checkpoint: PathLike, device: str | torch.device | None = None, *,
                 trust_checkpoint: bool = False, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.checkpoint = Path(checkpoint)
        self.device = pick_device(device)
        self.generator, payload = load_generator(self.checkpoint, map_location=self.device, trust=trust_checkpoint)
        self.fast = FastGenerator(self.generator, precision)
        self.cfg = self.generator.cfg
        self.variant = str(payload.get("variant", ""))
        self.authors = is_converted(payload)  # the authors' pipeline, not this project's
        self.fps = float(payload.get("fps", FPS))  # the frame rate it was trained at (older checkpoints: 25)
        self.audio_scaling, self.audio_stride, self.frame_rule, stable = _input_settings(payload, self.cfg, self.fps,
                                                                                         self.checkpoint)
        # the alignment of the training data (or the authors' mean face and stable points), at the model's crop size
        self.align_config = AlignConfig(size=tuple(self.cfg.image_size), stable_target=stable,
                                        stable_points=STABLE_POINTS_68 if self.authors else STABLE_POINTS)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the generated frames."""
        return tuple(self.cfg.image_size)

    @property
    def sample_rate(self) -> int:
        return int(self.cfg.sample_rate)

    @property
    def window(self) -> int:
        return window_samples(self.sample_rate, self.cfg.audio_window_s)

    def align(self, image: np.ndarray | PathLike, name: str | None = None) -> np.ndarray:
        """The still the generator sees: the photo aligned to the canonical face, ``(H, W, 3)`` uint8."""
        if isinstance(image, (str, os.PathLike)):
            name = name or str(image)
            image = read_image(image)
        else:
            name = name or "image"
            image = as_rgb_uint8(image, name)
        return align_image(image, self.align_config, name=name).frames[0]

    def prepare_audio(self, audio: np.ndarray | PathLike, sample_rate: int | None = None,
                      name: str | None = None, *, gain: float | None = None) -> np.ndarray:
        """The audio windows the generator sees, ``(T, window)`` float32, ``T = ceil(duration * fps)``
        (an imported authors' model: ``floor``).

        ``audio`` is a file (any format and rate ffmpeg reads; ``sample_rate`` is then ignored) or
        an array ``(samples,)`` / ``(samples, channels)`` with its ``sample_rate`` (integers are
        scaled by their dtype's maximum, floats taken as [-1, 1]). ``gain``: scale the samples by it
        instead of the checkpoint's level (peak normalisation, or full scale); a live stream is
        scaled this way, since its peak is not known in advance. All windows at once: the passes
        below cut them as they go (:meth:`_windows`), which this stacks.
        """
        return np.stack(list(self._windows(audio, sample_rate, name, gain)[1]))

    def _windows(self, audio: np.ndarray | PathLike, sample_rate: int | None, name: str | None,
                 gain: float | None) -> tuple[int, Iterator[np.ndarray]]:
        """The frame count and an iterator of the frames' audio windows, ``(window,)`` float32 each,
        cut as they are asked for (:class:`speechanim.stream.AudioFramer`). A file is decoded twice,
        a chunk at a time (:func:`speechanim.stream.audio_file_chunks`): once to measure its length
        and level, once to cut the windows; neither its samples nor the ``(T, window)`` array are
        held whole. The samples are refused if silent or not finite, then scaled (``gain``, or the
        checkpoint's level: peak-normalised, DC removed, or full scale). An authors' model
        (:attr:`authors`) hears a file's or an array's samples FFT-resampled over the whole recording,
        which it then holds (:func:`speechanim.sda.authors_resample`)."""
        gain = _check_gain(gain)
        if isinstance(audio, (str, os.PathLike)) and not self.authors:
            name = name or str(audio)
            path = audio

            def chunks() -> Iterator[np.ndarray]:
                return audio_file_chunks(path, self.sample_rate)
        else:
            name, samples = self._whole_recording(audio, sample_rate, name)

            def chunks() -> Iterator[np.ndarray]:
                return (samples[i:i + FILE_CHUNK_SAMPLES] for i in range(0, len(samples), FILE_CHUNK_SAMPLES))
        level = _Level.of(chunks(), name)
        if level.rms < SILENCE_RMS:
            if isinstance(audio, (str, os.PathLike)):  # the mono mix may be silent while its channels are not
                check_mix(channel_rms(audio), level.rms, silence_rms=SILENCE_RMS, source=name)
            raise SilentAudioError(f"{name}: silent audio track (RMS {level.rms:.2e} < {SILENCE_RMS:.0e})")
        scale = level.scaling(gain, self.audio_scaling)
        stride = self.audio_stride
        n_frames = -(-level.n // stride) if self.frame_rule == "ceil" else level.n // stride
        if n_frames < 1:
            raise ValueError(f"{name}: audio shorter than one video frame ({level.n} samples)")

        def windows() -> Iterator[np.ndarray]:
            framer = AudioFramer(self.sample_rate, self.sample_rate, stride, self.window, frames=self.frame_rule)
            for chunk in chunks():
                for i in range(0, len(chunk), _PIECE):  # the framer returns a piece's windows at once: keep it small
                    yield from framer.push(scale(chunk[i:i + _PIECE]))
            yield from framer.close()
        return n_frames, windows()

    def _whole_recording(self, audio: np.ndarray | PathLike, sample_rate: int | None,
                         name: str | None) -> tuple[str, np.ndarray]:
        """The name and the whole recording, mono float32 at the model's rate, of an array (this
        project's models: channels averaged, polyphase resampling; an authors' model: the first channel,
        FFT resampling) or, for an authors' model, of a file (:func:`speechanim.sda.authors_file_audio`)."""
        if isinstance(audio, (str, os.PathLike)):
            return name or str(audio), authors_file_audio(audio, self.sample_rate)
        name = name or "audio"
        mono = _to_mono_float(audio, name, first_channel=self.authors)
        rate = _check_rate(sample_rate, name)
        return name, (authors_resample if self.authors else resample)(mono, rate, self.sample_rate)

    def _still(self, image) -> torch.Tensor:
        still = self.align(image)
        return torch.from_numpy(to_unit_range(still.transpose(2, 0, 1).copy()))[None].to(self.device)

    @torch.no_grad()
    def __call__(self, image: np.ndarray | PathLike, audio: np.ndarray | PathLike, sample_rate: int | None = None,
                 seed: int = 0, *, chunk_frames: int = CHUNK_FRAMES, progress: bool | None = None,
                 gain: float | None = None) -> np.ndarray:
        """Animate ``image`` with ``audio``: ``(T, H, W, 3)`` uint8 frames at :attr:`fps`.

        ``progress``: a bar over frames on stderr; None shows it when the clip is longer than one chunk.
        """
        n_frames, chunks = self._pass(image, audio, sample_rate, seed, chunk_frames, gain)
        out = np.empty((n_frames, *self.image_size, 3), np.uint8)
        a = 0
        for frames in _progress(chunks, n_frames, chunk_frames, progress):
            out[a:a + len(frames)] = frames
            a += len(frames)
        return out

    def frames(self, image: np.ndarray | PathLike, audio: np.ndarray | PathLike, sample_rate: int | None = None,
               seed: int = 0, *, chunk_frames: int = CHUNK_FRAMES, gain: float | None = None) -> Iterator[np.ndarray]:
        """The whole-clip pass of :meth:`__call__` a chunk at a time: ``(n, H, W, 3)`` uint8 arrays of
        at most ``chunk_frames`` frames, in order (the same frames). The inputs are checked before it
        returns. Memory does not grow with the recording: it holds one chunk's windows and frames
        (250 frames: 2.6 MB of 0.16 s windows at 16 kHz and 9.2 MB of 128 x 96 frames) and one chunk
        of a file's samples (256 KiB); an array given in memory is the caller's, resampled once."""
        return self._pass(image, audio, sample_rate, seed, chunk_frames, gain)[1]

    def _pass(self, image, audio, sample_rate, seed: int, chunk_frames: int,
              gain: float | None) -> tuple[int, Iterator[np.ndarray]]:
        """The frame count and the chunks of :meth:`frames`, the photo and the audio checked first."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
        still = self._still(image)
        n_frames, windows = self._windows(audio, sample_rate, None, gain)
        return n_frames, self._decode(still, windows, n_frames, seed, chunk_frames)

    @torch.no_grad()
    def _decode(self, still: torch.Tensor, windows: Iterator[np.ndarray], n_frames: int, seed: int,
                chunk_frames: int) -> Iterator[np.ndarray]:
        """The generator's whole-clip pass over ``chunk_frames`` windows at a time, its GRU states
        carried across chunks; the noise is drawn a frame at a time from ``seed`` (as clip_noise draws it)."""
        g = self.fast
        identity = g.encode_identity(still)
        state = g.init_state(1, self.device)
        rng = torch.Generator().manual_seed(int(seed))
        batch = np.empty((min(chunk_frames, n_frames), self.window), np.float32)  # one chunk's windows, reused
        for a in range(0, n_frames, chunk_frames):
            n = min(chunk_frames, n_frames - a)
            for i in range(n):
                batch[i] = next(windows)
            audio_t = torch.from_numpy(batch[:n])[None].to(self.device)
            noise = self.generator.sample_noise(1, n, torch.device("cpu"), rng).to(self.device)
            frames, state = g.run(identity, audio_t, noise, state)
            made = to_uint8(frames[0], f"{self.checkpoint}: frames {a}-{a + n - 1}", authors=self.authors)
            yield made.permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def stream(self, image: np.ndarray | PathLike, audio: np.ndarray | PathLike | Iterable[np.ndarray],
               sample_rate: int | None = None, seed: int = 0, *, gain: float | None = None) -> Iterator[np.ndarray]:
        """Yield the frames one by one, ``(H, W, 3)`` uint8, stepping the generator's recurrent state.

        ``audio`` as for :meth:`__call__` (the whole recording: the same frames as ``__call__``), or
        an iterable of chunks (1-D arrays, or ``(samples, channels)``, at ``sample_rate``) that may
        still be arriving: each frame is made as soon as its window's last sample is in (80 ms after
        the frame's centre with 0.16 s windows) and the frames equal ``__call__``'s on the
        concatenated chunks with the same ``gain`` (default 1: live audio is taken at its level).

        An authors' model (:attr:`authors`) hears a recording FFT-resampled over its whole length,
        which chunks still arriving cannot be: they are resampled polyphase as they come, as for this
        project's models (:class:`speechanim.stream.StreamResampler`). Measured on a real GRID clip,
        44.1 kHz into 50 kHz, with a model made to hear its audio: frames up to 5.3 grey levels from the
        authors' (mean 0.29 against 0.25 from rounding alone; tests/test_sda_pipeline.py). Chunks at the
        model's rate are not resampled: the authors' frames.
        """
        gain = _check_gain(gain)
        still = self._still(image)
        g = self.fast
        identity = g.encode_identity(still)
        state = g.init_state(1, self.device)
        rng = torch.Generator().manual_seed(int(seed))  # the draws of clip_noise, one frame at a time
        if isinstance(audio, (str, os.PathLike, np.ndarray)):
            windows: Iterable[np.ndarray] = self._windows(audio, sample_rate, None, gain)[1]
        else:
            windows = self._live_windows(audio, _check_rate(sample_rate, "audio stream"), 1.0 if gain is None else gain)
        for window in windows:
            noise = self.generator.sample_noise(1, 1, torch.device("cpu"), rng)[:, 0].to(self.device)
            audio_t = torch.from_numpy(np.ascontiguousarray(window, np.float32))[None].to(self.device)
            frame, state = g.step(identity, audio_t, state, noise)
            frame = to_uint8(frame[0], f"{self.checkpoint}: a streamed frame", authors=self.authors)
            yield frame.permute(1, 2, 0).cpu().numpy()

    def _live_windows(self, chunks: Iterable[np.ndarray], rate: int, gain: float) -> Iterator[np.ndarray]:
        """The windows of audio arriving in chunks, resampled as they come (polyphase, for any model:
        see :meth:`stream`); an authors' model takes a 2-D chunk's first channel."""
        framer = AudioFramer(rate, self.sample_rate, self.audio_stride, self.window, frames=self.frame_rule, gain=gain)
        for chunk in iter_chunks(chunks, first_channel=self.authors):
            yield from framer.push(_to_mono_float(chunk, "audio stream") if chunk.size else chunk)
        yield from framer.close()


def _check_gain(gain: float | None) -> float | None:
    """``gain`` (None: the checkpoint's own level), refused unless a finite number > 0: NaN made a black video."""
    if gain is not None and (isinstance(gain, bool) or not isinstance(gain, (int, float, np.number))
                             or not math.isfinite(gain) or gain <= 0):
        raise ValueError(f"gain must be a finite number > 0, got {gain!r}")
    return gain


def _check_rate(sample_rate, name: str) -> int:
    if sample_rate is None:
        raise ValueError(f"{name}: an audio array needs its sample_rate")
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or int(sample_rate) <= 0:
        raise ValueError(f"{name}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return check_rate(sample_rate, f"{name}: sample_rate")  # a sane range: 1 Hz would make 16,000 samples of each


#: Samples handed to the framer at a time (its windows come back as a list: 4096 samples are a few windows).
_PIECE = 4096

#: A track whose RMS (DC removed) is below this is silent (:func:`speechanim.audio.check_audible`'s threshold).
SILENCE_RMS = 1e-4


class _Level:
    """A track's length, mean, extremes and RMS, gathered a chunk at a time: what its silence check
    and peak normalisation need, without holding it whole."""

    def __init__(self):
        self.n, self.total, self.squares, self.low, self.high = 0, 0.0, 0.0, np.inf, -np.inf

    @classmethod
    def of(cls, chunks: Iterable[np.ndarray], name: str) -> "_Level":
        level = cls()
        for chunk in chunks:
            wide = np.asarray(chunk, np.float64)
            if not np.isfinite(wide).all():
                raise ValueError(f"{name}: audio has NaN or infinite samples")
            if wide.size:
                level.n += wide.size
                level.total += float(wide.sum())
                level.squares += float(np.dot(wide, wide))
                level.low, level.high = min(level.low, float(chunk.min())), max(level.high, float(chunk.max()))
        return level

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def rms(self) -> float:
        """RMS after removing the DC offset."""
        return math.sqrt(max(0.0, self.squares / self.n - self.mean ** 2)) if self.n else 0.0

    def scaling(self, gain: float | None, mode: str):
        """The function applied to each float32 chunk: ``gain``; else peak normalisation (DC removed,
        peak 1, as :func:`speechanim.audio.normalise` computes it in float32) or full scale."""
        if gain is not None:
            return lambda c: np.asarray(c, np.float32) * np.float32(gain)
        if mode != "peak":
            return lambda c: np.asarray(c, np.float32)
        mean = np.float32(self.mean)
        peak = max(np.float32(self.high) - mean, mean - np.float32(self.low))  # max |x - mean|, float32 rounding
        return lambda c: (np.asarray(c, np.float32) - mean) / peak


def _progress(chunks: Iterator[np.ndarray], n_frames: int, chunk_frames: int,
              progress: bool | None) -> Iterator[np.ndarray]:
    """``chunks`` with a bar over frames on stderr; None shows it when the clip is longer than one chunk."""
    show = n_frames > chunk_frames if progress is None else progress
    with tqdm(total=n_frames, unit="frame", desc="animate", disable=not show) as bar:
        for frames in chunks:
            yield frames
            bar.update(len(frames))


def _input_settings(payload: dict, cfg, fps: float, path: Path) -> tuple[str, int, str, tuple | None]:
    """How a checkpoint wants its inputs: audio scaling, window stride, frame-count rule, alignment target."""
    scaling = payload.get("audio_scaling", "peak")
    if scaling not in ("peak", "full_scale"):
        raise CheckpointError(f"{path}: audio_scaling must be 'peak' or 'full_scale', got {scaling!r}")
    stride = payload.get("audio_stride")
    if stride is None:
        try:
            stride, rule = samples_per_frame(cfg.sample_rate, fps), "ceil"
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
    elif isinstance(stride, int) and not isinstance(stride, bool) and 0 < stride <= cfg.window:
        rule = "floor"  # the authors' frame count (sda/sda.py _cut_sequence_)
    else:
        raise CheckpointError(f"{path}: audio_stride must be a whole number of samples up to the window, got {stride!r}")
    stable = None
    if payload.get("alignment") is not None:
        try:
            stable = tuple(tuple(float(v) for v in p) for p in payload["alignment"]["stable_points"])
            AlignConfig(size=tuple(cfg.image_size), stable_target=stable)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: its alignment is not five (x, y) stable points ({e})") from None
    return scaling, int(stride), rule, stable


def animate_file(image_path: PathLike, audio_path: PathLike, checkpoint: PathLike | Animator, out_path: PathLike,
                 *, device: str | torch.device | None = None, seed: int = 0, progress: bool | None = None,
                 trust_checkpoint: bool = False) -> Path:
    """Animate a photo file with an audio file; write an mp4 (H.264 + AAC) with the recording's audio.

    The generator hears the audio resampled and normalised; the video carries the recording at its
    own rate and loudness, mixed down to mono (a stereo recording comes back mono).  ``out_path``
    must end in .mp4 (or .m4v).  Memory does not grow with the recording (:meth:`Animator.frames`,
    :class:`speechanim.stream.Mp4Writer`).  ``checkpoint`` may be a ready :class:`Animator`.  Returns ``out_path``.
    """
    out_path = Path(out_path)
    check_outputs_apart({"the image": image_path, "the audio": audio_path}, {"the video": out_path})
    if out_path.suffix.lower() not in SUFFIXES["h264"]:
        raise MediaError(f"{out_path}: the video is written as mp4; name it .mp4 (got {out_path.suffix or 'no extension'})")
    if out_path.is_dir():
        raise MediaError(f"{out_path}: is a directory; name the video file to write")
    animator = checkpoint if isinstance(checkpoint, Animator) else Animator(checkpoint, device,
                                                                            trust_checkpoint=trust_checkpoint)
    n_frames, chunks = animator._pass(image_path, audio_path, None, seed, CHUNK_FRAMES, None)
    # each chunk of frames goes to the encoder as it is made; the sound is muxed in from the file itself
    with Mp4Writer(out_path, animator.image_size, animator.fps, audio_file=audio_path) as writer:
        for frames in _progress(chunks, n_frames, CHUNK_FRAMES, progress):
            writer.write(frames)
        return writer.close()

