"""Mutation testing of the core with mutmut: run, then report ``N killed, M survived``.

The mutated code is the core a user's data flows through: the wire codec (Message,
MessageParser, ProtocolFlags), sensors and their value codecs, kattypes, the sampling
strategies (and the compaction of their timer heap, shared with the client's request
deadlines), the client's matching of replies and informs to requests, and what the
eighth round changed in the thread crossing, the device server, the resource client's
sampling wishes and the client's connecting, and what the ninth split out of the server
(its stream host) and the client (state flags, reconnection, thread gate). mutmut
(configured in setup.cfg) mutates those files; this script selects the functions above
and runs each mutant against the fast tests that call the mutated function.

Usage::

    python tools/mutation.py             # run every selected mutant, then report
    python tools/mutation.py --survivors # re-run only the mutants not killed (or not run)
    python tools/mutation.py --max-children 6  # more mutants at once (tests mostly wait)
    python tools/mutation.py --report    # report the last run only
    python tools/mutation.py --show      # also print the diff of each survivor

A mutant that makes the tests time out counts as killed (the tests noticed). Survivors
explained in docs/mutation.rst (equivalent, or why not killed) are counted apart.
"""

import argparse
import fnmatch
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "mutation.rst")

# Mutant names are module + "." + "x_" + function, or "xǁClassǁmethod", + "__mutmut_N".
SELECTION = {
    "katcp/wire (codec)": [
        "katcp.wire.message.*", "katcp.wire.flags.xǁProtocolFlagsǁ*", "katcp.wire.text.*",
        "katcp.wire.util.x_check_tb_limit__mutmut_*",
    ],
    "katcp/wire (types and sensors)": [
        "katcp.wire.types.*", "katcp.wire.flags.x_dialect__mutmut_*", "katcp.wire.sensor.*",
    ],
    "katcp/kattypes": ["katcp.kattypes.*"],
    "katcp/sampling.py": ["katcp.sampling.*"],
    "katcp/loop (timer heaps)": ["katcp.loop.timer_heap.*"],
    "katcp/client (request matching)": [
        "katcp.client.device.xǁDeviceClientǁ_next_id__mutmut_*",
        "katcp.client.device.xǁDeviceClientǁ_assign_mid__mutmut_*",
        "katcp.client.requests.*",
        "katcp.client.async_client.xǁAsyncClientǁ_deliver_reply__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁ_start_request__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁ_handle_timeout__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁ_blocking_request_on_loop__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁ_serve_deadline_on_loop__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁ_requests_watch__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁ_connection_closed__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁhandle_inform__mutmut_*",
        "katcp.client.async_client.xǁAsyncClientǁhandle_reply__mutmut_*",
    ],
    "katcp/loop (thread crossing)": [
        "katcp.loop.crossing.x_check_timeout__mutmut_*",
        "katcp.loop.crossing.x_thread_wait_timeout__mutmut_*",
        "katcp.loop.crossing.x_thread_ident__mutmut_*",
        "katcp.loop.crossing.x_on_thread__mutmut_*",
        "katcp.loop.crossing.x_on_loop__mutmut_*",
        "katcp.loop.crossing.x_wait_off_loop__mutmut_*",
        "katcp.loop.crossing.x_run_into_future__mutmut_*",
        "katcp.wire.util.x_copy_outcome__mutmut_*",  # the crossing's copy of an outcome
        "katcp.loop.crossing.x__loop_runs__mutmut_*",
        "katcp.loop.crossing.x_wait_for_loop__mutmut_*",
        "katcp.loop.crossing.x__wait_while_loop_runs__mutmut_*",
    ],
    "katcp/server (senders, sensors, stop)": [
        "katcp.server.base.xǁDeviceServerBaseǁ__init____mutmut_*",
        "katcp.server.base.xǁDeviceServerBaseǁ__repr____mutmut_*",
        "katcp.server.base.xǁDeviceServerBaseǁmass_inform__mutmut_*",
        "katcp.server.connection.xǁClientConnectionǁinform__mutmut_*",
        "katcp.server.connection.xǁClientConnectionǁmass_inform__mutmut_*",
        "katcp.server.connection.xǁClientConnectionǁreply__mutmut_*",
        "katcp.server.connection.xǁClientConnectionǁreply_inform__mutmut_*",
        "katcp.server.connection.xǁClientRequestConnectionǁreply_with_message__mutmut_*",
        "katcp.server.connection.x_check_message__mutmut_*",
        "katcp.server.device.xǁAsyncDeviceServerǁ__init____mutmut_*",
        "katcp.server.device.xǁDeviceServerǁ__init____mutmut_*",
        "katcp.server.device.xǁDeviceServerǁ_end_strategies_of__mutmut_*",
        "katcp.server.device.xǁDeviceServerǁadd_sensor__mutmut_*",
        "katcp.server.device.xǁDeviceServerǁon_client_connect__mutmut_*",
        "katcp.server.device.xǁDeviceServerǁremove_sensor__mutmut_*",
        "katcp.server.transport.xǁKATCPServerǁ__init____mutmut_*",
        "katcp.server.transport.xǁKATCPServerǁ_install__mutmut_*",
        "katcp.server.transport.xǁKATCPServerǁ_stop_on_closed_loop__mutmut_*",
        "katcp.server.transport.xǁKATCPServerǁjoin__mutmut_*",
        "katcp.server.transport.xǁKATCPServerǁset_ioloop__mutmut_*",
        "katcp.server.transport.xǁKATCPServerǁstop__mutmut_*",
    ],
    "katcp/server (stream host)": ["katcp.server.stream_host.*"],
    "katcp/resource_client (wishes)": [
        "katcp.resource_client.resources.xǁKATCPClientResourceǁ_filter_strategy_setter__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceǁ_set_as_wished__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceǁ_wish_for_later__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceǁ_with_stale_entries_removed__mutmut_*",
        "katcp.resource_client.inspecting.xǁ_StrategyWishesǁ*",
    ],
    "katcp/resource_client (starting, containers)": [
        "katcp.resource_client.resources.xǁKATCPClientResourceǁ__init____mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceǁ_dummy_request__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceǁ_inspecting_client_state_callback__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceǁset_sampling_strategies__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceǁstart__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceContainerǁ__init____mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceContainerǁ_through_children__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceContainerǁset_sampling_strategies__mutmut_*",
        "katcp.resource_client.resources.xǁKATCPClientResourceContainerǁset_sensor_listener__mutmut_*",
        "katcp.resource_client.resources.x__address_text__mutmut_*",
        "katcp.resource_client.resources.x__client_address__mutmut_*",
        "katcp.resource_client.resources.x__done_future__mutmut_*",
        "katcp.resource_client.inspecting.xǁKATCPClientResourceSensorsManagerǁ__init____mutmut_*",
    ],
    "katcp/client (connecting)": [
        "katcp.client.lifecycle.xǁClientLifecycleǁ__init____mutmut_*",
        "katcp.client.lifecycle.xǁClientLifecycleǁ_begin__mutmut_*",
        "katcp.client.lifecycle.xǁClientLifecycleǁ_connect__mutmut_*",
        "katcp.client.lifecycle.xǁClientLifecycleǁconnect_transport__mutmut_*",
        "katcp.client.lifecycle.xǁClientLifecycleǁhandle_message__mutmut_*",
        "katcp.client.lifecycle.xǁClientLifecycleǁstart__mutmut_*",
        "katcp.client.lifecycle.x_check_port__mutmut_*",
        "katcp.client.threadsafe.x__checks_request_timeout__mutmut_*",
        "katcp.client.threadsafe.x__timeout_position__mutmut_*",
        "katcp.client.threadsafe.x__crossing__mutmut_*",
    ],
    "katcp/client (flags, reconnection)": [
        "katcp.client.flags.*",
        "katcp.client.lifecycle.xǁReconnectionǁ*",
        "katcp.client.lifecycle.xǁThreadGateǁ*",
    ],
    "katcp/inspecting_client (updates)": ["katcp.inspecting_client.updates.*"],
    "katcp/inspecting_client (states)": ["katcp.inspecting_client.states.*"],
    "katcp/inspecting_client (index)": ["katcp.inspecting_client.index.*"],
    "katcp/inspecting_client (sync)": ["katcp.inspecting_client.sync.*"],
    "katcp/inspecting_client (lookup)": ["katcp.inspecting_client.lookup.*"],
    "katcp/inspecting_client (inspection)": ["katcp.inspecting_client.inspection.*"],
    "katcp/inspecting_client (parts)": ["katcp.inspecting_client.parts.*"],
    "katcp/inspecting_client (client)": ["katcp.inspecting_client.x*"],
}
KILLED = {"killed", "timeout", "caught by type check"}
# The run fails below this share of mutants killed, with unexplained survivors, or with a
# group that has no mutants.
MIN_SCORE = 0.85
# A survivor explained in docs/mutation.rst: a line "- ``mutant-name``: reason"; the
# reason starts with "Not killed" unless the mutant is equivalent.
EXPLAINED_LINE = re.compile(r"^\s*(?:- )?``(katcp\.[^`]+__mutmut_\d+)``\s*:\s*(.*)$")


def _mutmut(*args, capture=False, log=None):
    command = [sys.executable, "-m", "mutmut"] + list(args)
    if capture:
        return subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout
    # mutmut redraws a progress line per mutant: kept in a log, not in the CI output.
    with open(log, "w") as out:
        return subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                              ).returncode


def _group_of(name):
    for group, patterns in SELECTION.items():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return group
    return None


def results():
    """{mutant name: status} of every selected mutant, from mutmut's last run."""
    found = {}
    for line in _mutmut("results", "--all", "true", capture=True).splitlines():
        name, _, status = line.strip().partition(": ")
        if _group_of(name) is not None:
            found[name] = status
    return found


def explained():
    """{mutant name: is equivalent} of the survivors explained in docs/mutation.rst."""
    if not os.path.exists(DOCS):
        return {}
    with open(DOCS, encoding="utf-8") as docs:
        return {match.group(1): not match.group(2).startswith("Not killed")
                for match in map(EXPLAINED_LINE.match, docs) if match}


def report(show=False):
    """Print the per-module table and the final line; return the number of problems:
    survivors not explained in docs/mutation.rst, a score below MIN_SCORE, and groups
    without mutants (a selection that matches nothing)."""
    statuses = results()
    documented = explained()
    unexplained = []
    empty = []
    rows = []
    total_killed = total_survived = total_equivalent = 0
    for group in SELECTION:
        names = sorted(name for name in statuses if _group_of(name) == group)
        killed = [n for n in names if statuses[n] in KILLED]
        survived = [n for n in names if statuses[n] not in KILLED]
        equivalent = [n for n in survived if documented.get(n)]
        unexplained += [n for n in survived if n not in documented]
        total_killed += len(killed)
        total_survived += len(survived)
        total_equivalent += len(equivalent)
        if not names:
            empty.append(group)
        score = 100.0 * len(killed) / len(names) if names else 0.0
        rows.append((group, len(names), len(killed), len(survived), len(equivalent), score))
    print("%-36s %7s %7s %9s %10s %6s" % ("module", "mutants", "killed", "survived",
                                          "equivalent", "score"))
    for row in rows:
        print("%-36s %7d %7d %9d %10d %5.1f%%" % row)
    total = total_killed + total_survived
    print()
    if unexplained:
        print("Survivors not explained in docs/mutation.rst:")
        for name in unexplained:
            print("  %s (%s)" % (name, statuses[name]))
            if show:
                print(_mutmut("show", name, capture=True))
        print()
    stale = sorted(set(documented) - {n for n in statuses if statuses[n] not in KILLED})
    if stale:
        # Killed since, or renamed by a code change: the list in the docs needs updating.
        print("%d explanations in docs/mutation.rst match no survivor:" % (len(stale),))
        for name in stale:
            print("  %s (%s)" % (name, statuses.get(name, "no such mutant")))
    if empty:
        # A pattern in SELECTION or only_mutate in setup.cfg that matches nothing.
        print("No mutants in: %s" % (", ".join(empty),))
    print("score %.1f%% (%d of %d killed; %d survivors equivalent, %d unexplained)"
          % (100.0 * total_killed / total if total else 0.0, total_killed, total,
             total_equivalent, len(unexplained)))
    print("%d killed, %d survived" % (total_killed, total_survived))
    below = total and total_killed < MIN_SCORE * total
    if below:
        print("below the required %d%% killed" % (100 * MIN_SCORE,))
    return len(unexplained) + int(bool(below)) + len(empty)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="store_true", help="only report the last run")
    parser.add_argument("--survivors", action="store_true",
                        help="re-run only the mutants that were not killed")
    parser.add_argument("--show", action="store_true", help="print survivors' diffs")
    parser.add_argument("--max-children", type=int, default=None,
                        help="mutants run at once (default: one per core; more helps, as "
                             "many tests wait on sockets and timers rather than compute)")
    args = parser.parse_args()
    if not args.report:
        if args.survivors:
            names = [name for name, status in results().items() if status not in KILLED]
        else:
            names = [pattern for patterns in SELECTION.values() for pattern in patterns]
        log = os.path.join(ROOT, "mutation-run.log")
        print("running mutmut (progress in %s) ..." % (os.path.relpath(log, ROOT),),
              flush=True)
        extra = [] if args.max_children is None else ["--max-children", str(args.max_children)]
        if names and _mutmut("run", *extra, *names, log=log) != 0:
            print("mutmut failed; see %s" % (log,))
            return 2
    return 1 if report(show=args.show) else 0


if __name__ == "__main__":
    sys.exit(main())
