"""Benchmark harness: sizes, result rows, interleaved repetition, reporting."""

import contextlib
import dataclasses
import datetime
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import traceback

# -- sizes ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Size:
    """How big each workload is; the issue's numbers are :data:`FULL`."""

    name: str
    repeats: int
    codec_groups: int = 1000
    codec_loops: int = 5
    stream_lines: int = 100_000
    sequential: int = 3000
    pipeline_seconds: float = 1.0
    pipeline_widths: tuple = (1, 10, 100)
    pipeline_depth: int = 50
    bulk_sensors: int = 10_000
    stream_sensors: int = 1000
    stream_seconds: float = 3.0
    stream_clients: tuple = (1, 10)
    periodic_sensors: int = 1000
    periodic_period: float = 0.01
    periodic_seconds: float = 3.0
    client_requests: int = 3000
    client_repeats: int = 9  # latency-bound and noisy on a shared machine
    idle_connections: int = 5000
    latency_requests: int = 300
    fleet_devices: tuple = (16, 64)
    fleet_processes: int = 4
    fleet_sensors: int = 500
    fleet_period: float = 1.0
    fleet_seconds: float = 5.0
    fleet_repeats: int = 3


FULL = Size("full", repeats=5)
QUICK = Size("quick", repeats=5, codec_loops=2, stream_lines=20_000, sequential=1000,
             pipeline_seconds=0.3, bulk_sensors=2000, stream_seconds=0.5,
             periodic_seconds=1.0, client_requests=1000, idle_connections=500,
             latency_requests=100, fleet_seconds=2.0, fleet_repeats=1)
TINY = Size("tiny", repeats=1, codec_groups=20, codec_loops=1, stream_lines=300,
            sequential=20, pipeline_seconds=0.05, pipeline_widths=(1, 2),
            pipeline_depth=5, bulk_sensors=12, stream_sensors=12, stream_seconds=0.1,
            stream_clients=(1, 2), periodic_sensors=12, periodic_period=0.02,
            periodic_seconds=0.2, client_requests=20, client_repeats=1, idle_connections=10,
            latency_requests=10, fleet_devices=(2, 4), fleet_processes=2, fleet_sensors=20,
            fleet_period=0.1, fleet_seconds=0.3, fleet_repeats=1)
SIZES = {s.name: s for s in (FULL, QUICK, TINY)}

# -- results --------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of the results table.

    ``target`` is ``(kind, op, threshold)``: kind ``'ratio'`` compares
    katcp/baseline, kind ``'value'`` compares the katcp value itself; op is
    ``'>='`` or ``'<='``. None means the row is informational.
    """

    name: str
    unit: str
    katcp: float
    baseline: float
    target: tuple = None
    extra: dict = dataclasses.field(default_factory=dict)
    error: str = None

    @property
    def ratio(self):
        if self.katcp is None or not self.baseline:
            return None
        return self.katcp / self.baseline

    @property
    def passed(self):
        """True/False against the target, None when there is none."""
        if self.error is not None:
            return False
        if self.target is None:
            return None
        kind, op, threshold = self.target
        value = self.ratio if kind == "ratio" else self.katcp
        if value is None:
            return False
        return value >= threshold if op == ">=" else value <= threshold

    def target_text(self):
        if self.target is None:
            return "info"
        kind, op, threshold = self.target
        return "%s%g%s" % (op, threshold, "x" if kind == "ratio" else " " + self.unit)

    def as_dict(self):
        return {"name": self.name, "unit": self.unit, "katcp": self.katcp,
                "baseline": self.baseline, "ratio": self.ratio,
                "target": self.target_text(), "passed": self.passed,
                "error": self.error, "extra": self.extra}


def median(values):
    """Median of a non-empty sequence."""
    return statistics.median(values)


def interleave(variants, repeats):
    """Run measurement functions alternately and collect their samples.

    Parameters
    ----------
    variants : dict of str -> callable
        Each callable takes no argument and returns one sample (a number or
        a dict of numbers).
    repeats : int
        Samples per variant; the order alternates each round so that drift
        in machine load hits every variant alike.

    Returns
    -------
    dict of str -> list
        The samples per variant, in the order taken.
    """
    samples = {key: [] for key in variants}
    keys = list(variants)
    for i in range(repeats):
        for key in (keys if i % 2 == 0 else keys[::-1]):
            samples[key].append(variants[key]())
    return samples


def medians(samples):
    """Median per field of a list of dict samples."""
    return {field: median([s[field] for s in samples]) for field in samples[0]}


# -- registry and run -------------------------------------------------------------

BENCHMARKS = {}
OPT_IN = set()
"""Benchmarks that run only when named with ``--only`` (e.g. ``web``: it needs a browser)."""


def benchmark(name, opt_in=False):
    """Register ``fn(ctx) -> list of Row`` under ``name``; ``opt_in``: only when named."""
    def register(fn):
        BENCHMARKS[name] = fn
        if opt_in:
            OPT_IN.add(name)
        return fn
    return register


@dataclasses.dataclass
class Context:
    """What a benchmark gets: the size and the shared server processes."""

    size: Size
    pool: object
    log: object = None

    def say(self, text):
        if self.log is not None:
            print(text, file=self.log, flush=True)


MODULES = ("bench_codec", "bench_requests", "bench_sensors", "bench_clients", "bench_scale",
           "bench_fleet", "bench_web")
"""Benchmark modules, in the order of the issue's workloads (the table's order)."""


def load_all():
    """Import every benchmark module so that it registers itself."""
    for module in MODULES:
        importlib.import_module("bench." + module)


LOOPS = ("asyncio", "uvloop")
"""Event loops a run can use; rows measured on uvloop get the suffix ``.uvloop``."""

LOOP_BENCHMARKS = ("requests", "pipeline", "streaming", "clients")
"""Benchmarks that run once per event loop (the rest run on asyncio only)."""


def available_loops():
    """The loops of :data:`LOOPS` installed here (uvloop is optional)."""
    return LOOPS if importlib.util.find_spec("uvloop") else LOOPS[:1]


def run(names=None, size=FULL, log=None, loops=None):
    """Run benchmarks and return ``(rows, meta)``.

    Parameters
    ----------
    names : list of str, optional
        Benchmarks to run (all but the :data:`OPT_IN` ones by default), see
        :data:`BENCHMARKS`.
    size : Size
        Workload sizes.
    log : file, optional
        Progress messages go here.
    loops : sequence of str, optional
        Event loops (:data:`LOOPS`): the :data:`LOOP_BENCHMARKS` run on each, the
        others on the first. Default: :func:`available_loops`.

    Returns
    -------
    tuple
        The list of :class:`Row` and a dict describing the run.
    """
    from bench.procs import LOOP_ENV, ServerPool, install_loop, raise_fd_limit
    load_all()
    unknown = set(names or ()) - set(BENCHMARKS)
    if unknown:
        raise ValueError("unknown benchmark(s): %s (known: %s)"
                         % (", ".join(sorted(unknown)), ", ".join(BENCHMARKS)))
    loops = tuple(loops or available_loops())
    raise_fd_limit()
    rows = []
    started = time.time()
    previous = os.environ.get(LOOP_ENV)
    with contextlib.ExitStack() as stack:
        # one pool of server processes per loop: a child's loop is chosen at its start
        pools = {loop: stack.enter_context(ServerPool(loop)) for loop in loops}
        for name, fn in BENCHMARKS.items():
            if (name not in names) if names else (name in OPT_IN):
                continue
            for loop in (loops if name in LOOP_BENCHMARKS else loops[:1]):
                suffix = "" if loop == "asyncio" else "." + loop
                install_loop(loop)
                try:
                    rows.extend(_run_one(name + suffix, fn, Context(size, pools[loop], log),
                                         suffix))
                finally:
                    install_loop("asyncio")
    if previous is None:
        os.environ.pop(LOOP_ENV, None)
    else:
        os.environ[LOOP_ENV] = previous
    meta = describe_run(size, time.time() - started)
    meta["loops"] = list(loops)
    return rows, meta


def _run_one(label, fn, ctx, suffix):
    ctx.say("== %s" % label)
    t0 = time.perf_counter()
    try:
        rows = fn(ctx)
    except Exception as exc:
        # the table gets the last line (a child's traceback ends there)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        rows = [Row(label, "", None, None, error=lines[-1] if lines else type(exc).__name__,
                    extra={"traceback": traceback.format_exc()})]
        ctx.say(traceback.format_exc())
    else:
        for row in rows:
            row.name += suffix
    ctx.say("   %.1f s" % (time.perf_counter() - t0))
    return rows


def missed(rows):
    """Rows that missed their target or raised an error."""
    return [row for row in rows if row.passed is False]


def describe_run(size, seconds):
    """Machine and software facts recorded with every run."""
    try:
        import tornado
        tornado_version = tornado.version
    except ImportError:
        tornado_version = None
    try:
        from katcp.version import __version__ as katcp_version
    except ImportError:
        katcp_version = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "size": dataclasses.asdict(size),
        "seconds": round(seconds, 1),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "tornado": tornado_version,
        "katcp": katcp_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def _fmt(value):
    if value is None:
        return "-"
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return "%.4g" % value
    return "%.3e" % value


def format_table(rows):
    """The results as an aligned text table."""
    header = ("benchmark", "unit", "katcp", "baseline", "ratio", "target", "result")
    lines = [header]
    for row in rows:
        passed = row.passed
        result = ("ERROR " + row.error if row.error else
                  "-" if passed is None else "PASS" if passed else "FAIL")
        lines.append((row.name, row.unit, _fmt(row.katcp), _fmt(row.baseline),
                      _fmt(row.ratio), row.target_text(), result))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells + [line[-1]]))
    return "\n".join(out)


def write_json(path, rows, meta):
    """Write the run to ``path`` as JSON."""
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": [r.as_dict() for r in rows]}, f, indent=2)
        f.write("\n")
