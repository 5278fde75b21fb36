"""``python -m bench``: run the benchmark suite, print a table, write JSON."""

import argparse
import os
import sys

from bench import harness, profiling

DEFAULT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")


def main(argv=None):
    """Command-line entry point; returns the process exit code."""
    harness.load_all()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="katcp benchmarks, each against its minimal baseline.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads for a short run")
    parser.add_argument("--size", choices=sorted(harness.SIZES),
                        help="workload size (overrides --quick)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        choices=list(harness.BENCHMARKS),
                        help="run only this benchmark (repeatable): %s"
                        % ", ".join(harness.BENCHMARKS))
    parser.add_argument("--json", default=DEFAULT_JSON, metavar="PATH",
                        help="where to write the results (default: %(default)s)")
    parser.add_argument("--profile", metavar="DIR",
                        help="cProfile the async katcp server's loop thread and this "
                        "process's main thread into DIR/*.prof and print summaries")
    parser.add_argument("--loop", choices=harness.LOOPS + ("both",), default="both",
                        help="event loop of both sides: %s run on each loop with 'both' "
                        "(the default; uvloop only if installed), the rest on the first"
                        % ", ".join(harness.LOOP_BENCHMARKS))
    parser.add_argument("--check", action="store_true",
                        help="exit with status 2 if a row misses its target")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    args = parser.parse_args(argv)

    size = harness.SIZES[args.size or ("quick" if args.quick else "full")]
    loops = harness.available_loops() if args.loop == "both" else (args.loop,)
    log = None if args.quiet else sys.stderr
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        os.environ[profiling.ENV] = os.path.abspath(args.profile)
        rows, meta = profiling.run_profiled(
            lambda: harness.run(args.only, size, log=log, loops=loops), "bench-main")
    else:
        rows, meta = harness.run(args.only, size, log=log, loops=loops)
    print("python %s, tornado %s, katcp %s, %s CPUs, size %s, loops %s, %s"
          % (meta["python"], meta["tornado"], meta["katcp"], meta["cpus"],
             size.name, "+".join(loops), meta["date"]))
    print(harness.format_table(rows))
    harness.write_json(args.json, rows, meta)
    print("results written to %s" % args.json)
    if args.profile:
        for name in sorted(os.listdir(args.profile)):
            if name.endswith(".prof"):
                print("\n== profile %s" % name)
                print(profiling.summary(os.path.join(args.profile, name)))
    if any(r.error for r in rows):
        return 1
    missed = harness.missed(rows)
    if args.check and missed:
        print("--check: %d row(s) missed their target: %s"
              % (len(missed), ", ".join(r.name for r in missed)))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
