"""Faults: replies near max_payload, connections closed for good, the broker down, the
order of cancel messages and requests, and close() racing senders on other threads."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from nats_helpers import NatsServer, free_port, raw_nats, serving

import asyncmp
import asyncmp.nats
from asyncmp.nats import _serve

pytestmark = pytest.mark.anyio

MAX_PAYLOAD = 1024
# The NATS header block a failure reply with a long message carries: "NATS/1.0", a "Key: Value"
# line for the status, the description (cut to a quarter of max_payload) and the code, and a
# blank line, each ended by CRLF. nats-server counts it against max_payload with the payload.
FAIL_HEADER = (
    len(b"NATS/1.0\r\nAsyncmp-Status: fail\r\nNats-Service-Error: ")
    + MAX_PAYLOAD // 4
    + len(b"\r\nNats-Service-Error-Code: 500\r\n\r\n")
)


@pytest.fixture
def small_nats_server(tmp_path: Path) -> Any:
    """A nats-server whose max_payload is MAX_PAYLOAD bytes."""
    conf = tmp_path / "nats.conf"
    conf.write_text(f"max_payload: {MAX_PAYLOAD}\n")
    server = NatsServer("-c", str(conf))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Echoed(Exception):
    """An error whose message is whatever the client sent (and whose args are empty, so
    that the failure record carries the text once)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def __str__(self) -> str:
        return self.text


def failure_record_size(text: str) -> int:
    """The size of the failure record that serve() publishes for Echoed(text)."""
    return len(asyncmp.nats._errors.encode_failure(Echoed(text)))


async def echo_into_error(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
    """Fails ``[text, n]`` with Echoed(text * n); replies anything else."""
    if isinstance(msg, list):
        text, repeat = msg
        rctx.fail(Echoed(text * repeat))
    else:
        rctx.reply(msg)


async def test_nats_failure_near_max_payload_is_bounded_and_the_service_stays_on_nats(
    small_nats_server: NatsServer,
) -> None:
    """A failure record that fits with its header reaches the client intact; one byte more,
    or far more, reaches it as a PayloadTooLarge of bounded size; the service keeps serving
    (nats-server never sees an oversized message, so it never drops the connection)."""
    url = small_nats_server.url
    budget = MAX_PAYLOAD - FAIL_HEADER
    fits = "x" * (budget - failure_record_size(""))
    assert failure_record_size(fits) == budget
    with anyio.fail_after(30):
        async with (
            serving(url, "echo", echo_into_error),
            asyncmp.nats.connect("echo", url, timeout=5) as client,
        ):
            with pytest.raises(asyncmp.nats.RemoteError) as intact:
                await client.send([fits, 1])
            assert intact.value.message == fits
            for request in ([fits + "y", 1], ["z", 20 * MAX_PAYLOAD]):
                with pytest.raises(asyncmp.nats.PayloadTooLarge) as too_large:
                    await client.send(request)
                assert "Echoed" in str(too_large.value)
                assert len(str(too_large.value)) < MAX_PAYLOAD
            assert await client.send(1) == 1


@pytest.mark.parametrize("char", ["é", "\U0001f600", "x"], ids=["2-byte", "astral", "ascii"])
def test_nats_oversized_failure_is_cut_in_encoded_bytes_not_characters(char: str) -> None:
    """A failure too large to travel becomes a PayloadTooLarge record that fits and still
    names the original failure, its message cut to fit measured in encoded bytes: JSON
    escapes "é" to six bytes (an astral character to twelve), and a cut counted in
    characters removed the whole message (PayloadTooLarge('') before)."""
    from asyncmp.nats._errors import failure_reply
    from asyncmp.nats._wire import header_size

    error = Echoed(char * (3 * MAX_PAYLOAD))
    reply = failure_reply(error, MAX_PAYLOAD)
    assert reply is not None
    headers, data = reply
    assert len(data) + header_size(headers) <= MAX_PAYLOAD
    message = json.loads(data)["message"]
    assert message.startswith("the failure reply is ")
    assert message.endswith(char + "...")
    assert "test_faults.Echoed: " + char in message
    # The cut keeps as much as fits: one more character would not.
    longer = json.dumps({"type": json.loads(data)["type"], "message": message[:-3] + char})
    assert len(longer.encode()) + 3 + header_size(headers) > MAX_PAYLOAD


async def test_nats_oversized_non_ascii_failure_reaches_the_client_naming_it(
    small_nats_server: NatsServer,
) -> None:
    """Over the wire: the requester of a failure with a long non-ASCII message gets a
    PayloadTooLarge that names it (not an empty one)."""
    with anyio.fail_after(30):
        async with (
            serving(small_nats_server.url, "echo", echo_into_error),
            asyncmp.nats.connect("echo", small_nats_server.url, timeout=5) as client,
        ):
            with pytest.raises(asyncmp.nats.PayloadTooLarge) as too_large:
                await client.send(["é", 3 * MAX_PAYLOAD])
            assert "Echoed: éé" in str(too_large.value)
            assert await client.send(1) == 1


async def test_nats_any_reply_over_max_payload_becomes_a_bounded_payload_too_large(
    small_nats_server: NatsServer,
) -> None:
    """A successful reply over max_payload becomes PayloadTooLarge, and so does a failure
    whose exception type name alone is too large to travel: the requester always hears."""
    url = small_nats_server.url
    huge_type = type("E" * (2 * MAX_PAYLOAD), (Exception,), {})

    async def handler(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        if msg == "big reply":
            rctx.reply("r" * (2 * MAX_PAYLOAD))
        elif msg == "big type":
            rctx.fail(huge_type("boom"))
        else:
            rctx.reply(msg)

    with anyio.fail_after(30):
        async with (
            serving(url, "big", handler),
            asyncmp.nats.connect("big", url, timeout=5) as client,
        ):
            for request in ("big reply", "big type"):
                with pytest.raises(asyncmp.nats.PayloadTooLarge):
                    await client.send(request)
            assert await client.send("small") == "small"


async def _serve_until_it_raises(
    url: str,
    outcome: list[BaseException],
    *,
    task_status: anyio.abc.TaskStatus[None],
    **options: Any,
) -> None:
    local_server, local_client = asyncmp.channel()
    try:
        await asyncmp.nats.serve(local_client, "lost", url, task_status=task_status, **options)
    except Exception as exc:
        outcome.append(exc)
    finally:
        local_client.close()
        local_server.close()


async def test_nats_serve_raises_server_disappeared_when_its_connection_is_closed_for_good(
    nats_server: NatsServer,
) -> None:
    """When nats-py gives up reconnecting (max_reconnect_attempts exhausted), serve() raises
    ServerDisappeared naming the cause instead of running on unsubscribed."""
    outcome: list[BaseException] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: _serve_until_it_raises(
                    nats_server.url,
                    outcome,
                    task_status=task_status,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.05,
                )
            )
            nats_server.stop()
    assert len(outcome) == 1
    assert isinstance(outcome[0], asyncmp.ServerDisappeared)
    assert "closed for good" in str(outcome[0])


async def test_nats_request_in_flight_when_the_connection_is_closed_for_good_fails_at_once(
    nats_server: NatsServer,
) -> None:
    """A client connection that nats-py gives up on fails the requests waiting on it with
    ServerDisappeared (not a hang, even without a timeout), and the client reconnects for
    the next request once the NATS server is back."""
    held = threading.Event()

    async def hold(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        if msg == "hold":
            held.set()
        else:
            rctx.reply(msg)

    options = {"max_reconnect_attempts": 1, "reconnect_time_wait": 0.05}
    with anyio.fail_after(40):
        async with asyncmp.nats.connect("h", nats_server.url, timeout=None, **options) as client:
            async with serving(nats_server.url, "h", hold):
                pending = client.request("hold")
                await anyio.to_thread.run_sync(held.wait, 10)
                nats_server.stop()
                with pytest.raises(asyncmp.ServerDisappeared, match="closed for good"):
                    await pending
            nats_server.start()
            async with serving(nats_server.url, "h", hold):
                assert await client.send("back") == "back"


async def test_nats_client_with_the_broker_down_fails_within_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no NATS server at the URL, send(), blocking.send(timeout=...) and request() fail
    within their timeouts (not after nats-py's minutes of retries) with one
    ServerDisappeared naming the URL and the cause, and a client logs at most one warning
    line for it."""
    url = f"nats://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="asyncmp")
    with anyio.fail_after(20):
        async with asyncmp.nats.connect("down", url, timeout=1) as client:
            with pytest.raises(asyncmp.ServerDisappeared) as info:
                await client.send(1)
            assert url in str(info.value)
            assert "ConnectionRefusedError" in str(info.value)
            assert isinstance(info.value.__cause__, OSError)
        assert len(caplog.records) <= 1
        caplog.clear()
        async with asyncmp.nats.connect("down", url, timeout=30) as client:
            with pytest.raises(asyncmp.ServerDisappeared) as info:
                await anyio.to_thread.run_sync(lambda: client.blocking.send(1, timeout=1))
            assert url in str(info.value)
        assert len(caplog.records) <= 1
        caplog.clear()
        async with asyncmp.nats.connect("down", url, timeout=1) as client:
            with pytest.raises(asyncmp.ServerDisappeared, match=url):
                await anyio.to_thread.run_sync(lambda: client.request(2).blocking.wait(10))
            with pytest.raises(asyncmp.ServerDisappeared, match=url):
                await client.request(3)
        assert len(caplog.records) <= 1


async def test_nats_serve_with_the_broker_down_raises_once_nats_py_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """serve() with no NATS server raises ServerDisappeared naming the URL once nats-py's
    connection attempts are spent, and logs at most one warning line meanwhile."""
    url = f"nats://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="asyncmp")
    local_server, local_client = asyncmp.channel()
    with anyio.fail_after(20), pytest.raises(asyncmp.ServerDisappeared, match=url):
        await asyncmp.nats.serve(
            local_client, "down", url, max_reconnect_attempts=5, reconnect_time_wait=0.02
        )
    assert len(caplog.records) <= 1
    local_client.close()
    local_server.close()


# -- what docs/nats.md says happens with the broker down, against what does --------------

NATS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "nats.md"


def test_nats_page_gives_the_defaults_that_bound_a_broker_outage() -> None:
    """The numbers docs/nats.md gives for the broker down are the defaults that decide them:
    a client's ``timeout`` (30 s) bounds its send; ``serve`` has no timeout of its own, and
    nats-py's ``max_reconnect_attempts`` (60) and ``reconnect_time_wait`` (2 s) bound it:
    "about 2 minutes". (What these bounds do is measured, scaled down, by the two tests
    below; the page's full-size measurements take minutes.)"""
    import inspect

    import nats.aio.client

    page = " ".join(NATS_PAGE.read_text().split())
    timeout = inspect.signature(asyncmp.nats.connect).parameters["timeout"].default
    nats_py = inspect.signature(nats.aio.client.Client.connect).parameters
    attempts = nats_py["max_reconnect_attempts"].default
    wait = nats_py["reconnect_time_wait"].default

    assert "timeout" not in inspect.signature(asyncmp.nats.serve).parameters
    assert f"`timeout` ({timeout:g} s by default)" in page
    assert (
        f"with the default `timeout={timeout!r}` raises `ServerDisappeared` after "
        f"{timeout:g} seconds"
    ) in page
    assert f"(every {wait} seconds, {attempts} times)" in page
    assert (
        f"`max_reconnect_attempts={attempts}` attempts `reconnect_time_wait={wait}` seconds "
        f"apart, so about {attempts * wait // 60:g} minutes"
    ) in page


async def test_nats_send_with_the_broker_down_waits_out_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/nats.md: with the NATS server down, a send raises ServerDisappeared when its
    timeout runs out — not at the first refused connection, since nats-py retries —
    naming the URL, the timeout and the refusal; one warning is logged, at the first
    failed attempt."""
    url = f"nats://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="asyncmp")
    timeout = 1.5
    with anyio.fail_after(20):
        async with asyncmp.nats.connect("down", url, timeout=timeout) as client:
            started = time.monotonic()
            with pytest.raises(asyncmp.ServerDisappeared) as info:
                await client.send(1)
            elapsed = time.monotonic() - started

    assert str(info.value).startswith(
        f"cannot connect to NATS at {url} within 1.5 seconds: ConnectionRefusedError"
    )
    assert timeout * 0.95 <= elapsed < timeout + 5, elapsed
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "ConnectionRefusedError" in record.getMessage()


async def test_nats_serve_with_the_broker_down_tries_for_its_attempts_then_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/nats.md: serve() started with the NATS server down logs one warning at once,
    keeps trying ``max_reconnect_attempts`` times ``reconnect_time_wait`` apart (the page's
    measured 2 minutes is 60 × 2 s; scaled down here), then raises ServerDisappeared naming
    the URL and the refusal."""
    url = f"nats://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="asyncmp")
    attempts, wait = 4, 0.25
    local_server, local_client = asyncmp.channel()
    started = time.time()
    with anyio.fail_after(20), pytest.raises(asyncmp.ServerDisappeared) as info:
        await asyncmp.nats.serve(
            local_client, "down", url, max_reconnect_attempts=attempts, reconnect_time_wait=wait
        )
    elapsed = time.time() - started
    local_client.close()
    local_server.close()

    assert str(info.value).startswith(f"cannot connect to NATS at {url}: ConnectionRefusedError")
    assert attempts * wait * 0.95 <= elapsed < attempts * wait + 5, elapsed
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.created - started < wait, "not logged at the first attempt"


@pytest.fixture
def cancel_seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """serve()'s cancel handler, instrumented: each processed cancel message appends the
    serve state it was processed by, so a test can wait for it."""
    seen: list[Any] = []
    original = _serve._Server.on_cancel

    async def on_cancel(self: _serve._Server, msg: Any) -> None:
        await original(self, msg)
        seen.append(self)

    monkeypatch.setattr(_serve._Server, "on_cancel", on_cancel)
    return seen


async def _wait_for(predicate: Callable[[], bool]) -> None:
    # What changes is updated by a message that crossed NATS: no event to wait on, so poll.
    # Bounded by the caller's fail_after.
    while not predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_nats_cancel_processed_before_its_request_drops_the_request(
    nats_server: NatsServer, cancel_seen: list[Any]
) -> None:
    """Cancel messages and requests travel on different subjects: a cancel that serve()
    processes before its request makes serve() drop that request (the handler never sees
    it, nothing is replied), not serve a requester that is gone."""
    seen: list[Any] = []

    async def record(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        seen.append(msg)
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with serving(nats_server.url, "c", record), raw_nats(nats_server.url) as nc:
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox + ".*")
            await nc.publish("_ASYNCMP.CANCEL.c", f"{inbox}.1".encode())
            await nc.flush()
            await _wait_for(lambda: len(cancel_seen) == 1)
            await nc.publish("c", b'"withdrawn"', reply=f"{inbox}.1")
            await nc.publish("c", b'"served"', reply=f"{inbox}.2")
            reply = await replies.next_msg(timeout=10)
            assert (reply.subject, json.loads(reply.data)) == (f"{inbox}.2", "served")
            # Requests on one subscription are handled in order: "withdrawn" came first.
            assert seen == ["served"]
            assert replies.pending_msgs == 0


async def test_nats_cancel_before_the_request_task_first_runs_leaves_nothing_in_flight(
    nats_server: NatsServer, cancel_seen: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose serve() task is cancelled before that task first runs (so its body,
    and any cleanup in it, never runs) is withdrawn and forgotten: nothing stays in flight."""
    gate = asyncio.Event()
    original = _serve._Server.handle

    async def gated_handle(self: _serve._Server, *args: Any) -> None:
        # Keeps the task from reaching handle()'s body until the gate opens.
        await gate.wait()
        await original(self, *args)

    monkeypatch.setattr(_serve._Server, "handle", gated_handle)

    release = anyio.Event()
    seen: list[Any] = []

    async def hold_first(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        seen.append(msg)
        await release.wait()  # "withdrawn" stays queued behind "hold" meanwhile
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "g", hold_first) as local,
            raw_nats(nats_server.url) as nc,
        ):
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox + ".*")
            await nc.publish("g", b'"hold"', reply=f"{inbox}.1")
            await nc.publish("g", b'"withdrawn"', reply=f"{inbox}.2")
            await nc.flush()
            await _wait_for(lambda: seen == ["hold"] and local.statistics().queued == 1)
            await nc.publish("_ASYNCMP.CANCEL.g", f"{inbox}.2".encode())
            await nc.flush()
            await _wait_for(lambda: len(cancel_seen) == 1)
            assert [entry[0] for entry in cancel_seen[0].in_flight.values()] == [f"{inbox}.1"]
            assert local.statistics().queued == 0
            gate.set()
            release.set()
            reply = await replies.next_msg(timeout=10)
            assert (reply.subject, json.loads(reply.data)) == (f"{inbox}.1", "hold")
            await _wait_for(lambda: not cancel_seen[0].in_flight)
    assert seen == ["hold"]


# -- requests that arrive together share one collector task (serve()'s module doc) ------------


async def test_nats_a_reply_still_awaited_does_not_hold_back_the_others_of_its_burst(
    nats_server: NatsServer,
) -> None:
    """Requests that arrive together are collected by one task; one whose reply is not in
    yet gets a task of its own, so the replies already in go out at once: a handler that
    keeps the first request's context and answers the second gets the second answered
    first, then the first when it answers it."""
    kept: list[asyncmp.ReplyContext[Any]] = []

    async def keep_first(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        if msg == "later":
            kept.append(rctx)  # answered below, after "now" has had its reply
        else:
            rctx.reply(msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "b", keep_first),
            raw_nats(nats_server.url) as nc,
        ):
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox + ".*")
            await nc.publish("b", b'"later"', reply=f"{inbox}.1")
            await nc.publish("b", b'"now"', reply=f"{inbox}.2")
            await nc.flush()
            first = await replies.next_msg(timeout=10)
            assert (first.subject, json.loads(first.data)) == (f"{inbox}.2", "now")
            assert len(kept) == 1
            kept[0].reply("later")
            second = await replies.next_msg(timeout=10)
            assert (second.subject, json.loads(second.data)) == (f"{inbox}.1", "later")


@pytest.fixture
def collect_gate(monkeypatch: pytest.MonkeyPatch) -> anyio.Event:
    """serve()'s collector, held: it looks at the requests that arrived only once the
    returned event is set (what a busy loop would do: run other work first)."""
    gate = anyio.Event()
    original = _serve._Server.collect

    async def gated(self: _serve._Server) -> None:
        await gate.wait()
        await original(self)

    monkeypatch.setattr(_serve._Server, "collect", gated)
    return gate


async def test_nats_cancel_of_a_request_waiting_for_its_collector_withdraws_it_once(
    nats_server: NatsServer, cancel_seen: list[Any], collect_gate: anyio.Event
) -> None:
    """A cancel that comes after the request was handed to the local server but before
    the collector looked at it: counted once as cancelled, no reply, nothing left in
    flight; the collector then passes it by and answers the others."""
    answered: list[Any] = []

    async def echo_noted(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.reply(msg)
        answered.append(msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "w", echo_noted),
            raw_nats(nats_server.url) as nc,
        ):
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox + ".*")
            await nc.publish("w", b'"withdrawn"', reply=f"{inbox}.1")
            await nc.publish("w", b'"served"', reply=f"{inbox}.2")
            await nc.flush()
            await _wait_for(lambda: len(answered) == 2)  # both replied to locally
            await nc.publish("_ASYNCMP.CANCEL.w", f"{inbox}.1".encode())
            await nc.flush()
            await _wait_for(lambda: len(cancel_seen) == 1)
            server = cancel_seen[0]
            assert [entry[0] for entry in server.in_flight.values()] == [f"{inbox}.2"]
            collect_gate.set()
            reply = await replies.next_msg(timeout=10)
            assert (reply.subject, json.loads(reply.data)) == (f"{inbox}.2", "served")
            await _wait_for(lambda: server.collector is None)
            assert not server.in_flight
            assert (server.num_requests, server.num_cancelled) == (2, 1)
            assert replies.pending_msgs == 0


async def test_nats_stopping_serve_answers_requests_waiting_for_their_collector(
    nats_server: NatsServer, collect_gate: anyio.Event
) -> None:
    """serve() stopped while requests wait for their collector: each caller gets NoReply
    at once (as for a request its handler holds), and the collector finds nothing left."""
    outcome: list[BaseException] = []
    answered: list[Any] = []

    async def echo_noted(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.reply(msg)
        answered.append(msg)

    with anyio.fail_after(20):
        async with asyncmp.nats.connect("x", nats_server.url, timeout=None) as client:

            async def call(n: int) -> None:
                try:
                    await client.send(n)
                except asyncmp.NoReply as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                async with serving(nats_server.url, "x", echo_noted):
                    for n in range(3):
                        tg.start_soon(call, n)
                    await _wait_for(lambda: len(answered) == 3)
                # Leaving serving() cancelled serve() with the three waiting to be collected.
                collect_gate.set()
    assert len(outcome) == 3


def _close_when_the_link_is_taken(
    client: asyncmp.nats.Client[Any, Any], close: Callable[[], None]
) -> None:
    """Widen the window of the race: the next time a thread takes the client's I/O link,
    *close* runs before the thread can publish on it."""
    hub = client._hub
    original = hub.io_link_now

    def io_link_now() -> Any:
        link = original()
        if link is not None:
            del hub.io_link_now  # once
            close()
        return link

    hub.io_link_now = io_link_now  # type: ignore[method-assign]


@pytest.mark.parametrize("caller", ["blocking.send", "request"])
async def test_nats_close_between_taking_the_link_and_publishing_raises_closed(
    nats_server: NatsServer, caller: str
) -> None:
    """A client closed while a thread is between taking its connection and publishing makes
    that thread raise Closed, not RuntimeError('Event loop is closed') or a hang."""
    with anyio.fail_after(30):
        async with serving(nats_server.url, "r"):
            client = asyncmp.nats.connect("r", nats_server.url, timeout=None)
            assert await anyio.to_thread.run_sync(client.blocking.send, 1, 10) == 1
            _close_when_the_link_is_taken(client, client.close)

            def call() -> Any:
                if caller == "blocking.send":
                    return client.blocking.send(2)
                return client.request(2).blocking.wait(10)

            with pytest.raises(asyncmp.Closed):
                await anyio.to_thread.run_sync(call)


@pytest.mark.parametrize("caller", ["blocking.send", "request"])
async def test_nats_link_closed_before_a_thread_publishes_on_it_fails_the_call_with_closed(
    nats_server: NatsServer, caller: str
) -> None:
    """A thread that publishes on a connection closed after it took it (its loop still
    running) gets Closed at once: the error is not dropped into a future nobody reads,
    leaving the caller to wait for a reply that cannot come."""
    with anyio.fail_after(30):
        async with serving(nats_server.url, "r"):
            client = asyncmp.nats.connect("r", nats_server.url, timeout=None)
            try:
                assert await anyio.to_thread.run_sync(client.blocking.send, 1, 10) == 1
                link = client._hub.io_link_now()
                assert link is not None

                def close_link() -> None:
                    asyncio.run_coroutine_threadsafe(link.close(), link.loop).result(10)

                _close_when_the_link_is_taken(client, close_link)

                def call() -> Any:
                    if caller == "blocking.send":
                        return client.blocking.send(2, timeout=10)
                    return client.request(2).blocking.wait(10)

                with pytest.raises(asyncmp.Closed):
                    await anyio.to_thread.run_sync(call)
            finally:
                client.close()


def test_nats_close_racing_many_blocking_senders_leaves_none_blocked(
    nats_server: NatsServer,
) -> None:
    """Threads sending in a loop while another thread closes the client each end with a
    reply or Closed, never blocked and never with another error."""

    async def main() -> None:
        with anyio.fail_after(40):
            async with serving(nats_server.url, "race"):
                for _ in range(5):
                    await one_round()

    async def one_round() -> None:
        client = asyncmp.nats.connect("race", nats_server.url, timeout=None)
        go = threading.Barrier(9, timeout=10)
        errors: list[BaseException] = []

        def sender() -> None:
            go.wait()
            try:
                while True:
                    client.blocking.send(1)
            except asyncmp.Closed:
                pass
            except BaseException as exc:
                errors.append(exc)

        def closer() -> None:
            go.wait()
            client.close()

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        await anyio.to_thread.run_sync(closer)
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join, 10)
        assert not [thread for thread in threads if thread.is_alive()], "senders blocked"
        assert errors == []

    anyio.run(main, backend="asyncio")
