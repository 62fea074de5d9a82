"""The tour behind ``scripts/demo``: runs the documented examples one after another.

Each example is a file under ``docs/examples/`` that a user can copy and run on its own;
the test suite runs the same files, so the tour cannot rot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"

# (file, what it shows), in tour order; files that do not exist yet are skipped.
TOUR = [
    ("channel_four_ways.py", "request/reply in all four sync/async combinations"),
    ("channel_backends.py", "one client used from asyncio, uvloop, trio and a thread at once"),
    ("kv_server.py", "a key-value store served by task.spawn, used from tasks and threads"),
    ("stage_udp.py", "Stage: many tasks and threads sharing one UDP socket"),
    ("signals_event_loops.py", "dharma: a Signaler, module event loops, a dispatcher and a timer"),
    ("calloop_tour.py", "calloop: timers, channels, a pipe and an idle callback"),
    ("nats_two_servers.py", "across processes: two server processes and a client over NATS"),
    ("nats_service.py", "a NATS service: discovery, statistics and standard error codes"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", action="store_true", help="also run the benchmarks (quick)")
    args = parser.parse_args()
    failed = 0
    for name, what in TOUR:
        path = EXAMPLES / name
        if not path.exists():
            continue
        print(f"\n=== {name}: {what} ===", flush=True)
        rc = subprocess.call([sys.executable, str(path)], timeout=120)
        if rc != 0:
            print(f"!!! {name} exited with {rc}")
            failed += 1
    if args.bench:
        print("\n=== benchmarks (quick run) ===", flush=True)
        failed += subprocess.call([sys.executable, "-m", "benchmarks", "--quick"]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
