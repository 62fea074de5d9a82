"""The channel's two cores are one library.

The channel is written once (`asyncmp._channel_py`); the compiled core is that very source
compiled by Cython (`asyncmp._channel_c`) on the primitives of `asyncmp._speedups`. These
tests check that each run of the suite is on the core it names, that the environment selects
the core, and that what a user can observe of the channel's API — names, signatures,
documentation, `help()`, coroutine-function-ness, task reprs, subclassing — is the same on
both, in one process.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import importlib
import inspect
import os
import pydoc
import subprocess
import sys
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

import asyncmp
from asyncmp._cores import cores
from bounds import WAIT
from core_switch import CORES, use_core

SRC = Path(asyncmp.__file__).parent
COMPILED = cores().get("compiled")
# The classes a user meets (by name, or as what the API hands out).
FACES = (
    "Client", "Server", "ReplyContext", "WeakClient", "channel",
    "_BlockingClient", "_BlockingServer", "_ServerIterator",
)  # fmt: skip
# Not compared, with the reason. `__new__`: each private field class (`_Request`,
# `_ClientFields`, `_ServerFields`) brings its constructor slot, which is a C function on the
# compiled core and object's on the pure one; its qualified name differs, nothing else (and
# the public classes refuse construction anyway). `__pyx_vtable__`: Cython's table of the C
# methods of a private field class, invisible to `help()`. `__annotations__`: Python makes a
# class's (empty) dict on first access, so whether `dir()` lists it depends on who asked.
NOT_COMPARED = {"__annotations__", "__new__", "__pyx_vtable__"}
needs_both = pytest.mark.skipif(
    COMPILED is None, reason="the compiled core is not built here (no C compiler)"
)
# Known to fail from CPython 3.13 on (noxfile.py runs the suite there), until the compiled
# core makes up for what 3.13 changed: the compiler dedents a Python function's docstring
# (Cython keeps the indentation), a class compiled from Python records its
# `__static_attributes__`, and pydoc describes a Python method as "from
# asyncmp._channel.Client" and a fields class's `__new__` by that class. Strict: it fails
# once the cores agree there, to be removed then.
differs_from_3_13 = pytest.mark.xfail(
    sys.version_info >= (3, 13),
    reason="3.13+: docstrings dedented, __static_attributes__, pydoc's 'from' (see above)",
    strict=True,
)


def test_the_run_uses_the_core_it_names() -> None:
    """A run of the suite that names its core (scripts/test names one per run) is on it."""
    expected = os.environ.get("ASYNCMP_EXPECT_CORE")
    if expected is None:
        pytest.skip("this run names no core (scripts/test runs the suite once per core)")
    assert expected == asyncmp.CORE


@pytest.mark.subprocess
@pytest.mark.parametrize("value", ["1", "yes"])
def test_no_extensions_selects_the_pure_core(value: str) -> None:
    """ASYNCMP_NO_EXTENSIONS (any non-empty value) makes asyncmp run on pure Python."""
    env = {**os.environ, "ASYNCMP_NO_EXTENSIONS": value}
    out = subprocess.run(
        [sys.executable, "-c", "import asyncmp; print(asyncmp.CORE, asyncmp.Client.__module__)"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["pure", "asyncmp"]


@pytest.mark.subprocess
@pytest.mark.parametrize("no_extensions", ["", "1"], ids=["compiled", "pure"])
def test_a_reply_context_subclass_made_later_is_freed_safely(no_extensions: str) -> None:
    """A subclass of ReplyContext made after import (construction bypassed with __new__)
    is freed without crashing, on each core: on the compiled core its finalizer is the
    function shown for `__del__`, which must run _Request's C finalizer, not the object's
    own slot (that was the same function again, recursing until the process crashed)."""
    script = (
        "import asyncmp\n"
        "Sub = type('Sub', (asyncmp.ReplyContext,), {'__slots__': ()})\n"
        "for _ in range(3):\n"
        "    x = Sub.__new__(Sub)\n"
        "    del x\n"
        "print(asyncmp.CORE, 'freed')\n"
    )
    env = {**os.environ, "ASYNCMP_NO_EXTENSIONS": no_extensions}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    expected = "pure" if no_extensions or COMPILED is None else "compiled"
    assert out.stdout.split() == [expected, "freed"]


def test_the_compiled_core_is_the_one_in_use_when_built() -> None:
    """When the compiled channel is built (and not switched off), asyncmp runs on it."""
    if COMPILED is None or os.environ.get("ASYNCMP_NO_EXTENSIONS"):
        assert asyncmp.CORE == "pure"
        assert asyncmp.Client is cores()["pure"].Client
        pytest.skip("the compiled core is not built or is switched off")
    assert asyncmp.CORE == "compiled"
    assert asyncmp.Client is COMPILED.Client
    assert asyncmp.ReplyContext is COMPILED.ReplyContext


@needs_both
@differs_from_3_13
def test_the_compiled_core_is_compiled_from_the_one_source() -> None:
    """The protocol has one source: the compiled core's code comes from `_channel_py.py`
    (Cython records it), and it offers the pure module's names, of the same kinds."""
    assert COMPILED is not None
    assert COMPILED.Client.send.__code__.co_filename.endswith("_channel_py.py")
    assert COMPILED.ChannelState.push.__doc__ == cores()["pure"].ChannelState.push.__doc__
    assert COMPILED.__all__ == cores()["pure"].__all__
    for name in (*COMPILED.__all__, *FACES):
        compiled, pure = getattr(COMPILED, name), getattr(cores()["pure"], name)
        assert isinstance(compiled, type) == isinstance(pure, type), name
        assert inspect.isroutine(compiled) == inspect.isroutine(pure), name


# -- what a user sees of each core ----------------------------------------------------------


def without_lazy_annotations(text: str) -> str:
    """`help()` text without the sections that list only an empty ``__annotations__``:
    Python makes that dict in a class on first access (a Python class can, an extension
    type cannot), so where one shows depends on what asked before, not on the core."""
    rule = " |  " + "-" * 70
    sections = text.split(rule)

    def only_annotations(part: str) -> bool:
        lines = [line.strip(" |") for line in part.splitlines()]
        return [line for line in lines if line][1:] == ["__annotations__ = {}"]

    return rule.join(part for part in sections if not only_annotations(part)).rstrip(" |\n")


def facts(obj: object) -> dict[str, object]:
    """What `inspect`, `asyncio` and `help()` tell of one callable or class."""
    found: dict[str, object] = {
        attr: getattr(obj, attr, None) for attr in ("__name__", "__qualname__", "__module__")
    }
    found["doc"] = inspect.getdoc(obj)
    try:
        found["signature"] = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        found["signature"] = f"no signature: {type(exc).__name__}"
    found["inspect.iscoroutinefunction"] = inspect.iscoroutinefunction(obj)
    found["asyncio.iscoroutinefunction"] = asyncio.iscoroutinefunction(obj)
    found["kind"] = type(inspect.getattr_static(obj, "__get__", None)).__name__
    return found


def faces(core: ModuleType, other: ModuleType) -> dict[str, dict[str, object]]:
    """Every observable fact of the channel's API on *core* (the members that either core
    lists, so that one missing on a core shows)."""
    seen: dict[str, dict[str, object]] = {}
    for name in FACES:
        obj = getattr(core, name)
        seen[name] = facts(obj)
        if not isinstance(obj, type):
            continue
        seen[name]["help"] = without_lazy_annotations(
            pydoc.render_doc(obj, renderer=pydoc.plaintext)
        )
        seen[name]["mro"] = [f"{c.__module__}.{c.__qualname__}" for c in obj.__mro__]
        seen[name]["metaclass"] = type(obj).__qualname__
        for attr in sorted((set(dir(obj)) | set(dir(getattr(other, name)))) - NOT_COMPARED):
            if attr.startswith("_") and not attr.endswith("__"):
                continue  # private: each core's own business (help() shows neither)
            static = inspect.getattr_static(obj, attr, None)
            member = {
                "static": type(static).__name__.replace("cython_function_or_method", "function")
            }
            if callable(getattr(obj, attr, None)) or isinstance(static, property):
                target = static.fget if isinstance(static, property) else getattr(obj, attr)
                member.update(facts(target))
            seen[f"{name}.{attr}"] = member
    return seen


@needs_both
@differs_from_3_13
def test_both_cores_show_the_same_api() -> None:
    """Every class of the channel that users meet, and each of their members, looks the
    same on both cores to `inspect`, `asyncio` and `help()`: names, qualified names,
    modules, signatures with their annotations, docstrings, whether a method is a coroutine
    function, method kinds, MRO, metaclass. Any difference fails."""
    assert COMPILED is not None
    pure, compiled = faces(cores()["pure"], COMPILED), faces(COMPILED, cores()["pure"])
    assert pure.keys() == compiled.keys()
    differences = {
        key: {fact: (pure[key][fact], compiled[key][fact])}
        for key in pure
        for fact in pure[key]
        if pure[key][fact] != compiled[key].get(fact)
    }
    assert not differences


def test_the_async_methods_are_coroutine_functions(core: ModuleType) -> None:
    """The "sync or async?" helper users write (``if iscoroutinefunction(fn): await fn(x)``)
    sees every documented async method as one, on each core."""
    server, client = core.channel()
    for method in (client.send, server.wait, core.Client.send, core.Server.wait):
        assert inspect.iscoroutinefunction(method), method
        assert asyncio.iscoroutinefunction(method), method
    assert inspect.signature(core.Client.send).parameters["msg"].annotation == "Req"
    assert inspect.signature(core.Client.send).return_annotation == "Rep"
    assert (core.Client.send.__doc__ or "").startswith("Send *msg* and wait for the reply.")
    assert (core.ReplyContext.reply.__doc__ or "").startswith("Send *value* to the requester.")
    coroutine = client.send(1)
    try:
        assert asyncio.iscoroutine(coroutine)
        assert inspect.isawaitable(coroutine)
        assert coroutine.__qualname__ == "Client.send"
    finally:
        coroutine.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_pending_tasks_repr_names_the_operation(core: ModuleType) -> None:
    """A task blocked in `send` or `wait` says so in its repr, on each core."""
    server, client = core.channel()
    waiting = asyncio.ensure_future(server.wait())
    sending = asyncio.ensure_future(client.send(1))
    await anyio.wait_all_tasks_blocked()
    try:
        assert "Server.wait()" in repr(waiting), repr(waiting)
        assert "Client.send()" in repr(sending), repr(sending)
    finally:
        waiting.cancel()
        sending.cancel()
        await asyncio.gather(waiting, sending, return_exceptions=True)


@pytest.mark.parametrize("name", ["Client", "Server", "ReplyContext", "WeakClient"])
def test_subclassing_and_construction_behave_alike(name: str) -> None:
    """What subclassing a public class and calling it directly do is the same on each
    core (the same outcome, the same message)."""
    outcomes = []
    for core in CORES.values():
        cls = getattr(core, name)
        try:
            sub: Any = type("Sub", (cls,), {"__slots__": ()})
            made = f"subclass of {sub.__mro__[1].__qualname__}"
        except TypeError as exc:
            made = f"TypeError: {exc}"
        try:
            cls()
            called = "made"
        except TypeError as exc:
            called = f"TypeError: {exc}"
        outcomes.append((made, called, getattr(cls, "__final__", None)))
    assert len(set(outcomes)) == 1, outcomes


async def echo(server: asyncmp.Server[Any, Any]) -> None:
    async for msg, rctx in server:
        rctx.reply(msg)


async def test_send_works_with_the_idioms_users_rely_on(
    core: ModuleType, anyio_backend_name: str
) -> None:
    """client.send(m) is what every scheduler expects of a coroutine, on each core:
    asyncio.create_task and gather take it, and anyio's and trio's start_soon(client.send, m)
    run it."""
    server, client = core.channel()
    got: list[Any] = []

    async def collect(value: int) -> None:
        got.append(await client.send(value))

    async with anyio.create_task_group() as tg:
        tg.start_soon(echo, server)
        with anyio.fail_after(10):
            tg.start_soon(client.send, 0)  # the result is dropped, the round trip happens
            async with anyio.create_task_group() as inner:
                inner.start_soon(collect, 1)
            if anyio_backend_name == "asyncio":
                assert await asyncio.create_task(client.send(2)) == 2
                assert await asyncio.gather(client.send(3), client.send(4)) == [3, 4]
                assert await asyncio.ensure_future(client.send(5)) == 5
        client.close()
    assert got == [1]


async def test_send_never_awaited_warns_like_a_coroutine(core: ModuleType) -> None:
    """A send that is made and dropped without being awaited warns, as a coroutine does,
    and sends nothing, on each core."""
    server, client = core.channel()
    with pytest.warns(RuntimeWarning, match="never awaited"):
        client.send(1)  # dropped at once: CPython finalizes it on this line
    assert server.try_pop() is None


async def test_an_operation_dropped_while_it_waits_gives_up(
    core: ModuleType, anyio_backend_name: str
) -> None:
    """A send or a wait that was started and then dropped unfinished (its task gone, never
    resumed) gives up as a coroutine closed by the collector does, on each core: the request
    is withdrawn, the waiting server unparked, and the channel serves the next ones."""
    if anyio_backend_name == "trio":
        pytest.skip("driving an operation by hand needs a future to wait on (asyncio)")
    server, client = core.channel()
    send = client.send(1).__await__()
    assert isinstance(send.send(None), asyncio.Future)  # queued, waiting for its reply
    del send  # dropped while it waits
    gc.collect()
    assert server.try_pop() is None, "the dropped send's request was not withdrawn"
    wait = server.wait().__await__()
    assert isinstance(wait.send(None), asyncio.Future)  # parked, waiting for a request
    del wait
    gc.collect()
    async with anyio.create_task_group() as tg:
        tg.start_soon(echo, server)
        with anyio.fail_after(WAIT):
            assert await client.send(2) == 2  # the dropped wait did not take it
        tg.cancel_scope.cancel()


def test_freed_reply_contexts_let_go_of_their_type(core: ModuleType) -> None:
    """Each ReplyContext holds its (heap) type, and lets go of it when freed, answered or
    not, on each core: after many requests the type's reference count is what it was (the
    compiled core frees an answered context by its own path; one reference too few would
    free the type, one too many would leak it)."""
    server, client = core.channel()
    context_type = core.ReplyContext
    gc.collect()
    before = sys.getrefcount(context_type)
    for i in range(1000):
        pending = client.request(i)
        item = server.try_pop()
        assert item is not None
        if i % 2:
            item[1].reply(i)
            assert pending.blocking.wait(timeout=WAIT) == i
        del item  # unanswered: NoReply
    del pending
    gc.collect()
    assert sys.getrefcount(context_type) == before


def test_a_reply_context_collected_in_a_cycle_sends_no_reply(core: ModuleType) -> None:
    """An unanswered ReplyContext that only a reference cycle keeps alive is collected with
    the cycle, and its requester gets NoReply, on each core."""
    server, client = core.channel()
    pending = client.request("in a cycle")
    item = server.try_pop()
    assert item is not None
    cycle: list[Any] = [item[1]]
    cycle.append(cycle)
    del item, cycle
    gc.collect()
    with pytest.raises(asyncmp.NoReply):
        pending.blocking.wait(timeout=WAIT)


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_a_closed_loop_is_not_kept_alive(runner: str, core: ModuleType) -> None:
    """Looking up the running loop (per request, on either core) keeps no reference to it:
    once a loop that ran asyncmp requests is closed and dropped, it is freed."""
    import uvloop

    server, client = core.channel()

    async def main() -> weakref.ref[asyncio.AbstractEventLoop]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo, server)
            assert await client.send(1) == 1
            assert await client.request(2) == 2
            tg.cancel_scope.cancel()
        return weakref.ref(asyncio.get_running_loop())

    ref = asyncio.run(main()) if runner == "asyncio" else uvloop.run(main())
    gc.collect()
    assert ref() is None, "the closed loop is still referenced"


# -- the primitives' interface ---------------------------------------------------------------


@needs_both
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the method conventions of 3.11")
def test_the_compiled_core_calls_the_hot_methods_directly() -> None:
    """On CPython 3.11 the compiled core calls a future's done/get_loop/set_result and the
    queue's append/popleft through their C functions (it falls back to the method, correct
    but slower, where a CPython changes a method's calling convention)."""
    from asyncmp import _speedups

    assert _speedups._direct_calls() == dict.fromkeys(_speedups._direct_calls(), True)
    assert len(_speedups._direct_calls()) == 5


@needs_both
def test_the_primitives_stub_names_what_the_module_has() -> None:
    """`_speedups.pyi` (what type checkers read of the compiled primitives) names exactly
    the module's Python-visible API, and the pure primitives offer the same names."""
    speedups = importlib.import_module("asyncmp._speedups")
    tree = ast.parse((SRC / "_speedups.pyi").read_text())
    declared = {
        node.target.id if isinstance(node, ast.AnnAssign) else node.name  # type: ignore[attr-defined]
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AnnAssign))
    }
    public = {n for n in vars(speedups) if not n.startswith("__")} - {"asyncio", "os", "sys"}
    public -= {"threading", "time", "library_mark", "cython", "collections", "warnings"}
    assert declared == public
    from asyncmp._lowlevel import _primitives

    assert {"Counter", "Delegate", "Mutex", "Parker"} <= declared & set(vars(_primitives))


@needs_both
@pytest.mark.subprocess
@pytest.mark.parametrize(("value", "expected"), [("", "True"), ("1", "False")])
def test_the_3_12_loop_lookup_is_selectable(value: str, expected: str) -> None:
    """ASYNCMP_PLAIN_LOOP_LOOKUP, read at import, makes the compiled core look the running
    loop up as it does on CPython 3.12+ (scripts/test runs the channel tests that way too);
    without it, CPython 3.10-3.11 take the cached holder path."""
    if sys.version_info >= (3, 12):
        pytest.skip("3.12+ always takes the plain path")
    env = {**os.environ, "ASYNCMP_PLAIN_LOOP_LOOKUP": value}
    env.pop("ASYNCMP_NO_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", "import asyncmp._speedups as s; print(s._uses_holder_cache())"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.split() == [expected]


def test_use_core_switches_the_facade_and_restores_it(core: ModuleType) -> None:
    """The test suite's own switch (`use_core`) really serves the core a test asks for."""
    assert asyncmp.Client is core.Client
    _server, client = asyncmp.channel()
    assert type(client) is core.Client
    other = next(c for c in CORES.values() if c is not core) if len(CORES) > 1 else core
    with use_core(other):
        assert asyncmp.Client is other.Client
    assert asyncmp.Client is core.Client
