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
(``chunk_frames``), carrying the GRU states across chunks, so memory stays bounded for long
recordings; :meth:`Animator.stream` runs the generator frame by frame (the paper's "synthesize
videos frame-by-frame, which is necessary for real-time applications", 3.1) and gives the same frames,
also from audio still arriving in chunks (:mod:`speechanim.stream`). A checkpoint imported from the
authors' files (:mod:`speechanim.sda`) is prepared their way instead (its own mean face, full-scale
audio, their window stride and frame count).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np
import torch
from tqdm import tqdm

from .align import AlignConfig, align_image
from .audio import check_audible, frame_audio, normalise, resample, samples_per_frame, window_samples
from .checkpoint import CheckpointError, load_generator
from .generate import clip_noise, pick_device, to_uint8
from .inference import PRECISIONS, FastGenerator
from .media import SUFFIXES, MediaError, audio_rate, read_audio, write_video
from .packing import to_unit_range
from .stream import AudioFramer, iter_chunks

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
    """Read a photo file as ``(H, W, 3)`` uint8 RGB (the first frame of an animated image)."""
    import skimage.io  # imported here: only file input needs it

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        image = skimage.io.imread(path)
    except Exception as e:  # imageio raises many types for a file it cannot decode
        raise ImageError(f"{path}: not an image file that can be read") from e
    image = np.asarray(image)
    if image.ndim == 4 or (image.ndim == 3 and image.shape[-1] not in (1, 2, 3, 4)):
        image = image[0]  # an animated GIF or multi-page TIFF: its first frame
    return as_rgb_uint8(image, str(path))


def _to_mono_float(audio: np.ndarray, name: str) -> np.ndarray:
    audio = np.asarray(audio)
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float64) / float(np.iinfo(audio.dtype).max)
    elif not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"{name}: audio samples must be numbers, got dtype {audio.dtype}")
    if audio.ndim == 2:  # (samples, channels), as scipy.io.wavfile and soundfile give
        audio = audio.mean(axis=1)
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

    A checkpoint converted from the authors' files (``speechanim import-sda``) brings its own input
    preparation, followed here: the photo aligned to its ``mean_face``, the audio at full scale (not
    peak-normalised), their window stride and frame count (:mod:`speechanim.sda`).
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
        self.fps = float(payload.get("fps", FPS))  # the frame rate it was trained at (older checkpoints: 25)
        self.audio_scaling, self.audio_stride, self.frame_rule, stable = _input_settings(payload, self.cfg, self.fps,
                                                                                         self.checkpoint)
        # the alignment of the training data (or the authors' mean face), at the model's crop size
        self.align_config = AlignConfig(size=tuple(self.cfg.image_size), stable_target=stable)

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
        scaled this way, since its peak is not known in advance.
        """
        if isinstance(audio, (str, os.PathLike)):
            name = name or str(audio)
            samples = read_audio(audio, self.sample_rate)
        else:
            name = name or "audio"
            samples = resample(_to_mono_float(audio, name), _check_rate(sample_rate, name), self.sample_rate)
        check_audible(samples, source=name)
        if gain is not None:
            samples = samples * np.float32(gain)
        elif self.audio_scaling == "peak":
            samples = normalise(samples, source=name)
        stride = self.audio_stride
        n_frames = -(-len(samples) // stride) if self.frame_rule == "ceil" else len(samples) // stride
        if n_frames < 1:
            raise ValueError(f"{name}: audio shorter than one video frame ({len(samples)} samples)")
        return frame_audio(samples, n_frames, self.sample_rate, self.fps, self.cfg.audio_window_s, stride=stride,
                           trim=self.frame_rule == "ceil")

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
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
        still = self._still(image)
        audio_t = torch.from_numpy(self.prepare_audio(audio, sample_rate, gain=gain))[None].to(self.device)
        n_frames = audio_t.shape[1]
        noise = clip_noise(self.generator, n_frames, seed)[None].to(self.device)
        g = self.fast
        out = np.empty((n_frames, *self.image_size, 3), np.uint8)
        identity = g.encode_identity(still)
        state = g.init_state(1, self.device)
        show = n_frames > chunk_frames if progress is None else progress
        with tqdm(total=n_frames, unit="frame", desc="animate", disable=not show) as bar:
            for a in range(0, n_frames, chunk_frames):
                b = min(n_frames, a + chunk_frames)
                # the generator's whole-clip pass, its GRU states carried across chunks
                frames, state = g.run(identity, audio_t[:, a:b], noise[:, a:b], state)
                out[a:b] = to_uint8(frames[0]).permute(0, 2, 3, 1).cpu().numpy()
                bar.update(b - a)
        return out

    @torch.no_grad()
    def stream(self, image: np.ndarray | PathLike, audio: np.ndarray | PathLike | Iterable[np.ndarray],
               sample_rate: int | None = None, seed: int = 0, *, gain: float | None = None) -> Iterator[np.ndarray]:
        """Yield the frames one by one, ``(H, W, 3)`` uint8, stepping the generator's recurrent state.

        ``audio`` as for :meth:`__call__` (the whole recording: the same frames as ``__call__``), or
        an iterable of chunks (1-D arrays, or ``(samples, channels)``, at ``sample_rate``) that may
        still be arriving: each frame is made as soon as its window's last sample is in (80 ms after
        the frame's centre with 0.16 s windows) and the frames equal ``__call__``'s on the
        concatenated chunks with the same ``gain`` (default 1: live audio is taken at its level).
        """
        still = self._still(image)
        g = self.fast
        identity = g.encode_identity(still)
        state = g.init_state(1, self.device)
        rng = torch.Generator().manual_seed(int(seed))  # the draws of clip_noise, one frame at a time
        if isinstance(audio, (str, os.PathLike, np.ndarray)):
            windows: Iterable[np.ndarray] = self.prepare_audio(audio, sample_rate, gain=gain)
        else:
            windows = self._live_windows(audio, _check_rate(sample_rate, "audio stream"), 1.0 if gain is None else gain)
        for window in windows:
            noise = self.generator.sample_noise(1, 1, torch.device("cpu"), rng)[:, 0].to(self.device)
            audio_t = torch.from_numpy(np.ascontiguousarray(window, np.float32))[None].to(self.device)
            frame, state = g.step(identity, audio_t, state, noise)
            yield to_uint8(frame[0]).permute(1, 2, 0).cpu().numpy()

    def _live_windows(self, chunks: Iterable[np.ndarray], rate: int, gain: float) -> Iterator[np.ndarray]:
        framer = AudioFramer(rate, self.sample_rate, self.audio_stride, self.window, frames=self.frame_rule, gain=gain)
        for chunk in iter_chunks(chunks):
            yield from framer.push(_to_mono_float(chunk, "audio stream") if chunk.size else chunk)
        yield from framer.close()


def _check_rate(sample_rate, name: str) -> int:
    if sample_rate is None:
        raise ValueError(f"{name}: an audio array needs its sample_rate")
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or int(sample_rate) <= 0:
        raise ValueError(f"{name}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


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
    must end in .mp4 (or .m4v).  ``checkpoint`` may be a ready :class:`Animator`.  Returns ``out_path``.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() not in SUFFIXES["h264"]:
        raise MediaError(f"{out_path}: the video is written as mp4; name it .mp4 (got {out_path.suffix or 'no extension'})")
    if out_path.is_dir():
        raise MediaError(f"{out_path}: is a directory; name the video file to write")
    animator = checkpoint if isinstance(checkpoint, Animator) else Animator(checkpoint, device,
                                                                            trust_checkpoint=trust_checkpoint)
    frames = animator(image_path, audio_path, seed=seed, progress=progress)
    rate = audio_rate(audio_path) or animator.sample_rate
    original = read_audio(audio_path, rate)
    return write_video(out_path, frames, animator.fps, original, rate)

