"""Evaluation of generated videos with every metric (speechanim.evaluate, paper 4.2) and the paper's
Tables 2 and 3 built from its JSON summaries (speechanim.tables), on real GRID clips of grid-mini.

The packed test file holds three 20-frame clips of three pretend speakers aligned at the GRID
model's 128 x 96 (one of them, brbk7n from frame 10, holds a real blink at frames 11-13) and the
mirror copy of one (which evaluation must skip).  "Generated" files are written in
speechanim.generate's format from the real frames plus Gaussian noise, so the expected PSNR is known.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from speechanim.align import AlignConfig, align_video, mirror_clip
from speechanim.audio import fit_length, normalise, samples_per_frame
from speechanim.checkpoint import save_checkpoint
from speechanim.evaluate import EvaluationError, evaluate, main, reference_landmarks, score_clip
from speechanim.lipreader import VOCABULARY, LipNet, LipReader, LipReaderConfig, wer
from speechanim.media import read_audio, read_video
from speechanim.metrics.acd import SAME_PERSON_THRESHOLD, acd
from speechanim.metrics.cpbd import cpbd_video
from speechanim.metrics.fdbm import fdbm_video
from speechanim.metrics.quality import video_quality
from speechanim.packing import AtomicH5, Clip, clip_keys, write_clip
from speechanim.tables import TABLE2_COLUMNS, TABLE3_COLUMNS, main as tables_main

SIZE = (128, 96)  # the GRID model's frames; CPBD needs whole 64 x 64 blocks
RATE = 8000
N_FRAMES = 20
# (speaker, utterance, first frame): brbk7n blinks at its frames 21-23, i.e. 11-13 of this cut
CLIPS = [("s1", "brbk7n", 10), ("s2", "lwbsza", 0), ("s3", "sbia1a", 0)]
KEYS = [f"{s}/{u}" for s, u, _ in CLIPS]
NOISE_STD = 8.0
STEP = 10  # --frame-step: FDBM, CPBD and ACD on frames 0 and 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------------
# Fixture builders (test_figures.py uses them too)


def words_of(grid_mini: Path) -> dict[str, str]:
    lines = (grid_mini / "transcripts.tsv").read_text().splitlines()[1:]
    return dict(line.split("\t") for line in lines)


def pack_clips(path: Path, grid_mini: Path, *, mirror: bool = False, rate: int = RATE) -> Path:
    """A packed test file of CLIPS (N_FRAMES each, aligned at SIZE, audio at ``rate``); with ``mirror``
    also the mirror copy of the first clip, as training files hold."""
    spf = samples_per_frame(rate, 25.0)
    words = words_of(grid_mini)
    with AtomicH5(path) as h5:
        for speaker, utt, first in CLIPS:
            video = grid_mini / f"{utt}.mpg"
            frames, fps = read_video(video)
            aligned = align_video(frames[first:first + N_FRAMES], AlignConfig(size=SIZE), name=utt)
            audio = normalise(read_audio(video, rate))[first * spf:]
            audio = fit_length(audio, N_FRAMES, spf)
            copies = [(aligned, False)] + ([(mirror_clip(aligned), True)] if mirror and utt == CLIPS[0][1] else [])
            for a, mirrored in copies:
                write_clip(h5, Clip(speaker, utt, a.frames, audio, a.landmarks.astype(np.float32), fps, rate,
                                    words[utt], mirrored, str(video)))
    return path


def shared_packed(tmp_path_factory, grid_mini: Path) -> Path:
    """The packed test file (with the mirror copy), built once per session for both test modules."""
    path = tmp_path_factory.getbasetemp() / "packed-grid-mini" / "test.h5"
    return path if path.is_file() else pack_clips(path, grid_mini, mirror=True)


def real_frames(packed: Path) -> dict[str, np.ndarray]:
    """``(T, H, W, 3)`` frames of every clip of a packed or generated file."""
    with h5py.File(packed, "r") as h5:
        return {k: h5[k]["frames"][()].transpose(0, 2, 3, 1) for k in clip_keys(h5)}


def noisy(frames: np.ndarray, seed: int, std: float = NOISE_STD) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0.0, std, frames.shape), 0, 255).round().astype(np.uint8)


def write_generated(path: Path, videos: dict[str, np.ndarray], variant: str = "full") -> Path:
    """A file in speechanim.generate's format: a group per key holding frames uint8 (T, 3, H, W)."""
    with AtomicH5(path) as h5:
        h5.attrs.update(variant=variant, seed=0)
        for key, frames in videos.items():
            speaker, utt = key.split("/")
            g = h5.create_group(key)
            g.create_dataset("frames", data=np.ascontiguousarray(frames.transpose(0, 3, 1, 2)),
                             chunks=(1, 3, *frames.shape[1:3]), compression="lzf")
            g.attrs.update(speaker=speaker, utterance=utt, words="", fps=25.0, sample_rate=RATE, variant=variant)
    return path


def lipreader_checkpoint(path: Path, constant: str | None = None) -> Path:
    """A tiny randomly initialised LipNet in the checkpoint format LipReader.load reads; with
    ``constant`` its classifier ignores the input and reads that one letter in every frame."""
    cfg = LipReaderConfig(channels=(4, 4, 4), gru_hidden=8, gru_layers=1)
    torch.manual_seed(0)
    model = LipNet(cfg)
    if constant is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.zero_()
            model.classifier.bias[VOCABULARY.index(constant) + 1] = 10.0
    save_checkpoint(path, {"kind": "lipreader", "lipreader_config": cfg.to_dict(),
                           "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
    return path


# --------------------------------------------------------------------------------------------------
# Module fixtures: the packed file, a generated file, and the two evaluations every test reads


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def packed(tmp_path_factory, grid_mini):
    return shared_packed(tmp_path_factory, grid_mini)


@pytest.fixture(scope="module")
def real(packed):
    return real_frames(packed)


@pytest.fixture(scope="module")
def generated(root, real):
    return write_generated(root / "full.h5", {k: noisy(real[k], i) for i, k in enumerate(KEYS)})


@pytest.fixture(scope="module")
def reader_path(root):
    return lipreader_checkpoint(root / "lipreader.pt")


@pytest.fixture(scope="module")
def reads_a(root):
    return lipreader_checkpoint(root / "reads_a.pt", constant="a")


@pytest.fixture(scope="module")
def gen_result(packed, generated, reader_path):
    return evaluate(packed, generated, reader_path, frame_step=STEP, progress=False)


@pytest.fixture(scope="module")
def gt_result(packed, reads_a):
    return evaluate(packed, None, reads_a, frame_step=STEP, progress=False)


# --------------------------------------------------------------------------------------------------
# evaluate


def test_packed_fixture_holds_the_clips_and_a_mirror(packed, real):
    assert clip_keys(h5py.File(packed, "r")) == ["s1/brbk7n", "s1/brbk7n_mirror", "s2/lwbsza", "s3/sbia1a"]
    assert all(f.shape == (N_FRAMES, *SIZE, 3) for f in real.values())


def test_generated_row_scores_every_clip_with_the_metrics_modules(gen_result, real, generated):
    s, rows = gen_result["summary"], gen_result["clips"]
    assert [r["key"] for r in rows] == KEYS  # the mirror copy is not a test video
    assert s["n_videos"] == 3 and s["frame_step"] == STEP and s["generated"] == str(generated)
    fake = real_frames(generated)
    for r in rows:
        q = video_quality(real[r["key"]][1:], fake[r["key"]][1:])  # frames 2..T
        assert r["psnr"] == q.psnr and r["ssim"] == q.ssim
        assert r["fdbm"] == fdbm_video(fake[r["key"]][::STEP])
        assert r["cpbd"] == cpbd_video(fake[r["key"]][::STEP])
        assert r["seconds"] == N_FRAMES / 25.0
        # Gaussian noise of std 8 (a little less after clipping to [0, 255]): 20 log10(255 / 8) = 30.07 dB
        assert 29.5 < r["psnr"] < 32.0 and 0.3 < r["ssim"] < 0.95
        assert 0.0 < r["acd"] < SAME_PERSON_THRESHOLD  # the noisy copy is still the same person
        assert 0.0 <= r["lmd"] < 0.02  # the noisy copy's lips within 2% of the crop width of the real ones
    for name in ("psnr", "ssim", "fdbm", "cpbd", "acd", "lmd", "mouth_r"):
        assert np.isfinite(s[name]) and s[name] == pytest.approx(np.mean([r[name] for r in rows]), rel=1e-12)


def constant_syncnet(path: Path, video: list[float], audio: list[float]) -> Path:
    """A tiny SyncNet checkpoint (the format SyncScorer.load reads) whose last layers ignore their
    input: every video window embeds to ``video`` and every audio window to ``audio``."""
    from speechanim.syncnet import CHECKPOINT_KIND, SyncNet, SyncNetConfig

    cfg = SyncNetConfig(video_channels=(4, 4, 4), audio_channels=(4, 4, 4), hidden=8, embedding=len(video))
    torch.manual_seed(0)
    model = SyncNet(cfg)
    with torch.no_grad():
        for fc, value in ((model.video_fc[-1], video), (model.audio_fc[-1], audio)):
            fc.weight.zero_()
            fc.bias.copy_(torch.tensor(value))
    return save_checkpoint(path, {"kind": CHECKPOINT_KIND, "syncnet_config": cfg.to_dict(), "sample_rate": RATE,
                                  "fps": 25.0, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}})


def test_lmd_and_sync_rows_are_exact_for_known_landmarks_and_embeddings(packed, real, root):
    """The LMD and LSE values evaluate reports, worked out by hand, not only their range.

    LMD: the "generated" video is the real one, so mediapipe finds the same landmarks in it as in the
    real frames; the real clip's reference landmarks are those with every other lip point moved by
    (3, 4) px (5 px; the others 0): the mean lip distance is 2.5 px, over the crop's width (96 px,
    not its height 128): 2.5 / 96.

    LSE: a SyncNet whose video windows all embed to u = (3, 4, 0) and audio windows to v = (3, 0, 0);
    each clip of 20 frames has 16 five-frame windows, and at offset o the |o| audio windows past the
    ends are zeros, so the mean distance is ((16 - |o|) |u - v| + |o| |u|) / 16 = 4 + |o| / 16: the
    minimum LSE-D = 4 at offset 0, and the median of the 31 offsets (|o| = 8) 4.5, LSE-C = 0.5."""
    from speechanim.metrics.lmd import lip_indices

    key = KEYS[0]  # max_clips=1 scores the first clip
    ref = reference_landmarks(packed, root / "shifted lips.h5", max_clips=1, progress=False)
    with h5py.File(ref, "a") as f:
        landmarks = f[key][()]
        assert np.isfinite(landmarks).all()  # a face in every real frame
        landmarks[:, lip_indices()[::2]] += [3.0, 4.0]
        f[key][...] = landmarks
    generated = write_generated(root / "copy.h5", {k: real[k] for k in KEYS})
    syncnet = constant_syncnet(root / "constant syncnet.pt", [3.0, 4.0, 0.0], [3.0, 0.0, 0.0])
    result = evaluate(packed, generated, None, syncnet_path=syncnet, frame_step=20, max_clips=1, reference=ref,
                      progress=False)
    rows, s = result["clips"], result["summary"]
    assert [r["key"] for r in rows] == KEYS and [r["scored"] for r in rows] == [True, False, False]
    assert rows[0]["lmd"] == pytest.approx(2.5 / 96, rel=1e-9)
    assert s["lmd"] == pytest.approx(2.5 / 96, rel=1e-9) and s["lmd_clips"] == 1
    for r in rows:  # every clip is scored by the SyncNet
        assert r["av_offset"] == 0, r["key"]
        assert r["lse_d"] == pytest.approx(4.0, rel=1e-6), r["key"]
        assert r["lse_c"] == pytest.approx(0.5, rel=1e-5), r["key"]
    assert s["lse_d"] == pytest.approx(4.0, rel=1e-6) and s["lse_c"] == pytest.approx(0.5, rel=1e-5)
    assert s["sync_ok"] == 1.0 and s["sync_videos"] == 3


def test_acd_is_against_the_real_still_every_step_th_frame(gen_result, real, generated):
    key = KEYS[1]
    row = next(r for r in gen_result["clips"] if r["key"] == key)
    assert row["acd"] == pytest.approx(acd(real[key][0], real_frames(generated)[key], frame_step=STEP), rel=1e-9)


def test_generated_transcripts_are_the_lipreader_reading_the_generated_frames(gen_result, reader_path, generated, real):
    reader = LipReader.load(reader_path)
    fake = real_frames(generated)
    rows = gen_result["clips"]
    assert [r["transcript"] for r in rows] == [reader.transcribe(fake[k]) for k in KEYS]
    expected = wer([r["words"] for r in rows], [r["transcript"] for r in rows])
    assert gen_result["summary"]["wer"] == expected and 0.0 <= expected < float("inf")
    assert [r["words"] for r in rows] == ["bin red by k seven now", "lay white by s zero again", "set blue in a one again"]


def test_ground_truth_row_has_no_psnr_ssim_and_scores_the_real_videos(gt_result, real, packed):
    s, rows = gt_result["summary"], gt_result["clips"]
    assert s["psnr"] is None and s["ssim"] is None and s["generated"] is None and s["real"] == str(packed)
    assert all("psnr" not in r and "ssim" not in r for r in rows)
    for r in rows:
        assert r["fdbm"] == fdbm_video(real[r["key"]][::STEP])
        assert 0.0 <= r["acd"] < SAME_PERSON_THRESHOLD / 2  # real frames of one speaker against the first
    assert s["fdbm"] > 0 and 0 < s["cpbd"] <= 1


def test_still_image_control_is_frame_0_repeated_scored_like_a_method(packed, real, reader_path):
    """The still image: PSNR over frames 2..T is finite, its mouth is frozen (r 0), it never blinks,
    its identity distance is 0, and the lipreader reads it like any video."""
    from speechanim.evaluate import still_video

    result = evaluate(packed, None, reader_path, control="still", frame_step=STEP, progress=False)
    s, rows = result["summary"], result["clips"]
    assert s["control"] == "still" and s["generated"] is None and s["n_videos"] == 3
    reader = LipReader.load(reader_path)
    for r in rows:
        still = still_video(real[r["key"]])
        assert still.shape == real[r["key"]].shape and (still == real[r["key"]][0]).all()
        assert r["psnr"] == video_quality(real[r["key"]][1:], still[1:]).psnr and np.isfinite(r["psnr"])
        assert r["mouth_r"] == 0.0 and r["lmd"] > 0 and r["blinks"] == 0 and r["acd"] == 0.0
        assert r["eye_motion"] == 0.0  # frozen eyes
        assert r["transcript"] == reader.transcribe(still)
    assert s["mouth_r"] == 0.0 and s["blinks_per_s"] == 0.0 and s["wer"] is not None and s["eye_motion"] == 0.0


def test_controls_are_checked(packed, generated):
    with pytest.raises(EvaluationError, match="unknown control"):
        evaluate(packed, None, None, control="mute", progress=False)
    with pytest.raises(EvaluationError, match="no generated file"):
        evaluate(packed, generated, None, control="still", progress=False)
    with pytest.raises(EvaluationError, match="SyncNet"):
        evaluate(packed, None, None, control="shifted_audio", progress=False)


def test_shift_audio_delays_and_wraps():
    from speechanim.evaluate import shift_audio

    audio = np.arange(10, dtype=np.float32)
    assert shift_audio(audio, 0.3, 10).tolist() == [7, 8, 9, 0, 1, 2, 3, 4, 5, 6]


def test_wer_counts_word_errors_over_all_test_words(gt_result):
    # the reader says "a" whatever it sees: 6 errors per 6-word sentence, 5 where "a" is a word
    assert [r["transcript"] for r in gt_result["clips"]] == ["a", "a", "a"]
    assert gt_result["summary"]["wer"] == pytest.approx((6 + 6 + 5) / 18)


def test_blinks_rate_and_duration_from_the_real_blink(gt_result):
    s, rows = gt_result["summary"], {r["key"]: r for r in gt_result["clips"]}
    assert rows["s1/brbk7n"]["blinks"] == 1 and 2 <= rows["s1/brbk7n"]["blink_frames"] <= 5
    assert rows["s3/sbia1a"]["blinks"] == 0
    n_blinks = sum(r["blinks"] for r in rows.values())
    assert s["blink_clips"] == 3
    assert s["blinks_per_s"] == pytest.approx(n_blinks / (3 * N_FRAMES / 25.0))
    # the real eyes move (blinks, gaze, head): the blinking clip most; the summary is the clips' mean
    assert all(r["eye_motion"] > 0.3 for r in rows.values())
    assert rows["s1/brbk7n"]["eye_motion"] > rows["s3/sbia1a"]["eye_motion"]
    assert s["eye_motion"] == pytest.approx(np.mean([r["eye_motion"] for r in rows.values()]))
    assert s["blink_duration_s"] == pytest.approx(sum(r["blink_frames"] for r in rows.values()) / n_blinks / 25.0)


def test_a_video_without_a_face_has_no_blink_values_and_max_clips_spreads(packed, real, root):
    """A failed model's video (flat grey: mediapipe finds no face) must not stop the evaluation;
    ``max_clips=2`` of three scores the first and the last clip."""
    videos = {k: noisy(real[k], 0) for k in KEYS}
    videos[KEYS[0]] = np.full_like(real[KEYS[0]], 128)
    result = evaluate(packed, write_generated(root / "grey.h5", videos), None, frame_step=20, max_clips=2,
                      progress=False)
    rows = result["clips"]
    assert [r["key"] for r in rows] == [KEYS[0], KEYS[2]]
    grey, other = rows
    assert grey["blinks"] is None and grey["blink_frames"] is None
    assert np.isfinite(grey["psnr"]) and grey["cpbd"] == 0.0 and np.isfinite(grey["acd"])
    assert other["blinks"] == 0 and "transcript" not in other
    s = result["summary"]
    assert s["blink_clips"] == 1 and s["blinks_per_s"] == 0.0 and s["blink_duration_s"] is None
    assert s["n_videos"] == 2 and np.isfinite(s["psnr"]) and s["wer"] is None


def test_the_lipreader_reads_every_clip_when_max_clips_limits_the_image_metrics(packed, real, root, reader_path):
    videos = {k: noisy(real[k], 1) for k in KEYS}
    result = evaluate(packed, write_generated(root / "wer_all.h5", videos), reader_path, frame_step=20, max_clips=1,
                      progress=False)
    rows, s = result["clips"], result["summary"]
    assert [r["key"] for r in rows] == KEYS and [r["scored"] for r in rows] == [True, False, False]
    assert "psnr" in rows[0] and all("psnr" not in r and "acd" not in r for r in rows[1:])
    reader = LipReader.load(reader_path)
    assert [r["transcript"] for r in rows] == [reader.transcribe(videos[k]) for k in KEYS]
    assert s["n_videos"] == 1 and s["wer_videos"] == 3 and s["psnr"] == rows[0]["psnr"]
    assert s["wer"] == wer([r["words"] for r in rows], [r["transcript"] for r in rows])
    # the lipreader needs every test clip: a file lacking one it would read is refused
    with pytest.raises(EvaluationError, match="lacks 1 test clips"):
        evaluate(packed, write_generated(root / "wer_part.h5", {k: videos[k] for k in KEYS[:2]}), reader_path,
                 max_clips=1, progress=False)


def test_generated_file_missing_a_clip_is_a_clear_error(packed, real, root, capsys):
    partial = write_generated(root / "partial.h5", {k: real[k] for k in KEYS[:2]})
    with pytest.raises(EvaluationError, match=r"partial\.h5: lacks 1 test clips, e\.g\. s3/sbia1a"):
        evaluate(packed, partial, None, progress=False)
    out = root / "partial.json"
    assert main(["--real", str(packed), "--generated", str(partial), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("speechanim.evaluate: error: ") and "s3/sbia1a" in err and str(partial) in err
    assert not out.exists() and not out.with_suffix(".csv").exists()


def test_generated_clip_of_another_length_is_a_clear_error(packed, real, root):
    short = write_generated(root / "short.h5", {k: real[k][:15] if k == KEYS[0] else real[k] for k in KEYS})
    with pytest.raises(EvaluationError, match=r"short\.h5: clip s1/brbk7n has frames \(15, 128, 96, 3\)") as e:
        evaluate(packed, short, None, frame_step=10, progress=False)
    assert str(packed) in str(e.value)


def test_bad_arguments_are_refused(packed, root, capsys):
    for args in (["--frame-step", "0"], ["--max-clips", "0"], ["--max-clips", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(["--real", str(packed), "--out", str(root / "x.json"), *args])
        assert e.value.code == 2
    assert "--max-clips must be >= 1" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="max_clips"):
        evaluate(packed, None, None, max_clips=-1, progress=False)
    missing = root / "none.h5"
    assert main(["--real", str(missing), "--out", str(root / "x.json"), "--no-progress"]) == 1
    assert "none.h5" in capsys.readouterr().err and not (root / "x.json").exists()


def test_cli_writes_the_summary_json_and_the_per_clip_csv(packed, generated, reader_path, real, tmp_path):
    out = tmp_path / "metrics" / "full.json"
    rc = main(["--real", str(packed), "--generated", str(generated), "--lipreader", str(reader_path),
               "--out", str(out), "--frame-step", "10", "--max-clips", "1", "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["full.csv", "full.json"]  # no temporary files
    summary = json.loads(out.read_text())
    assert summary["n_videos"] == 1 and summary["frame_step"] == 10
    assert set(summary) >= {"psnr", "ssim", "fdbm", "cpbd", "acd", "wer", "blinks_per_s", "blink_duration_s"}
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    # every clip is read by the lipreader; the first alone has the image metrics
    assert [r["key"] for r in rows] == KEYS and [r["scored"] for r in rows] == ["True", "False", "False"]
    assert rows[0]["words"] == "bin red by k seven now" and rows[1]["psnr"] == "" and rows[1]["transcript"]
    assert summary["wer_videos"] == 3
    assert {"psnr", "ssim", "fdbm", "cpbd", "acd", "transcript", "blinks", "blink_frames", "seconds"} <= set(rows[0])
    assert float(rows[0]["psnr"]) == pytest.approx(summary["psnr"], rel=1e-12)
    assert float(rows[0]["psnr"]) == video_quality(real[KEYS[0]][1:], real_frames(generated)[KEYS[0]][1:]).psnr
    assert float(rows[0]["fdbm"]) == fdbm_video(real_frames(generated)[KEYS[0]][::10])


def test_module_runs_as_a_command(packed, root):
    out = root / "cmd.json"
    proc = subprocess.run([sys.executable, "-m", "speechanim.evaluate", "--real", str(packed), "--out", str(out),
                           "--max-clips", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--max-clips must be >= 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# Tables 2 and 3 from evaluate's JSON summaries


def _summary(**values) -> dict:
    base = dict(real="test.h5", generated="x.h5", n_videos=3, frame_step=1, psnr=27.98, ssim=0.8441, fdbm=0.1143,
                cpbd=0.2771, acd=0.18234, lmd=0.02134, mouth_r=0.512, lse_d=7.1234, lse_c=2.345, wer=0.2545,
                blinks_per_s=0.2512, blink_duration_s=0.1667, blink_clips=3)
    base.update(values)
    return base


def _write_summaries(folder: Path, summaries: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, summary in summaries.items():
        (folder / f"{name}.json").write_text(json.dumps(summary))
    return folder


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_table2_rows_columns_na_and_wer_percent(tmp_path, capsys):
    metrics = _write_summaries(tmp_path / "grid" / "metrics", {
        "ground_truth": _summary(generated=None, psnr=None, ssim=None, lmd=None, mouth_r=None, wer=0.214),
        "still": _summary(generated=None, control="still", psnr=29.1, mouth_r=0.0, lse_c=0.01, wer=0.96),
        "shifted_audio": _summary(generated=None, control="shifted_audio", psnr=None, ssim=None, fdbm=None, cpbd=None,
                                  acd=None, lmd=None, mouth_r=None, wer=None, blinks_per_s=None,
                                  blink_duration_s=None, lse_c=0.5),
        "l1": _summary(psnr=28.474, ssim=0.859, wer=0.279),
        "l1_advimg": _summary(psnr=27.71, wer=0.2794, blink_duration_s=None),
        "full": _summary(),
    })
    out = tmp_path / "table2.csv"
    assert tables_main(["table2", "--metrics", str(metrics), "--out", str(out)]) == 0
    columns, rows = _read_csv(out)
    assert columns == TABLE2_COLUMNS == ["Method", "PSNR", "SSIM", "FDBM", "CPBD", "ACD (dlib)", "LMD", "Mouth r",
                                         "LSE-D", "LSE-C", "WER", "Blinks/s", "Blink (s)"]
    assert [r["Method"] for r in rows] == ["Ground Truth Videos", "Still image", "Real video, shifted audio", "L1 loss",
                                           "L1 + Adv_img", "L1 + Adv_img + Adv_seq"]
    gt, still, shifted, l1, advimg, full = rows
    assert (gt["PSNR"], gt["SSIM"], gt["WER"], gt["LMD"]) == ("N/A", "N/A", "21.4%", "N/A")
    assert (still["PSNR"], still["Mouth r"], still["LSE-C"], still["WER"]) == ("29.10", "0.00", "0.010", "96.0%")
    assert [k for k, v in shifted.items() if v != "N/A"] == ["Method", "LSE-D", "LSE-C"]
    assert (l1["PSNR"], l1["SSIM"], l1["WER"]) == ("28.47", "0.859", "27.9%")
    assert advimg["Blink (s)"] == "N/A" and advimg["WER"] == "27.9%"
    assert full == {"Method": "L1 + Adv_img + Adv_seq", "PSNR": "27.98", "SSIM": "0.844", "FDBM": "0.114",
                    "CPBD": "0.277", "ACD (dlib)": "0.1823", "LMD": "0.0213", "Mouth r": "0.51", "LSE-D": "7.123",
                    "LSE-C": "2.345", "WER": "25.4%", "Blinks/s": "0.25", "Blink (s)": "0.167"}
    md = out.with_suffix(".md").read_text().splitlines()
    assert md[0] == "| " + " | ".join(TABLE2_COLUMNS) + " |" and len(md) == 2 + 6
    assert md[2].startswith("| Ground Truth Videos | N/A | N/A |")
    assert "L1 + Adv_img + Adv_seq" in capsys.readouterr().err  # the markdown is echoed


def test_table3_per_dataset_with_empty_user_column_and_missing_wer(tmp_path):
    controls = {"ground_truth": _summary(psnr=None), "still": _summary(psnr=30.0), "shifted_audio": _summary(psnr=None)}
    grid = _write_summaries(tmp_path / "grid", {"full": _summary(), "static": _summary(psnr=27.39, wer=0.372), **controls})
    tcd = _write_summaries(tmp_path / "tcd", {"full": _summary(psnr=23.54, wer=None),
                                              "static": _summary(psnr=23.01, wer=None, blinks_per_s=None), **controls})
    out = tmp_path / "t" / "table3.csv"
    assert tables_main(["table3", "--dataset", "grid", "--dataset", "tcdtimit", str(grid), str(tcd),
                        "--out", str(out)]) == 0
    columns, rows = _read_csv(out)
    assert columns == TABLE3_COLUMNS == ["Dataset", "Method", "PSNR", "SSIM", "FDBM", "CPBD", "ACD (dlib)", "LMD",
                                         "Mouth r", "LSE-D", "LSE-C", "User", "WER", "Blinks/s", "Blink (s)"]
    block = ["Proposed Model", "Baseline", "Ground Truth Videos", "Still image", "Real video, shifted audio"]
    assert [(r["Dataset"], r["Method"]) for r in rows] == [("grid", m) for m in block] + [("tcdtimit", m) for m in block]
    assert [r["PSNR"] for r in rows] == ["27.98", "27.39", "N/A", "30.00", "N/A", "23.54", "23.01", "N/A", "30.00", "N/A"]
    assert [r["WER"] for r in rows][:2] + [r["WER"] for r in rows][5:7] == ["25.4%", "37.2%", "N/A", "N/A"]
    assert all(r["User"] == "" for r in rows) and rows[6]["Blinks/s"] == "N/A"


def test_tables_name_a_missing_or_broken_summary(tmp_path, capsys):
    metrics = _write_summaries(tmp_path / "m", {name: _summary() for name in
                                                ("ground_truth", "still", "shifted_audio", "l1", "full")})
    out = tmp_path / "table2.csv"
    assert tables_main(["table2", "--metrics", str(metrics), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("speechanim.tables: error: ") and str(metrics / "l1_advimg.json") in err
    assert not out.exists()
    (metrics / "l1_advimg.json").write_text("{not json")
    assert tables_main(["table2", "--metrics", str(metrics), "--out", str(out)]) == 1
    assert str(metrics / "l1_advimg.json") in capsys.readouterr().err
    (metrics / "l1_advimg.json").write_text("[1, 2]")
    assert tables_main(["table2", "--metrics", str(metrics), "--out", str(out)]) == 1
    assert "not a metrics summary" in capsys.readouterr().err and not out.exists()
    assert tables_main(["table3", "--dataset", "grid", str(metrics), "--out", str(out)]) == 1
    assert str(metrics / "static.json") in capsys.readouterr().err


def test_table_reads_what_evaluate_writes(gen_result, gt_result, tmp_path):
    """The real summaries, through JSON, into Table 2: every cell is the summary's value formatted."""
    from speechanim.evaluate import write_results

    metrics = tmp_path / "metrics"
    for name, result in (("ground_truth", gt_result), ("still", gen_result), ("shifted_audio", gen_result),
                         ("l1", gen_result), ("l1_advimg", gen_result), ("full", gen_result)):
        write_results(result, metrics / f"{name}.json")
    out = tmp_path / "table2.csv"
    assert tables_main(["table2", "--metrics", str(metrics), "--out", str(out)]) == 0
    _, rows = _read_csv(out)
    s = gen_result["summary"]
    assert rows[0]["PSNR"] == "N/A" and rows[0]["WER"] == f"{100 * gt_result['summary']['wer']:.1f}%"
    assert rows[5]["PSNR"] == f"{s['psnr']:.2f}" and rows[5]["ACD (dlib)"] == f"{s['acd']:.4f}"
    assert rows[5]["LMD"] == f"{s['lmd']:.4f}" and rows[5]["Mouth r"] == f"{s['mouth_r']:.2f}"
    assert rows[5]["WER"] == f"{100 * s['wer']:.1f}%" and rows[5]["Blinks/s"] == f"{s['blinks_per_s']:.2f}"


# --------------------------------------------------------------------------------------------------
# Silence motion (paper Fig. 8)


def test_silent_frames_are_those_whose_whole_audio_window_is_silent():
    from speechanim.evaluate import silent_frames

    rate, fps, spf = 1000, 25.0, 40
    audio = np.zeros(20 * spf, np.float32)
    audio[8 * spf : 12 * spf] = np.sin(np.arange(4 * spf))  # speech in frames 8-11
    audio[:8 * spf] += 1e-3  # noise 57 dB below the speech: silence
    silent = silent_frames(audio, 20, rate, fps, window_s=0.16)  # the window reaches 2 frames either side
    assert np.flatnonzero(~silent).tolist() == list(range(6, 14))
    assert silent_frames(np.zeros(20 * spf), 20, rate, fps).all()


def test_silence_motion_is_the_lower_half_change_between_silent_frames():
    from speechanim.evaluate import silence_motion

    video = np.zeros((6, 4, 2, 3), np.uint8)
    video[2, 2:] = 10  # the mouth moves at frame 2 (lower half)
    video[4, :2] = 200  # the eyes move at frame 4: not the mouth
    silent = np.array([True, True, True, False, True, True])
    # silent pairs (0,1), (1,2), (4,5): lower-half changes 0, 10, 0
    assert silence_motion(video, silent) == pytest.approx(10 / 3)
    assert silence_motion(video, np.array([True, False, True, False, True, False])) is None


def test_summary_silence_motion_is_the_mean_over_the_scored_clips(gen_result, packed, generated):
    from speechanim.evaluate import silence_motion, silent_frames

    rows = [r for r in gen_result["clips"] if r["scored"]]
    found = []
    with h5py.File(packed, "r") as h5, h5py.File(generated, "r") as fake:
        for r in rows:
            g = h5[r["key"]]
            silent = silent_frames(g["audio"][()], g["frames"].shape[0], int(g.attrs["sample_rate"]), float(g.attrs["fps"]))
            found.append(silence_motion(fake[r["key"]]["frames"][()].transpose(0, 2, 3, 1), silent))
    assert [r["silence_motion"] for r in rows] == pytest.approx(found)
    values = [v for v in found if v is not None]
    assert values, "a GRID clip cut from its start begins in silence"
    assert gen_result["summary"]["silence_motion"] == pytest.approx(np.mean(values))
    assert gen_result["summary"]["silence_clips"] == len(values)


def test_reference_landmarks_are_found_once_and_give_the_same_scores(packed, real, root, generated, reader_path,
                                                                     gen_result, gt_result, reads_a, capsys):
    """The real clips' landmarks written once (``--write-reference``, the rule reference_landmarks)
    and read back (``--reference``) give every method and the real videos exactly the scores of
    finding them again; a file for other clips or of another length is refused naming the clip."""
    ref = root / "real landmarks.h5"
    assert main(["--real", str(packed), "--write-reference", str(ref), "--no-progress"]) == 0
    with h5py.File(ref, "r") as f:
        assert sorted(f["s1"]) + sorted(f["s2"]) + sorted(f["s3"]) == [k.split("/")[1] for k in KEYS]  # no mirrors
        assert f[KEYS[0]].shape == (len(real[KEYS[0]]), 478, 2)
    assert evaluate(packed, generated, reader_path, frame_step=STEP, reference=ref, progress=False) == gen_result
    assert evaluate(packed, None, reads_a, frame_step=STEP, reference=ref, progress=False) == gt_result
    # written for two of the three clips: a run scoring all three is refused
    few = reference_landmarks(packed, root / "few.h5", max_clips=2, progress=False)
    with pytest.raises(EvaluationError, match=r"few\.h5: no landmarks for 1 of the scored clips, e\.g\. s2/lwbsza"):
        evaluate(packed, generated, None, frame_step=STEP, reference=few, progress=False)
    assert evaluate(packed, generated, None, frame_step=STEP, max_clips=2, reference=few, progress=False)["clips"]
    with h5py.File(few, "a") as f:
        data = f[KEYS[0]][()]
        del f[KEYS[0]]
        f.create_dataset(KEYS[0], data=data[:10])
    with pytest.raises(EvaluationError, match=r"landmarks of s1/brbk7n have shape \(10, 478, 2\)"):
        evaluate(packed, generated, None, frame_step=STEP, max_clips=2, reference=few, progress=False)
    for args in ([], ["--out", str(root / "x.json"), "--write-reference", str(ref)]):
        with pytest.raises(SystemExit) as e:
            main(["--real", str(packed), *args])
        assert e.value.code == 2
    assert "give --out (scores) or --write-reference" in capsys.readouterr().err
