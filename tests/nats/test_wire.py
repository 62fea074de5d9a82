"""Codecs, payload limits, malformed requests and authentication."""

from __future__ import annotations

from typing import Any

import anyio
import nats
import pytest
from nats_helpers import NatsServer, serving

import asyncmp
import asyncmp.nats
from asyncmp.nats._link import settle

pytestmark = pytest.mark.anyio


def test_nats_pickle_needs_an_explicit_opt_in() -> None:
    """Pickle is never chosen by name and its codec refuses to exist without trusted=True."""
    with pytest.raises(ValueError, match="trusted=True"):
        asyncmp.nats.connect("s", codec="pickle")
    with pytest.raises(ValueError, match="trusted=True"):
        asyncmp.nats.PickleCodec()
    with pytest.raises(ValueError, match="unknown codec"):
        asyncmp.nats.connect("s", codec="yaml")
    with pytest.raises(TypeError):
        asyncmp.nats.connect("s", codec=42)  # type: ignore[arg-type]


def test_nats_connect_rejects_bad_arguments() -> None:
    """Wildcard or empty subjects, bad timeouts and non-exception error types are refused."""
    for subject in ("", "a.*", "a.>", "a b"):
        with pytest.raises(ValueError):
            asyncmp.nats.connect(subject)
    with pytest.raises(ValueError):
        asyncmp.nats.connect("s", timeout=-1)
    with pytest.raises(TypeError):
        asyncmp.nats.connect("s", errors=[int])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "data",
    [
        b'"0123456789abcdef"',
        b'{"a":[1,{"b":null}],"c":"\xc3\xa9"}',
        b" 1",
        b"1 ",
        b"\n[1, 2]\t",
        b"",
        b"x",
        b'"unterminated',
        b"1 2",
        b"[1,]",
        b"NaN",
        b"\xff",
    ],
)
def test_nats_json_codec_decodes_exactly_as_json_loads(data: bytes) -> None:
    """The JSON codec's decode (a direct call of the scanner for the usual message) gives
    what ``json.loads`` gives — the same value, or the same error with the same message —
    for surrounding whitespace, trailing data and malformed input too."""
    import json

    def outcome(decode: Any) -> object:
        try:
            return ("value", repr(decode(data)))  # repr: NaN equals NaN
        except Exception as exc:
            return ("error", type(exc), str(exc))

    mine = outcome(asyncmp.nats.JsonCodec().decode)
    assert mine == outcome(lambda raw: json.loads(raw.decode()))


@pytest.mark.parametrize(
    "codec",
    ["json", "msgpack", asyncmp.nats.PickleCodec(trusted=True)],
    ids=["json", "msgpack", "pickle"],
)
async def test_nats_codecs_round_trip_their_values(nats_server: NatsServer, codec: Any) -> None:
    """Each codec carries its kind of value there and back unchanged."""
    value: Any = {"a": [1, 2.5, "x", None, True]}
    if codec == "msgpack":
        value = {"bytes": b"\x00\xff", "n": 1}
    elif not isinstance(codec, str):
        value = {"tuple": (1, 2), "set": {3}, "bytes": b"\x00"}
    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "c", codec=codec),
            asyncmp.nats.connect("c", nats_server.url, codec=codec) as client,
        ):
            assert await client.send(value) == value


async def test_nats_oversized_request_raises_payload_too_large(nats_server: NatsServer) -> None:
    """A request over the server's max_payload raises PayloadTooLarge before it is sent,
    and the client keeps working."""
    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "big"),
            asyncmp.nats.connect("big", nats_server.url) as client,
        ):
            assert await client.send("small") == "small"  # connects: max_payload is known
            huge = "x" * (2 * 1024 * 1024)
            with pytest.raises(asyncmp.nats.PayloadTooLarge):
                await client.send(huge)
            with pytest.raises(asyncmp.nats.PayloadTooLarge):
                await anyio.to_thread.run_sync(client.blocking.send, huge)
            with pytest.raises(asyncmp.nats.PayloadTooLarge):
                await client.request(huge)
            assert await client.send("still fine") == "still fine"


async def test_nats_oversized_reply_reaches_the_client_as_payload_too_large(
    nats_server: NatsServer,
) -> None:
    """A reply over max_payload is replaced by a PayloadTooLarge failure, not lost."""

    async def inflate(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.reply("x" * msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "inf", inflate),
            asyncmp.nats.connect("inf", nats_server.url) as client,
        ):
            with pytest.raises(asyncmp.nats.PayloadTooLarge):
                await client.send(2 * 1024 * 1024)
            assert await client.send(3) == "xxx"


async def test_nats_unencodable_request_raises_type_error(nats_server: NatsServer) -> None:
    """A message the codec cannot encode raises TypeError in the caller, nothing is sent;
    the error keeps the codec's own words and says to pass another codec= to both ends."""
    with anyio.fail_after(20):
        async with asyncmp.nats.connect("nobody", nats_server.url) as client:
            with pytest.raises(TypeError) as info:
                await client.send({1, 2})
            assert "Object of type set is not JSON serializable" in str(info.value)
            assert "codec='msgpack'" in str(info.value)
            assert "connect() and serve()" in str(info.value)
            with pytest.raises(TypeError):
                client.request(object())


def test_nats_codec_errors_name_the_other_codecs() -> None:
    """Each codec's encoding error names what it carries and the codecs to use instead
    (never itself), with the original error as its __cause__."""
    with pytest.raises(TypeError) as json_error:
        asyncmp.nats.JsonCodec().encode({1, 2})
    assert "the JSON codec (the default) carries" in str(json_error.value)
    assert isinstance(json_error.value.__cause__, TypeError)
    with pytest.raises(TypeError) as msgpack_error:
        asyncmp.nats.MsgpackCodec().encode({1, 2})
    assert "the msgpack codec carries" in str(msgpack_error.value)
    assert "codec='msgpack'" not in str(msgpack_error.value)
    assert "PickleCodec(trusted=True)" in str(msgpack_error.value)


async def test_nats_malformed_request_gets_an_error_reply_and_serving_goes_on(
    nats_server: NatsServer,
) -> None:
    """Bytes that do not decode get a MalformedMessage failure reply; the server keeps
    serving well-formed requests."""
    with anyio.fail_after(20):
        async with serving(nats_server.url, "m"):
            nc = await nats.connect(nats_server.url)
            try:
                reply = await nc.request("m", b"\xff{not json", timeout=5)
            finally:
                await nc.close()
            assert reply.headers is not None
            assert reply.headers["Asyncmp-Status"] == "fail"
            assert b"MalformedMessage" in reply.data
            async with asyncmp.nats.connect("m", nats_server.url) as client:
                assert await client.send([1]) == [1]


async def test_nats_malformed_reply_raises_malformed_message(nats_server: NatsServer) -> None:
    """A reply that does not decode raises MalformedMessage (also a ValueError)."""
    with anyio.fail_after(20):
        nc = await nats.connect(nats_server.url)
        try:

            async def bad_responder(msg: Any) -> None:
                await msg.respond(b"\xff not json")

            await nc.subscribe("raw", cb=bad_responder)
            await settle(nc)  # flush() alone may overtake the SUBs (test_ready.py)
            async with asyncmp.nats.connect("raw", nats_server.url) as client:
                with pytest.raises(asyncmp.nats.MalformedMessage):
                    await client.send(1)
                with pytest.raises(ValueError):
                    await client.send(1)
        finally:
            await nc.close()


@pytest.mark.parametrize(
    ("server_args", "good", "bad"),
    [
        (("--auth", "s3cret"), {"token": "s3cret"}, {"token": "wrong"}),
        (
            ("--user", "alice", "--pass", "pw"),
            {"user": "alice", "password": "pw"},
            {"user": "alice", "password": "nope"},
        ),
    ],
    ids=["token", "user-password"],
)
async def test_nats_authentication_with_token_or_user_password(
    server_args: tuple[str, ...], good: dict[str, str], bad: dict[str, str]
) -> None:
    """Serving and requesting work with the right credentials; wrong ones raise
    PermissionError."""
    server = NatsServer(*server_args)
    server.start()
    try:
        with anyio.fail_after(30):
            async with serving(server.url, "auth", **good):
                async with asyncmp.nats.connect("auth", server.url, **good) as client:
                    assert await client.send("hi") == "hi"
                    assert await anyio.to_thread.run_sync(client.blocking.send, "ho") == "ho"
                async with asyncmp.nats.connect(
                    "auth", server.url, max_reconnect_attempts=1, **bad
                ) as client:
                    with pytest.raises(PermissionError):
                        await client.send("hi")
                with pytest.raises(PermissionError):
                    await asyncmp.nats.serve(
                        asyncmp.channel()[1], "auth", server.url, max_reconnect_attempts=1, **bad
                    )
    finally:
        server.stop()
