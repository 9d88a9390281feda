from __future__ import annotations

from proxy.openai.textstream import TextStream


def feed(stream: TextStream, chunks: list[bytes]) -> list[str]:
    return [stream.push(c) for c in chunks]


def test_plain_text_passes_through() -> None:
    s = TextStream()
    assert feed(s, [b"Hello", b" world"]) == ["Hello", " world"]
    assert s.finish() == "" and s.text == "Hello world"


def test_utf8_character_split_across_tokens_is_held() -> None:
    s = TextStream()
    smile = "😊".encode()
    out = feed(s, [b"hi ", smile[:2], smile[2:3], smile[3:], b"!"])
    assert out == ["hi ", "", "", "😊", "!"]


def test_dangling_bytes_at_end_become_replacement_char() -> None:
    s = TextStream()
    assert s.push("é".encode()[:1]) == ""
    assert s.finish() == "\ufffd"


def test_stop_string_inside_one_token() -> None:
    s = TextStream(["END"])
    assert feed(s, [b"abcENDxyz"]) == ["abc"]
    assert s.stopped and s.finish() == ""


def test_stop_string_straddling_tokens_is_never_emitted() -> None:
    s = TextStream(["\n\nUser:"])
    out = feed(s, [b"answer", b"\n", b"\nUs", b"er:", b" more"])
    assert "".join(out) == "answer"
    assert s.stopped


def test_held_prefix_released_when_ruled_out() -> None:
    s = TextStream(["STOP"])
    assert s.push(b"ST") == ""
    assert s.push(b"AR") == "STAR"
    assert s.push(b"S") == ""
    assert s.finish() == "S"


def test_earliest_of_several_stops_wins() -> None:
    s = TextStream(["b", "a"])
    assert s.push(b"xxaYb") == "xx"


def test_after_stop_nothing_more() -> None:
    s = TextStream(["."])
    assert s.push(b"One. Two.") == "One"
    assert s.push(b"more") == ""
