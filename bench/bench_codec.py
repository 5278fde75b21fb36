"""Workload 1: the codec, in process (no sockets).

* ``codec.roundtrip``: the docs' own benchmark -- ``Message.reply('foo',
  *args)`` for 1000 groups of bool/int/float/str, ``bytes()``,
  ``MessageParser().parse()``, compare -- against the same steps done by the
  minimal codec (format, escape, join, split, unescape, compare).
* ``codec.parse_stream``: a #sensor-status stream fed in 64 KiB chunks, cut
  into lines by the same code for both sides, then parsed.
"""

import random
import time

from bench import baseline
from bench.harness import Row, benchmark, interleave, median

CHUNK = 64 * 1024


def arg_groups(count, seed=1):
    """The docs' argument groups: (bool, int, float, str), seeded."""
    rng = random.Random(seed)
    return [(rng.randint(0, 1) == 1, rng.randint(0, 1000), rng.random(),
             str(rng.random())) for _ in range(count)]


def katcp_roundtrip(groups):
    """The docs' benchmark body, verbatim apart from the loop variable."""
    from katcp import Message, MessageParser
    for args in groups:
        tx_msg = Message.reply("foo", *args)
        serialised = bytes(tx_msg)
        parser = MessageParser()
        rx_msg = parser.parse(serialised)
        assert tx_msg == rx_msg


def baseline_roundtrip(groups):
    """The same round trip with the minimal codec."""
    fmt, join, split = baseline.format_arg, baseline.join, baseline.split
    for args in groups:
        tx_args = [fmt(a) for a in args]
        serialised = join(b"!", b"foo", tx_args)
        rx = split(serialised)
        assert rx == (b"!", b"foo", None, tx_args)


def status_stream(count, seed=2):
    """``count`` #sensor-status lines (some needing escapes), as one blob."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        value = (b"%d" % rng.randint(-1000, 100000) if i % 3 == 0 else
                 repr(rng.random() * 1000).encode() if i % 3 == 1 else
                 b"text value\t%d" % i)
        lines.append(baseline.join(b"#", b"sensor-status", [
            b"%.6f" % (1700000000 + i * 0.001), b"1",
            b"rack%02d.sensor%04d" % (i % 50, i % 1000), b"nominal", value]))
    return b"\n".join(lines) + b"\n"


def chunks_of(blob, size=CHUNK):
    """``blob`` cut into pieces of ``size`` bytes (lines split anywhere)."""
    return [blob[i:i + size] for i in range(0, len(blob), size)]


def katcp_parse_stream(chunks):
    """Parse every line with one katcp MessageParser; return the count."""
    from katcp import MessageParser
    parse = MessageParser().parse
    count = 0
    for line in baseline.iter_lines(chunks):
        parse(line)
        count += 1
    return count


def baseline_parse_stream(chunks):
    """Split every line with the minimal codec; return the count."""
    split = baseline.split
    count = 0
    for line in baseline.iter_lines(chunks):
        split(line)
        count += 1
    return count


def _timed(fn, *args, loops=1):
    t0 = time.perf_counter()
    for _ in range(loops):
        fn(*args)
    return (time.perf_counter() - t0) / loops


@benchmark("codec")
def run_codec(ctx):
    """Rows for the codec round trip and stream parse."""
    size = ctx.size
    groups = arg_groups(size.codec_groups)
    # warm up both sides (imports, regex compilation) outside the timing
    katcp_roundtrip(groups[:10])
    baseline_roundtrip(groups[:10])
    loops = size.codec_loops
    rt = interleave({
        "katcp": lambda: _timed(katcp_roundtrip, groups, loops=loops),
        "baseline": lambda: _timed(baseline_roundtrip, groups, loops=loops),
    }, size.repeats)

    chunks = chunks_of(status_stream(size.stream_lines))
    lines = size.stream_lines
    ps = interleave({
        "katcp": lambda: lines / _timed(katcp_parse_stream, chunks),
        "baseline": lambda: lines / _timed(baseline_parse_stream, chunks),
    }, size.repeats)
    return [
        Row("codec.roundtrip", "ms",
            median(rt["katcp"]) * 1e3, median(rt["baseline"]) * 1e3,
            ("ratio", "<=", 1.3), {"groups": size.codec_groups, "samples_s": rt}),
        Row("codec.parse_stream", "msg/s",
            median(ps["katcp"]), median(ps["baseline"]),
            ("ratio", ">=", 0.8), {"lines": lines, "chunk_bytes": CHUNK, "samples": ps}),
    ]
