"""Frame strips like the paper's Figures 4-8, from the test set and the generated videos.

    python -m speechanim.figures --h5 data/packed/<ds>/test.h5 --generated results/<ds>/generated \\
        --checkpoint results/<ds>/models/full/generator.pt --out results/figures/<ds>

writes, each as PNG:

* ``fig4_l1_vs_full.png``   real frames, the L1-only model and the full model on one test clip (Fig. 4)
* ``fig5_same_face.png``    one still animated with the audio of clips of other speakers (Fig. 5)
* ``fig6_same_audio.png``   one clip's audio on the stills of other speakers (Fig. 6)
* ``fig7_blinks.png``       of up to 48 generated clips (spread over the test set; with ``--scores``,
  the clips the full model's evaluation scored, by its blink counts), the one with the most blinks:
  frames around its first blink and the eye aspect ratio over the clip, real and generated (Fig. 7);
  when none blinks, a real blink and the full model's frames at the same moment, the title saying
  so (no figure if no real clip blinks either)
* ``fig_sync.png``          with ``--syncnet``: SyncNet's mean audio-video distance against the AV
  offset on one test clip, for the real video, the full model, the static baseline and the still
  image (a sharp minimum at 0 is lip sync; LSE-C is the depth of that minimum below the median)
* ``fig8_silence.png``      the leading silence of a clip: real, static baseline, full model (Fig. 8,
  "the baseline ... in silence": the static model has no temporal context to stay still with)

Generated videos are read from ``<generated>/<variant>.h5`` (:mod:`speechanim.generate`); figures 5
and 6 run the full model's generator on new (still, audio) pairs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .checkpoint import load_generator  # noqa: E402
from .fileio import files_in, refuse_clashing_paths  # noqa: E402
from .generate import clip_noise, generate_batch  # noqa: E402
from .models import Generator, device as default_device  # noqa: E402
from .packing import WholeClips, clip_group, clip_keys  # noqa: E402

N_COLUMNS = 8
BLINK_SCAN = 48  # generated clips searched for a blink for Fig. 7


def _frames(h5: h5py.File, key: str) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of a clip (packed or generated file)."""
    return clip_group(h5, key)["frames"][()].transpose(0, 2, 3, 1)


def _draw_frames(axes_of, rows: list[tuple[str, np.ndarray]], columns: list[int], fps: float) -> None:
    """Draw each labelled row's frames at ``columns`` into ``axes_of(row, column)``; times under the last row."""
    for r, (label, frames) in enumerate(rows):
        for c, k in enumerate(columns):
            ax = axes_of(r, c)
            ax.imshow(frames[min(k, len(frames) - 1)])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
            if r == len(rows) - 1:
                ax.set_xlabel(f"{k / fps:.2f} s", fontsize=6)


def _save(fig, title: str, out: Path) -> Path:
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def strip(rows: list[tuple[str, np.ndarray]], columns: list[int], title: str, out: Path, fps: float = 25.0) -> Path:
    """Save a grid: one labelled row per ``(label, frames)``, the frames at ``columns``."""
    n_rows, n_cols = len(rows), len(columns)
    h, w = rows[0][1].shape[1:3]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.1 * n_cols * w / h + 1.2, 1.15 * n_rows + 0.4), squeeze=False)
    _draw_frames(lambda r, c: axes[r][c], rows, columns, fps)
    return _save(fig, title, out)


def spaced(n_frames: int, n: int = N_COLUMNS, start: int = 0) -> list[int]:
    return [int(round(v)) for v in np.linspace(start, n_frames - 1, n)]


def first_per_speaker(keys: list[str]) -> list[str]:
    """The first clip of every speaker (real clips only, no mirror images)."""
    seen: dict[str, str] = {}
    for key in keys:
        speaker, utt = key.split("/")
        if not utt.endswith("_mirror"):
            seen.setdefault(speaker, key)
    return list(seen.values())


@torch.no_grad()
def animate_pairs(generator: Generator | Path, data: WholeClips, pairs: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    """Generate one video per ``(still clip index, audio clip index)`` pair with the same noise.

    ``generator``: a loaded generator or its checkpoint (loaded on CUDA when there is a GPU);
    ``data`` must cut audio windows of the generator's length (``window_s=cfg.audio_window_s``).
    """
    if not isinstance(generator, Generator):
        generator, _ = load_generator(generator, map_location=default_device())
    dev = next(generator.parameters()).device
    stills, audio, noise = [], [], []
    for i_still, i_audio in pairs:
        a = data[i_audio]["audio"]
        stills.append(data[i_still]["still"])
        audio.append(a.to(dev))
        noise.append(clip_noise(generator, len(a), seed).to(dev))
    frames = generate_batch(generator, torch.stack(stills).to(dev), audio, noise)
    return [f.cpu().numpy().transpose(0, 2, 3, 1) for f in frames]


def generated_blink(generated: Path, fps: float, max_clips: int | None = BLINK_SCAN,
                    within: list[str] | None = None, scores: Path | None = None) -> tuple[str | None, int, int]:
    """Scan generated clips for blinks: ``(key, start frame, clips scanned)`` of the clip with the
    most blinks and its first blink, or ``(None, -1, clips scanned)`` when none blinks.

    ``max_clips`` clips spread evenly over the file's keys (those also in ``within``, when given)
    are scanned (mediapipe costs ~7 ms a frame).  With ``scores``, the evaluation's per-clip CSV of
    these videos (``speechanim.evaluate``), its blink counts choose the clip instead: only that clip
    is scanned again, for where its first blink starts, and "scanned" is the clips it scored.
    """
    from .align import detect_landmarks
    from .metrics.blinks import blinks_from_landmarks, eye_aspect_ratio

    best = None
    with h5py.File(generated, "r") as h5:
        keys = [k for k in clip_keys(h5) if within is None or k in within]
        if scores is not None:
            counted = _scored_blinks(scores, keys)
            keys = [max(counted, key=counted.get)] if counted and max(counted.values()) > 0 else []
            scanned = len(counted)
        else:
            keys = spread(keys, max_clips)
            scanned = len(keys)
        for key in keys:
            landmarks, _ = detect_landmarks(_frames(h5, key), video=True)
            if not np.isfinite(eye_aspect_ratio(landmarks)).any():
                continue  # mediapipe finds no face in this clip (a failed model): no blink to show
            blinks = blinks_from_landmarks(landmarks, fps).blinks
            if blinks and (best is None or len(blinks) > best[0]):
                best = (len(blinks), key, blinks[0][0])
    return (None, -1, scanned) if best is None else (best[1], best[2], scanned)


def _scored_blinks(path: Path, keys: list[str]) -> dict[str, int]:
    """Blink counts of the clips of ``keys`` that an evaluation CSV scored (in the CSV's order)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"key", "scored", "blinks"} <= rows[0].keys():
        raise ValueError(f"{path}: not an evaluation's per-clip CSV (needs key, scored and blinks columns)")
    wanted = set(keys)
    return {r["key"]: int(float(r["blinks"] or 0)) for r in rows if r["scored"] == "True" and r["key"] in wanted}


def real_blink(real: h5py.File, keys: list[str], fps: float) -> tuple[str, int] | None:
    """The first real clip (of ``keys``) with a blink in its packed landmarks, and where it starts."""
    from .metrics.blinks import blinks_from_landmarks

    for key in keys:
        blinks = blinks_from_landmarks(clip_group(real, key)["landmarks"][()], fps).blinks
        if blinks:
            return key, blinks[0][0]
    return None


def spread(keys: list[str], n: int | None) -> list[str]:
    """``n`` of ``keys`` spread evenly (all when ``n`` is None or there are fewer)."""
    if n is not None and n < 1:
        raise ValueError(f"spread needs n >= 1 (or None for all), got {n}")
    if n is None or len(keys) <= n:
        return list(keys)
    return [keys[int(i)] for i in np.linspace(0, len(keys) - 1, n).round()]


def packed_ear(real: h5py.File, key: str) -> np.ndarray:
    """The eye aspect ratio of each frame of a packed real clip, from its stored landmarks (those the
    alignment found on the source video, and which :func:`real_blink` reads)."""
    from .metrics.blinks import eye_aspect_ratio

    return eye_aspect_ratio(clip_group(real, key)["landmarks"][()])


def ear_trace(frames: np.ndarray) -> np.ndarray:
    """The eye aspect ratio of each frame (mediapipe landmarks; NaN where no face is found)."""
    from .align import detect_landmarks
    from .metrics.blinks import eye_aspect_ratio

    landmarks, _ = detect_landmarks(frames, video=True)
    return eye_aspect_ratio(landmarks)


def blink_figure(rows: list[tuple[str, np.ndarray, np.ndarray]], columns: list[int], title: str, out: Path,
                 fps: float) -> Path:
    """Fig. 7: the frames around a blink, one row per ``(label, frames, eye aspect ratio per frame)``,
    and the eye aspect ratios over the clip below them (a blink is a dip; the shaded span is the
    strip's frames)."""
    n_rows, n_cols = len(rows), len(columns)
    h, w = rows[0][1].shape[1:3]
    fig = plt.figure(figsize=(1.1 * n_cols * w / h + 1.2, 1.15 * n_rows + 2.0))
    grid = fig.add_gridspec(n_rows + 1, n_cols, height_ratios=[1] * n_rows + [1.4])
    _draw_frames(lambda r, c: fig.add_subplot(grid[r, c]), [(label, frames) for label, frames, _ in rows], columns, fps)
    ax = fig.add_subplot(grid[n_rows, :])
    for label, _, ear in rows:
        ax.plot(np.arange(len(ear)) / fps, ear, label=label, lw=1)
    ax.axvspan(columns[0] / fps, columns[-1] / fps, color="0.85", zorder=0)
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("eye aspect ratio", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="lower right")
    return _save(fig, title, out)


def sync_figure(rows: list[tuple[str, np.ndarray]], scorer, audio: np.ndarray, rate: int, fps: float, title: str,
                out: Path) -> Path:
    """Distance against AV offset for each ``(label, frames)`` row, scored with the clip's audio."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, frames in rows:
        s = scorer.score(frames, audio, rate, fps)
        offsets = np.arange(len(s.distances)) - (len(s.distances) - 1) // 2
        ax.plot(offsets, s.distances, marker=".", label=f"{label} (offset {s.offset:+d}, LSE-C {s.lse_c:.2f})")
    ax.axvline(0, color="0.7", lw=0.8)
    ax.set_xlabel("AV offset (frames; + = audio later)")
    ax.set_ylabel("mean distance")
    ax.legend(fontsize=7)
    return _save(fig, title, out)


def make_figures(h5_path: Path, generated: Path, checkpoint: Path, out: Path, *, seed: int = 0,
                 syncnet: Path | None = None, scores: Path | None = None) -> list[Path]:
    """Write the figures whose inputs exist (see the module docstring); returns the PNGs written.
    ``scores``: the full model's per-clip evaluation CSV, whose blink counts pick Fig. 7's clip.

    Figures 4, 7 and 8 need ``<generated>/{l1,full,static}.h5``; 5 and 6 need two speakers.
    """
    h5_path, generated, out = Path(h5_path), Path(generated), Path(out)
    if not generated.is_dir():
        raise ValueError(f"{generated}: no such folder of generated videos (<variant>.h5)")
    generator, _ = load_generator(checkpoint, map_location=default_device())
    data = WholeClips(h5_path, window_s=generator.cfg.audio_window_s)
    keys = data.reader.keys
    if not keys:
        raise ValueError(f"{h5_path}: no clips")
    fps = 25.0
    written: list[Path] = []
    with h5py.File(h5_path, "r") as real:
        key = keys[0]
        fps = float(real[key].attrs["fps"])
        gt = _frames(real, key)
        cols = spaced(len(gt))
        variants = {v: generated / f"{v}.h5" for v in ("l1", "l1_advimg", "full", "static")}
        have = {v: p for v, p in variants.items() if p.is_file()}

        def gen(variant: str, k: str) -> np.ndarray:
            with h5py.File(have[variant], "r") as h5:
                if k not in h5:
                    raise ValueError(f"{have[variant]}: has no generated clip {k} of {h5_path}")
                return _frames(h5, k)

        if {"l1", "full"} <= have.keys():
            written.append(strip([("real", gt), ("L1", gen("l1", key)), ("L1+Adv_img+Adv_seq", gen("full", key))],
                                 cols, f"{key}: L1 only vs the full model (cf. paper Fig. 4)", out / "fig4_l1_vs_full.png", fps))
        others = first_per_speaker(keys)
        if len(others) < 2:  # one test speaker (a tiny run): its other clips, the same face
            others = keys[:4]
        index = {k: i for i, k in enumerate(keys)}
        if len(others) >= 2:
            chosen = [index[k] for k in others[:4]]
            videos = animate_pairs(generator, data, [(chosen[0], j) for j in chosen], seed)
            rows = [(f"audio {keys[j]}", v) for j, v in zip(chosen, videos)]
            written.append(strip(rows, cols, f"the still of {keys[chosen[0]]} with different audio (cf. Fig. 5)",
                                 out / "fig5_same_face.png", fps))
            videos = animate_pairs(generator, data, [(j, chosen[0]) for j in chosen], seed)
            rows = [("real", _frames(real, keys[chosen[0]]))] + [(f"face {keys[j].split('/')[0]}", v) for j, v in zip(chosen, videos)]
            written.append(strip(rows, cols, f"the audio of {keys[chosen[0]]} on different faces (cf. Fig. 6)",
                                 out / "fig6_same_audio.png", fps))
        if "full" in have:
            with h5py.File(have["full"], "r") as h5:
                both = [k for k in clip_keys(h5) if k in real]  # clips with a real and a generated video
            bkey, start, scanned = generated_blink(have["full"], fps, within=both, scores=scores)
            if bkey is not None:
                frames = gen("full", bkey)
                lo = max(0, min(start - 3, len(frames) - N_COLUMNS))
                written.append(blink_figure([("real", _frames(real, bkey), packed_ear(real, bkey)),
                                             ("full model", frames, ear_trace(frames))],
                                            list(range(lo, lo + N_COLUMNS)),
                                            f"{bkey}: a generated blink (cf. Fig. 7)", out / "fig7_blinks.png", fps))
            elif (found := real_blink(real, list(dict.fromkeys(k for k in first_per_speaker(keys) + keys if k in both)),
                                      fps)) is not None:
                # No generated blink: show a real one and the full model at the same moment, so the
                # figure says what the model does instead (and the table's blink rate 0 is visible).
                rkey, start = found
                frames, fake = _frames(real, rkey), gen("full", rkey)
                lo = max(0, min(start - 3, len(frames) - N_COLUMNS))
                written.append(blink_figure([("real", frames, packed_ear(real, rkey)), ("full model", fake, ear_trace(fake))],
                                            list(range(lo, lo + N_COLUMNS)),
                                            f"{rkey}: a real blink; the full model blinks in none of {scanned} clips "
                                            "(cf. Fig. 7)", out / "fig7_blinks.png", fps))
            else:  # no blink anywhere (a tiny run): the eye-aspect traces still show why
                frames, fake = _frames(real, key), gen("full", key)
                written.append(blink_figure([("real", frames, packed_ear(real, key)), ("full model", fake, ear_trace(fake))],
                                            list(range(min(N_COLUMNS, len(frames)))),
                                            f"{key}: no blink found in the real or the generated clips (cf. Fig. 7)",
                                            out / "fig7_blinks.png", fps))
        if syncnet is not None:
            from .evaluate import still_video
            from .syncnet import SyncScorer

            rows = [("real", gt)] + [(name, gen(v, key)) for name, v in (("full model", "full"), ("static baseline", "static"))
                                     if v in have] + [("still image", still_video(gt))]
            written.append(sync_figure(rows, SyncScorer.load(syncnet), clip_group(real, key)["audio"][()], int(real[key].attrs["sample_rate"]),
                                       fps, f"{key}: SyncNet distance vs AV offset", out / "fig_sync.png"))
        if {"static", "full"} <= have.keys():
            written.append(strip([("real", gt), ("static baseline", gen("static", key)), ("full model", gen("full", key))],
                                 list(range(0, 2 * N_COLUMNS, 2)),
                                 f"{key}: the first {2 * N_COLUMNS / fps:.2f} s, the silence before speech (cf. Fig. 8)",
                                 out / "fig8_silence.png", fps))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--h5", required=True, type=Path, help="the packed test file")
    p.add_argument("--generated", required=True, type=Path, help="folder of <variant>.h5 generated files")
    p.add_argument("--checkpoint", required=True, type=Path, help="the full model's generator.pt")
    p.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--syncnet", type=Path, default=None, help="the dataset's SyncNet checkpoint (fig_sync.png)")
    p.add_argument("--scores", type=Path, default=None,
                   help="the full model's per-clip evaluation CSV: its blink counts pick Fig. 7's clip (no rescan)")
    args = p.parse_args(argv)
    refuse_clashing_paths(p, {"--h5": args.h5, "--generated": files_in([args.generated], "*.h5"),
                              "--checkpoint": args.checkpoint, "--syncnet": args.syncnet, "--scores": args.scores},
                          {"--out": args.out})
    try:
        written = make_figures(args.h5, args.generated, args.checkpoint, args.out, seed=args.seed, syncnet=args.syncnet,
                               scores=args.scores)
    except (OSError, ValueError) as e:
        print(f"speechanim.figures: error: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
