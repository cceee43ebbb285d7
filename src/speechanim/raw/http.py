"""A robust HTTP downloader built on the standard library (``urllib``) alone.

:func:`download` fetches one URL into a file and guarantees that the file exists under its final
name only when it is whole and verified:

* bytes go to ``<dest>.part``; an interrupted download (a dropped connection, a socket timeout, a
  killed process) keeps the ``.part`` and the next attempt, or the next run, resumes it with an HTTP
  ``Range: bytes=<have>-`` request;
* a ``206 Partial Content`` answer is appended to the ``.part`` after checking that its
  ``Content-Range`` starts where the ``.part`` ends; a server that ignores ``Range`` and answers
  ``200`` with the whole body makes the download restart from zero;
* a body shorter than its ``Content-Length`` (``http.client`` does not always notice: ``read(n)``
  returns ``b""`` at an early end of file), ``IncompleteRead``, ``ConnectionResetError``, socket
  timeouts, connection refusals and HTTP 5xx/408/429 answers are retried with exponential backoff
  (:class:`RetryPolicy`); other HTTP errors (404, 403, ...) fail at once;
* when the expected size and md5 are known the ``.part`` is checked against them; a checksum mismatch
  deletes the ``.part`` (its bytes cannot be trusted to resume from) and raises
  :class:`ChecksumError` naming the URL and the file;
* only then is the ``.part`` renamed to ``dest`` (atomically, ``os.replace``), so an existing ``dest``
  means a finished download and a rerun does not fetch it again.

Progress is reported per file on stderr with tqdm (sparsely when stderr is not a terminal, so that
job logs stay small).
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

USER_AGENT = "speechanim/0.1 (Python urllib)"
CHUNK_SIZE = 1 << 20
#: HTTP statuses worth another attempt: timeouts, throttling and server-side failures.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(RuntimeError):
    """A download failed for good; the message names the URL (and the file when there is one)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the published size or md5; the ``.part`` has been deleted."""


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix (the ``.part`` is kept)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` per file, waiting ``backoff_s * 2**k`` (capped) between them."""

    attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.timeout_s <= 0:
            raise ValueError("backoff and timeout must be positive")

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        delay = self.backoff_s * (2 ** (failed_attempt - 1))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)


DEFAULT_POLICY = RetryPolicy()


def md5_file(path: str | os.PathLike, chunk_size: int = CHUNK_SIZE) -> str:
    """The hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def part_path(dest: str | os.PathLike) -> Path:
    """Where :func:`download` keeps the unfinished bytes of ``dest``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _open(url: str, headers: dict[str, str], timeout: float):
    """``urlopen`` with errors sorted into retryable (:class:`_Retryable`) and final (:class:`DownloadError`)."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
    except ValueError as e:
        raise DownloadError(f"{url}: not a URL that can be downloaded ({e})") from None
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:
            return e  # Range Not Satisfiable: the caller decides from Content-Range
        e.close()
        if e.code in RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {e.code} {e.reason}", _retry_after(e.headers)) from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, OSError):  # refused, reset, timed out, name resolution failed
            raise _Retryable(f"cannot connect: {reason}") from None
        raise DownloadError(f"{url}: {reason}") from None
    except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as e:
        raise _Retryable(f"connection failed: {type(e).__name__}: {e}") from None


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``(first, last, total)`` of a ``Content-Range`` header (``None`` where absent or ``*``)."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None, None, None
    first, last, total = m.groups()
    return (int(first) if first else None, int(last) if last else None, int(total) if total and total != "*" else None)


def _progress(name: str, total: int | None, initial: int, enabled: bool) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=not enabled, leave=True,
        mininterval=0.2 if interactive else 30.0, miniters=1 if interactive else None,
    )


def _attempt(url: str, part: Path, size: int | None, policy: RetryPolicy, progress: bool, name: str) -> None:
    """One request: resume or (re)start ``part``; raise :class:`_Retryable` when the body ends early."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        log.warning("%s: %d bytes in %s, more than the expected %d: starting again", url, have, part.name, size)
        part.unlink()
        have = 0
    if size is not None and have == size:
        return  # every byte is already here; verification follows
    headers = {"Range": f"bytes={have}-"} if have else {}
    response = _open(url, headers, policy.timeout_s)
    with response:
        status = response.status if hasattr(response, "status") else response.code
        if status == 416:
            _, _, total = _content_range(response.headers.get("Content-Range"))
            if total is not None and total == have:
                return  # the .part already holds the whole file
            part.unlink(missing_ok=True)
            raise _Retryable(f"server refused the range bytes={have}- (HTTP 416); starting again from zero")
        if status == 206:
            first, _, total = _content_range(response.headers.get("Content-Range"))
            if first != have:
                part.unlink(missing_ok=True)
                raise _Retryable(
                    f"server answered the range bytes={have}- with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; starting again from zero"
                )
            mode, offset = "ab", have
        elif status == 200:
            if have:
                log.info("%s: the server ignored the Range request; downloading %s from zero", url, name)
            mode, offset, total = "wb", 0, None
        else:
            raise _Retryable(f"unexpected HTTP {status}")
        length_header = response.headers.get("Content-Length")
        body_length = int(length_header) if length_header and length_header.isdigit() else None
        if total is None and body_length is not None:
            total = offset + body_length
        if size is not None and total is not None and total != size:
            raise DownloadError(f"{url}: the server sends {total} bytes but {size} were expected for {name}")
        # read1 returns whatever has arrived (up to a chunk), so a timeout loses little
        read = response.read1 if hasattr(response, "read1") else response.read
        expected_end = total if total is not None else size
        received = 0
        with open(part, mode) as out, _progress(name, expected_end, offset, progress) as bar:
            while True:
                try:
                    block = read(CHUNK_SIZE)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as e:
                    raise _Retryable(f"connection lost after {offset + received} bytes: {type(e).__name__}: {e}") from None
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if expected_end is not None and offset + received < expected_end:
            raise _Retryable(f"connection closed after {offset + received} of {expected_end} bytes")


def _verify(url: str, part: Path, size: int | None, md5: str | None) -> None:
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: downloaded {got} bytes into {part}, expected {size}; the partial file was deleted")
    if md5:
        actual = md5_file(part)
        if actual.lower() != md5.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{url}: md5 mismatch for {part}: expected {md5.lower()}, got {actual}; "
                "the partial file was deleted, run again to download it afresh"
            )


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    md5: str | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``<dest>.part``), verify it, and rename it into place.

    ``size`` (bytes) and ``md5`` (hex) are checked when given.  An existing ``dest`` is taken as a
    finished download (it only ever appears after verification) and is not fetched again, unless its
    size disagrees with ``size``, in which case it is moved aside to ``.part`` and completed or
    replaced.  Raises :class:`DownloadError` (or :class:`ChecksumError`) naming the URL and the file.
    """
    dest = Path(dest)
    part = part_path(dest)
    if dest.exists():
        if size is None or dest.stat().st_size == size:
            log.info("%s: already downloaded", dest)
            return dest
        log.warning("%s: %d bytes on disk but %d expected: downloading it again", dest, dest.stat().st_size, size)
        os.replace(dest, part)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, policy.attempts + 1):
        try:
            _attempt(url, part, size, policy, progress, dest.name)
            break
        except _Retryable as e:
            if attempt == policy.attempts:
                raise DownloadError(
                    f"{url}: giving up after {policy.attempts} attempts ({e}); "
                    f"{part.stat().st_size if part.exists() else 0} bytes kept in {part} for the next run"
                ) from None
            wait = policy.delay(attempt, e.retry_after)
            log.warning("%s: attempt %d of %d failed (%s); retrying in %.1f s", url, attempt, policy.attempts, e, wait)
            time.sleep(wait)
    _verify(url, part, size, md5)
    os.replace(part, dest)
    log.info("%s: downloaded%s", dest, " and verified" if (size is not None or md5) else "")
    return dest


def fetch_bytes(url: str, *, policy: RetryPolicy = DEFAULT_POLICY, max_bytes: int = 64 << 20) -> bytes:
    """A small resource (such as record metadata) in memory, with the same retries as :func:`download`."""
    for attempt in range(1, policy.attempts + 1):
        try:
            response = _open(url, {}, policy.timeout_s)
            with response:
                status = response.status if hasattr(response, "status") else response.code
                if status != 200:
                    raise _Retryable(f"unexpected HTTP {status}")
                length = response.headers.get("Content-Length")
                try:
                    body = response.read(max_bytes + 1)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as e:
                    raise _Retryable(f"connection lost: {type(e).__name__}: {e}") from None
            if len(body) > max_bytes:
                raise DownloadError(f"{url}: larger than {max_bytes} bytes")
            if length and length.isdigit() and len(body) < int(length):
                raise _Retryable(f"connection closed after {len(body)} of {length} bytes")
            return body
        except _Retryable as e:
            if attempt == policy.attempts:
                raise DownloadError(f"{url}: giving up after {policy.attempts} attempts ({e})") from None
            wait = policy.delay(attempt, e.retry_after)
            log.warning("%s: attempt %d of %d failed (%s); retrying in %.1f s", url, attempt, policy.attempts, e, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")
