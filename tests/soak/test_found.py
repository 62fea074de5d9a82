"""What the soak found: its failures, each made deterministic as a test of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# -- what the soak found ----------------------------------------------------------------------

# Run in a child process: with the bug, the interrupted thread hangs for ever and cannot be
# interrupted again, so it must not stay behind in the test session.
INTERRUPT_AFTER_HANDOFF = """
import sys, threading
import asyncmp

server, client = asyncmp.channel()
sent = []
state = {"handed": False, "interrupted": False}

def in_wait(frame):
    return (frame.f_code.co_name == "wait" and "asyncmp" in frame.f_code.co_filename
            and type(frame.f_locals.get("self")).__name__ == "Parker")

def profile(frame, event, arg):
    if getattr(arg, "__name__", None) != "acquire" or not in_wait(frame):
        return
    if event == "c_call" and not state["handed"]:
        # The server is parked: this request is handed straight to its waiter.
        state["handed"] = True
        sent.append(client.request("handed"))
    elif event == "c_return" and state["handed"] and not state["interrupted"]:
        # Ctrl-C lands the instant after the acquire returned: Python runs a signal handler
        # at the first check after a call, still in this frame, so it raises right here.
        state["interrupted"] = True
        raise KeyboardInterrupt

def serve():
    sys.setprofile(profile)
    try:
        server.blocking.wait(timeout=10)
    except KeyboardInterrupt:
        pass
    finally:
        sys.setprofile(None)
    msg, rctx = server.blocking.wait(timeout=10)
    assert msg == "handed", msg
    assert rctx.reply("ok") is True
    print("served")

worker = threading.Thread(target=serve, daemon=True)
worker.start()
worker.join(5)
if worker.is_alive():
    print("hung in the interrupted server.blocking.wait")
    sys.exit(1)
assert state["interrupted"]
assert sent[0].blocking.wait(timeout=5) == "ok"
"""


@pytest.mark.subprocess
def test_interrupt_right_after_handoff_to_blocking_wait_passes_the_request_on() -> None:
    """A Ctrl-C that interrupts `server.blocking.wait` in the instant after a request was
    handed to it leaves as a timeout does (docs/threads.md, Interrupts): the interrupt
    propagates, nothing hangs, and the request goes to the next wait.

    Python runs a signal handler at the first check after a C call returns, so a SIGINT that
    arrives while the thread is being woken raises KeyboardInterrupt in the waiter's frame
    *after* its lock acquire succeeded. A profile hook makes that instant deterministic: it
    hands a request to the parked wait just before the acquire and raises KeyboardInterrupt
    just after it, as the signal handler would.

    That instant exists in the pure-Python core only, so the child runs on it: the compiled
    core's wait runs signal handlers only while it is blocked, never after it has taken a
    wake-up (`Parker`)."""
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_AFTER_HANDOFF],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASYNCMP_NO_EXTENSIONS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "served" in proc.stdout
