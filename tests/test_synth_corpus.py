"""The embedded synthetic corpus: layout, formats, determinism, and lip sync measured on decoded videos."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.io import wavfile

from speechanim import gridformat
from speechanim.align import detect_landmarks
from speechanim.media import ffmpeg_exe, probe, read_audio, read_video
from speechanim.raw.layout import read_manifest
from speechanim.synth import corpus, tts
from speechanim.synth.face import FaceIdentity, FaceState
from speechanim.synth.motion import MOTION_FIELDS
from speechanim.synth.visemes import PARAMETERS, mouth_track

SEED = 0
SPEAKERS = ("s1", "s2")
N_UTT = 3
FPS, N_FRAMES, SPF = 25, 75, tts.SAMPLE_RATE // 25
BILABIALS = {"p", "b", "m"}
OPEN_VOWELS = {"a", "aa", "A:", "A@", "aI", "aU", "V", "0", "O:"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two speakers of three utterances each, built as the Snakemake rule builds them."""
    root = tmp_path_factory.mktemp("synthgrid")
    for speaker in SPEAKERS:
        corpus.build_speaker(speaker, root, N_UTT, SEED, progress=False)
    return root


@pytest.fixture(scope="module")
def decoded(built):
    """Per clip: decoded frames, mediapipe landmarks (tracking mode), audio from the .mpg, parameters."""
    clips = []
    for speaker in SPEAKERS:
        for utt in read_manifest(built / speaker):
            frames, fps = read_video(built / speaker / utt.video)
            landmarks, found = detect_landmarks(frames, video=True)
            audio = read_audio(built / speaker / utt.video, tts.SAMPLE_RATE)
            arrays, meta = corpus.read_parameters(built / speaker / f"{utt.utterance}.npz")
            clips.append(dict(speaker=speaker, utt=utt, frames=frames, fps=fps, landmarks=landmarks, found=found,
                              audio=audio, arrays=arrays, meta=meta))
    return clips


def rms_per_frame(audio: np.ndarray) -> np.ndarray:
    x = np.pad(audio.astype(np.float64), (0, max(0, N_FRAMES * SPF - len(audio))))[:N_FRAMES * SPF]
    return np.sqrt(np.mean(x.reshape(N_FRAMES, SPF) ** 2, axis=1))


def inner_lip_gap(landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks[:, 14] - landmarks[:, 13], axis=1)


# --------------------------------------------------------------------------------------------------
# Layout and formats


def test_layout_and_manifest(built):
    for speaker in SPEAKERS:
        folder = built / speaker
        rows = read_manifest(folder)
        assert len(rows) == N_UTT
        assert len({r.utterance for r in rows}) == N_UTT
        assert (folder / "skipped.tsv").is_file()
        for r in rows:
            assert (r.video, r.audio, r.align) == (f"{r.utterance}.mpg", f"{r.utterance}.wav", f"{r.utterance}.align")
            assert (folder / f"{r.utterance}.npz").is_file()
            # GRID naming: the name spells the sentence
            assert gridformat.sentence_from_name(r.utterance) == r.text
        files = {p.name for p in folder.iterdir()}
        assert files == {f"{r.utterance}{ext}" for r in rows for ext in corpus.CLIP_FILES} | {"manifest.tsv",
                                                                                             "skipped.tsv"}


def test_align_files_are_grid_alignments(built):
    for speaker in SPEAKERS:
        for r in read_manifest(built / speaker):
            segments = gridformat.read_align(built / speaker / r.align, keep_silence=True)
            assert [w.word for w in segments if not w.is_silence] == r.text.split()
            first, last = segments[0], segments[-1]
            assert first.word == "sil" and first.start == 0 and first.end >= corpus.LEAD_S[0] - 1e-3
            assert last.word == "sil" and last.end == pytest.approx(3.0) and last.end - last.start >= 0.09


def test_video_is_grid_like_mpeg1(built):
    for speaker in SPEAKERS:
        for r in read_manifest(built / speaker):
            path = built / speaker / r.video
            info = probe(path)
            assert (info.width, info.height, info.n_frames, info.fps) == (360, 288, 75, 25.0)
            assert info.has_audio and info.audio_rate == 44100
            streams = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                                     text=True).stderr
            assert "mpeg1video" in streams and "mp2" in streams


def test_wav_is_the_clips_audio(built, decoded):
    for clip in decoded:
        rate, pcm = wavfile.read(built / clip["speaker"] / clip["utt"].audio)
        assert rate == tts.SAMPLE_RATE and pcm.dtype == np.int16 and len(pcm) == 3 * tts.SAMPLE_RATE
        wav = pcm / 32768.0
        # the video's (MP2-coded) audio track is the same signal, less than a frame apart
        muxed = clip["audio"]
        lags = np.arange(-SPF, SPF + 1)
        core = wav[SPF:-SPF]
        scores = [np.dot(muxed[SPF + lag:SPF + lag + len(core)], core) for lag in lags]
        best = int(lags[int(np.argmax(scores))])
        assert abs(best) < SPF // 2, best
        aligned = muxed[SPF + best:SPF + best + len(core)]
        assert np.corrcoef(aligned, core)[0, 1] > 0.95
        # silence before and after the sentence, like GRID
        words = clip["arrays"]["word_times"]
        lead = wav[:int(words[0, 0] * rate) - 100]
        assert np.sqrt(np.mean(lead ** 2)) < 2e-3 < np.sqrt(np.mean(wav ** 2))


def test_parameters_saved_per_frame(built, decoded):
    for clip in decoded:
        arrays, meta = clip["arrays"], clip["meta"]
        for name in FaceState.names():
            assert arrays[name].shape == (N_FRAMES,), name
        assert set(MOTION_FIELDS) | set(PARAMETERS) == set(FaceState.names())
        # the mouth is the viseme track of the clip's own phonemes
        phonemes = [tts.Segment(str(label), float(s), float(e))
                    for label, (s, e) in zip(arrays["phoneme_labels"], arrays["phoneme_times"])]
        track = mouth_track(phonemes, N_FRAMES, FPS)
        for name in PARAMETERS:
            assert np.array_equal(arrays[name], getattr(track, name)), name
        assert list(arrays["word_labels"]) == clip["utt"].text.split()
        assert meta["speaker"] == clip["speaker"] and meta["utterance"] == clip["utt"].utterance
        assert FaceIdentity.from_dict(meta["identity"]) == corpus.speaker_identity(SEED, clip["speaker"])
        assert tts.Voice(**meta["voice"]) == corpus.speaker_voice(SEED, clip["speaker"])


def test_one_identity_and_voice_per_speaker():
    assert corpus.speaker_identity(0, "s1") == corpus.speaker_identity(0, "s1")
    assert corpus.speaker_identity(0, "s1") != corpus.speaker_identity(0, "s2")
    assert corpus.speaker_identity(0, "s1") != corpus.speaker_identity(1, "s1")
    voices = {corpus.speaker_voice(0, f"s{i}") for i in range(1, 13)}
    assert len(voices) == 12 and len({v.name for v in voices}) >= 5
    for v in voices:
        assert corpus.RATE_WPM[0] <= v.rate <= corpus.RATE_WPM[1]
    for bad in ("x1", "s0", "s01", "S1", "s1a"):
        with pytest.raises(ValueError, match="s1, s2"):
            corpus.speaker_number(bad)


def test_sentences_cover_the_grammar():
    assert corpus.N_SENTENCES == 64000
    names = {gridformat.name_from_words(corpus.sentence_words(i)) for i in range(0, 64000, 7)}
    assert len(names) == len(range(0, 64000, 7))
    assert corpus.sentence_words(0) == ["bin", "blue", "at", "a", "eight", "again"]
    order = corpus.speaker_sentences(0, "s1")
    assert sorted(order[:500].tolist()) != list(range(500)) and len(set(order.tolist())) == 64000


# --------------------------------------------------------------------------------------------------
# Determinism, skips, rebuilds


def test_deterministic_and_prefix_stable(built, tmp_path):
    """Same seed => identical decoded frames and wav samples; 2 utterances = the first 2 of 3."""
    a, b = tmp_path / "a", tmp_path / "b"
    corpus.build_speaker("s1", a, 2, SEED, progress=False)
    corpus.build_speaker("s1", b, 2, SEED, progress=False)
    rows_a, rows_b = read_manifest(a / "s1"), read_manifest(b / "s1")
    assert rows_a == rows_b
    first_two = [r.utterance for r in read_manifest(built / "s1")][:2]
    for r in rows_a:
        frames_a, _ = read_video(a / "s1" / r.video)
        frames_b, _ = read_video(b / "s1" / r.video)
        assert np.array_equal(frames_a, frames_b)
        assert np.array_equal(wavfile.read(a / "s1" / r.audio)[1], wavfile.read(b / "s1" / r.audio)[1])
        assert np.array_equal(read_audio(a / "s1" / r.video, 22050), read_audio(b / "s1" / r.video, 22050))
        assert (a / "s1" / r.align).read_text() == (b / "s1" / r.align).read_text()
        if r.utterance in first_two:  # built in another process-state, with more utterances
            assert np.array_equal(wavfile.read(a / "s1" / r.audio)[1], wavfile.read(built / "s1" / r.audio)[1])
            assert np.array_equal(frames_a, read_video(built / "s1" / r.video)[0])
    assert sorted(r.utterance for r in rows_a) == sorted(first_two)
    # a different seed is a different corpus
    assert not np.array_equal(corpus.speaker_sentences(1, "s1"), corpus.speaker_sentences(0, "s1"))
    assert corpus.speaker_voice(1, "s1") != corpus.speaker_voice(0, "s1")


def test_unusable_candidates_are_skipped_and_rebuilds_clean_up(tmp_path, monkeypatch):
    real = tts.synthesize_words
    first = corpus.sentence_words(int(corpus.speaker_sentences(SEED, "s4")[0]))

    def flaky(words, voice=tts.Voice(), spoken_forms=None):
        if list(words) == first:
            raise tts.TTSError("eSpeak reported 5 words")
        return real(words, voice, spoken_forms)

    monkeypatch.setattr(tts, "synthesize_words", flaky)
    corpus.build_speaker("s4", tmp_path, 2, SEED, progress=False)
    folder = tmp_path / "s4"
    skipped = (folder / "skipped.tsv").read_text().splitlines()
    assert len(skipped) == 2 and skipped[1].startswith(gridformat.name_from_words(first) + "\t")
    assert "eSpeak reported 5 words" in skipped[1]
    rows = read_manifest(folder)
    assert len(rows) == 2 and gridformat.name_from_words(first) not in {r.utterance for r in rows}
    # rebuilding with fewer utterances leaves no files of the dropped clip behind
    corpus.build_speaker("s4", tmp_path, 1, SEED, progress=False)
    rows = read_manifest(folder)
    assert len(rows) == 1
    assert {p.stem for p in folder.glob("*.*") if p.suffix in corpus.CLIP_FILES} == {rows[0].utterance}


# --------------------------------------------------------------------------------------------------
# What mediapipe sees on the decoded videos


def test_faces_found_in_decoded_frames(decoded):
    found = np.concatenate([c["found"] for c in decoded])
    assert found.mean() >= 0.99, f"{found.sum()} of {found.size}"


def test_inner_lip_gap_follows_audio_energy(decoded):
    """Pearson r between mediapipe's 13-14 gap and the audio's RMS per video frame, over the clip set."""
    gaps, energy = [], []
    for c in decoded:
        ok = c["found"]
        gaps.append(inner_lip_gap(c["landmarks"])[ok])
        energy.append(rms_per_frame(c["audio"])[ok])
    r = np.corrcoef(np.concatenate(gaps), np.concatenate(energy))[0, 1]
    assert r >= 0.5, r


def test_mouth_closes_on_bilabials(decoded):
    """At the closure of p/b/m the decoded gap is much smaller than at open vowels."""
    times = (np.arange(N_FRAMES) + 0.5) / FPS
    closures, vowels = [], []
    for c in decoded:
        gap = inner_lip_gap(c["landmarks"])
        arrays = c["arrays"]
        for label, (start, end) in zip(arrays["phoneme_labels"], arrays["phoneme_times"]):
            base = str(label).lstrip("',=%")
            during = np.flatnonzero((times >= start) & (times < end))
            if not during.size:
                during = np.array([int(np.argmin(np.abs(times - 0.5 * (start + end))))])
            if base in BILABIALS:  # the frame where the lips are shut
                closures.append(gap[during[np.argmin(arrays["jaw_open"][during])]])
            elif base in OPEN_VOWELS:
                vowels.append(gap[during].max())
    assert len(closures) >= 3 and len(vowels) >= 3
    closures, vowels = np.array(closures), np.array(vowels)
    assert np.nanmean(closures) < 0.3 * np.nanmean(vowels), (closures, vowels)
    assert np.nanmean(closures) < 4.0


# --------------------------------------------------------------------------------------------------
# Samples figure and CLI


def test_samples_figure(built, tmp_path):
    from skimage.io import imread

    out = tmp_path / "fig" / "samples.png"
    assert corpus.main(["samples", str(built), "--out", str(out), "--speakers", "2", "--frames", "3"]) == 0
    img = imread(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    rows = corpus.sample_frames(built, 5, 3)
    assert [r[0] for r in rows] == list(SPEAKERS)  # only what exists
    assert all(r[3].shape == (3, 288, 360, 3) for r in rows)


def test_cli_errors(tmp_path, capsys):
    assert corpus.main(["samples", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert "no speaker folder" in capsys.readouterr().err
    assert corpus.main(["speaker", "speaker1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "speaker1" in err and "s1, s2" in err
    assert corpus.main(["speaker", "s1", "--out", str(tmp_path), "--utterances", "0"]) == 1
    assert "--utterances" in capsys.readouterr().err


def test_cli_runs_as_a_module(tmp_path):
    res = subprocess.run([sys.executable, "-m", "speechanim.synth.corpus", "samples", str(tmp_path / "none"),
                          "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert res.returncode == 1 and "no such folder" in res.stderr and not (tmp_path / "x.png").exists()
