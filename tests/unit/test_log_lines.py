"""Docker log frames into whole lines: long lines joined, continuation timestamps dropped, bounded."""

from __future__ import annotations

from llm_mcp.runtime.log_lines import LineAssembler, cut_marker, cut_text

TS1 = "2026-12-01T10:00:00.000000001Z"
TS2 = "2026-12-01T10:00:00.000000002Z"
TS3 = "2026-12-01T10:00:00.000000003Z"


def frame(ts: str, payload: str) -> bytes:
    return f"{ts} {payload}".encode()


def test_a_line_docker_split_into_entries_comes_out_whole_with_the_first_timestamp() -> None:
    lines = LineAssembler()
    assert lines.feed(frame(TS1, "a" * 16384)) == []  # partial: no newline yet
    assert lines.feed(frame(TS2, "b" * 16384)) == []
    assert lines.feed(frame(TS3, "c" * 100 + "\n")) == [(TS1, "a" * 16384 + "b" * 16384 + "c" * 100)]
    assert lines.feed(frame(TS2, "next\n")) == [(TS2, "next")]


def test_whole_lines_pass_through_and_crlf_ends_are_removed() -> None:
    lines = LineAssembler()
    assert lines.feed(frame(TS1, "one\r\n")) == [(TS1, "one")]
    assert lines.feed(frame(TS2, "\n")) == [(TS2, "")]


def test_separators_other_than_newline_stay_inside_the_line() -> None:
    text = "a\rb\fc\vd\x1ce\x1df\x1eg\x85h\u2028i\u2029j"
    assert LineAssembler().feed(frame(TS1, text + "\n")) == [(TS1, text)]


def test_several_lines_in_one_chunk_each_keep_their_own_timestamp() -> None:
    chunk = f"{TS1} one\n{TS2} two\n{TS3} thr".encode()
    lines = LineAssembler()
    assert lines.feed(chunk) == [(TS1, "one"), (TS2, "two")]
    assert lines.feed(frame(TS1, "ee\n")) == [(TS3, "three")]


def test_a_line_over_the_bound_is_cut_with_a_marker_counting_what_went() -> None:
    lines = LineAssembler(max_line_bytes=1000)
    lines.feed(frame(TS1, "x" * 700))
    lines.feed(frame(TS2, "y" * 700))
    [(ts, text)] = lines.feed(frame(TS3, "z" * 600 + "\n"))
    assert ts == TS1
    assert text == "x" * 700 + "y" * 300 + cut_marker(1000)
    assert "1000 more bytes cut" in text


def test_a_cut_never_leaves_half_a_character() -> None:
    lines = LineAssembler(max_line_bytes=10)
    [(_, text)] = lines.feed(frame(TS1, "aaaaaaaaa\u00e9\u00e9\n"))  # é is 2 bytes: the 10th byte splits one
    assert text == "aaaaaaaaa" + cut_marker(4)


def test_the_unterminated_last_line_is_given_out_when_the_stream_ends() -> None:
    lines = LineAssembler()
    assert lines.feed(frame(TS1, "partial")) == []
    assert lines.flush() == [(TS1, "partial")]
    assert lines.flush() == []


def test_a_chunk_without_a_timestamp_is_kept_as_text() -> None:
    assert LineAssembler().feed(b"no stamp here\n") == [("", "no stamp here")]


def test_cut_text_bounds_utf8_bytes_and_keeps_short_text_as_is() -> None:
    assert cut_text("short", 10) == "short"
    assert cut_text("\u20ac" * 4, 12) == "\u20ac" * 4  # 12 bytes exactly
    assert cut_text("\u20ac" * 5, 12) == "\u20ac" * 4 + cut_marker(3)


def test_a_line_cut_once_is_not_cut_again() -> None:
    lines = LineAssembler(max_line_bytes=100)
    [(_, text)] = lines.feed(frame(TS1, "q" * 500 + "\n"))
    assert text == "q" * 100 + cut_marker(400)
    assert cut_text(text, 100) == text
