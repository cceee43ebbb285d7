"""Media I/O on the real GRID clips of grid-mini."""
import numpy as np
import pytest

from speechanim import media


def test_probe_grid_clips(grid_mini_clips):
    assert len(grid_mini_clips) == 8
    for clip in grid_mini_clips:
        info = media.probe(clip)
        assert (info.n_frames, info.width, info.height, info.fps) == (75, 360, 288, 25.0)
        assert info.has_audio and info.audio_rate == 44100 and info.audio_channels == 2


def test_read_video_and_audio(grid_mini):
    frames, fps = media.read_video(grid_mini / "bbaf2n.mpg")
    assert frames.shape == (75, 288, 360, 3) and frames.dtype == np.uint8 and fps == 25.0
    assert 30 < frames.mean() < 220  # a real picture, not black or white
    audio = media.read_audio(grid_mini / "bbaf2n.mpg", 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / 16000 == pytest.approx(2.98, abs=0.02)
    assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence
    # asking another rate resamples: same duration, other length
    assert len(media.read_audio(grid_mini / "bbaf2n.mpg", 50000)) / 50000 == pytest.approx(2.98, abs=0.02)


def test_video_and_audio_in_one_process_equal_the_separate_reads(grid_mini, tmp_path):
    frames, fps, audio = media.read_video_and_audio(grid_mini / "lbax4n.mpg", 16000, fps=25.0)
    ref, ref_fps = media.read_video(grid_mini / "lbax4n.mpg")
    assert fps == ref_fps and np.array_equal(frames, ref)
    assert audio is not None and audio.dtype == np.float32
    assert np.array_equal(audio, media.read_audio(grid_mini / "lbax4n.mpg", 16000))
    # another frame rate, or no audio track: read_video's frames and no audio (the caller reads it apart)
    frames, fps, audio = media.read_video_and_audio(grid_mini / "lbax4n.mpg", 16000, fps=30.0)
    assert audio is None and fps == 30.0
    assert np.array_equal(frames, media.read_video(grid_mini / "lbax4n.mpg", fps=30.0)[0])
    silent = media.write_video(tmp_path / "silent.mp4", ref[:10], 25)
    frames, _, audio = media.read_video_and_audio(silent, 16000)
    assert audio is None and np.array_equal(frames, media.read_video(silent)[0])
    # a damaged file: read_video's error
    truncated = tmp_path / "truncated.mpg"
    truncated.write_bytes((grid_mini / "bbaf2n.mpg").read_bytes()[:150_000])
    with pytest.raises(media.MediaError, match=r"truncated.mpg: corrupt or truncated video"):
        media.read_video_and_audio(truncated, 16000)


@pytest.mark.parametrize("codec,suffix,max_err", [("h264", ".mp4", 3.0), ("mpeg1", ".mpg", 4.0)])
def test_encode_decode_round_trip(grid_mini, tmp_path, codec, suffix, max_err):
    frames, fps = media.read_video(grid_mini / "sbia1a.mpg")
    audio = media.read_audio(grid_mini / "sbia1a.mpg", 16000)
    out = media.write_video(tmp_path / f"clip{suffix}", frames, fps, audio, 16000, codec=codec)
    info = media.probe(out)
    assert (info.n_frames, info.width, info.height, info.fps, info.has_audio) == (75, 360, 288, 25.0, True)
    back, _ = media.read_video(out)
    assert back.shape == frames.shape
    assert np.abs(back.astype(float) - frames).mean() < max_err
    back_audio = media.read_audio(out, 16000)
    n = min(len(audio), len(back_audio))
    assert abs(len(back_audio) - len(audio)) < 0.05 * 16000
    # lossy codecs shift the track by at most a few ms: compare the energy envelopes at 25 fps
    env = lambda a: np.sqrt(np.mean(a[: n // 640 * 640].reshape(-1, 640) ** 2, axis=1))  # noqa: E731
    assert np.corrcoef(env(audio), env(back_audio))[0, 1] > 0.95


def test_model_sized_clip_without_audio(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (1, 128, 96, 3), dtype=np.uint8), 10, axis=0)
    out = media.write_video(tmp_path / "small.mp4", frames, 25)
    info = media.probe(out)
    assert (info.width, info.height, info.n_frames, info.has_audio) == (96, 128, 10, False)
    with pytest.raises(media.MediaError, match="small.mp4: has no audio track"):
        media.read_audio(out, 16000)


def test_bad_inputs_name_the_file(grid_mini, tmp_path):
    truncated = tmp_path / "truncated.mpg"
    truncated.write_bytes((grid_mini / "bbaf2n.mpg").read_bytes()[:150_000])
    with pytest.raises(media.MediaError, match=r"truncated.mpg: corrupt or truncated video"):
        media.read_video(truncated)
    not_video = tmp_path / "notes.mpg"
    not_video.write_text("these are not frames\n" * 20)
    with pytest.raises(media.MediaError, match=r"notes.mpg: not a video"):
        media.probe(not_video)
    with pytest.raises(media.MediaError, match=r"notes.mpg: not an audio or video file"):
        media.read_audio(not_video, 16000)
    with pytest.raises(media.MediaError, match=r"missing.mpg: no such file"):
        media.read_video(tmp_path / "missing.mpg")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(media.MediaError, match=r"empty.mp4: empty file"):
        media.probe(empty)


def test_write_video_reports_ffmpegs_failure_and_leaves_nothing(tmp_path):
    """The frames go to ffmpeg in one write; when it fails, its own message names the problem."""
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    with pytest.raises(media.MediaError, match=r"x.mp4: encoding failed \(.*crf.*out of range"):
        media.write_video(tmp_path / "x.mp4", frames, 25, quality=-100)
    with pytest.raises(media.MediaError, match=r"y.mp4: encoding failed \(.*framerate"):
        media.write_video(tmp_path / "y.mp4", frames, 0)
    assert not list(tmp_path.iterdir())


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="odd.mp4: frame size 95x128"):
        media.write_video(tmp_path / "odd.mp4", np.zeros((2, 128, 95, 3), np.uint8), 25)
    with pytest.raises(ValueError, match="uint8"):
        media.write_video(tmp_path / "f.mp4", np.zeros((2, 128, 96, 3), np.float32), 25)
    assert not list(tmp_path.iterdir())


def test_read_video_resamples_the_frame_rate(tmp_path):
    from speechanim.media import read_video, write_video

    frames = np.zeros((30, 48, 64, 3), np.uint8)
    for k in range(30):
        frames[k, :, : 2 * k + 2] = 255  # a bar that grows by 2 columns a frame: its width tells the frame
    path = write_video(tmp_path / "thirty.mp4", frames, 30.0, np.zeros(16000, np.float32), 16000)
    same, fps = read_video(path)
    assert fps == pytest.approx(30.0) and len(same) == 30
    out, fps = read_video(path, fps=25.0)
    assert fps == 25.0 and len(out) == 25  # one second at 25 fps
    widths = (out[:, 24, :, 0] > 127).sum(1)
    shown = np.round((widths - 2) / 2).astype(int)  # which source frame each output frame shows
    times = np.arange(25) / 25.0
    assert np.all(np.abs(shown / 30.0 - times) <= 1 / 30.0 + 1e-9)


def test_channel_counts_only_from_layouts_that_state_them(tmp_path):
    """ffmpeg names a plain 6-channel WAV "5.1" and a 3-channel one "2.1": their leading digit is not the count,
    so a named layout gives None (read with ffmpeg's own mix), as mono / stereo / "N channels" give theirs."""
    from scipy.io import wavfile

    assert [media._channel_count(n) for n in ("mono", "stereo", "6 channels", "12 channels")] == [1, 2, 6, 12]
    assert [media._channel_count(n) for n in ("5.1", "5.1(side)", "2.1", "7.1", "quad", "3.0(back)")] == [None] * 6
    for channels in (1, 2, 3, 6):
        path = tmp_path / f"{channels}.wav"
        wavfile.write(path, 16000, np.zeros((1600, channels), np.int16).squeeze())
        assert media.audio_layout(path) == (16000, channels if channels <= 2 else None)
