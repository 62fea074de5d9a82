"""asyncmp.dharma's system signals: SIGINT/SIGTERM handling and signal masks.

Everything that receives a signal runs in a child process (with a timeout), so that the
test process's own signal handlers are never touched.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from asyncmp.dharma import (
    Dispatcher,
    EventLoopInfo,
    Module,
    Signaler,
    SignalEventHandler,
    block_signals,
    unblock_signals,
)

# Shared by the child scripts: two event loops whose modules log into a list, and a
# handler that, once the dispatcher runs, sends the signal from another thread.
PRELUDE = """
import json, os, signal, sys, threading
from asyncmp.dharma import Dispatcher, EventKind
from asyncmp.dharma import EventLoopInfo, Module
from asyncmp.dharma import Signaler
from asyncmp.dharma import SignalEventHandler

SIG = getattr(signal, sys.argv[1])
log = []
lock = threading.Lock()

class Recorder(Module):
    def __init__(self, name):
        self.name = name
    def get_signals(self):
        return [1]
    def execute(self, signal_id, payload):
        with lock:
            log.append([self.name, "execute", payload])
    def finalize(self):
        with lock:
            log.append([self.name, "finalize"])

class Kicker:
    '''Readable at once; when dispatched, emits and has a thread send the signal.'''
    def __init__(self, signaler):
        self.r, self.w = os.pipe()
        os.write(self.w, b"go")
        self.signaler = signaler
    def fileno(self):
        return self.r
    def process_event(self, kind):
        os.read(self.r, 2)
        self.signaler.emit(1, "before the signal")
        threading.Thread(target=os.kill, args=(os.getpid(), SIG)).start()

def report(**extra):
    print(json.dumps({"log": sorted(log), **extra}))
"""

THREADS_MAIN_DISPATCHER = """
# What the handlers were: SIGINT's is Python's default_int_handler, or SIG_IGN when this
# process was started from a background job (a shell ignores SIGINT there, and the child
# inherits it).
before = [signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)]
signaler = Signaler()
threads = []
for name in ("one", "two"):
    info = EventLoopInfo(name, signaler, name)
    info.add_module(Recorder)
    threads.append(info.start())
dispatcher = Dispatcher()
handler = SignalEventHandler(dispatcher.get_controller(), signaler)
dispatcher.add_source(handler, EventKind.READ)
kicker = Kicker(signaler)
dispatcher.add_source(kicker, EventKind.READ)
dispatcher.run()
for thread in threads:
    thread.join(10)
    assert not thread.is_alive()
handler.close()
restored = [signal.getsignal(signal.SIGTERM) == before[0],
            signal.getsignal(signal.SIGINT) == before[1]]
report(received=[s.name for s in handler.received], restored=restored)
"""

THREADED_DISPATCHER = """
signaler = Signaler()
threads = []
for name in ("one", "two"):
    info = EventLoopInfo(name, signaler, name)
    info.add_module(Recorder)
    threads.append(info.start())
dispatcher = Dispatcher()
handler = SignalEventHandler(dispatcher, signaler)  # made on the main thread
dispatcher.add_source(handler, EventKind.READ)
dispatcher.add_source(Kicker(signaler), EventKind.READ)
runner = threading.Thread(target=dispatcher.run, name="dispatcher")
runner.start()
for thread in [runner, *threads]:
    thread.join(10)  # the main thread waits here when the signal comes
    assert not thread.is_alive()
report(received=[s.name for s in handler.received])
"""

ASYNC_DISPATCHER = """
import anyio

async def main():
    signaler = Signaler()
    info = EventLoopInfo("thread", signaler, "one")
    info.add_module(Recorder)
    thread = info.start()
    task_info = EventLoopInfo("task", signaler, "two")
    task_info.add_module(Recorder)
    dispatcher = Dispatcher()
    handler = SignalEventHandler(dispatcher, signaler)
    dispatcher.add_source(handler, EventKind.READ)
    async with anyio.create_task_group() as tg:
        await tg.start(task_info.run_async)
        dispatcher.add_source(Kicker(signaler), EventKind.READ)
        await dispatcher.run_async()
    await anyio.to_thread.run_sync(thread.join, 10)
    assert not thread.is_alive()
    report(received=[s.name for s in handler.received])

anyio.run(main, backend=sys.argv[2])
"""

# dharma's recipe: block the signals on the main thread before anything else, so that every
# thread started afterwards inherits the blocked mask; then set up as above.
BLOCKED_FIRST = """
from asyncmp.dharma import block_signals
block_signals()
signaler = Signaler()
threads = []
for name in ("one", "two"):
    info = EventLoopInfo(name, signaler, name)
    info.add_module(Recorder)
    threads.append(info.start())
dispatcher = Dispatcher()
handler = SignalEventHandler(dispatcher.get_controller(), signaler)
unblocked = not ({signal.SIGINT, signal.SIGTERM} & signal.pthread_sigmask(signal.SIG_BLOCK, []))
dispatcher.add_source(handler, EventKind.READ)
dispatcher.add_source(Kicker(signaler), EventKind.READ)
dispatcher.run()
for thread in threads:
    thread.join(10)
    assert not thread.is_alive()
handler.close()
reblocked = {signal.SIGINT, signal.SIGTERM} <= signal.pthread_sigmask(signal.SIG_BLOCK, [])
report(received=[s.name for s in handler.received], unblocked=unblocked, reblocked=reblocked)
"""

EXPECTED_LOG = [
    ["one", "execute", "before the signal"],
    ["one", "finalize"],
    ["two", "execute", "before the signal"],
    ["two", "finalize"],
]


def run_child(script: str, *args: str, timeout: float = 30) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.subprocess
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_system_signal_stops_dispatcher_and_finalizes_loops(sig: str) -> None:
    """SIGTERM or SIGINT stops a dispatcher run on the main thread and both event loops
    finalize after executing what was emitted before; close() restores the old handlers."""
    out = run_child(THREADS_MAIN_DISPATCHER, sig)

    assert out["received"] == [sig]
    assert out["log"] == EXPECTED_LOG
    assert out["restored"] == [True, True]


@pytest.mark.subprocess
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_system_signal_handled_when_the_main_thread_blocked_it_first(sig: str) -> None:
    """dharma's order — block SIGINT/SIGTERM on the main thread, then start the loops and
    create the handler — still shuts down on the signal: the handler unblocks them on the
    main thread (where Python runs signal handlers) and close() blocks them again."""
    out = run_child(BLOCKED_FIRST, sig, timeout=15)  # before the fix: pending for ever

    assert out["received"] == [sig]
    assert out["log"] == EXPECTED_LOG
    assert out["unblocked"] is True
    assert out["reblocked"] is True


@pytest.mark.subprocess
def test_system_signal_reaches_a_dispatcher_on_another_thread() -> None:
    """With the dispatcher on its own thread and the main thread in join(), SIGTERM still
    stops it and terminates the loops."""
    out = run_child(THREADED_DISPATCHER, "SIGTERM")

    assert out["received"] == ["SIGTERM"]
    assert out["log"] == EXPECTED_LOG


@pytest.mark.subprocess
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_system_signal_stops_run_async(backend: str) -> None:
    """SIGTERM stops a dispatcher running as a task and ends a task loop and a thread loop."""
    out = run_child(ASYNC_DISPATCHER, "SIGTERM", backend)

    assert out["received"] == ["SIGTERM"]
    assert out["log"] == EXPECTED_LOG


def test_system_signal_handler_needs_the_main_thread() -> None:
    """SignalEventHandler made off the main thread raises RuntimeError (and installs nothing)."""
    errors: list[BaseException] = []
    before = signal.getsignal(signal.SIGTERM)

    def make() -> None:
        try:
            SignalEventHandler(Dispatcher(), Signaler())
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join(5)

    assert len(errors) == 1
    assert "main thread" in str(errors[0])
    assert signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(TypeError, match="stop"):
        SignalEventHandler(object(), Signaler())  # type: ignore[arg-type]


def _mask_in_thread(action: Any) -> set[int]:
    result: list[set[int]] = []

    def body() -> None:
        action()
        result.append({int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])})

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)
    return result[0]


def test_system_block_and_unblock_signals_change_the_thread_mask() -> None:
    """block_signals() blocks SIGINT, SIGTERM, SIGUSR1, SIGUSR2 on the calling thread only;
    unblock_signals() undoes it."""
    wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}

    blocked = _mask_in_thread(block_signals)
    both = _mask_in_thread(lambda: (block_signals(), unblock_signals()))

    assert wanted <= blocked
    assert not (wanted & both)
    assert not (wanted & {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])})


def test_system_event_loop_threads_block_signals() -> None:
    """An event loop's thread has SIGINT and SIGTERM blocked, so they reach the main thread."""
    signaler: Signaler[None] = Signaler()
    masks: list[set[int]] = []

    class Probe(Module):
        def __init__(self, context: object) -> None:
            masks.append({int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])})

        def get_signals(self) -> list[int]:
            return []

        def execute(self, signal_id: int, payload: Any) -> None:
            pass

    info: EventLoopInfo[None] = EventLoopInfo("probe", signaler)
    info.add_module(Probe)
    thread = info.start()
    signaler.terminate()
    thread.join(5)

    assert {signal.SIGINT, signal.SIGTERM} <= masks[0]
