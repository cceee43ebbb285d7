"""Every command in the shell blocks of the README and of the docs pages (docs/*.md) is run (the quick ones) or
dry-run (the DAG, cluster and install ones) here, so a command that no longer works fails the suite. A new
command must be given a way to be checked in HOW (the first test fails otherwise)."""
from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.io

from speechanim.media import read_audio, read_video, write_wav
from tiny_generator import tiny_generator_checkpoint

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def documented_pages() -> list[Path]:
    """The README and the docs pages (not the committed runs' own notes under docs/<run>/)."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    """The commands of the ```sh blocks of the README and the docs pages (comments and blank lines dropped),
    each once, in order of appearance."""
    commands = []
    for page in documented_pages():
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    commands.append(line)
    return list(dict.fromkeys(commands))


def run(args: list[str], cwd: Path = REPO, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def dry_run_snakemake(command: str, tmp_path: Path) -> None:
    args = shlex.split(command)
    res = run([sys.executable, "-m", "snakemake", "-n", *args[1:]])
    assert res.returncode == 0, f"{command}: {res.stderr[-3000:]}"
    assert "Job stats" in res.stdout + res.stderr or "Nothing to be done" in res.stdout + res.stderr, command


def make_dry_run(command: str, tmp_path: Path) -> None:
    target = shlex.split(command)[1]
    res = run(["make", "-n", target])
    assert res.returncode == 0 and res.stdout.strip(), f"{command}: {res.stderr}"
    if target == "table3":  # and the DAG it would run
        dry_run_snakemake("snakemake --cores 8", tmp_path)


def animate(command: str, tmp_path: Path) -> None:
    """The command as written, with its file names pointing at a real GRID face and speech and a tiny checkpoint."""
    grid = REPO.parent / "shared" / "data" / "grid-mini" / "bbaf2n.mpg"
    frames, _ = read_video(grid)
    skimage.io.imsave(tmp_path / "face.jpg", frames[0], check_contrast=False)
    write_wav(tmp_path / "speech.wav", read_audio(grid, 16000)[:16000], 16000)
    args = shlex.split(command)
    checkpoint = args[args.index("--checkpoint") + 1]
    tiny_generator_checkpoint(tmp_path / checkpoint, (64, 48), 16000)
    res = run([str(BIN / "speechanim"), *args[1:], "--no-progress"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / args[args.index("-o") + 1]).stat().st_size > 0


def venv(command: str, tmp_path: Path) -> None:
    res = run(["bash", "-c", f"{command} && python -c 'import sys; print(sys.prefix)'"], cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == str(tmp_path / ".venv"), res.stderr


def pip_install(command: str, tmp_path: Path) -> None:
    """Dry: the extras it names are the package's (installing needs the network)."""
    extras = re.search(r"\.\[([\w,]+)\]", command).group(1).split(",")
    provided = importlib.metadata.metadata("speechanim").get_all("Provides-Extra")
    assert set(extras) <= set(provided), (extras, provided)


def pytest_collect(command: str, tmp_path: Path) -> None:
    """Dry: the suite collects (running it here would run this test again)."""
    res = run([sys.executable, "-m", "pytest", "--collect-only", "-q"], timeout=600)
    assert res.returncode == 0 and " tests collected" in res.stdout, res.stdout[-2000:]


def study_serve(command: str, tmp_path: Path) -> None:
    """The command as written (plus a free port) on a tiny study set at results/study: it serves the page and
    creates the database; SIGTERM stops it cleanly."""
    import urllib.request

    from study_fixtures import stop, tiny_study

    tiny_study(tmp_path / "results", n_clips=2)
    args = shlex.split(command)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([str(BIN / "speechanim"), *args[1:], "--port", "0", "--quiet"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = "http://" + line.split("http://", 1)[1].split()[0]
        with urllib.request.urlopen(url, timeout=10) as res:
            assert res.status == 200 and b"Talking faces" in res.read()
    finally:
        assert stop(proc) == 0
    assert (tmp_path / args[args.index("--db") + 1]).is_file()


def study_export(command: str, tmp_path: Path) -> None:
    """The command as written, on a database holding one participant's answer."""
    from speechanim.study.db import StudyDB

    args = shlex.split(command)
    db = StudyDB(tmp_path / args[args.index("--db") + 1])
    db.add_participant("a" * 32, "readme", [{"kind": "turing", "dataset": "grid", "clip": "s1/bbaf2n",
                                              "file": "0123456789abcdef.mp4", "truth": "real"}])
    assert db.answer("a" * 32, 0, "fake")[0] == "ok"
    db.close()
    res = run([str(BIN / "speechanim"), *args[1:]], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / args[args.index("--out") + 1]).read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("a" * 32) and ",fake,,0," in rows[1], rows


def import_sda(command: str, tmp_path: Path) -> None:
    """The command as written, on a file laid out as the authors' (tests/test_sda.py builds it)."""
    from test_sda import fake_dat

    args = shlex.split(command)
    fake_dat(tmp_path / args[2])
    res = run([str(BIN / "speechanim"), *args[1:]], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / args[args.index("-o") + 1]).stat().st_size > 0


def stream_pipe(command: str, tmp_path: Path) -> None:
    """The pipeline as written (ffmpeg is imageio-ffmpeg's binary here), a tiny checkpoint, a real face and speech."""
    from imageio_ffmpeg import get_ffmpeg_exe

    grid = REPO.parent / "shared" / "data" / "grid-mini" / "bbaf2n.mpg"
    frames, _ = read_video(grid)
    skimage.io.imsave(tmp_path / "face.jpg", frames[0], check_contrast=False)
    write_wav(tmp_path / "speech.wav", read_audio(grid, 44100), 44100)
    args = shlex.split(command.split("|", 1)[1])
    tiny_generator_checkpoint(tmp_path / args[args.index("--checkpoint") + 1], (64, 48), 16000)
    res = run(["bash", "-o", "pipefail", "-c", command.replace("ffmpeg ", shlex.quote(get_ffmpeg_exe()) + " -v error ", 1)],
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / args[args.index("-o") + 1]).stat().st_size > 0
    y4m = (tmp_path / args[args.index("--frames-out") + 1]).read_bytes()
    assert y4m.startswith(b"YUV4MPEG2 W48 H64 F25:1") and y4m.count(b"FRAME\n") == 75


def plan(command: str, tmp_path: Path) -> None:
    """The command as written: a table with a total line, and GPU hours said to be estimates."""
    res = run([str(BIN / "speechanim"), *shlex.split(command)[1:]])
    assert res.returncode == 0, res.stderr
    assert re.search(r"^total\s+\d", res.stdout, re.M) and "ESTIMATED, not measured" in res.stdout, res.stdout


HOW = [
    (r"make (setup|help|table3|test|report|dag|docs|mutants|plan)$", make_dry_run),
    (r"speechanim plan ", plan),
    (r"speechanim import-sda ", import_sda),
    (r"ffmpeg -i \S+ .*\| speechanim animate --stream ", stream_pipe),
    (r"speechanim animate ", animate),
    (r"speechanim study serve ", study_serve),
    (r"speechanim study export ", study_export),
    (r"python3\.11 -m venv \.venv && \. \.venv/bin/activate$", venv),
    (r"pip install -e '\.\[[\w,]+\]'$", pip_install),
    (r"snakemake ", dry_run_snakemake),
    (r"python -m pytest$", pytest_collect),
]


def how(command: str):
    return next((f for pattern, f in HOW if re.match(pattern, command)), None)


def test_every_readme_command_has_a_check():
    commands = readme_commands()
    assert len(commands) >= 20  # the README's and the docs pages'
    assert {"make setup", "make test", "python -m pytest"} <= set(commands)
    assert [c for c in commands if how(c) is None] == []


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_works(command, tmp_path):
    how(command)(command, tmp_path)
