"""Smoke test of the benchmark suite: every benchmark once, at tiny size.

Ratios at this size mean nothing, so only the machinery is checked: each
benchmark runs without error and reports measured numbers, the baseline line
server sends the katcp server's bytes, and the CLI writes its JSON.
"""

import asyncio
import json
import math
import os

import pytest

from bench import baseline, harness, loadgen
from bench.__main__ import main
from bench.procs import ServerProcess


@pytest.fixture(scope="module")
def tiny_run():
    rows, meta = harness.run(size=harness.TINY)
    return {row.name: row for row in rows}, meta


def test_every_benchmark_runs_without_error(tiny_run):
    rows, _ = tiny_run
    errors = {name: row.error for name, row in rows.items() if row.error}
    assert not errors
    families = {name.split(".")[0] for name in rows}
    assert families == set(harness.BENCHMARKS) - harness.OPT_IN


def test_every_row_has_measured_numbers(tiny_run):
    rows, _ = tiny_run
    for name, row in rows.items():
        for value in (row.katcp, row.baseline):
            assert isinstance(value, float) and math.isfinite(value), (name, value)
        if row.target is not None:
            assert row.passed in (True, False)


def test_pipeline_and_streaming_rows_per_width(tiny_run):
    rows, _ = tiny_run
    for width in harness.TINY.pipeline_widths:
        assert rows["pipeline.conns_%d" % width].katcp > 0
    for clients in harness.TINY.stream_clients:
        assert rows["streaming.clients_%d.cpu_per_inform" % clients].katcp > 0


def test_line_server_sends_the_katcp_servers_bytes(tiny_run):
    rows, _ = tiny_run
    for name in ("sensor_bulk.sensor-value", "sensor_bulk.sensor-list"):
        assert rows[name].extra["first_difference"] is None
        assert rows[name].extra["same_bytes"] is True


EXCHANGE = [
    b"?sensor-sampling[1] s00000.integer event\n",
    b"?sensor-sampling[2] s00001.float period 0.5\n",
    b"?sensor-sampling[3] s00001.float none\n",
    b"?sensor-sampling[4] s00002.boolean,s00003.string event\n",
    b"?watchdog\n",
    b"?nosuch[5]\n",
    b"?sensor-value[6] s00003.string\n",
    b"?sensor-list[7] s00001.float\n",
]


async def _exchange(address):
    client = await loadgen.connect(address, lambda: loadgen.LoadClient(collect=True))
    for line in EXCHANGE:
        await asyncio.wait_for(client.request(line), 10)
    await loadgen.close_all([client])
    return client.lines


def test_line_server_answers_like_the_katcp_server():
    servers = [ServerProcess(kind, 8) for kind in ("async", "line")]
    try:
        katcp_lines, line_lines = [asyncio.run(_exchange(s.address)) for s in servers]
    finally:
        for server in servers:
            server.close()
    assert len(katcp_lines) == 14
    assert katcp_lines == line_lines


def test_run_metadata(tiny_run):
    _, meta = tiny_run
    assert meta["size"]["name"] == "tiny"
    assert meta["python"] and meta["tornado"]


def test_cli_writes_json_and_table(tmp_path, capsys):
    path = tmp_path / "out.json"
    assert main(["--size", "tiny", "--only", "codec", "--json", str(path), "--quiet"]) == 0
    data = json.loads(path.read_text())
    assert [r["name"] for r in data["results"]] == ["codec.roundtrip", "codec.parse_stream"]
    assert data["results"][0]["target"] == "<=1.3x"
    out = capsys.readouterr().out
    assert "codec.roundtrip" in out and "ratio" in out


@pytest.mark.parametrize("raw", [b"", b"plain", b"a b\tc\\d\0e\nf\rg\x1bh", b"\\@", b"\\_ \\\\n"])
def test_baseline_codec_round_trips(raw):
    line = baseline.join(b"#", b"x", [raw, b"1"], mid=b"7")
    assert b" " not in baseline.escape(raw) and b"\n" not in line
    assert baseline.split(line) == (b"#", b"x", b"7", [raw, b"1"])


@pytest.mark.parametrize("wire", [b"a\\x", b"\\", b"a\\\\\\"])
def test_baseline_codec_refuses_invalid_escapes(wire):
    with pytest.raises(ValueError):
        baseline.unescape(wire)


def test_row_targets():
    assert harness.Row("a", "s", 2.0, 1.0, ("ratio", "<=", 3.0)).passed is True
    assert harness.Row("a", "s", 2.0, 1.0, ("ratio", ">=", 3.0)).passed is False
    assert harness.Row("a", "s", 0.3, 1.0, ("value", "<=", 0.2)).passed is False
    assert harness.Row("a", "s", 0.3, 1.0).passed is None


# -- --check and --loop, with fake benchmarks (no timing involved) -------------------------


@pytest.fixture
def fake_benchmarks(monkeypatch):
    """Register benchmarks whose rows are made up; return the dict to fill."""
    fakes = {}
    monkeypatch.setattr(harness, "BENCHMARKS", fakes)
    monkeypatch.setattr(harness, "load_all", lambda: None)
    return fakes


def _fake(passed):
    threshold = 0.5 if passed else 2.0
    return lambda ctx: [harness.Row("fake.rate", "req/s", 1.0, 1.0, ("ratio", ">=", threshold)),
                        harness.Row("fake.info", "s", 1.0, 1.0)]


@pytest.mark.parametrize("passed, check, status", [
    (True, True, 0), (False, True, 2), (False, False, 0), (True, False, 0)])
def test_check_exits_non_zero_only_when_a_target_is_missed(
        fake_benchmarks, tmp_path, capsys, passed, check, status):
    fake_benchmarks["fake"] = _fake(passed)
    argv = ["--size", "tiny", "--loop", "asyncio", "--json", str(tmp_path / "r.json"), "--quiet"]
    assert main(argv + (["--check"] if check else [])) == status
    out = capsys.readouterr().out
    assert ("PASS" if passed else "FAIL") in out
    assert ("missed their target: fake.rate" in out) == (status == 2)


def test_an_error_is_exit_status_1_with_or_without_check(fake_benchmarks, tmp_path, capsys):
    def broken(ctx):
        raise RuntimeError("no server")

    fake_benchmarks["fake"] = _fake(True)
    fake_benchmarks["broken"] = broken
    argv = ["--size", "tiny", "--loop", "asyncio", "--json", str(tmp_path / "r.json"), "--quiet"]
    assert main(argv) == 1
    assert main(argv + ["--check"]) == 1
    assert "ERROR no server" in capsys.readouterr().out


def test_loop_benchmarks_run_on_each_loop_with_suffixed_rows(fake_benchmarks, monkeypatch):
    seen = []

    def on_loop(ctx):
        loop = asyncio.new_event_loop()
        seen.append((type(loop).__module__.split(".")[0], os.environ.get("KATCP_EVENT_LOOP"),
                     ctx.pool.loop))
        loop.close()
        return [harness.Row("fake.rate", "req/s", 1.0, 1.0)]

    fake_benchmarks["fake"] = on_loop
    fake_benchmarks["once"] = lambda ctx: [harness.Row("once.rate", "req/s", 1.0, 1.0)]
    monkeypatch.setattr(harness, "LOOP_BENCHMARKS", ("fake",))
    rows, meta = harness.run(size=harness.TINY, loops=("asyncio", "uvloop"))
    assert [row.name for row in rows] == ["fake.rate", "fake.rate.uvloop", "once.rate"]
    assert seen == [("asyncio", "asyncio", "asyncio"), ("uvloop", "uvloop", "uvloop")]
    assert meta["loops"] == ["asyncio", "uvloop"]
    # back on asyncio afterwards
    assert type(asyncio.get_event_loop_policy()).__module__.startswith("asyncio")
