"""The HTTP downloader against a local server that drops connections, ignores Range and fails."""
from __future__ import annotations

import hashlib
import random

import pytest

from grid_fixtures import FixtureServer
from speechanim.raw.http import ChecksumError, DownloadError, RetryPolicy, download, fetch_bytes, md5_file, part_path

PAYLOAD = random.Random(0).randbytes(3 * (1 << 20) + 12345)  # a bit over three 1 MiB chunks
MD5 = hashlib.md5(PAYLOAD).hexdigest()
NAME = "data.bin"
FAST = RetryPolicy(attempts=4, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5)


@pytest.fixture(scope="module")
def _server():
    with FixtureServer() as server:
        server.serve_file(NAME, PAYLOAD)
        yield server


@pytest.fixture
def server(_server: FixtureServer) -> FixtureServer:
    _server.reset()
    return _server


def url(server: FixtureServer, name: str = NAME) -> str:
    return f"{server.base_url}/{name}"


def test_download_verifies_and_renames(server, tmp_path):
    dest = download(url(server), tmp_path / "sub" / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert server.requests(NAME) == [(f"/records/3625687/files/{NAME}", None, 200)]


def test_dropped_connection_resumes_with_range(server, tmp_path):
    server.behave(NAME, drop_times=1)
    dest = download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    (_, first_range, first_status), (_, second_range, second_status) = server.requests(NAME)
    assert (first_range, first_status) == (None, 200)
    assert second_range == f"bytes={len(PAYLOAD) // 2}-" and second_status == 206


def test_dropped_connection_without_known_size_still_resumes(server, tmp_path):
    """The early end is caught from Content-Length alone (``read(n)`` returns b"" without an error)."""
    server.behave(NAME, drop_times=2, drop_after=1000)
    dest = download(url(server), tmp_path / NAME, policy=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r[1] for r in server.requests(NAME)] == [None, "bytes=1000-", "bytes=2000-"]


def test_interrupted_run_is_resumed_by_the_next_run(server, tmp_path):
    server.behave(NAME, drop_times=1)
    with pytest.raises(DownloadError, match="giving up after 1 attempts.*kept in"):
        download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5,
                 policy=RetryPolicy(attempts=1, backoff_s=0), progress=False)
    assert not (tmp_path / NAME).exists()
    assert part_path(tmp_path / NAME).read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
    download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    assert (tmp_path / NAME).read_bytes() == PAYLOAD
    assert server.requests(NAME)[-1][1:] == (f"bytes={len(PAYLOAD) // 2}-", 206)


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.behave(NAME, drop_times=1, ignore_range=True)
    dest = download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD  # not the first half twice
    assert [r[1:] for r in server.requests(NAME)] == [(None, 200), (f"bytes={len(PAYLOAD) // 2}-", 200)]


def test_socket_timeout_mid_file_resumes(server, tmp_path):
    server.behave(NAME, stall_times=1, stall_s=1.0)
    policy = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=0.3)
    dest = download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=policy, progress=False)
    assert dest.read_bytes() == PAYLOAD
    (_, first, _), (_, resumed, status) = server.requests(NAME)
    assert first is None and status == 206
    assert 0 < int(resumed.removeprefix("bytes=").rstrip("-")) <= len(PAYLOAD) // 2  # what arrived was kept


def test_server_errors_are_retried_with_backoff(server, tmp_path):
    server.behave(NAME, fail_statuses=[503, 500])
    dest = download(url(server), tmp_path / NAME, md5=MD5, policy=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r[2] for r in server.requests(NAME)] == [503, 500, 200]


def test_retries_run_out(server, tmp_path):
    server.behave(NAME, fail_statuses=[503] * 10)
    with pytest.raises(DownloadError, match=r"data\.bin: giving up after 4 attempts \(HTTP 503"):
        download(url(server), tmp_path / NAME, policy=FAST, progress=False)
    assert len(server.requests(NAME)) == 4


def test_missing_file_fails_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match=r"nothing\.bin: HTTP 404"):
        download(url(server, "nothing.bin"), tmp_path / "nothing.bin", policy=FAST, progress=False)
    assert len(server.requests("nothing.bin")) == 1


def test_unreachable_server_is_retried_then_fails(tmp_path):
    with FixtureServer() as gone:
        dead = url(gone)
    with pytest.raises(DownloadError, match="giving up after 2 attempts.*cannot connect"):
        download(dead, tmp_path / NAME, policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=1), progress=False)


def test_checksum_mismatch_deletes_the_part(server, tmp_path):
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as e:
        download(url(server), tmp_path / NAME, md5=wrong, policy=FAST, progress=False)
    message = str(e.value)
    assert url(server) in message and str(part_path(tmp_path / NAME)) in message
    assert f"expected {wrong}, got {MD5}" in message
    assert not (tmp_path / NAME).exists() and not part_path(tmp_path / NAME).exists()


def test_size_mismatch_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match=f"sends {len(PAYLOAD)} bytes but 10 were expected"):
        download(url(server), tmp_path / NAME, size=10, policy=FAST, progress=False)
    assert not (tmp_path / NAME).exists()


def test_existing_download_is_not_fetched_again(server, tmp_path):
    download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    download(url(server), tmp_path / NAME, policy=FAST, progress=False)
    assert len(server.requests(NAME)) == 1


def test_complete_part_is_only_verified(server, tmp_path):
    part_path(tmp_path / NAME).write_bytes(PAYLOAD)
    download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    assert server.requests(NAME) == []
    # without a known size the server says the range is past the end (416): the part is whole
    part_path(tmp_path / "again.bin").write_bytes(PAYLOAD)
    download(url(server), tmp_path / "again.bin", md5=MD5, policy=FAST, progress=False)
    assert (tmp_path / "again.bin").read_bytes() == PAYLOAD
    assert [r[1:] for r in server.requests(NAME)] == [(f"bytes={len(PAYLOAD)}-", 416)]


def test_oversized_part_starts_again(server, tmp_path):
    part_path(tmp_path / NAME).write_bytes(PAYLOAD + b"junk")
    download(url(server), tmp_path / NAME, size=len(PAYLOAD), md5=MD5, policy=FAST, progress=False)
    assert (tmp_path / NAME).read_bytes() == PAYLOAD
    assert server.requests(NAME)[0][1] is None


def test_fetch_bytes_retries(server):
    server.behave(NAME, fail_statuses=[502], drop_times=1)
    assert fetch_bytes(url(server), policy=FAST) == PAYLOAD


def test_md5_file_and_backoff(tmp_path):
    (tmp_path / "f").write_bytes(PAYLOAD)
    assert md5_file(tmp_path / "f") == MD5
    policy = RetryPolicy(attempts=5, backoff_s=2.0, max_backoff_s=10.0)
    assert [policy.delay(k) for k in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]
    assert policy.delay(1, retry_after=5.0) == 5.0
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_progress_is_reported_on_stderr(server, tmp_path, capsys):
    download(url(server), tmp_path / NAME, size=len(PAYLOAD), policy=FAST, progress=True)
    err = capsys.readouterr().err
    assert NAME in err and "3.01M" in err
