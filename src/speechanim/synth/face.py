"""A procedural cartoon face for the synthetic GRID corpus: random identities, drawn frame by frame.

The embedded corpus (:mod:`speechanim.synth.corpus`) needs talking faces that the rest of the
pipeline treats like GRID's: mediapipe's FaceMesh must find them (its landmarks drive the face
alignment of paper section 4.1) and its inner-lip points 13 and 14 must follow the mouth.  So the
face is drawn with what a face detector looks for: an oval head with ears, hair, brows, almond eyes
with irises, pupils, lash lines and catch-lights, a nose with nostrils, and a mouth with outlined
lips, a dark inner mouth, teeth and tongue (measured: a flat cartoon mouth without an outline makes
the 13-14 gap under-read, see ../shared/notes/measured-facts.md).

Two kinds of parameters
-----------------------
* :class:`FaceIdentity` -- who is speaking: head shape, skin tone, eye/brow/nose/mouth shapes and
  sizes, hair style and colour, clothes, background, the key light.  Fixed for a speaker;
  :func:`random_identity` draws one from a :class:`numpy.random.Generator`.
* :class:`FaceState` -- one video frame: head pose (translation, roll, small yaw and pitch, scale),
  the four mouth parameters of :mod:`speechanim.synth.visemes` (``jaw_open``, ``lip_width``,
  ``lip_round``, ``lip_tuck``), eyelids, brows, gaze and lighting.  :mod:`speechanim.synth.motion`
  makes the speech-independent tracks; the corpus stores every field for every frame.

Geometry
--------
Shapes are polygons in *face coordinates*: pixels of a face at scale 1 (sized like a GRID face in a
360x288 frame: eye centres ~50 px apart, eyes to chin ~95 px), origin midway between the eye centres,
``v`` pointing down.  A pose maps them to the image: a pseudo-3D yaw and pitch move each point by
``sin(angle) * depth`` (the nose, with the largest depth, moves most; the outline, a silhouette, not
at all), then scale, roll and translation.  Polygons are filled with OpenCV's anti-aliased
rasteriser at 1/16 pixel precision, so motion below one pixel is still visible.  Frames are RGB
``uint8`` ``(H, W, 3)``; the geometry is laid out for 360x288 and scaled uniformly (and centred) for
other sizes.  :func:`keypoints` gives the image positions of the main points of the drawn face
(ground truth for checking a landmark detector).  Pure numpy + OpenCV; about 1.5 ms a frame.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import cv2
import numpy as np

#: The frame the geometry is laid out for (GRID's "normal quality" video), width x height.
BASE_WIDTH, BASE_HEIGHT = 360, 288

_SHIFT = 4  # OpenCV fixed-point bits: coordinates at 1/16 pixel
_ONE = 1 << _SHIFT

RGB = tuple[int, int, int]


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceIdentity:
    """Everything about a speaker's face that stays fixed over their clips.

    Lengths are in face pixels (scale 1, see the module's docstring); colours are RGB 0-255.
    """

    # placement of the face origin (midway between the eyes) in the 360x288 frame, and overall size
    centre_x: float = 178.0
    centre_y: float = 152.0
    size: float = 1.0
    # head: an egg-shaped oval, widest at v = face_cy, from face_top (skull) to chin
    face_half_width: float = 58.0
    face_top: float = -76.0
    face_cy: float = 4.0
    chin: float = 94.0
    jaw_narrowing: float = 0.25  # how much narrower the jaw is than the cheeks (0-0.4)
    skin: RGB = (224, 180, 150)
    # eyes: centres at (+-eye_dx, 0)
    eye_dx: float = 25.0
    eye_half_width: float = 11.0
    eye_half_height: float = 5.5
    eye_tilt: float = 0.0  # outer corner higher (+) or lower (-), pixels
    iris_radius: float = 5.2
    iris: RGB = (90, 60, 40)
    # brows
    brow_gap: float = 11.0  # from the eye centre up to the brow's lower edge
    brow_thickness: float = 4.0
    brow_arch: float = 3.0
    brow_length: float = 1.15  # relative to the eye width
    brow_colour: RGB = (60, 40, 30)
    # nose: tip at (0, nose_v)
    nose_v: float = 35.0
    nose_half_width: float = 11.0
    # mouth: centre (lips together) at (0, mouth_v)
    mouth_v: float = 60.0
    mouth_half_width: float = 19.0
    upper_lip: float = 5.0  # thickness at the centre
    lower_lip: float = 7.5
    lip_colour: RGB = (190, 110, 105)
    max_gap: float = 20.0  # inner-lip opening at jaw_open = 1
    # hair: 0 short crop, 1 long, 2 buzz cut, 3 curly
    hair_style: int = 0
    hair: RGB = (60, 40, 25)
    hairline: float = -46.0  # v of the fringe's lower edge at the centre
    hair_volume: float = 1.0
    parting: float = 0.3  # -1 .. 1, where the parting/fringe peak lies
    ear_size: float = 1.0
    # clothes and background
    clothes: RGB = (60, 80, 140)
    background_top: RGB = (40, 150, 200)
    background_bottom: RGB = (30, 110, 170)
    # key light: direction in the image plane (radians, 0 = from the right) and strength of the fall-off
    light_angle: float = 2.4
    light_strength: float = 0.12

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FaceIdentity:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"FaceIdentity has no field(s) {', '.join(unknown)}")
        return cls(**{k: tuple(int(c) for c in v) if isinstance(v, (list, tuple)) else v for k, v in values.items()})


@dataclass(frozen=True)
class FaceState:
    """One frame's parameters; the defaults are a neutral, still, frontal face with the mouth closed."""

    # head pose: image translation (px at 360x288), roll (deg, clockwise on screen), yaw and pitch
    # (deg, pseudo-3D), scale (1 = the identity's size)
    tx: float = 0.0
    ty: float = 0.0
    roll: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    scale: float = 1.0
    # mouth, as speechanim.synth.visemes makes them
    jaw_open: float = 0.0  # 0 lips together .. 1 widest
    lip_width: float = 0.0  # -1 narrow .. +1 spread
    lip_round: float = 0.0  # 0 .. 1 rounded and protruded
    lip_tuck: float = 0.0  # 0 .. 1 lower lip under the upper teeth
    # eyes and brows
    eye_open: float = 1.0  # 1 open .. 0 closed (blink)
    brow_raise: float = 0.0  # 0 .. 1
    brow_frown: float = 0.0  # 0 .. 1 (inner ends down and together)
    gaze_x: float = 0.0  # -1 .. 1 (image left .. right)
    gaze_y: float = 0.0  # -1 .. 1 (up .. down)
    # lighting: overall gain and the key light's direction relative to the identity's
    light_gain: float = 1.0
    light_turn: float = 0.0  # radians

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def states_from_arrays(tracks: dict[str, np.ndarray], n_frames: int | None = None) -> list[FaceState]:
    """One :class:`FaceState` per frame from per-frame arrays named like its fields (missing = default)."""
    names = FaceState.names()
    unknown = sorted(set(tracks) - set(names))
    if unknown:
        raise ValueError(f"FaceState has no field(s) {', '.join(unknown)}")
    lengths = {len(np.asarray(v)) for v in tracks.values()}
    if n_frames is None:
        if len(lengths) != 1:
            raise ValueError(f"tracks have different lengths {sorted(lengths)}")
        n_frames = lengths.pop()
    elif lengths - {n_frames}:
        raise ValueError(f"tracks must have {n_frames} frames, got lengths {sorted(lengths)}")
    columns = {k: np.asarray(v, np.float64) for k, v in tracks.items()}
    return [FaceState(**{k: float(v[i]) for k, v in columns.items()}) for i in range(n_frames)]


def states_to_arrays(states: list[FaceState]) -> dict[str, np.ndarray]:
    """The inverse of :func:`states_from_arrays`: one float32 array per field."""
    return {name: np.array([getattr(s, name) for s in states], np.float32) for name in FaceState.names()}


# --------------------------------------------------------------------------------------------------
# Random identities
# --------------------------------------------------------------------------------------------------

# Skin tones from light to dark (RGB), hair and iris colours, clothes, backdrops (GRID's is a blue
# studio backdrop; the others are plain studio colours).
_SKIN_TONES: tuple[RGB, ...] = ((246, 214, 190), (236, 196, 168), (226, 182, 148), (214, 162, 128),
                                (196, 142, 104), (170, 118, 84), (141, 93, 64), (110, 72, 50))
_HAIR: tuple[RGB, ...] = ((25, 20, 18), (55, 38, 28), (92, 62, 40), (130, 84, 48), (150, 70, 40),
                          (200, 165, 105), (225, 200, 150), (150, 148, 145))
_IRIS: tuple[RGB, ...] = ((70, 45, 30), (110, 75, 45), (60, 100, 150), (80, 120, 90), (120, 110, 70), (90, 110, 130))
_BACKDROPS: tuple[RGB, ...] = ((40, 150, 205), (50, 120, 190), (40, 140, 160), (90, 150, 180), (150, 160, 170),
                               (120, 170, 150), (190, 185, 170), (95, 105, 140))


def _jitter(rng: np.random.Generator, colour: RGB, amount: float) -> RGB:
    c = np.asarray(colour, np.float64) * (1.0 + rng.uniform(-amount, amount)) + rng.normal(0.0, 4.0, 3)
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))


def random_identity(rng: np.random.Generator) -> FaceIdentity:
    """A random face: every shape, size and colour drawn from ``rng`` (the same draws, the same face)."""
    u = rng.uniform
    skin = _jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 0.05)
    dark_skin = float(np.mean(skin)) < 130
    hair = _jitter(rng, _HAIR[rng.integers(len(_HAIR))], 0.08)
    lip_base = _mix(skin, (170, 60, 70), u(0.3, 0.5))
    if dark_skin:
        lip_base = _mix(skin, (90, 40, 45), 0.35)
    backdrop = _jitter(rng, _BACKDROPS[rng.integers(len(_BACKDROPS))], 0.08)
    eye_half_width = u(10.0, 12.5)
    return FaceIdentity(
        centre_x=u(165.0, 195.0),
        centre_y=u(145.0, 160.0),
        size=u(0.92, 1.08),
        face_half_width=u(54.0, 62.0),
        face_top=u(-80.0, -72.0),
        face_cy=u(0.0, 10.0),
        chin=u(88.0, 100.0),
        jaw_narrowing=u(0.12, 0.35),
        skin=skin,
        eye_dx=u(23.5, 27.5),
        eye_half_width=eye_half_width,
        eye_half_height=u(4.6, 6.4),
        eye_tilt=u(-1.5, 1.5),
        iris_radius=eye_half_width * u(0.44, 0.52),
        iris=_jitter(rng, _IRIS[rng.integers(len(_IRIS))], 0.1),
        brow_gap=u(9.0, 13.0),
        brow_thickness=u(3.0, 5.5),
        brow_arch=u(1.5, 5.0),
        brow_length=u(1.05, 1.3),
        brow_colour=_mix(hair, (30, 25, 20), u(0.2, 0.6)),
        nose_v=u(32.0, 38.0),
        nose_half_width=u(9.0, 13.0),
        mouth_v=u(57.0, 63.0),
        mouth_half_width=u(17.0, 22.0),
        upper_lip=u(4.0, 6.5),
        lower_lip=u(6.0, 9.0),
        lip_colour=_jitter(rng, lip_base, 0.05),
        max_gap=u(18.0, 22.0),
        hair_style=int(rng.integers(4)),
        hair=hair,
        hairline=u(-52.0, -40.0),
        hair_volume=u(0.8, 1.2),
        parting=u(-1.0, 1.0),
        ear_size=u(0.9, 1.1),
        clothes=tuple(int(c) for c in rng.integers(30, 220, 3)),
        background_top=_mix(backdrop, (255, 255, 255), u(0.0, 0.15)),
        background_bottom=_mix(backdrop, (0, 0, 0), u(0.1, 0.3)),
        light_angle=u(0.0, 2 * math.pi),
        light_strength=u(0.06, 0.16),
    )


# --------------------------------------------------------------------------------------------------
# Pose: face coordinates -> image
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pose:
    """Face coordinates ``(u, v)`` with a depth -> image pixels ``(x, y)``."""

    centre: np.ndarray  # image position of the face origin
    matrix: np.ndarray  # 2x2: scale * rotation
    yaw: float  # sin(yaw): image shift per unit of depth
    pitch: float  # sin(pitch)
    scale: float  # face pixels -> image pixels

    def __call__(self, points: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
        p = np.asarray(points, np.float64).reshape(-1, 2)
        d = np.asarray(depth, np.float64)
        shifted = np.stack([p[:, 0] + self.yaw * d, p[:, 1] + self.pitch * d], axis=-1).reshape(-1, 2)
        return shifted @ self.matrix.T + self.centre


def _frame_transform(height: int, width: int) -> tuple[float, np.ndarray]:
    """Uniform scale and offset from the 360x288 layout to a ``width`` x ``height`` frame."""
    k = min(width / BASE_WIDTH, height / BASE_HEIGHT)
    offset = np.array([(width - k * BASE_WIDTH) / 2, (height - k * BASE_HEIGHT) / 2])
    return k, offset


def _poses(identity: FaceIdentity, state: FaceState, height: int, width: int) -> tuple[_Pose, _Pose]:
    """The head's pose, and the body's (it follows the head's translation, damped, but not its rotation)."""
    k, offset = _frame_transform(height, width)
    s = k * identity.size * state.scale
    a = math.radians(state.roll)
    matrix = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    origin = np.array([identity.centre_x, identity.centre_y])
    shift = np.array([state.tx, state.ty])
    head = _Pose(offset + k * (origin + shift), matrix, math.sin(math.radians(state.yaw)),
                 math.sin(math.radians(state.pitch)), s)
    body = _Pose(offset + k * (origin + 0.7 * shift), k * identity.size * np.eye(2), 0.0, 0.0, k * identity.size)
    return head, body


# Depths (face pixels towards the camera) for the pseudo-3D yaw and pitch.
_DEPTH = dict(ear=-25.0, hair=-5.0, brow=22.0, eye=18.0, nose=45.0, mouth=28.0, chin=12.0)


# --------------------------------------------------------------------------------------------------
# Shapes in face coordinates
# --------------------------------------------------------------------------------------------------


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 48, a0: float = 0.0,
             a1: float = 2 * math.pi) -> np.ndarray:
    t = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-9)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


_UNIT_CIRCLE = {n: _ellipse(0.0, 0.0, 1.0, 1.0, n) for n in (10, 16, 20, 24, 28)}


def _circle(cx: float, cy: float, rx: float, ry: float, n: int) -> np.ndarray:
    return _UNIT_CIRCLE[n] * (rx, ry) + (cx, cy)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(round(c * factor), 0, 255)) for c in colour)


def _clamp_between(points: np.ndarray, xs: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Clip a shape to the region between two curves over ``xs`` (each point moved vertically inside)."""
    x = np.clip(points[:, 0], xs[0], xs[-1])
    return np.stack([x, np.clip(points[:, 1], np.interp(x, xs, top), np.interp(x, xs, bottom))], axis=1)


_OUTLINE_T = np.linspace(-math.pi / 2, 3 * math.pi / 2, 72, endpoint=False)  # from the top, clockwise on screen


@lru_cache(maxsize=64)
def _outline_base(idt: FaceIdentity) -> tuple[np.ndarray, np.ndarray]:
    """The face oval (skull to chin) and how much each of its points follows the jaw."""
    s, c = np.sin(_OUTLINE_T), np.cos(_OUTLINE_T)
    lower = s > 0
    ry = np.where(lower, idt.chin - idt.face_cy, idt.face_cy - idt.face_top)
    # the lower half narrows towards the chin, which is a little squarer than an ellipse's
    width = idt.face_half_width * np.where(lower, 1.0 - idt.jaw_narrowing * s ** 2, 1.0 - 0.08 * s ** 2)
    u = width * np.sign(c) * np.abs(c) ** np.where(lower, 0.9, 1.0)
    v = idt.face_cy + ry * s
    follow = _smoothstep((v - idt.nose_v) / (idt.chin - idt.nose_v))
    return np.stack([u, v], axis=1), follow


def _head_outline(idt: FaceIdentity, jaw_drop: float) -> tuple[np.ndarray, np.ndarray]:
    """The face oval with the jaw lowered by ``jaw_drop`` pixels, and each point's depth."""
    base, follow = _outline_base(idt)
    outline = base + np.stack([np.zeros_like(follow), jaw_drop * follow], axis=1)
    depth = _DEPTH["chin"] * _smoothstep((outline[:, 1] - idt.nose_v) / 40.0)
    return outline, depth


_LIP_T = np.sin(np.linspace(-math.pi / 2, math.pi / 2, 25))  # denser towards the corners


def _mouth(idt: FaceIdentity, st: FaceState) -> dict[str, np.ndarray | float]:
    """Lip contours (face coordinates, left to right) for the mouth parameters, and the inner-lip gap."""
    jaw = min(max(st.jaw_open, 0.0), 1.0)
    width = min(max(st.lip_width, -1.0), 1.0)
    rnd = min(max(st.lip_round, 0.0), 1.0)
    tuck = min(max(st.lip_tuck, 0.0), 1.0)
    hw = idt.mouth_half_width * (1.0 + 0.16 * width - 0.28 * rnd)
    gap = idt.max_gap * jaw * (1.0 - 0.6 * tuck)
    hw_in = hw * (1.0 - 0.35 * rnd)  # rounded lips make a round opening
    my = idt.mouth_v
    up_t = idt.upper_lip * (1.0 + 0.3 * rnd)
    lo_t = idt.lower_lip * (1.0 + 0.2 * rnd) * (1.0 - 0.45 * tuck)

    xs, xi = hw * _LIP_T, hw_in * _LIP_T
    e_in = (1.0 - _LIP_T ** 2).clip(0) ** (0.75 - 0.25 * rnd)
    # the upper lip lifts a little, the lower lip (riding on the jaw) carries most of the opening
    up_open, lo_open = 0.25 * gap * e_in, 0.75 * gap * e_in
    upper_inner = np.stack([xi, my - up_open - 0.6 * tuck], axis=1)
    lower_inner = np.stack([xi, my + lo_open - 1.5 * tuck], axis=1)
    # outer contours; outside the opening the lips meet on the closed line
    gx = np.interp(xs, xi, up_open, left=0.0, right=0.0)
    lx = np.interp(xs, xi, lo_open, left=0.0, right=0.0)
    prof = (1.0 - _LIP_T ** 2).clip(0) ** 0.55
    bow = 1.0 - 0.3 * np.exp(-(_LIP_T / 0.16) ** 2)  # the cupid's bow dips at the centre
    corner_lift = 0.8 * width * _LIP_T ** 4  # a spread mouth lifts its corners a little
    upper_outer = np.stack([xs, my - gx - up_t * prof * bow - corner_lift - 0.6 * tuck], axis=1)
    lower_outer = np.stack([xs, my + lx + lo_t * prof - corner_lift - 1.5 * tuck], axis=1)
    return dict(upper_outer=upper_outer, lower_outer=lower_outer, upper_inner=upper_inner,
                lower_inner=lower_inner, gap=gap, hw=hw, tuck=tuck)


_EYE_T = np.linspace(-1.0, 1.0, 21)
_EYE_R = (1.0 - _EYE_T ** 2).clip(0) ** 0.8


def _eye(idt: FaceIdentity, st: FaceState, side: int) -> dict[str, np.ndarray | float]:
    """Upper and lower lid curves of one eye (side -1 image-left, +1 image-right), face coordinates."""
    ew, eh = idt.eye_half_width, idt.eye_half_height
    o = min(max(st.eye_open, 0.0), 1.0)
    # almond: the upper lid peaks towards the inner corner; the outer corner may tilt up or down
    skew = 1.0 - 0.12 * side * _EYE_T
    tilt = -0.5 * idt.eye_tilt * side * _EYE_T
    upper_open, lower_open, closed = -eh * _EYE_R * skew, 0.7 * eh * _EYE_R, 0.35 * eh * _EYE_R
    # a blink is mostly the upper lid coming down; the lower lid rises a little to meet it
    upper = (1 - o) * closed + o * upper_open + tilt
    lower = np.maximum((1 - o) * (closed + 0.15 * eh * _EYE_R) + o * lower_open + tilt, upper)
    cx = side * idt.eye_dx
    return dict(x=cx + ew * _EYE_T, upper=upper, lower=lower, cx=cx, open=o)


def _iris_centre(idt: FaceIdentity, st: FaceState, side: int) -> tuple[float, float]:
    return (side * idt.eye_dx + st.gaze_x * 0.3 * idt.eye_half_width,
            st.gaze_y * 0.25 * idt.eye_half_height + 0.5)


# --------------------------------------------------------------------------------------------------
# The draw list
# --------------------------------------------------------------------------------------------------

_HEAD, _BODY = 0, 1
_FILL, _LINE = 0, 1


class _DrawList:
    """Polygons and polylines in face coordinates, transformed together and drawn in order."""

    __slots__ = ("points", "depths", "ops")

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []
        self.depths: list[np.ndarray] = []
        self.ops: list[tuple[int, RGB, float, bool, int]] = []

    def _add(self, points: np.ndarray, depth: float | np.ndarray, op: tuple) -> None:
        points = np.asarray(points, np.float64).reshape(-1, 2)
        self.points.append(points)
        self.depths.append(np.full(len(points), depth) if np.isscalar(depth) else np.asarray(depth, np.float64))
        self.ops.append(op)

    def fill(self, points: np.ndarray, colour: RGB, depth: float | np.ndarray = 0.0, space: int = _HEAD) -> None:
        self._add(points, depth, (_FILL, colour, 0.0, True, space))

    def line(self, points: np.ndarray, colour: RGB, thickness: float, depth: float | np.ndarray = 0.0,
             closed: bool = False, space: int = _HEAD) -> None:
        """``thickness`` in face pixels (scaled with the head; never below one image pixel)."""
        self._add(points, depth, (_LINE, colour, thickness, closed, space))

    def extend(self, other: _DrawList) -> None:
        self.points += other.points
        self.depths += other.depths
        self.ops += other.ops

    def draw(self, img: np.ndarray, poses: tuple[_Pose, _Pose]) -> None:
        points = np.concatenate(self.points)
        depths = np.concatenate(self.depths)
        fixed = [np.round(pose(points, depths) * _ONE).astype(np.int32) for pose in poses]
        ends = np.cumsum([len(p) for p in self.points]).tolist()
        start = 0
        for (kind, colour, thickness, closed, space), end in zip(self.ops, ends):
            pts = fixed[space][start:end]
            start = end
            if kind == _FILL:
                cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, _SHIFT)
            else:
                px = max(1, int(round(thickness * poses[space].scale)))
                cv2.polylines(img, [pts], closed, colour, px, cv2.LINE_AA, _SHIFT)


# --------------------------------------------------------------------------------------------------
# What never changes for an identity: backdrop, body, hair, ears, eye sockets, nose
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Static:
    palette: dict[str, RGB]
    body: _DrawList
    behind: _DrawList  # long or curly hair behind the head, and the ears
    hair: _DrawList  # the cap over the skull
    sockets: dict[int, _DrawList]
    nose: _DrawList


def _palette(idt: FaceIdentity) -> dict[str, RGB]:
    skin, lip = idt.skin, idt.lip_colour
    return dict(skin=skin, skin_line=_shade(skin, 0.82), skin_shadow=_shade(skin, 0.8), socket=_shade(skin, 0.93),
                crease=_shade(skin, 0.75), lower_lid=_shade(skin, 0.6), chin_crease=_shade(skin, 0.88),
                lip=lip, upper_lip=_shade(lip, 0.88), parting=_shade(lip, 0.45), lower_lip_edge=_shade(lip, 0.6),
                lip_outline=_shade(lip, 0.72), sclera=(238, 236, 230), pupil=(18, 14, 14),
                catchlight=(250, 250, 250), lash=(35, 25, 25), inner_mouth=(55, 18, 24), tongue=(170, 70, 80),
                teeth=(236, 232, 220), lower_teeth=(222, 218, 206))


def _hair_layers(idt: FaceIdentity, behind: _DrawList, cap: _DrawList) -> None:
    hw = idt.face_half_width * 1.07 * (0.9 + 0.1 * idt.hair_volume)
    top = idt.face_top - 6.0 * idt.hair_volume
    cy, hair, style, depth = idt.face_cy, idt.hair, idt.hair_style, _DEPTH["hair"]
    if style == 1:  # long hair falls behind the face to the shoulders
        t = np.linspace(math.pi, 2 * math.pi, 40)
        dome = np.stack([hw * 1.12 * np.cos(t), cy + (cy - top) * 1.05 * np.sin(t)], axis=1)
        sides = np.array([[hw * 1.2, idt.chin + 30], [hw * 0.55, idt.chin + 40], [-hw * 0.55, idt.chin + 40],
                          [-hw * 1.2, idt.chin + 30]])
        behind.fill(np.concatenate([dome, sides]), _shade(hair, 0.8), depth)
    elif style == 3:  # curly: a bumpy mass around the head
        t = np.linspace(0, 2 * math.pi, 120, endpoint=False)
        r = 1.0 + 0.05 * np.sin(14 * t)
        shape = np.stack([hw * 1.2 * r * np.cos(t), cy - 8 + (cy - top) * 1.1 * r * np.sin(t)], axis=1)
        behind.fill(shape[shape[:, 1] < idt.nose_v], _shade(hair, 0.85), depth)
    # the cap over the skull, down to the temples, its lower edge the hairline
    temple_v = {0: -18.0, 1: 10.0, 2: -25.0, 3: -8.0}[style]
    a0 = math.asin(float(np.clip((temple_v - cy) / (cy - top), -1, 1)))
    t = np.linspace(math.pi - a0, 2 * math.pi + a0, 50)
    dome = np.stack([hw * np.cos(t), cy + (cy - top) * np.sin(t)], axis=1)
    inner_w = idt.face_half_width * 0.93
    xs = np.linspace(inner_w, -inner_w, 30)
    peak = idt.parting * 0.5 * inner_w
    hairline = idt.hairline - 8.0 * np.exp(-((xs - peak) / (0.35 * inner_w)) ** 2) * (style != 2)
    hairline = hairline + 22.0 * (np.abs(xs) / inner_w) ** 3  # down the temples
    fringe = np.stack([xs, np.minimum(hairline, temple_v)], axis=1)
    cap.fill(np.concatenate([dome, fringe]), _mix(hair, idt.skin, 0.35) if style == 2 else hair, depth)
    if style != 2:  # a parting line for texture
        direction = 1.0 if idt.parting >= 0 else -1.0
        cap.line(np.array([[peak, top + 4], [peak + 6 * direction, idt.hairline - 4]]), _shade(hair, 0.6), 1.5, depth)


@lru_cache(maxsize=64)
def _static(idt: FaceIdentity) -> _Static:
    pal = _palette(idt)
    # torso: neck, shoulders in clothes, a V collar
    body = _DrawList()
    neck_w = idt.face_half_width * 0.55
    body.fill(np.array([[-neck_w, 40.0], [neck_w, 40.0], [neck_w * 1.1, 160.0], [-neck_w * 1.1, 160.0]]),
              pal["skin_shadow"], space=_BODY)
    body.fill(_ellipse(0.0, idt.chin + 110.0, idt.face_half_width * 2.8, 95.0, 64), idt.clothes, space=_BODY)
    collar = np.array([[-neck_w * 1.15, idt.chin + 16.0], [0.0, idt.chin + 45.0], [neck_w * 1.15, idt.chin + 16.0]])
    body.fill(collar, pal["skin_shadow"], space=_BODY)
    body.line(collar, _shade(idt.clothes, 0.6), 2.0, space=_BODY)

    behind, cap = _DrawList(), _DrawList()
    _hair_layers(idt, behind, cap)
    for side in (-1.0, 1.0):  # ears
        ex = side * idt.face_half_width * 0.97
        behind.fill(_ellipse(ex, 8.0, 8.0 * idt.ear_size, 16.0 * idt.ear_size, 24), _shade(idt.skin, 0.9),
                    _DEPTH["ear"])
        inner = _ellipse(0.0, 8.0, 4.0 * idt.ear_size, 10.0 * idt.ear_size, 16, -math.pi / 2, math.pi / 2)
        inner[:, 0] = side * (idt.face_half_width + inner[:, 0])
        behind.line(inner, _shade(idt.skin, 0.7), 1.2, _DEPTH["ear"])

    sockets = {}
    for side in (-1, 1):  # a slightly darker socket around each eye
        sockets[side] = _DrawList()
        sockets[side].fill(_ellipse(side * idt.eye_dx, -1.0, idt.eye_half_width * 1.35, idt.eye_half_height * 1.7,
                                    32), pal["socket"], _DEPTH["eye"])

    # nose: the bridge's shadow on the side away from the light, the tip, alar wings and nostrils
    nose = _DrawList()
    nv, nw, d = idt.nose_v, idt.nose_half_width, _DEPTH["nose"]
    away = -1.0 if math.cos(idt.light_angle) > 0 else 1.0
    bridge = np.stack([away * np.linspace(3.0, 5.0, 8), np.linspace(2.0, nv - 6.0, 8)], 1)
    nose.line(bridge, _shade(idt.skin, 0.88), 2.0, np.linspace(20.0, d, 8))
    nose.fill(_ellipse(0.0, nv - 2.0, 0.42 * nw, 0.42 * nw, 24), _shade(idt.skin, 1.04), d)
    for s in (-1.0, 1.0):
        wing = _ellipse(s * 0.72 * nw, nv - 0.5, 0.34 * nw, 0.4 * nw, 16, math.pi * (0.6 if s > 0 else -0.6),
                        math.pi * (1.6 if s > 0 else 0.4))
        nose.line(wing, _shade(idt.skin, 0.78), 1.3, d - 8.0)
        nose.fill(_ellipse(s * 0.35 * nw, nv + 1.8, 0.2 * nw, 0.1 * nw + 0.8, 16), _shade(idt.skin, 0.45), d - 4.0)
    nose.line(_ellipse(0.0, nv - 1.5, 0.5 * nw, 0.45 * nw, 16, 0.15 * math.pi, 0.85 * math.pi),
              _shade(idt.skin, 0.78), 1.2, d)
    return _Static(pal, body, behind, cap, sockets, nose)


@lru_cache(maxsize=32)
def _background(identity: FaceIdentity, height: int, width: int) -> np.ndarray:
    """The backdrop: a vertical gradient with a soft vignette (static, like a studio camera's)."""
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    top = np.asarray(identity.background_top, np.float64)
    bottom = np.asarray(identity.background_bottom, np.float64)
    img = (1 - y) * top + y * bottom
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = ((xx - width / 2) / (0.75 * width)) ** 2 + ((yy - height / 2) / (0.75 * height)) ** 2
    img = img * (1.0 - 0.18 * r2)[..., None]
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=8)
def _light_grids(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical image coordinates from the centre, in half-frames (float32 images)."""
    k = max(width, height) / 2
    gx = ((np.arange(width, dtype=np.float32) - width / 2) / k)[None, :].repeat(height, 0)
    gy = ((np.arange(height, dtype=np.float32) - height / 2) / k)[:, None].repeat(width, 1)
    return gx, gy


_GAIN_ONE = 128  # the lighting gain in 1/128 steps (8-bit arithmetic; the steps vanish in the video codec)


def _apply_light(img: np.ndarray, identity: FaceIdentity, state: FaceState) -> np.ndarray:
    """Overall gain times a linear fall-off away from the key light: the scene's mild shading."""
    gx, gy = _light_grids(*img.shape[:2])
    a = identity.light_angle + state.light_turn
    g = _GAIN_ONE * min(max(state.light_gain, 0.0), 1.5)
    s = identity.light_strength * g
    gain = cv2.addWeighted(gx, s * math.cos(a), gy, s * math.sin(a), g, dtype=cv2.CV_8U)
    return cv2.multiply(img, cv2.merge([gain, gain, gain]), scale=1.0 / _GAIN_ONE)


# --------------------------------------------------------------------------------------------------
# What moves: face outline (jaw), brows, eyes, mouth
# --------------------------------------------------------------------------------------------------


_BROW_T = np.linspace(0.0, 1.0, 16)
_BROW_ARCH = np.sin(math.pi * np.clip(_BROW_T * 1.1, 0, 1))
_BROW_BUMP = np.sin(math.pi * _BROW_T)


def _brow(dl: _DrawList, idt: FaceIdentity, st: FaceState, side: int) -> None:
    length = idt.eye_half_width * idt.brow_length
    t = _BROW_T  # 0 inner end .. 1 outer end
    raise_ = min(max(st.brow_raise, 0.0), 1.0)
    frown = min(max(st.brow_frown, 0.0), 1.0)
    x = side * (idt.eye_dx - length * 0.85 + 2 * length * t - frown * 2.5 * (1 - t))
    base = -(idt.eye_half_height + idt.brow_gap) - idt.brow_arch * _BROW_ARCH
    base = base - raise_ * (5.0 + 2.5 * _BROW_BUMP) + frown * 3.5 * (1 - t) ** 2
    thick = idt.brow_thickness * (1.15 - 0.55 * t)
    shape = np.empty((2 * len(t), 2))
    shape[:len(t), 0], shape[:len(t), 1] = x, base
    shape[len(t):, 0], shape[len(t):, 1] = x[::-1], (base - thick)[::-1]
    dl.fill(shape, idt.brow_colour, _DEPTH["brow"])


def _eye_items(dl: _DrawList, idt: FaceIdentity, st: FaceState, side: int, pal: dict[str, RGB]) -> None:
    eye = _eye(idt, st, side)
    x, up, lo, o = eye["x"], eye["upper"], eye["lower"], eye["open"]
    d = _DEPTH["eye"]
    if o > 0.08:
        dl.fill(np.concatenate([np.stack([x, up], 1), np.stack([x[::-1], lo[::-1]], 1)]), pal["sclera"], d)
        ix, iy = _iris_centre(idt, st, side)
        r = idt.iris_radius
        dl.fill(_clamp_between(_circle(ix, iy, r, r, 28), x, up, lo), idt.iris, d)
        dl.fill(_clamp_between(_circle(ix, iy, 0.48 * r, 0.48 * r, 20), x, up, lo), pal["pupil"], d)
        if o > 0.5:
            dl.fill(_circle(ix + 0.35 * r, iy - 0.4 * r, 1.1, 1.1, 10), pal["catchlight"], d)
        dl.line(np.stack([x, lo], 1), pal["lower_lid"], 1.0, d)
    # the upper lid's lash line (the whole eye when it is shut) and the lid crease above it
    dl.line(np.stack([x, up], 1), pal["lash"], 2.2, d)
    dl.line(np.stack([x[3:-3], up[3:-3] - 2.5 - 0.35 * idt.eye_half_height * o], 1), pal["crease"], 1.0, d)


def _mouth_items(dl: _DrawList, idt: FaceIdentity, m: dict, pal: dict[str, RGB]) -> None:
    d = _DEPTH["mouth"]
    uo, lo, ui, li = m["upper_outer"], m["lower_outer"], m["upper_inner"], m["lower_inner"]
    lips = np.concatenate([uo, lo[::-1]])
    dl.fill(lips, pal["lip"], d)
    dl.fill(np.concatenate([uo, ui[::-1]]), pal["upper_lip"], d)  # it faces down, away from the light
    gap = m["gap"]
    xs, top, bottom = ui[:, 0], ui[:, 1], li[:, 1]
    if gap > 0.6:
        dl.fill(np.concatenate([ui, li[::-1]]), pal["inner_mouth"], d)
        # the tongue low in the mouth, the upper teeth under the upper lip, the lower ones when wide open
        tongue = _circle(0.0, bottom.max() + 0.1 * gap, 0.65 * m["hw"], 0.45 * gap, 24)
        dl.fill(_clamp_between(tongue, xs, np.maximum(0.5 * (top + bottom), top), bottom), pal["tongue"], d)
        teeth_h = min(0.38 * gap, 4.5)
        upper_teeth = np.concatenate([ui[2:-2], (ui[2:-2] + [0.0, teeth_h])[::-1]])
        dl.fill(_clamp_between(upper_teeth, xs, top, bottom), pal["teeth"], d)
        if gap > 9.0:
            lower_teeth = np.concatenate([li[5:-5] - [0.0, min(0.15 * gap, 3.0)], li[5:-5][::-1]])
            dl.fill(_clamp_between(lower_teeth, xs, top, bottom), pal["lower_teeth"], d)
    elif m["tuck"] > 0.3:  # the upper teeth's edge shows over a tucked lower lip
        dl.fill(np.concatenate([ui[6:-6], (ui[6:-6] + [0.0, 1.6])[::-1]]), pal["teeth"], d)
    # the dark line where the lips part, the lower lip's inner edge, the lips' outline, the corners
    dl.line(ui, pal["parting"], 1.4, d)
    dl.line(li, pal["lower_lip_edge"], 1.0, d)
    dl.line(lips, pal["lip_outline"], 1.0, d, closed=True)
    for end in (0, -1):
        cx, cy = uo[end]
        dl.fill(_circle(cx - 0.8 * np.sign(cx), cy, 1.3, 1.0, 10), pal["parting"], d)


def _frame_items(idt: FaceIdentity, st: FaceState) -> _DrawList:
    static = _static(idt)
    pal = static.palette
    dl = _DrawList()
    dl.extend(static.body)
    dl.extend(static.behind)
    m = _mouth(idt, st)
    outline, depth = _head_outline(idt, 0.75 * m["gap"])  # the chin follows the lower lip
    dl.fill(outline, pal["skin"], depth)
    dl.line(outline, pal["skin_line"], 1.0, depth, closed=True)
    crease = _circle(0.0, m["lower_outer"][:, 1].max() + 5.0, 0.45 * idt.mouth_half_width, 2.0, 16)[1:8]
    dl.line(crease, pal["chin_crease"], 1.5, _DEPTH["mouth"])
    dl.extend(static.hair)
    for side in (-1, 1):
        _brow(dl, idt, st, side)
        dl.extend(static.sockets[side])
        _eye_items(dl, idt, st, side, pal)
    dl.extend(static.nose)
    _mouth_items(dl, idt, m, pal)
    return dl


def render(identity: FaceIdentity, state: FaceState = FaceState(), height: int = BASE_HEIGHT,
           width: int = BASE_WIDTH) -> np.ndarray:
    """Draw one frame: RGB ``uint8`` of shape ``(height, width, 3)``; deterministic."""
    if height < 32 or width < 32:
        raise ValueError(f"frame size {width}x{height} is too small (at least 32x32)")
    img = _background(identity, height, width).copy()
    _frame_items(identity, state).draw(img, _poses(identity, state, height, width))
    return _apply_light(img, identity, state)


def render_frames(identity: FaceIdentity, states: list[FaceState], height: int = BASE_HEIGHT,
                  width: int = BASE_WIDTH) -> np.ndarray:
    """Draw a sequence: ``(T, height, width, 3)`` uint8."""
    out = np.empty((len(states), height, width, 3), np.uint8)
    for i, st in enumerate(states):
        out[i] = render(identity, st, height, width)
    return out


# --------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------

#: The points :func:`keypoints` returns, and the mediapipe FaceMesh landmark that marks the same spot.
KEYPOINTS: dict[str, int] = {
    "eye_left": 468,  # iris centre of the eye on the image's left
    "eye_right": 473,
    "nose_tip": 1,
    "mouth_left": 61,
    "mouth_right": 291,
    "lip_upper_inner": 13,
    "lip_lower_inner": 14,
    "chin": 152,
}


def keypoints(identity: FaceIdentity, state: FaceState = FaceState(), height: int = BASE_HEIGHT,
              width: int = BASE_WIDTH) -> dict[str, np.ndarray]:
    """Image positions ``(x, y)`` of the drawn face's main points (see :data:`KEYPOINTS`).

    The inner-lip points are the middle of the drawn opening's upper and lower edges, so their
    distance is the drawn inner-lip gap (times the head's scale in the image).
    """
    idt, st = identity, state
    head, _ = _poses(idt, st, height, width)
    m = _mouth(idt, st)
    mid = len(m["upper_inner"]) // 2
    names_points_depths = [
        ("eye_left", _iris_centre(idt, st, -1), _DEPTH["eye"]),
        ("eye_right", _iris_centre(idt, st, 1), _DEPTH["eye"]),
        ("nose_tip", (0.0, idt.nose_v - 2.0), _DEPTH["nose"]),
        ("mouth_left", m["upper_outer"][0], _DEPTH["mouth"]),
        ("mouth_right", m["upper_outer"][-1], _DEPTH["mouth"]),
        ("lip_upper_inner", m["upper_inner"][mid], _DEPTH["mouth"]),
        ("lip_lower_inner", m["lower_inner"][mid], _DEPTH["mouth"]),
        ("chin", (0.0, idt.chin + 0.75 * m["gap"]), _DEPTH["chin"]),
    ]
    return {name: head(np.asarray(p, np.float64), depth)[0] for name, p, depth in names_points_depths}


def lip_gap_px(identity: FaceIdentity, state: FaceState, height: int = BASE_HEIGHT, width: int = BASE_WIDTH) -> float:
    """The drawn inner-lip gap in image pixels."""
    kp = keypoints(identity, state, height, width)
    return float(np.linalg.norm(kp["lip_lower_inner"] - kp["lip_upper_inner"]))
