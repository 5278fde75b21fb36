"""cProfile support for ``python -m bench --profile DIR``.

The directory is passed to server processes in ``BENCH_PROFILE_DIR``; each
profiled loop thread writes ``DIR/<name>-<pid>.prof`` when it ends.
"""

import cProfile
import io
import os
import pstats

ENV = "BENCH_PROFILE_DIR"


def run_profiled(fn, name):
    """Call ``fn()``, under cProfile if ``BENCH_PROFILE_DIR`` is set.

    cProfile sees only the calling thread, so this wraps the thread that
    runs the server's event loop.
    """
    directory = os.environ.get(ENV)
    if not directory:
        return fn()
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(fn)
    finally:
        profiler.dump_stats(os.path.join(directory, "%s-%d.prof" % (name, os.getpid())))


def summary(path, limit=25):
    """The top ``limit`` functions of a profile by own time, as text."""
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    return out.getvalue()
