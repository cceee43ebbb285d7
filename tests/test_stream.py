"""Live audio: speechanim.stream (resampling and framing a stream as it arrives) and Animator.stream
with audio chunks: the frames of the offline pass, each as soon as its window's audio is in."""
from __future__ import annotations

import io
import struct
import threading
import time

import numpy as np
import pytest
from scipy.signal import resample_poly

from speechanim.animate import Animator
from speechanim.audio import frame_audio
from speechanim.media import read_audio, read_video
from speechanim.stream import AudioFramer, StreamResampler, Y4MWriter, growing_wav_chunks, pcm_chunks, rgb_to_yuv444
from tiny_generator import tiny_generator_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _irregular(x: np.ndarray, seed: int = 0, top: int = 3000) -> list[np.ndarray]:
    """``x`` cut into chunks of random sizes 0..top (empty chunks included)."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(0, top, size=len(x) // max(1, top // 2) + 2))
    return np.split(x, cuts[cuts < len(x)])


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 16000), (16000, 40000), (8000, 8000), (22050, 8000)])
def test_stream_resampler_equals_resample_poly(rates):
    rate_in, rate_out = rates
    x = np.random.default_rng(1).standard_normal(rate_in // 2 + 37)
    expected = resample_poly(x, *(np.array([rate_out, rate_in]) // np.gcd(rate_in, rate_out)))
    r = StreamResampler(rate_in, rate_out)
    got = np.concatenate([r.push(c) for c in _irregular(x)] + [r.close()])
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rule", ["ceil", "floor"])
def test_framer_gives_frame_audios_windows_as_soon_as_complete(rule):
    rate, stride, window = 16000, 640, 2560
    x = (np.random.default_rng(2).standard_normal(rate + 333) * 0.1).astype(np.float32)
    n = -(-len(x) // stride) if rule == "ceil" else len(x) // stride
    expected = frame_audio(x, n, rate, 25, 0.16, trim=rule == "ceil")
    framer = AudioFramer(rate, rate, stride, window, frames=rule)
    got, received = [], 0
    for chunk in _irregular(x, seed=3):
        received += len(chunk)
        new = framer.push(chunk)
        got += new
        # every window whose last sample has arrived is out, and none before: frame k needs the
        # samples up to k * stride + window - left, i.e. 80 ms after its centre
        complete = max(0, (received - (window - framer.left)) // stride + 1)
        assert len(got) == min(complete, n) if rule == "floor" else len(got) == complete
    got += framer.close()
    assert framer.lookahead == int(0.08 * rate)
    np.testing.assert_array_equal(np.stack(got), expected)


CLIP = "bbaf2n"


@pytest.fixture(scope="module")
def live(tmp_path_factory, grid_mini):
    ckpt = tiny_generator_checkpoint(tmp_path_factory.mktemp("ckpt") / "generator.pt", (64, 48), 8000)
    frames, _ = read_video(grid_mini / f"{CLIP}.mpg")
    return Animator(ckpt, device="cpu"), frames[0], read_audio(grid_mini / f"{CLIP}.mpg", 44100)


def test_animator_stream_from_chunks_equals_the_offline_frames(live):
    animator, face, audio = live
    offline = animator(face, audio, sample_rate=44100, seed=3, gain=0.8)
    pieces = _irregular(audio, seed=4, top=5000)
    handed = []  # samples handed to the animator so far

    def chunks():
        for c in pieces:
            handed.append(len(c))
            yield c
    streamed, handed_at_frame = [], []
    for frame in animator.stream(face, chunks(), sample_rate=44100, seed=3, gain=0.8):
        streamed.append(frame)
        handed_at_frame.append(sum(handed))
    assert len(streamed) == len(offline) == 75
    assert np.abs(np.stack(streamed).astype(np.int16) - offline).max() <= 1
    # frame k comes as soon as the chunk holding its window's last sample (80 ms after the frame's
    # centre, plus the resampler's ~57 input samples of filter) is in, and not before
    ends = np.cumsum([len(c) for c in pieces])
    ratio = 44100 / animator.sample_rate
    for k, given in enumerate(handed_at_frame[:-4]):  # the last frames wait for the end of the stream
        last = (k * animator.audio_stride + animator.window - (animator.window - animator.audio_stride) // 2) * ratio
        assert given >= last - 1
        assert given <= ends[np.searchsorted(ends, last + 60)], (k, given, last)


def test_pcm_and_growing_wav_sources(tmp_path):
    pcm = (np.sin(np.arange(8000) / 5) * 20000).astype("<i2")
    got = np.concatenate(list(pcm_chunks(io.BytesIO(pcm.tobytes() + b"\x01"), chunk_bytes=333)))
    np.testing.assert_allclose(got, pcm / 32768.0)  # an odd trailing byte is not a sample
    path = tmp_path / "live.wav"
    header = b"RIFF" + struct.pack("<I", 0) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) \
        + b"data" + struct.pack("<I", 0)

    def writer():  # another program writing the WAV in pieces, header first
        with open(path, "wb") as f:
            f.write(header)
            for part in np.array_split(pcm, 7):
                f.write(part.tobytes())
                f.flush()
                time.sleep(0.05)
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.01)
    rate, chunks = growing_wav_chunks(path, idle_s=0.5, poll_s=0.01)
    got = np.concatenate(list(chunks))
    t.join()
    assert rate == 16000
    np.testing.assert_allclose(got, pcm / 32768.0)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32))
    with pytest.raises(ValueError, match="16-bit PCM"):
        growing_wav_chunks(tmp_path / "bad.wav", idle_s=0.1)


def test_y4m_stream_is_what_ffmpeg_reads(tmp_path):
    import ffmpeg
    from imageio_ffmpeg import get_ffmpeg_exe

    frames = np.random.default_rng(5).integers(0, 256, (3, 8, 6, 3), dtype=np.uint8)
    buf = io.BytesIO()
    w = Y4MWriter(buf, (8, 6), 25)
    for f in frames:
        w.write(f)
    (tmp_path / "s.y4m").write_bytes(buf.getvalue())
    out, _ = (ffmpeg.input(str(tmp_path / "s.y4m")).output("pipe:", format="rawvideo", pix_fmt="rgb24")
              .global_args("-v", "error").run(cmd=get_ffmpeg_exe(), capture_stdout=True))
    back = np.frombuffer(out, np.uint8).reshape(frames.shape)
    assert np.abs(back.astype(int) - frames).mean() < 2.5  # BT.601 limited range there and back
    assert rgb_to_yuv444(np.full((1, 1, 3), 255, np.uint8)).ravel().tolist() == [235, 128, 128]


def test_cli_streams_stdin_pcm_to_a_y4m_pipe_and_an_mp4(live, tmp_path, grid_mini):
    import os
    import subprocess
    import sys

    import skimage.io

    from speechanim.media import probe

    animator, face, audio = live
    skimage.io.imsave(tmp_path / "face.png", face, check_contrast=False)
    pcm = (read_audio(grid_mini / f"{CLIP}.mpg", 16000) * 32767).astype("<i2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "speechanim.cli", "animate", "--stream", "--audio", "-", "--rate", "16000",
           "--image", str(tmp_path / "face.png"), "--checkpoint", str(animator.checkpoint),
           "-o", str(tmp_path / "live.mp4"), "--frames-out", "-"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    header = None
    # feed a second of audio, then read frames while the rest has not been sent: they come before the end
    proc.stdin.write(pcm[:16000].tobytes())
    proc.stdin.flush()
    header = proc.stdout.readline()
    assert header.startswith(b"YUV4MPEG2 W48 H64 F25:1")
    frame_bytes = len(b"FRAME\n") + 3 * 64 * 48
    early = proc.stdout.read(frame_bytes * 20)  # 20 frames (0.8 s) out of the first second, stream still open
    assert early.count(b"FRAME\n") >= 20
    proc.stdin.write(pcm[16000:].tobytes())
    proc.stdin.close()
    rest = proc.stdout.read()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    n = (len(early) + len(rest)) // frame_bytes
    assert n == -(-len(pcm) // 320 // 2) == 75
    info = probe(tmp_path / "live.mp4")
    assert info.n_frames == 75 and info.has_audio
    assert str(tmp_path / "live.mp4") in err  # the mp4's path goes to stderr when stdout is the frame pipe
    bad = subprocess.run(cmd[:7] + cmd[9:], input=b"", capture_output=True, env=env)  # no --rate
    assert bad.returncode == 1 and "needs its --rate" in bad.stderr.decode()
