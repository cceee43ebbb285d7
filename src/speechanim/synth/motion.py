"""Speech-independent facial motion for the synthetic corpus: blinks, brows, gaze, head pose, light.

The paper's temporal GAN is meant to produce "natural facial expressions such as blinks and eyebrow
movements" that the audio does not determine (paper, abstract and section 1; Fig. 7 shows frowns and
blinks).  For the embedded corpus to contain something of that kind to learn, every clip gets, on top
of the mouth that follows the speech (:mod:`speechanim.synth.visemes`), random tracks that have
nothing to do with the speech:

* **blinks** -- a Poisson process, 0.2-0.5 blinks per second per speaker, each 100-300 ms long: the
  upper lid closes fast, stays shut for at least one video frame (so every blink has a fully closed
  frame whatever its phase against the frame clock), and opens more slowly;
* **brow raises and frowns** -- occasional smooth events (raises ~0.1-0.3 per second, 0.4-1.2 s long;
  frowns rarer);
* **gaze** -- fixations of 0.3-1.5 s joined by one-frame saccades, mostly at the camera;
* **head pose** -- small translation, roll, yaw, pitch and scale: low-pass filtered Gaussian noise
  (a few pixels, 1-3 degrees, 1-2 %), like a seated speaker's sway;
* **lighting** -- a slow drift of the overall gain (2-4 %) and of the key light's direction.

A speaker's habits (:class:`MotionStyle`: rates and amplitudes) are drawn once per speaker
(:func:`random_style`); :func:`motion_tracks` draws one clip's tracks from them.  Tracks are float32
arrays with one value per video frame, sampled at frame centres ``(k + 0.5) / fps`` like
:func:`speechanim.synth.visemes.mouth_track`, named like the fields of
:class:`speechanim.synth.face.FaceState`.  Pure numpy + scipy; deterministic given the generator.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

#: The FaceState fields that :func:`motion_tracks` fills (the mouth's come from visemes.mouth_track).
MOTION_FIELDS = ("tx", "ty", "roll", "yaw", "pitch", "scale", "eye_open", "brow_raise", "brow_frown",
                 "gaze_x", "gaze_y", "light_gain", "light_turn")


@dataclass(frozen=True)
class MotionStyle:
    """A speaker's motion habits; every clip of the speaker draws its tracks from these."""

    blink_rate_hz: float = 0.3  # blinks per second (brief: ~0.2-0.5)
    blink_min_s: float = 0.1  # blink durations, uniform (brief: 100-300 ms)
    blink_max_s: float = 0.3
    blink_refractory_s: float = 0.4  # no blink starts within this long after the previous one ends
    brow_rate_hz: float = 0.2  # brow raises per second
    brow_amplitude: float = 0.7  # the largest raise (0-1)
    frown_rate_hz: float = 0.06  # frowns per second
    frown_amplitude: float = 0.6
    gaze_spread: float = 0.25  # s.d. of the fixation targets (-1..1 scale of FaceState.gaze_*)
    translation_px: float = 3.0  # s.d. of the head's translation (pixels of the 360x288 frame)
    roll_deg: float = 1.5  # s.d. of the head's roll, yaw and pitch
    yaw_deg: float = 2.0
    pitch_deg: float = 1.5
    scale_sd: float = 0.015  # s.d. of the head's scale around 1
    head_timescale_s: float = 0.7  # how slowly the head sways (Gaussian filter's s.d.)
    light_gain_sd: float = 0.03
    light_turn_sd: float = 0.1  # radians
    light_timescale_s: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.blink_min_s <= self.blink_max_s:
            raise ValueError(f"blink durations must satisfy 0 < min <= max, got {self.blink_min_s}, {self.blink_max_s}")
        for name in ("blink_rate_hz", "brow_rate_hz", "frown_rate_hz", "translation_px", "roll_deg", "yaw_deg",
                     "pitch_deg", "scale_sd", "light_gain_sd", "light_turn_sd", "gaze_spread", "blink_refractory_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"MotionStyle.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("head_timescale_s", "light_timescale_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MotionStyle.{name} must be > 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


def random_style(rng: np.random.Generator) -> MotionStyle:
    """A speaker's habits: rates and amplitudes drawn from the ranges in the module's docstring."""
    u = rng.uniform
    return MotionStyle(
        blink_rate_hz=u(0.2, 0.5),
        brow_rate_hz=u(0.1, 0.3),
        brow_amplitude=u(0.5, 1.0),
        frown_rate_hz=u(0.02, 0.1),
        frown_amplitude=u(0.3, 0.8),
        gaze_spread=u(0.1, 0.35),
        translation_px=u(1.5, 4.0),
        roll_deg=u(0.8, 2.5),
        yaw_deg=u(1.0, 3.0),
        pitch_deg=u(0.8, 2.0),
        scale_sd=u(0.008, 0.02),
        head_timescale_s=u(0.5, 1.0),
        light_gain_sd=u(0.02, 0.04),
        light_turn_sd=u(0.05, 0.15),
        light_timescale_s=u(1.0, 2.5),
    )


@dataclass
class Motion:
    """One clip's speech-independent tracks and the events behind them (times in seconds)."""

    tracks: dict[str, np.ndarray]
    blinks: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each blink
    brow_raises: list[tuple[float, float]] = field(default_factory=list)
    frowns: list[tuple[float, float]] = field(default_factory=list)


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Centres of video frames: ``(k + 0.5) / fps`` seconds."""
    return (np.arange(n_frames) + 0.5) / fps


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def poisson_events(rng: np.random.Generator, rate_hz: float, duration_s: float, lengths: tuple[float, float],
                   gap_s: float = 0.0) -> list[tuple[float, float]]:
    """Events of a Poisson process over ``[0, duration_s)``, each ``uniform(*lengths)`` long.

    The process starts before the clip (at minus the longest length), so an event may already be
    under way at time 0, as in a clip cut from a longer recording; an event starts at least
    ``gap_s`` after the previous one ends.
    """
    events: list[tuple[float, float]] = []
    if rate_hz <= 0:
        return events
    t = -lengths[1] + rng.exponential(1.0 / rate_hz)
    while t < duration_s:
        length = rng.uniform(*lengths)
        if t + length > 0:
            events.append((float(t), float(t + length)))
        t += length + gap_s + rng.exponential(1.0 / rate_hz)
    return events


def blink_closure(times: np.ndarray, start: float, end: float, fps: float) -> np.ndarray:
    """How shut the eyes are (0 open .. 1 shut) during one blink, at ``times``.

    The lid closes over 35 % of the blink's moving time and opens over 65 % (closing is the faster
    phase); in between it stays shut for ``max(20 % of the blink, one frame)``, at most 60 %, so that
    a frame centre always falls on the fully shut lid.
    """
    length = end - start
    hold = min(max(0.2 * length, 1.0 / fps), 0.6 * length)
    closing = 0.35 * (length - hold)
    opening = length - hold - closing
    t = times - start
    down = _smoothstep(t / closing) if closing > 0 else (t >= 0).astype(np.float64)
    up = 1.0 - _smoothstep((t - closing - hold) / opening) if opening > 0 else (t < length).astype(np.float64)
    out = np.minimum(down, up)
    out[(t < 0) | (t > length)] = 0.0
    return out


def _bump(times: np.ndarray, start: float, end: float, ramp: float = 0.3) -> np.ndarray:
    """1 in the middle of ``[start, end]``, smooth ramps over the first and last ``ramp`` of it."""
    length = end - start
    r = max(ramp * length, 1e-6)
    return np.minimum(_smoothstep((times - start) / r), _smoothstep((end - times) / r))


def smooth_noise(rng: np.random.Generator, n_frames: int, fps: float, sd: float, timescale_s: float) -> np.ndarray:
    """Low-pass Gaussian noise with standard deviation ``sd``: white noise through a Gaussian filter.

    The filter's standard deviation is ``timescale_s`` (in frames: ``timescale_s * fps``); the noise is
    drawn over a margin of three filter widths on both sides so the clip's ends are not special, and
    scaled by the filter's theoretical gain (not the sample's s.d.), so amplitudes vary from clip to clip.
    """
    sigma = max(timescale_s * fps, 1e-3)
    margin = int(np.ceil(3 * sigma))
    white = rng.standard_normal(n_frames + 2 * margin)
    filtered = gaussian_filter1d(white, sigma, mode="constant")[margin:margin + n_frames]
    gain = 1.0 / np.sqrt(2.0 * sigma * np.sqrt(np.pi))  # s.d. of unit white noise after the filter
    return (sd / gain) * filtered


def gaze_track(rng: np.random.Generator, n_frames: int, fps: float, spread: float,
               fixation_s: tuple[float, float] = (0.3, 1.5)) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical gaze: fixations joined by saccades one frame long."""
    t = frame_times(n_frames, fps)
    gx, gy = np.zeros(n_frames), np.zeros(n_frames)
    start = -rng.uniform(*fixation_s)
    prev = None
    while start < t[-1] + 1.0 / fps:
        end = start + rng.uniform(*fixation_s)
        target = np.clip(rng.normal(0.0, spread, 2), -1.0, 1.0)
        inside = (t >= start) & (t < end)
        gx[inside], gy[inside] = target
        if prev is not None:  # the first frame of a fixation is halfway through the saccade
            first = np.flatnonzero(inside)
            if first.size:
                gx[first[0]], gy[first[0]] = 0.5 * (prev + target)
        prev, start = target, end
    return gx, gy


def motion_tracks(rng: np.random.Generator, style: MotionStyle, n_frames: int, fps: float = 25.0) -> Motion:
    """One clip's speech-independent tracks (see the module's docstring), ``n_frames`` at ``fps``."""
    if n_frames <= 0 or fps <= 0:
        raise ValueError(f"n_frames and fps must be positive, got {n_frames} and {fps}")
    t = frame_times(n_frames, fps)
    duration = n_frames / fps

    blinks = poisson_events(rng, style.blink_rate_hz, duration, (style.blink_min_s, style.blink_max_s),
                            style.blink_refractory_s)
    closure = np.zeros(n_frames)
    for start, end in blinks:
        closure = np.maximum(closure, blink_closure(t, start, end, fps))

    raises = poisson_events(rng, style.brow_rate_hz, duration, (0.4, 1.2), 0.2)
    brow = np.zeros(n_frames)
    for start, end in raises:
        brow = np.maximum(brow, style.brow_amplitude * rng.uniform(0.5, 1.0) * _bump(t, start, end))
    frowns = poisson_events(rng, style.frown_rate_hz, duration, (0.6, 1.5), 0.3)
    frown = np.zeros(n_frames)
    for start, end in frowns:
        frown = np.maximum(frown, style.frown_amplitude * rng.uniform(0.5, 1.0) * _bump(t, start, end))

    gaze_x, gaze_y = gaze_track(rng, n_frames, fps, style.gaze_spread)
    head = style.head_timescale_s
    light = style.light_timescale_s
    tracks = {
        "tx": smooth_noise(rng, n_frames, fps, style.translation_px, head),
        "ty": smooth_noise(rng, n_frames, fps, 0.7 * style.translation_px, head),
        "roll": smooth_noise(rng, n_frames, fps, style.roll_deg, head),
        "yaw": smooth_noise(rng, n_frames, fps, style.yaw_deg, head),
        "pitch": smooth_noise(rng, n_frames, fps, style.pitch_deg, head),
        "scale": 1.0 + smooth_noise(rng, n_frames, fps, style.scale_sd, 2.0 * head),
        "eye_open": 1.0 - closure,
        "brow_raise": brow,
        "brow_frown": frown,
        "gaze_x": gaze_x,
        "gaze_y": gaze_y,
        "light_gain": 1.0 + smooth_noise(rng, n_frames, fps, style.light_gain_sd, light),
        "light_turn": smooth_noise(rng, n_frames, fps, style.light_turn_sd, light),
    }
    tracks = {k: v.astype(np.float32) for k, v in tracks.items()}
    return Motion(tracks, blinks, raises, frowns)
