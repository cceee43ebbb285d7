"""A practitioner's check on a real face: `speechanim animate` with a trained checkpoint, on the first frame of
a test utterance's video and on a second test utterance's first frame, both with the first utterance's audio.

    .venv/bin/python workflow/scripts/animate_real_speaker.py --raw data/raw/grids1/s1 \\
        --split results/grids1/split.tsv --test data/packed/grids1/test.h5 \\
        --checkpoint results/grids1/models/full/generator.pt --out docs/grid-s1-fig5.png [--work DIR]

The stills are the raw videos' first frames (360 x 288, the face not yet aligned: `animate` aligns them as it
would a user's photo) and the audio is the raw video's own track written as a WAV; both are given to the
command line a user types, run as a subprocess. The figure's rows: the real aligned frames of the first
utterance (its packed test clip), the generated frames from its first frame, the generated frames from the
second still with the same audio. The mp4s and the inputs are kept in ``--work``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import skimage.io

from speechanim.figures import spaced, strip
from speechanim.media import audio_rate, read_audio, read_video, write_wav
from speechanim.packing import clip_group, clip_keys
from speechanim.raw.layout import read_manifest
from speechanim.splits import read_split


def test_utterances(split_path: Path, test_h5: Path) -> list[str]:
    """The test clips that were packed (aligned), as ``speaker/utterance`` keys, sorted."""
    split = read_split(split_path)
    with h5py.File(test_h5, "r") as h5:
        packed = set(clip_keys(h5))
    return sorted(k for k, part in split.items() if part == "test" and k in packed)


def animate(speechanim: str, image: Path, audio: Path, checkpoint: Path, out: Path) -> None:
    cmd = [speechanim, "animate", "--image", str(image), "--audio", str(audio), "--checkpoint", str(checkpoint),
           "-o", str(out), "--no-progress"]
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw", type=Path, required=True, help="the raw speaker folder (manifest.tsv, the videos)")
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True, help="the packed test clips (the real aligned frames)")
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None, help="keep the stills, the WAV and the mp4s here")
    ap.add_argument("--pick", type=int, nargs=2, default=[0, 1], help="which test utterances (indices, sorted)")
    args = ap.parse_args(argv)

    keys = test_utterances(args.split, args.test)
    first, second = (keys[i] for i in args.pick)
    videos = {u.utterance: args.raw / u.video for u in read_manifest(args.raw)}
    work = args.work or Path(tempfile.mkdtemp(prefix="animate-real-"))
    work.mkdir(parents=True, exist_ok=True)
    speechanim = shutil.which("speechanim") or str(Path(sys.executable).parent / "speechanim")
    stills = {}
    for key in (first, second):
        utt = key.split("/", 1)[1]
        frames, _ = read_video(videos[utt])
        stills[key] = work / f"{utt}_still.png"
        skimage.io.imsave(stills[key], frames[0], check_contrast=False)
    utt = first.split("/", 1)[1]
    rate = audio_rate(videos[utt])
    wav = work / f"{utt}.wav"
    write_wav(wav, read_audio(videos[utt], rate), rate)
    generated = {}
    for key in (first, second):
        generated[key] = work / f"{key.split('/', 1)[1]}_with_{utt}_audio.mp4"
        animate(speechanim, stills[key], wav, args.checkpoint, generated[key])
    with h5py.File(args.test, "r") as h5:
        clip = clip_group(h5, first)  # checked: its data are in the file
        real, words = clip["frames"][()].transpose(0, 2, 3, 1), str(clip.attrs["words"])
    own, other = (read_video(generated[k])[0] for k in (first, second))
    rows = [("real", real), ("its 1st frame", own), ("another still", other)]
    strip(rows, spaced(len(real)), f"speechanim animate ({args.checkpoint}), the audio of {first} ('{words}'):\n"
          f"the real video; generated from its first frame; generated from {second}'s first frame", args.out)
    print(f"wrote {args.out}; videos in {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
