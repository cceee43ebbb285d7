"""Files that appear whole or not at all: write under a temporary name beside the target, then rename.

A reader (a rule that starts next, a person looking at ``results/``) never sees half a file, and a
write that fails leaves the old file, if any, as it was and no temporary file behind.

And no output path destroys an input: :func:`check_outputs_apart` (and, where a command line enters,
:func:`refuse_clashing_paths`) refuses an output that is, holds or lies inside an input before anything
is read or written.  Every command calls it with the paths it reads and writes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

if TYPE_CHECKING:
    import argparse


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that read it keep working), renamed onto
    ``path`` when the block ends without an error and removed otherwise. Parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` (``.<stem>.tmp<pid><suffix>``) left in ``folder`` by a
    process that was killed mid-write (a failed write removes its own); returns them. Call it only where no other
    process is writing into ``folder``."""
    stale = [p for p in Path(folder).glob(".*.tmp[0-9]*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """``open(path, mode)`` through :func:`atomic_path` (text mode defaults to UTF-8 and no newline translation)."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("newline", "")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


# ---------------------------------------------------------------- outputs kept apart from inputs

class PathClashError(ValueError):
    """An output path would overwrite, replace or sit inside an input (or another output); the message names both."""


def _paths(named: Mapping[str, object]) -> list[tuple[str, Path]]:
    """``(label, path)`` of every path in ``named`` (label -> a path, None or a list of paths); "" and "-"
    (stdin/stdout) are no files, and what is not a path (None, an array given instead of a file) is no file."""
    out = []
    for label, value in named.items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        out += [(label, Path(v)) for v in values if isinstance(v, (str, os.PathLike)) and str(v) not in ("", "-")]
    return out


def _real(path: Path) -> Path:
    """``path`` absolute with every symlink followed (also where its tail does not exist yet)."""
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same inode (a hard link, a symlink) or the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return _real(a) == _real(b)


def _under(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` lies strictly inside the folder ``outer`` (symlinks followed)."""
    return _real(outer) in _real(inner).parents


def _shown(label: str, path: Path) -> str:
    """``--flag path``, with where it really leads when a symlink or ``..`` hides it."""
    real = _real(path)
    return f"{label} {path}" + (f" (= {real})" if real != Path(os.path.abspath(path)) else "")


def check_outputs_apart(inputs: Mapping[str, object], outputs: Mapping[str, object]) -> None:
    """Refuse, before anything is read or written, an output path that would destroy an input or another output.

    ``inputs`` and ``outputs`` map a label (the option, e.g. ``"--image"``) to a path, a list of paths or None.
    Name exactly what is read and written: a folder as input means its whole tree is read, a folder as output
    that it is filled or replaced.  Refused (:class:`PathClashError`, naming both paths and what would happen):
    an output that is an input (same resolved path or same inode: a symlink, a hard link), an output folder
    that holds an input, an output inside an input folder, and two outputs that are one path or nested.
    Paths are compared resolved, so ``./a``, ``b/../a`` and a symlink to ``a`` are all ``a``.
    """
    ins, outs = _paths(inputs), _paths(outputs)
    for out_label, out in outs:
        for in_label, src in ins:
            if _same(out, src):
                problem = "is the same file as"
            elif _under(src, out):
                problem = "is a folder that holds"
            elif _under(out, src):
                problem = "lies inside the input folder"
            else:
                continue
            raise PathClashError(f"{_shown(out_label, out)} {problem} {_shown(in_label, src)}: writing it would "
                                 "destroy or change the input; nothing was written, name an output elsewhere")
    for i, (a_label, a) in enumerate(outs):
        for b_label, b in outs[i + 1:]:
            if _same(a, b) or _under(a, b) or _under(b, a):
                raise PathClashError(f"{_shown(a_label, a)} and {_shown(b_label, b)} are the same path or one holds "
                                     "the other: one output would overwrite the other; nothing was written")


def files_in(folders: Iterable[str | os.PathLike], pattern: str) -> list[Path]:
    """The files matching ``pattern`` in each of ``folders`` (none where a folder does not exist): the inputs of a
    command that reads some files of a folder, so that an output may go beside them but not over one."""
    return [f for d in folders if str(d) for f in sorted(Path(d).glob(pattern)) if f.is_file()]


def refuse_clashing_paths(parser: argparse.ArgumentParser, inputs: Mapping[str, object],
                          outputs: Mapping[str, object]) -> None:
    """:func:`check_outputs_apart` where a command line enters: a clash ends the command as argparse ends a bad
    command line (the usage, ``prog: error: ...`` naming both paths, exit code 2), before any file is touched."""
    try:
        check_outputs_apart(inputs, outputs)
    except PathClashError as e:
        parser.error(str(e))
