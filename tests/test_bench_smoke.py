"""Smoke test of the benchmark suite: every benchmark once, at tiny size.

Ratios at this size mean nothing, so only the machinery is checked: each
benchmark runs without error and reports measured numbers, the baseline line
server sends the katcp server's bytes, and the CLI writes its JSON.
"""

import asyncio
import json
import math

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


@pytest.mark.parametrize("raw", [b"", b"plain", b"a b\tc\\d\0e\nf\rg\x1bh", b"\\@"])
def test_baseline_codec_round_trips(raw):
    line = baseline.join(b"#", b"x", [raw, b"1"], mid=b"7")
    assert b" " not in baseline.escape(raw) and b"\n" not in line
    assert baseline.split(line) == (b"#", b"x", b"7", [raw, b"1"])


def test_row_targets():
    assert harness.Row("a", "s", 2.0, 1.0, ("ratio", "<=", 3.0)).passed is True
    assert harness.Row("a", "s", 2.0, 1.0, ("ratio", ">=", 3.0)).passed is False
    assert harness.Row("a", "s", 0.3, 1.0, ("value", "<=", 0.2)).passed is False
    assert harness.Row("a", "s", 0.3, 1.0).passed is None
