"""serve_service: asyncmp servers as services of the NATS Services framework, checked with
plain nats-py requests and nats-py's own ``nats.micro`` models (code nobody here wrote)."""

from __future__ import annotations

import json
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import nats
import nats.micro
import pytest
from nats.micro.request import Request
from nats_helpers import (
    NatsServer,
    check_info,
    check_ping,
    check_stats,
    echo,
    free_port,
    inventory,
    raw_nats,
    serving,
    serving_service,
)

import asyncmp
import asyncmp.nats
from asyncmp.nats._link import settle

pytestmark = pytest.mark.anyio


async def ask(nc: nats.aio.client.Client, subject: str, count: int = 1) -> list[dict[str, Any]]:
    """Publish an empty request on *subject* and collect *count* JSON responses."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, b"", reply=inbox)
        responses = [await sub.next_msg(timeout=5) for _ in range(count)]
    finally:
        await sub.unsubscribe()
    for response in responses:  # a status message (no responders: 503) has no JSON
        assert response.headers is None, f"{subject}: {response.headers} {response.data!r}"
    return [json.loads(response.data) for response in responses]


# -- discovery and monitoring ----------------------------------------------------------------


async def test_nats_service_answers_ping_info_stats_on_every_subject_with_the_schema_fields(
    nats_server: NatsServer,
) -> None:
    """PING, INFO and STATS are answered on $SRV.<VERB>, $SRV.<VERB>.<name> and
    $SRV.<VERB>.<name>.<id> with documents that have the schema's fields and that nats-py's
    own models parse, naming the service, its version, metadata and endpoints."""
    with anyio.fail_after(30):
        async with (
            serving_service(
                nats_server.url,
                "inventory",
                "1.2.3-beta.1",
                {"inventory.get": inventory},
                description="stock levels",
                metadata={"team": "stores"},
            ) as service,
            raw_nats(nats_server.url) as nc,
        ):
            for verb, check in (("PING", check_ping), ("INFO", check_info), ("STATS", check_stats)):
                for subject in (
                    f"$SRV.{verb}",
                    f"$SRV.{verb}.inventory",
                    f"$SRV.{verb}.inventory.{service.id}",
                ):
                    [doc] = await ask(nc, subject)
                    check(doc)
                    assert (doc["name"], doc["id"]) == ("inventory", service.id)
                    assert (doc["version"], doc["metadata"]) == ("1.2.3-beta.1", {"team": "stores"})
            [info] = await ask(nc, "$SRV.INFO.inventory")
            assert info["description"] == "stock levels"
            [endpoint] = info["endpoints"]
            assert endpoint == {
                "name": "inventory_get",
                "subject": "inventory.get",
                "queue_group": "q",
                "metadata": {},
            }
            assert info == service.info()
            assert service.started.tzinfo is not None


async def test_nats_service_endpoints_report_their_names_metadata_and_queue_groups(
    nats_server: NatsServer,
) -> None:
    """INFO lists every endpoint with its chosen or derived name, its metadata and its queue
    group (the endpoint's, else the service's; "" for none)."""
    with anyio.fail_after(30):
        async with (
            serving_service(
                nats_server.url,
                "multi",
                "1.0.0",
                {"a.get": echo, "b.*": echo, "c": echo},
                {
                    "a.get": {"name": "fetch", "metadata": {"k": "v"}},
                    "b.*": {"queue": "workers"},
                },
                queue=None,
            ),
            raw_nats(nats_server.url) as nc,
        ):
            [info] = await ask(nc, "$SRV.INFO.multi")
            check_info(info)
            assert info["endpoints"] == [
                {"name": "fetch", "subject": "a.get", "queue_group": "", "metadata": {"k": "v"}},
                {"name": "b__", "subject": "b.*", "queue_group": "workers", "metadata": {}},
                {"name": "c", "subject": "c", "queue_group": "", "metadata": {}},
            ]
            async with asyncmp.nats.connect("b.x", nats_server.url, timeout=5) as client:
                assert await client.send("wild") == "wild"


async def test_nats_service_stats_count_the_requests_and_errors_the_clients_saw(
    nats_server: NatsServer,
) -> None:
    """STATS counts every finished request and every one answered with an error (handler
    failures, service errors, malformed requests), with the last error as code:description,
    the total and average processing time; reset() zeroes them."""
    with anyio.fail_after(30):
        async with (
            serving_service(
                nats_server.url, "inventory", "1.0.0", {"inventory.get": inventory}
            ) as service,
            raw_nats(nats_server.url) as nc,
            asyncmp.nats.connect("inventory.get", nats_server.url, timeout=5) as client,
        ):
            for item in ("apple", "pear", "apple"):
                assert (await client.send({"item": item}))["item"] == item
            with pytest.raises(asyncmp.nats.ServiceError):
                await client.send({"item": "plum"})
            with pytest.raises(asyncmp.nats.RemoteError):
                await client.send("crash")
            malformed = await nc.request("inventory.get", b"{not json", timeout=5)
            assert malformed.headers is not None
            # Each outcome is counted before its reply is published: no waiting needed.
            [stats] = await ask(nc, f"$SRV.STATS.inventory.{service.id}")
            check_stats(stats)
            [endpoint] = stats["endpoints"]
            assert endpoint["num_requests"] == 6
            assert endpoint["num_errors"] == 3
            assert endpoint["last_error"].startswith("400:asyncmp.nats.MalformedMessage: ")
            assert endpoint["processing_time"] > 0
            assert endpoint["average_processing_time"] == endpoint["processing_time"] // 6
            assert endpoint["data"] == {"in_flight": 0, "num_cancelled": 0}
            before = service.started
            service.reset()
            [stats] = await ask(nc, "$SRV.STATS.inventory")
            [endpoint] = stats["endpoints"]
            assert (endpoint["num_requests"], endpoint["num_errors"]) == (0, 0)
            assert (endpoint["processing_time"], endpoint["last_error"]) == (0, "")
            assert service.started >= before


async def test_nats_requests_sharing_one_reply_subject_are_each_answered_and_counted_once(
    nats_server: NatsServer,
) -> None:
    """Ten requests published with one reply subject (a plain NATS pattern: the requester
    tells the answers apart by their payloads) are each answered once and counted once in
    STATS; before, in-flight requests were keyed by reply subject and only one was answered."""
    release = anyio.Event()
    held = 0

    async def hold_all(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        nonlocal held
        held += 1
        rctx_list.append((msg, rctx))
        if held == 10:
            release.set()

    rctx_list: list[tuple[Any, asyncmp.ReplyContext[Any]]] = []
    with anyio.fail_after(30):
        async with (
            serving_service(nats_server.url, "shared", "1.0.0", {"shared.get": hold_all}) as svc,
            raw_nats(nats_server.url) as nc,
        ):
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            for n in range(10):
                await nc.publish("shared.get", json.dumps(n).encode(), reply=inbox)
            await nc.flush()
            await release.wait()  # all ten in hand at once: in flight together
            assert svc.stats()["endpoints"][0]["data"]["in_flight"] == 10
            for msg, rctx in rctx_list:
                assert rctx.reply(msg * 2) is True
            answers = sorted([json.loads((await sub.next_msg(timeout=5)).data) for _ in range(10)])
            assert answers == [n * 2 for n in range(10)]
            [stats] = await ask(nc, "$SRV.STATS.shared")
            [endpoint] = stats["endpoints"]
            assert (endpoint["num_requests"], endpoint["num_errors"]) == (10, 0)
            assert endpoint["data"] == {"in_flight": 0, "num_cancelled": 0}


async def test_nats_service_cancellation_withdraws_the_request_and_counts_it(
    nats_server: NatsServer,
) -> None:
    """A requester that gives up still withdraws its request from a service's local server
    (the asyncmp extension): the handler's reply() returns False, and STATS shows the request
    in flight, then finished and counted in num_cancelled, not as an error."""
    took = anyio.Event()
    release = anyio.Event()
    replied: list[bool] = []

    async def hold(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        took.set()
        await release.wait()
        replied.append(rctx.reply(msg))

    with anyio.fail_after(30):
        async with (
            serving_service(nats_server.url, "holder", "0.1.0", {"hold": hold}) as service,
            asyncmp.nats.connect("hold", nats_server.url, timeout=5) as client,
        ):
            pending = client.request("x")
            await took.wait()
            assert service.stats()["endpoints"][0]["data"] == {"in_flight": 1, "num_cancelled": 0}
            assert pending.cancel()
            while service.stats()["endpoints"][0]["data"]["num_cancelled"] == 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # the cancel crosses NATS: no event to wait on
            release.set()
            while not replied:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            assert replied == [False]
            [endpoint] = service.stats()["endpoints"]
            assert (endpoint["num_requests"], endpoint["num_errors"]) == (1, 0)
            assert endpoint["data"] == {"in_flight": 0, "num_cancelled": 1}


async def test_nats_service_instances_each_answer_discovery_and_queue_none_broadcasts(
    nats_server: NatsServer,
) -> None:
    """Two instances of one service answer PING with their own ids; with queue=None every
    instance gets every request."""
    seen: list[tuple[str, Any]] = []

    def recorder(tag: str) -> Any:
        async def handler(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
            seen.append((tag, msg))
            rctx.reply(tag)

        return handler

    url = nats_server.url
    with anyio.fail_after(30):
        async with (
            serving_service(url, "twin", "1.0.0", {"twin": recorder("a")}, queue=None) as a,
            serving_service(url, "twin", "1.0.0", {"twin": recorder("b")}, queue=None) as b,
            raw_nats(url) as nc,
        ):
            pings = await ask(nc, "$SRV.PING.twin", count=2)
            assert sorted(p["id"] for p in pings) == sorted([a.id, b.id])
            assert a.id != b.id
            async with asyncmp.nats.connect("twin", url, timeout=5) as client:
                assert await client.send(1) in ("a", "b")
            while len(seen) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # the other instance's copy crosses NATS
            assert sorted(seen) == [("a", 1), ("b", 1)]


@pytest.mark.parametrize("queue", [None, ""])
async def test_nats_serve_without_a_queue_group_gives_every_server_every_request(
    nats_server: NatsServer, queue: str | None
) -> None:
    """serve(queue=None), and queue="" as before, give every server every request."""
    seen: list[tuple[str, Any]] = []

    def recorder(tag: str) -> Any:
        async def handler(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
            seen.append((tag, msg))
            rctx.reply(tag)

        return handler

    url = nats_server.url
    with anyio.fail_after(30):
        async with (
            serving(url, "all", recorder("a"), queue=queue),
            serving(url, "all", recorder("b"), queue=queue),
            asyncmp.nats.connect("all", url, timeout=5) as client,
        ):
            assert await client.send(1) in ("a", "b")
            while len(seen) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # the other server's copy crosses NATS
            assert sorted(seen) == [("a", 1), ("b", 1)]


async def test_nats_service_returns_when_a_local_server_is_gone(nats_server: NatsServer) -> None:
    """When one endpoint's local server is gone the whole instance stops: the request that
    finds it gone is answered 503, serve_service returns, and neither its other endpoint nor
    discovery answer any more."""
    url = nats_server.url
    server_a, client_a = asyncmp.channel()
    server_b, client_b = asyncmp.channel()
    returned = anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[asyncmp.nats.Service]) -> None:
        endpoints = {"a": client_a, "b": client_b}
        await asyncmp.nats.serve_service("pair", "1.0.0", endpoints, url, task_status=task_status)
        returned.set()

    with anyio.fail_after(30):
        async with raw_nats(url) as nc, anyio.create_task_group() as tg:
            service = await tg.start(run)
            [ping] = await ask(nc, f"$SRV.PING.pair.{service.id}")
            assert ping["id"] == service.id
            server_a.close()  # the local server behind "a" is gone
            reply = await nc.request("a", b"1", timeout=5)
            assert reply.headers is not None
            assert reply.headers["Nats-Service-Error-Code"] == "503"
            await returned.wait()
            for subject in ("b", f"$SRV.PING.pair.{service.id}", "$SRV.INFO"):
                with pytest.raises(nats.errors.NoRespondersError):
                    await nc.request(subject, b"", timeout=5)
    client_a.close()
    client_b.close()
    server_b.close()


def test_nats_service_rejects_bad_arguments_before_connecting() -> None:
    """Names, versions, subjects, queue groups, metadata and endpoints the framework does not
    accept are refused before any connection is attempted (nothing listens on the URL)."""
    url = f"nats://127.0.0.1:{free_port()}"
    _, client = asyncmp.channel()
    Endpoint = asyncmp.nats.Endpoint

    async def serve(name: Any, version: Any, endpoints: Any, **kwargs: Any) -> None:
        await asyncmp.nats.serve_service(name, version, endpoints, url, **kwargs)

    bad_calls: list[tuple[type[Exception], tuple[Any, ...], dict[str, Any]]] = [
        (ValueError, ("bad name", "1.0.0", {"s": client}), {}),
        (ValueError, ("", "1.0.0", {"s": client}), {}),
        (ValueError, ("svc", "1.0", {"s": client}), {}),
        (ValueError, ("svc", "01.0.0", {"s": client}), {}),
        (ValueError, ("svc", "1.0.0", {}), {}),
        (ValueError, ("svc", "1.0.0", {"a b": client}), {}),
        (ValueError, ("svc", "1.0.0", {"a.>.b": client}), {}),
        (ValueError, ("svc", "1.0.0", {"s": client}), {"queue": "a b"}),
        (TypeError, ("svc", "1.0.0", {"s": client}), {"metadata": {"k": 1}}),
        (TypeError, ("svc", "1.0.0", {"s": client}), {"description": None}),
        (TypeError, ("svc", "1.0.0", {"s": "not a client"}), {}),
        (TypeError, ("svc", "1.0.0", [("s", client)]), {}),
        (ValueError, ("svc", "1.0.0", [Endpoint("s", client), Endpoint("s", client)]), {}),
    ]
    for error, args, kwargs in bad_calls:
        with pytest.raises(error):
            anyio.run(lambda: serve(*args, **kwargs), backend="asyncio")  # noqa: B023
    with pytest.raises(ValueError):
        asyncmp.nats.Endpoint("s", client, name="a.b")
    with pytest.raises(TypeError):
        asyncmp.nats.Endpoint("s", client, metadata={"k": 2})  # type: ignore[dict-item]
    with pytest.raises(RuntimeError, match="asyncio"):
        anyio.run(lambda: serve("svc", "1.0.0", {"s": client}), backend="trio")
    client.close()


# -- the standard error headers --------------------------------------------------------------


async def test_nats_every_failure_reply_carries_the_standard_error_headers(
    nats_server: NatsServer,
) -> None:
    """Plain serve() answers each kind of failure with Nats-Service-Error (a description) and
    Nats-Service-Error-Code — 500 handler failure, a ServiceError's own code, 504 no reply,
    400 malformed, 413 reply too large — as well as asyncmp's own status."""

    async def handler(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        if msg == "fail":
            rctx.fail(KeyError("k"))
        elif msg == "teapot":
            rctx.fail(asyncmp.nats.ServiceError(418, "short and stout"))
        elif msg == "drop":
            rctx.close()
        elif msg == "huge":
            rctx.reply("x" * (2 * 1024 * 1024))
        else:
            rctx.reply(msg)

    expected = {
        b'"fail"': ("fail", "500", "KeyError: 'k'"),
        b'"teapot"': ("fail", "418", "short and stout"),
        b'"drop"': ("noreply", "504", "asyncmp.NoReply: the request was not answered"),
        b"{not json": ("fail", "400", "asyncmp.nats.MalformedMessage: the request cannot"),
        b'"huge"': ("fail", "413", "asyncmp.nats.PayloadTooLarge: the reply is"),
    }
    with anyio.fail_after(30):
        async with serving(nats_server.url, "h", handler), raw_nats(nats_server.url) as nc:
            ok = await nc.request("h", b'"fine"', timeout=5)
            assert (ok.headers, json.loads(ok.data)) == (None, "fine")
            for payload, (status, code, description) in expected.items():
                reply = await nc.request("h", payload, timeout=5)
                assert reply.headers is not None
                assert reply.headers["Asyncmp-Status"] == status
                assert reply.headers["Nats-Service-Error-Code"] == code
                assert reply.headers["Nats-Service-Error"].startswith(description)


async def test_nats_gone_local_server_is_reported_as_503(nats_server: NatsServer) -> None:
    """A request that reaches serve() after its local server was closed is answered 503
    (and asyncmp's "gone": safe to retry)."""
    local_server, local_client = asyncmp.channel()
    with anyio.fail_after(30):
        async with raw_nats(nats_server.url) as nc, anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: asyncmp.nats.serve(
                    local_client, "g", nats_server.url, task_status=task_status
                )
            )
            local_server.close()
            reply = await nc.request("g", b"1", timeout=5)
            assert reply.headers is not None
            assert reply.headers["Asyncmp-Status"] == "gone"
            assert reply.headers["Nats-Service-Error-Code"] == "503"
            assert reply.headers["Nats-Service-Error"].startswith("asyncmp.ServerDisappeared")
    local_client.close()


async def test_nats_error_description_is_one_bounded_line_and_the_record_keeps_the_message(
    nats_server: NatsServer,
) -> None:
    """A failure message with line breaks and thousands of characters becomes a one-line
    description of at most 1024 bytes; an asyncmp client still gets the whole message."""
    message = "line one\r\nline two\n" + "é" * 5000

    async def handler(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.fail(ValueError(message))

    with anyio.fail_after(30):
        async with (
            serving(nats_server.url, "long", handler),
            raw_nats(nats_server.url) as nc,
            asyncmp.nats.connect("long", nats_server.url, errors=[ValueError]) as client,
        ):
            reply = await nc.request("long", b"1", timeout=5)
            assert reply.headers is not None
            description = reply.headers["Nats-Service-Error"]
            assert description.startswith("ValueError: line one line two éé")
            assert description.endswith("...")
            assert len(description.encode()) <= 1024
            with pytest.raises(ValueError) as caught:
                await client.send(1)
            assert caught.value.args == (message,)


async def test_nats_asyncmp_client_gets_codes_with_remote_and_service_errors(
    nats_server: NatsServer,
) -> None:
    """From an asyncmp server, an unregistered failure is a RemoteError with code "500", and
    a ServiceError comes back as itself with its code and description."""
    with anyio.fail_after(30):
        async with (
            serving(nats_server.url, "inv", inventory),
            asyncmp.nats.connect("inv", nats_server.url) as client,
        ):
            with pytest.raises(asyncmp.nats.RemoteError) as remote:
                await client.send("crash")
            assert type(remote.value) is asyncmp.nats.RemoteError
            assert (remote.value.type_name, remote.value.code) == ("RuntimeError", "500")
            assert remote.value.message == "the handler crashed"
            with pytest.raises(asyncmp.nats.ServiceError) as service_error:
                await client.send({"item": "plum"})
            assert service_error.value.code == "404"
            assert service_error.value.message == "no such item: plum"
            assert isinstance(service_error.value, asyncmp.nats.RemoteError)


# -- calling a service written with nats-py's nats.micro --------------------------------------


@asynccontextmanager
async def micro_service(url: str) -> AsyncIterator[None]:
    """A service written with nats-py's nats.micro: "echo" replies what it got (with a header
    of its own), "fail" replies a standard error with data, "raise" raises (micro's 500)."""
    nc = await nats.connect(url)
    try:
        service = await nats.micro.add_service(nc, name="micro-svc", version="2.0.0")

        async def echo_handler(request: Request) -> None:
            await request.respond(request.data, headers={"X-Served-By": "micro"})

        async def fail_handler(request: Request) -> None:
            await request.respond_error("409", "already taken", data=b'{"hint": "retry"}')

        async def raise_handler(request: Request) -> None:
            raise LookupError("nope")

        await service.add_endpoint(name="echo", handler=echo_handler, subject="m.echo")
        await service.add_endpoint(name="fail", handler=fail_handler, subject="m.fail")
        await service.add_endpoint(name="raise", handler=raise_handler, subject="m.raise")
        await settle(nc)  # flush() alone may overtake the SUBs (test_ready.py)
        try:
            yield
        finally:
            await service.stop()
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("codec", "request_value"), [("json", {"a": [1, "x"]}), ("bytes", b"\x00raw\xff")]
)
async def test_nats_client_calls_a_nats_micro_service(
    nats_server: NatsServer, codec: str, request_value: Any
) -> None:
    """An asyncmp client calls a nats.micro service: a reply (even one with headers of its
    own) is a reply, a standard error is a ServiceError with the code, description and data
    the service sent, and a handler that raised is micro's 500."""
    url = nats_server.url
    with anyio.fail_after(30):
        async with micro_service(url):
            async with asyncmp.nats.connect("m.echo", url, codec=codec, timeout=5) as client:
                assert await client.send(request_value) == request_value
                assert await anyio.to_thread.run_sync(client.blocking.send, request_value) == (
                    request_value
                )
            async with asyncmp.nats.connect("m.fail", url, codec=codec, timeout=5) as client:
                with pytest.raises(asyncmp.nats.ServiceError) as failed:
                    await client.send(request_value)
                error = failed.value
                assert (error.code, error.message, error.data) == (
                    "409",
                    "already taken",
                    b'{"hint": "retry"}',
                )
                assert error.type_name == ""
                assert str(error) == "already taken (error code 409)"
                assert isinstance(error, asyncmp.nats.RemoteError)
            async with asyncmp.nats.connect("m.raise", url, codec=codec, timeout=5) as client:
                with pytest.raises(asyncmp.nats.ServiceError) as raised:
                    await client.send(request_value)
                assert raised.value.code == "500"
                assert "nope" in raised.value.message


# -- the pieces ------------------------------------------------------------------------------


async def test_nats_bytes_codec_carries_raw_payloads_and_refuses_other_values(
    nats_server: NatsServer,
) -> None:
    """codec="bytes" sends bytes, bytearray and memoryview untouched and returns bytes; any
    other value raises TypeError before anything is sent."""
    with anyio.fail_after(30):
        async with (
            serving(nats_server.url, "raw", codec="bytes"),
            asyncmp.nats.connect("raw", nats_server.url, codec="bytes", timeout=5) as client,
        ):
            for value in (b"\x00\x01", bytearray(b"ab"), memoryview(b"cd"), b""):
                reply = await client.send(value)
                assert type(reply) is bytes
                assert reply == bytes(value)
            with pytest.raises(TypeError, match="bytes codec"):
                await client.send("text")
    assert repr(asyncmp.nats.BytesCodec()) == "BytesCodec()"


def test_nats_service_error_takes_positive_integer_codes() -> None:
    """ServiceError codes are positive integers or their digits (as other clients parse
    them); anything else is refused with a clear error."""
    assert asyncmp.nats.ServiceError(404, "x").code == "404"
    assert asyncmp.nats.ServiceError("503", "x").code == "503"
    for code in (0, -1, "4o4", "", " 1", True, 4.5, "٣"):
        with pytest.raises(ValueError, match="positive integer"):
            asyncmp.nats.ServiceError(code, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        asyncmp.nats.ServiceError(400, None)  # type: ignore[arg-type]


def test_nats_remote_and_service_errors_survive_pickling() -> None:
    """RemoteError and ServiceError (made here or received) pickle and unpickle with their
    attributes (multiprocessing and the pickle codec carry them)."""
    remote = asyncmp.nats.RemoteError("mod.Err", "boom", "500")
    again = pickle.loads(pickle.dumps(remote))
    assert (type(again), again.type_name, again.message, again.code) == (
        asyncmp.nats.RemoteError,
        "mod.Err",
        "boom",
        "500",
    )
    assert str(again) == str(remote) == "mod.Err: boom (error code 500)"
    made = asyncmp.nats.ServiceError(404, "gone fishing")
    received = asyncmp.nats.ServiceError._received("E42", "odd code", b"data")
    for error in (made, received):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is asyncmp.nats.ServiceError
        assert (copy.code, copy.message, copy.data, str(copy)) == (
            error.code,
            error.message,
            error.data,
            str(error),
        )
