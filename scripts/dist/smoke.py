"""Run inside a fresh venv where asyncmp was installed with one extra (or none): what a new
user would try first. Usage: smoke.py EXTRA README.md NATS_SERVER_BINARY CORE.

Standard library only, plus what the extra installs. Raises (non-zero exit) on any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import pkgutil
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

EXTRA, README, NATS_SERVER, CORE = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
# What each extra brings; a bare install must have none of them.
PROVIDES = {"uvloop": "uvloop", "trio": "trio", "nats": "nats", "msgpack": "msgpack"}

import asyncmp  # noqa: E402 (after the argument parsing, so a usage error is clear)


def check_installed_from_wheel() -> None:
    location = Path(asyncmp.__file__).resolve()
    assert "site-packages" in location.parts, f"asyncmp imported from {location}, not the venv"
    assert asyncmp.CORE == CORE, f"asyncmp runs on its {asyncmp.CORE} core, not the {CORE} one"
    installed = importlib.metadata.version("asyncmp")
    assert asyncmp.__version__ == installed, (asyncmp.__version__, installed)
    for extra, module in PROVIDES.items():
        present = importlib.util.find_spec(module) is not None
        assert present == (extra == EXTRA), f"{module} installed: {present} with extra {EXTRA!r}"


def check_public_modules() -> None:
    names = [
        m.name
        for m in pkgutil.walk_packages(asyncmp.__path__, "asyncmp.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    assert "asyncmp.task" in names and "asyncmp.calloop" in names, names
    for name in names:
        needs_nats = name.split(".")[1] == "nats"
        try:
            importlib.import_module(name)
        except ImportError as exc:
            # Only an extra's own module may fail, and it must say what to install.
            assert needs_nats and EXTRA != "nats", f"import {name}: {exc!r}"
            assert "asyncmp[nats]" in str(exc), f"import {name} does not name the extra: {exc}"
        else:
            assert not needs_nats or EXTRA == "nats", f"{name} imported without nats-py"


def run_readme_example() -> None:
    """The README's "A taste" examples, exactly as printed there."""
    text = README.read_text()
    taste = re.search(r"## A taste\n(.*?)\n## ", text, re.S)
    assert taste is not None, "README.md has no 'A taste' section"
    blocks = re.findall(r"```python\n(.*?)```", taste.group(1), re.S)
    assert blocks, "README.md has no python block under 'A taste'"
    for code in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
        assert out.getvalue().split() == ["42"], out.getvalue()
    # …and its one-line blocking spelling, from a plain thread.
    server, client = asyncmp.channel()
    worker = threading.Thread(target=lambda: [r.reply(m * 2) for m, r in server.blocking])
    worker.start()
    with client:
        assert client.blocking.send(21, timeout=5) == 42
    worker.join(5)
    assert not worker.is_alive()


class Doubler:
    def proc_req(self, msg: int, rctx: asyncmp.ReplyContext[int]) -> None:
        rctx.reply(msg * 2)


async def spawn_round_trip() -> str:
    from asyncmp import task

    client, handle = task.spawn(lambda client: Doubler())
    assert await client.send(21) == 42
    client.close()
    assert await handle is None
    return type(asyncio.get_running_loop()).__module__


def check_uvloop() -> None:
    import uvloop

    assert uvloop.run(spawn_round_trip()).startswith("uvloop")


def check_trio() -> None:
    import trio

    from asyncmp import task

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            client, handle = task.spawn(lambda client: Doubler(), task_group=nursery)
            assert await client.send(21) == 42
            assert await trio.to_thread.run_sync(lambda: client.blocking.send(4, timeout=5)) == 8
            client.close()
            assert await handle is None

    trio.run(main)


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def check_nats() -> None:
    import anyio

    import asyncmp.nats
    from asyncmp import task

    try:
        asyncmp.nats.MsgpackCodec()
    except ImportError as exc:
        assert "asyncmp[msgpack]" in str(exc), exc
    else:
        raise AssertionError("MsgpackCodec() worked without msgpack")
    if not NATS_SERVER.exists():
        print(f"  (no {NATS_SERVER}: the NATS round trip is skipped)")
        return

    async def main(url: str) -> None:
        local, handle = task.spawn(lambda client: Doubler())
        async with anyio.create_task_group() as tg:
            await tg.start(asyncmp.nats.serve, local, "smoke.double", url)
            async with asyncmp.nats.connect("smoke.double", url, timeout=5) as remote:
                assert await remote.send(21) == 42
            tg.cancel_scope.cancel()
        local.close()
        await handle

    with nats_server() as url:
        asyncio.run(main(url))


def check_msgpack() -> None:
    import msgpack

    assert msgpack.unpackb(msgpack.packb([1, "a"])) == [1, "a"]


if __name__ == "__main__":
    check_installed_from_wheel()
    check_public_modules()
    run_readme_example()
    extra_check = globals().get(f"check_{EXTRA}")
    if extra_check is not None:
        extra_check()
