"""Container logs from CRI files (kwire.node.logs): parsing records, tail, since,
timestamps, byte limits, partial lines, and following a file as it grows."""
import asyncio
from pathlib import Path

import pytest

from kwire.node.logs import (
    LogOptions,
    LogOptionsError,
    Record,
    format_timestamp,
    parse_record,
    parse_rfc3339,
    read_logs,
    tail_offset,
)

T0 = "2026-01-02T03:04:05.000000000+00:00"


def rec(ts: str, stream: str, tag: str, text: str) -> str:
    return f"{ts} {stream} {tag} {text}\n"


FILE = (rec("2026-01-02T03:04:05.100000000+00:00", "stdout", "F", "one")
        + rec("2026-01-02T03:04:06.000000000+00:00", "stderr", "F", "two")
        + rec("2026-01-02T03:04:07.123456789+00:00", "stdout", "P", "thr")
        + rec("2026-01-02T03:04:07.200000000+00:00", "stdout", "F", "ee")
        + rec("2026-01-02T03:04:08.000000001+00:00", "stdout", "F", "four"))


def collect(path: Path, opts: LogOptions, running=lambda: False, poll: float = 0.01) -> bytes:
    async def main():
        return b"".join([c async for c in read_logs(path, opts, running, poll=poll)])
    return asyncio.run(main())


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "0.log"
    path.write_text(FILE)
    return path


# --- records and times ---------------------------------------------------------------


def test_parse_record():
    assert parse_record(b"2026-01-02T03:04:05.1+00:00 stdout F hello world\n") == Record(
        b"2026-01-02T03:04:05.1+00:00", "stdout", False, b"hello world\n")
    # a partial record's newline is the file's, not the container's
    assert parse_record(b"2026-01-02T03:04:05.1+00:00 stderr P hel\n") == Record(
        b"2026-01-02T03:04:05.1+00:00", "stderr", True, b"hel")
    # an empty line, forward-compatible tags, spaces kept
    assert parse_record(b"t stdout F \n").content == b"\n"
    assert parse_record(b"t stdout F:x  two  spaces \n").content == b" two  spaces \n"
    assert parse_record(b"t stdout F\n").content == b"\n"


@pytest.mark.parametrize("line", [b"", b"garbage\n", b"t stdin F x\n", b"t stdout\n"])
def test_not_a_record(line):
    assert parse_record(line) is None


def test_times():
    assert parse_rfc3339("2026-01-02T03:04:05Z") == 1767323045 * 10**9
    assert parse_rfc3339(b"2026-01-02T03:04:05.5+01:00") == (1767323045 - 3600) * 10**9 + 5 * 10**8
    assert parse_rfc3339("2026-01-02T03:04:05.000000001Z") == 1767323045 * 10**9 + 1
    assert parse_rfc3339("yesterday") is None
    assert format_timestamp(b"2026-01-02T03:04:05.123456789+00:00") == b"2026-01-02T03:04:05.123456789Z"
    assert format_timestamp(b"2026-01-02T03:04:05.120000000+00:00") == b"2026-01-02T03:04:05.12Z"
    assert format_timestamp(b"2026-01-02T03:04:05.000000000+00:00") == b"2026-01-02T03:04:05Z"
    assert format_timestamp(b"2026-01-02T03:04:05.5+02:00") == b"2026-01-02T03:04:05.5+02:00"


# --- options ---------------------------------------------------------------------------


def test_options_from_query():
    opts = LogOptions.from_query({"follow": "true", "tailLines": "3", "timestamps": "1",
                                  "limitBytes": "10", "sinceSeconds": "60"}, now=1000.0)
    assert opts == LogOptions(follow=True, tail_lines=3, since_ns=940 * 10**9, timestamps=True,
                              limit_bytes=10)
    assert LogOptions.from_query({"sinceTime": "2026-01-02T03:04:05Z"}).since_ns == \
        1767323045 * 10**9
    assert LogOptions.from_query({}) == LogOptions()


@pytest.mark.parametrize("query, message", [
    ({"tailLines": "-1"}, "tailLines: Invalid value: -1: must be greater than or equal to 0"),
    ({"limitBytes": "0"}, "limitBytes: Invalid value: 0: must be greater than 0"),
    ({"sinceSeconds": "0"}, "sinceSeconds: Invalid value: 0: must be greater than 0"),
    ({"sinceSeconds": "5", "sinceTime": "2026-01-02T03:04:05Z"}, "at most one of"),
    ({"tailLines": "x"}, 'tailLines: invalid integer value "x"'),
    ({"follow": "yes"}, 'follow: invalid boolean value "yes"'),
    ({"sinceTime": "today"}, "is not an RFC 3339 time"),
])
def test_bad_options(query, message):
    with pytest.raises(LogOptionsError, match=message.replace("(", r"\(")):
        LogOptions.from_query(query)


# --- reading ---------------------------------------------------------------------------


def test_whole_log_joins_partial_lines(log):
    assert collect(log, LogOptions()) == b"one\ntwo\nthree\nfour\n"


def test_timestamps_once_per_line(log):
    assert collect(log, LogOptions(timestamps=True)).splitlines() == [
        b"2026-01-02T03:04:05.1Z one", b"2026-01-02T03:04:06Z two",
        b"2026-01-02T03:04:07.123456789Z three", b"2026-01-02T03:04:08.000000001Z four"]


@pytest.mark.parametrize("n, expected", [
    (0, b""), (1, b"four\n"), (2, b"three\nfour\n"), (3, b"two\nthree\nfour\n"),
    (4, b"one\ntwo\nthree\nfour\n"), (100, b"one\ntwo\nthree\nfour\n")])
def test_tail_counts_whole_lines(log, n, expected):
    assert collect(log, LogOptions(tail_lines=n)) == expected


def test_tail_with_a_line_still_being_written(tmp_path):
    path = tmp_path / "0.log"
    path.write_text(FILE + rec(T0, "stdout", "P", "fiv") + T0 + " stdo")
    # the unterminated run of fragments is the last line; the half-written record is not one
    assert collect(path, LogOptions(tail_lines=1)) == b"fiv"
    assert collect(path, LogOptions(tail_lines=2)) == b"four\nfiv"
    with open(path, "rb") as f:
        assert tail_offset(f, 0) == len((FILE + rec(T0, "stdout", "P", "fiv")).encode())


def test_tail_over_many_blocks(tmp_path):
    path = tmp_path / "0.log"
    lines = [rec(T0, "stdout", "F", f"line {i} " + "x" * 200) for i in range(2000)]
    path.write_text("".join(lines))
    out = collect(path, LogOptions(tail_lines=1500)).splitlines()
    assert len(out) == 1500 and out[0].startswith(b"line 500 ") and out[-1].startswith(b"line 1999 ")


def test_since(log):
    since = parse_rfc3339("2026-01-02T03:04:06Z")
    assert collect(log, LogOptions(since_ns=since)) == b"two\nthree\nfour\n"
    assert collect(log, LogOptions(since_ns=since + 1)) == b"three\nfour\n"


def test_limit_bytes_cuts_mid_line(log):
    assert collect(log, LogOptions(limit_bytes=6)) == b"one\ntw"
    assert collect(log, LogOptions(limit_bytes=6, timestamps=True)) == b"2026-0"
    assert collect(log, LogOptions(limit_bytes=10**6)) == b"one\ntwo\nthree\nfour\n"


def test_bad_records_are_skipped(tmp_path):
    path = tmp_path / "0.log"
    path.write_text(rec(T0, "stdout", "F", "a") + "not a record\n" + rec(T0, "stderr", "F", "b"))
    assert collect(path, LogOptions()) == b"a\nb\n"


def test_missing_file_is_an_empty_log(tmp_path):
    assert collect(tmp_path / "none.log", LogOptions()) == b""
    assert collect(tmp_path / "none.log", LogOptions(follow=True)) == b""


# --- follow ----------------------------------------------------------------------------


def test_follow_reads_as_the_file_grows_and_ends_when_the_container_stops(tmp_path):
    path = tmp_path / "0.log"
    path.write_text(rec(T0, "stdout", "F", "first"))
    state = {"running": True}

    async def main():
        got = []

        async def read():
            async for chunk in read_logs(path, LogOptions(follow=True, tail_lines=5),
                                         lambda: state["running"], poll=0.01):
                got.append(chunk)

        task = asyncio.create_task(read())
        await asyncio.sleep(0.1)
        assert b"".join(got) == b"first\n"
        with open(path, "a") as f:
            f.write(rec(T0, "stdout", "P", "sec"))
            f.flush()
            await asyncio.sleep(0.1)
            assert b"".join(got) == b"first\nsec"
            f.write(rec(T0, "stdout", "F", "ond") + T0 + " stdout F thi")  # a record half-written
            f.flush()
            await asyncio.sleep(0.1)
            assert b"".join(got) == b"first\nsecond\n"
            assert not task.done()
            # the container ends right after writing its last line
            f.write("rd\n" + rec(T0, "stderr", "F", "bye"))
            state["running"] = False
        await asyncio.wait_for(task, 5)
        return b"".join(got)

    assert asyncio.run(main()) == b"first\nsecond\nthird\nbye\n"


def test_follow_waits_for_the_file_and_reopens_a_rotated_one(tmp_path):
    path = tmp_path / "0.log"
    state = {"running": True}

    async def main():
        got = []

        async def read():
            async for chunk in read_logs(path, LogOptions(follow=True), lambda: state["running"],
                                         poll=0.01):
                got.append(chunk)

        task = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        path.write_text(rec(T0, "stdout", "F", "old"))
        await asyncio.sleep(0.1)
        rotated = tmp_path / "0.log.1"
        path.rename(rotated)
        path.write_text(rec(T0, "stdout", "F", "new"))
        await asyncio.sleep(0.1)
        state["running"] = False
        await asyncio.wait_for(task, 5)
        return b"".join(got)

    assert asyncio.run(main()) == b"old\nnew\n"


def test_follow_stops_at_the_byte_limit(tmp_path):
    path = tmp_path / "0.log"
    path.write_text(rec(T0, "stdout", "F", "0123456789"))

    async def main():
        return b"".join([c async for c in read_logs(path, LogOptions(follow=True, limit_bytes=4),
                                                    lambda: True, poll=0.01)])

    assert asyncio.run(asyncio.wait_for(main(), 5)) == b"0123"


def test_follow_of_a_stopped_container_reads_once(log):
    assert collect(log, LogOptions(follow=True, tail_lines=1)) == b"four\n"
