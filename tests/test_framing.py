"""The line framer and the write batcher shared by the server and client transports."""

import pytest

from katcp.transport.framing import LineFramer, WriteBatcher


def test_lines_split_on_newline_and_carriage_return_across_chunks():
    framer = LineFramer(100)
    assert framer.feed(b"?wat") == []
    assert framer.feed(b"chdog\n?help\r\n#log") == [b"?watchdog", b"?help", b""]
    assert framer.feed(b" x\r") == [b"#log x"]
    assert framer.feed(b"\n") == [b""] and not framer.overflow


@pytest.mark.parametrize("chunks, lines", [
    # An unfinished line grows past the limit.
    ([b"?ok\n" + b"x" * 11], [b"?ok"]),
    ([b"?ok\nxxxxxx", b"xxxxx"], [b"?ok"]),
    # A line trickling in, byte by byte, past the limit.
    ([b"?ok\nx"] + [b"x"] * 10, [b"?ok"]),
    # A complete line past the limit in one chunk.
    ([b"?ok\n" + b"x" * 11 + b"\n?after\n"], [b"?ok"]),
])
def test_a_line_longer_than_the_limit_stops_the_framer(chunks, lines):
    framer = LineFramer(10)
    got = []
    for chunk in chunks:
        got.extend(framer.feed(chunk))
    assert got == lines
    assert framer.overflow
    assert framer._partial == ()  # what it had of the long line is let go
    assert framer.feed(b"?more\n") == []


def test_a_line_trickling_in_is_kept_in_pieces_until_it_ends():
    # Joined once, when it ends: joined as each piece arrives, a long line trickling in
    # would be copied over and over (quadratic in its length).
    framer = LineFramer(1000)
    assert framer.feed(b"#a\n?req") == [b"#a"]
    for piece in (b" one", b" two", b" three"):
        assert framer.feed(piece) == []
    assert framer._partial == [b"?req", b" one", b" two", b" three"]
    assert framer.feed(b" four\r\n?next") == [b"?req one two three four", b""]
    assert framer._partial == [b"?next"]
    assert framer.feed(b"\n") == [b"?next"] and framer._partial == ()


def test_a_line_of_exactly_the_limit_is_fine():
    framer = LineFramer(10)
    assert framer.feed(b"x" * 10 + b"\n" + b"y" * 10) == [b"x" * 10]
    assert not framer.overflow
    assert framer.feed(b"\n") == [b"y" * 10]
    # Also when it trickles in.
    for piece in (b"z" * 4, b"z" * 3, b"z" * 3):
        assert framer.feed(piece) == []
    assert not framer.overflow
    assert framer.feed(b"\n") == [b"z" * 10]


class _Loop:
    def __init__(self):
        self.soon = []

    def call_soon(self, callback):
        self.soon.append(callback)

    def run_turn(self):
        callbacks, self.soon = self.soon, []
        for callback in callbacks:
            callback()


def test_coalescing_batcher_writes_once_per_loop_turn():
    loop, writes = _Loop(), []
    batcher = WriteBatcher(writes.append, loop.call_soon, limit=1000)
    for data in (b"#a\n", b"#b\n", b"#c\n"):
        batcher.send(data)
    assert writes == [] and len(loop.soon) == 1
    loop.run_turn()
    assert writes == [b"#a\n#b\n#c\n"]
    loop.run_turn()
    assert writes == [b"#a\n#b\n#c\n"]


def test_held_batcher_writes_on_release_and_past_the_limit():
    loop, writes = _Loop(), []
    batcher = WriteBatcher(writes.append, loop.call_soon, limit=5)
    batcher.hold()
    batcher.send(b"!x\n")
    assert writes == [] and loop.soon == []
    batcher.send(b"!y\n")  # 6 bytes > 5: written now
    assert writes == [b"!x\n!y\n"]
    batcher.send(b"!z\n")
    batcher.release()
    assert writes == [b"!x\n!y\n", b"!z\n"]


def test_write_through_batcher_sends_at_once_unless_held():
    loop, writes = _Loop(), []
    batcher = WriteBatcher(writes.append, loop.call_soon, limit=1000, coalesce=False)
    batcher.send(b"?a\n")
    assert writes == [b"?a\n"] and loop.soon == []
    batcher.hold()
    batcher.send(b"?b\n")
    batcher.send(b"?c\n")
    batcher.clear()
    batcher.send(b"?d\n")
    batcher.release()
    assert writes == [b"?a\n", b"?d\n"]
