"""Batch output files as streamed: line splitting over any chunking, and summing that never raises."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.usage.sources.batch_output import summarize_output
from jobs.usage.sources.http import split_lines
from tests.fakes.together_api import batch_output_line

WHEN = 1_795_084_200
LATEST = WHEN + 86_400


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=8), st.booleans())
def test_lines_come_out_the_same_however_the_body_is_chunked(lines: list[bytes], cuts: list[int], final: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if final and lines else b"")
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()  # after the last newline (or in an empty body) there is no line
    expected = [line[:-1] if line.endswith(b"\r") else line for line in pieces]
    assert list(split_lines(chunked(data, cuts), max_line_bytes=64)) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=10),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_a_line_too_long_is_one_none_and_the_next_line_is_whole(sizes: list[int], cuts: list[int]) -> None:
    lines = [bytes([65 + n % 26]) * size for n, size in enumerate(sizes)]
    got = list(split_lines(chunked(b"\n".join(lines) + b"\n", cuts), max_line_bytes=100))
    assert got == [line if len(line) <= 100 else None for line in lines]


good = st.builds(lambda p, c: json.dumps(batch_output_line("r", "x/m", p, c, WHEN)).encode(),
                 st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(good, st.binary(max_size=60), st.none()), max_size=20))
def test_any_output_file_is_summed_or_skipped_never_raises(lines: list[bytes | None]) -> None:
    usage = summarize_output(iter(lines), when=WHEN, default_model=None, latest=LATEST)
    assert usage.lines == usage.recorded + usage.failed + usage.broken
    assert usage.lines == sum(1 for line in lines if line is None or (line and not line.isspace()))
    assert len(usage.reasons) == min(usage.broken, 3)
    records = usage.records("batch=b")
    assert sum(r.requests for r in records) == usage.recorded and all(r.mode == "batch" for r in records)
