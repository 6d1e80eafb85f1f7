"""Docker's followed log body decoded in bulk: chunks, frames, one line assembly per stream."""

from __future__ import annotations

import struct

from llm_mcp.runtime.docker_log_stream import ChunkedDecoder, DockerLogDecoder, FrameSplitter

TS = "2026-12-01T10:00:00.000000001Z"
TS2 = "2026-12-01T10:00:00.000000002Z"


def frame(kind: int, payload: str) -> bytes:
    data = payload.encode()
    return struct.pack(">BxxxL", kind, len(data)) + data


def chunked(*pieces: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"


def fed_byte_by_byte(feed: object, data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        out += feed(data[i:i + 1])  # type: ignore[operator]
    return out


def test_chunked_bodies_decode_whatever_the_read_boundaries() -> None:
    body = chunked(b"hello ", b"world" * 3)
    whole = ChunkedDecoder()
    assert whole.feed(body) == b"hello " + b"world" * 3 and whole.done
    pieces = ChunkedDecoder()
    assert b"".join(pieces.feed(body[i:i + 1]) for i in range(len(body))) == b"hello " + b"world" * 3
    assert pieces.done


def test_frames_split_across_reads_come_out_whole_with_their_stream() -> None:
    data = frame(1, f"{TS} out\n") + frame(2, f"{TS} err\n")
    assert fed_byte_by_byte(FrameSplitter().feed, data) == [(1, f"{TS} out\n".encode()),
                                                            (2, f"{TS} err\n".encode())]


def test_a_long_stdout_line_is_not_mixed_with_stderr_lines_between_its_entries() -> None:
    decoder = DockerLogDecoder(chunked=True)
    body = chunked(frame(1, f"{TS} first half "), frame(2, f"{TS2} an error\n"),
                   frame(1, f"{TS2} second half\n"))
    assert fed_byte_by_byte(decoder.feed, body) == [(TS2, "an error"), (TS, "first half second half")]
    assert decoder.done
    assert decoder.flush() == []


def test_an_unterminated_line_is_given_out_at_the_end() -> None:
    decoder = DockerLogDecoder(chunked=False)
    assert decoder.feed(frame(1, f"{TS} no newline")) == []
    assert decoder.flush() == [(TS, "no newline")]
