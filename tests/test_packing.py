import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from speechanim.audio import frame_audio
from speechanim.packing import (AtomicH5, Clip, TrainingWindows, WholeClips, clip_keys, read_clip, to_unit_range, unit_range,
                                worker_init, write_clip)


def _clip(speaker, utt, t, seed, mirrored=False):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (t, 16, 12, 3), dtype=np.uint8)
    frames[:, 0, 0, 0] = np.arange(t)  # frame number in a pixel
    audio = rng.standard_normal(t * 640).astype(np.float32)
    return Clip(speaker, utt, frames, audio, rng.random((t, 478, 2), dtype=np.float32), 25.0, 16000,
                "bin blue at f two now", mirrored, f"/raw/{utt}.mpg")


@pytest.fixture
def packed(tmp_path):
    path = tmp_path / "train.h5"
    clips = [_clip("s1", "bbaf2n", 30, 0), _clip("s1", "bbaf2n", 30, 1, mirrored=True), _clip("s2", "lwbsza", 12, 2),
             _clip("s2", "sbia1a", 5, 3)]
    with AtomicH5(path) as h5:
        for c in clips:
            write_clip(h5, c)
    return path, clips


def test_round_trip_and_layout(packed):
    path, clips = packed
    with h5py.File(path) as h5:
        assert clip_keys(h5) == ["s1/bbaf2n", "s1/bbaf2n_mirror", "s2/lwbsza", "s2/sbia1a"]
        d = h5["s1/bbaf2n/frames"]
        assert d.shape == (30, 3, 16, 12) and d.dtype == np.uint8 and d.chunks == (30, 3, 16, 12)  # CHUNK_FRAMES: 75
        assert d.compression is None  # packing.CLIP_COMPRESSION: lzf gained 4% on real crops at a tenth of the align job
        back = read_clip(h5, "s2/lwbsza")
    np.testing.assert_array_equal(back.frames, clips[2].frames)
    np.testing.assert_array_equal(back.audio, clips[2].audio)
    assert (back.speaker, back.utterance, back.words, back.fps, back.sample_rate) == \
        ("s2", "lwbsza", "bin blue at f two now", 25.0, 16000)


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(ValueError, match="audio samples"):
        with AtomicH5(path) as h5:
            bad = _clip("s1", "a", 4, 0)
            bad.audio = bad.audio[:-1]
            write_clip(h5, bad)
    assert list(tmp_path.iterdir()) == []


def test_training_windows_match_the_clip(packed):
    path, clips = packed
    ds = TrainingWindows(path, n_frames=8, seed=0)
    assert len(ds) == 3  # the 5-frame clip is too short
    for i in range(len(ds)):
        item = ds[i]
        clip = next(c for c in clips if c.key == item["key"])
        s = item["start"]
        assert item["frames"].shape == (8, 3, 16, 12) and item["audio"].shape == (8, 2560)
        expected = clip.frames[s:s + 8].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
        np.testing.assert_allclose(item["frames"].numpy(), expected, atol=1e-6)
        # the windows read from part of the audio equal those cut from the whole clip
        full = frame_audio(clip.audio, len(clip.frames), 16000, 25.0, 0.16)
        np.testing.assert_array_equal(item["audio"].numpy(), full[s:s + 8])
        np.testing.assert_allclose(item["still"].numpy(), clip.frames[0].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)


def test_whole_clips_and_workers(packed):
    path, _ = packed
    ds = WholeClips(path)
    assert len(ds) == 4 and ds[2]["frames"].shape == (12, 3, 16, 12) and ds[2]["audio"].shape == (12, 2560)
    loader = DataLoader(TrainingWindows(path, n_frames=4), batch_size=2, num_workers=2, worker_init_fn=worker_init)
    batches = list(loader)
    assert len(batches) == 2 and all(b["frames"].shape == (2, 4, 3, 16, 12) for b in batches)
    assert sorted(k for b in batches for k in b["key"]) == ["s1/bbaf2n", "s1/bbaf2n_mirror", "s2/lwbsza", "s2/sbia1a"]
    assert batches[0]["frames"].dtype == torch.float32


def test_table1_counts_samples_and_hours(tmp_path):
    from speechanim.tables import main

    packed = tmp_path / "packed"
    for name, clips in {"train.h5": [_clip("s1", "a", 75, 0), _clip("s1", "a", 75, 0, mirrored=True)],
                        "val.h5": [_clip("s2", "b", 50, 1)], "test.h5": [_clip("s3", "c", 25, 2)]}.items():
        with AtomicH5(packed / name) as h5:
            for c in clips:
                write_clip(h5, c)
    out = tmp_path / "table1.csv"
    assert main(["table1", "--dataset", "toy", str(packed), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "Dataset,Samples (Tr),Hours (Tr),Samples (V),Hours (V),Samples (T),Hours (T),Split"
    assert lines[1] == f"toy,2,{6 / 3600:.4f},1,{2 / 3600:.4f},1,{1 / 3600:.4f},speaker-independent (paper)"
    with h5py.File(packed / "test.h5", "a") as h5:  # what pack writes for an utterance split
        h5.attrs["split_by"] = "utterance"
    assert main(["table1", "--dataset", "toy", str(packed), "--out", str(out)]) == 0
    assert out.read_text().splitlines()[1].endswith(",speaker-dependent: utterances of the same speakers (not the paper's protocol)")
    assert (tmp_path / "table1.md").read_text().startswith("| Dataset |")


def test_uint8_windows_become_the_float_windows_on_the_device(packed):
    """``TrainingWindows(uint8=True)`` gives the stored bytes; :func:`unit_range` of them (on the training
    device) is the float window bit for bit, for every byte value."""
    path, _ = packed
    floats, raw = TrainingWindows(path, n_frames=8, seed=0), TrainingWindows(path, n_frames=8, seed=0, uint8=True)
    for i in range(len(floats)):
        a, b = floats[i], raw[i]
        assert b["frames"].dtype == torch.uint8 and b["still"].dtype == torch.uint8 and a["start"] == b["start"]
        for k in ("still", "frames"):
            assert torch.equal(unit_range(b[k]).view(torch.int32), a[k].view(torch.int32))
    every = np.arange(256, dtype=np.uint8)
    expected = every.astype(np.float32) / 127.5 - 1.0  # the authors' formula, with its temporaries
    np.testing.assert_array_equal(to_unit_range(every).view(np.int32), expected.view(np.int32))
    np.testing.assert_array_equal(unit_range(torch.from_numpy(every)).numpy().view(np.int32), expected.view(np.int32))


def test_whole_clip_windows_read_the_still_from_the_window(tmp_path):
    """A window covering the whole clip (GRID at 75 frames) starts at 0 and its still is its first frame,
    whatever the chunking."""
    path = tmp_path / "whole.h5"
    clip = _clip("s1", "a", 12, 5)
    with AtomicH5(path) as h5:
        write_clip(h5, clip, chunk_frames=None, compression="gzip", compression_opts=1)
    with h5py.File(path) as h5:
        assert h5["s1/a/frames"].chunks == (12, 3, 16, 12) and h5["s1/a/frames"].compression == "gzip"
    item = TrainingWindows(path, n_frames=12)[0]
    assert item["start"] == 0
    np.testing.assert_array_equal(item["still"].numpy(), item["frames"][0].numpy())
    np.testing.assert_array_equal(item["frames"].numpy(), to_unit_range(clip.frames.transpose(0, 3, 1, 2)))


def test_a_long_clip_is_stored_in_75_frame_chunks_and_read_a_window_at_a_time(tmp_path):
    path = tmp_path / "long.h5"
    clip = _clip("s1", "long", 160, 6)
    with AtomicH5(path) as h5:
        write_clip(h5, clip)
    with h5py.File(path) as h5:
        assert h5["s1/long/frames"].chunks == (75, 3, 16, 12)
    ds = TrainingWindows(path, n_frames=75, seed=3, uint8=True)
    for seed in range(4):
        ds.seed = seed
        item = ds[0]
        s = item["start"]
        np.testing.assert_array_equal(item["frames"].numpy(), clip.frames[s:s + 75].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(item["still"].numpy(), clip.frames[0].transpose(2, 0, 1))


def _aligned_speaker(path, speaker, n, size, t):
    """An aligned speaker file (``preprocess align``'s layout) of ``n`` random clips."""
    rng = np.random.default_rng(n)
    with AtomicH5(path) as h5:
        h5.attrs.update(speaker=speaker, size=list(size), sample_rate=16000, smooth_window=7, max_gap=5, n_skipped=0)
        for i in range(n):
            write_clip(h5, Clip(speaker, f"u{i:03d}", rng.integers(0, 256, (t, *size, 3), dtype=np.uint8),
                                rng.standard_normal(t * 640).astype(np.float32),
                                rng.random((t, 478, 2), dtype=np.float32), 25.0, 16000))
    return path


def test_pack_holds_one_clip_at_a_time(tmp_path):
    """Packing (with mirroring, which decodes each clip) streams: its peak of Python-allocated memory (numpy's
    arrays included) packing 12 clips is within one clip's frames of its peak packing 2, so a pack that kept
    clips (or their mirrors) in memory fails here; benchmarks/pack_memory.py measures the process's peak RSS."""
    import tracemalloc

    from speechanim.preprocess import pack
    from speechanim.splits import write_split

    size, t = (32, 24), 20
    clip_bytes = t * size[0] * size[1] * 3
    peaks = {}
    for n in (0, 2, 12):  # 0: a warm-up (the first pack imports the mirroring's modules), not traced
        folder = tmp_path / f"n{n}"
        files = [_aligned_speaker(folder / f"s{k}.h5", f"s{k}", max(n // 2, 1), size, t) for k in (1, 2)]
        write_split(folder / "split.tsv", {"s1": "train", "s2": "train"})
        if n:
            tracemalloc.start()
        try:
            pack(folder / "split.tsv", "train", files, folder / "train.h5", mirror=True, progress=False)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[12] - peaks[2] < clip_bytes, peaks
