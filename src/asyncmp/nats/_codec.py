"""Codecs: how messages become NATS payloads (bytes) and back.

JSON is the default because any NATS client in any language can read it. msgpack is
optional (the ``msgpack`` extra). The bytes codec passes payloads through untouched, for
services whose payloads are not JSON. Pickle exists only behind an explicit opt-in, because
unpickling a payload runs whatever code its sender chose: only use it when every publisher
on the subject is trusted.
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections.abc import Callable
from typing import Any, Protocol, final, runtime_checkable

__all__ = ("BytesCodec", "Codec", "JsonCodec", "MsgpackCodec", "PickleCodec", "resolve_codec")


@runtime_checkable
class Codec(Protocol):
    """What a codec provides: ``encode(obj) -> bytes`` and ``decode(data) -> obj``.

    ``encode`` raises `TypeError` (or `ValueError`) for values it cannot represent;
    ``decode`` raises `ValueError` (or any exception) for malformed data. Both ends of a
    subject must use the same codec.
    """

    name: str

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


def _cannot_encode(exc: Exception, carries: str, others: str) -> TypeError:
    """*exc* from a codec, with what to do about it: the ``codec=`` choice is not obvious
    from "Object of type set is not JSON serializable"."""
    return TypeError(
        f"{exc}: {carries}. Convert the message, or pass the same other codec= to "
        f"asyncmp.nats.connect() and serve(): {others}"
    )


@final
class JsonCodec:
    """UTF-8 JSON (the default). Tuples arrive as lists, dict keys as strings."""

    name = "json"
    __slots__ = ("_decoder", "_encoder", "_scan")

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
        self._decoder = json.JSONDecoder()
        # The C scanner JSONDecoder.raw_decode() calls (typeshed does not list it).
        self._scan: Callable[[str, int], tuple[Any, int]] = self._decoder.scan_once  # type: ignore[attr-defined]

    def encode(self, obj: Any) -> bytes:
        try:
            return self._encoder.encode(obj).encode()
        except (TypeError, ValueError) as exc:
            raise _cannot_encode(
                exc,
                "the JSON codec (the default) carries str, int, float, bool, None, list, "
                "tuple and dict",
                "codec='msgpack' (which carries bytes too), codec='bytes' with an encoding "
                "of your own, or codec=asyncmp.nats.PickleCodec(trusted=True) between "
                "processes that trust each other",
            ) from exc

    def decode(self, data: bytes) -> Any:
        text = data.decode()
        # JSONDecoder.decode() without its Python layers for the usual message, one value
        # from the first character to the last: the scanner it calls, called directly.
        # Anything else (surrounding whitespace, an error) goes the full way, which
        # accepts or reports it exactly as json.loads does.
        try:
            value, end = self._scan(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
        return self._decoder.decode(text)

    def __repr__(self) -> str:
        return "JsonCodec()"


@final
class BytesCodec:
    """Raw bytes (``codec="bytes"``): the payload is the message, untouched.

    For services whose payloads are not JSON (text, protobuf, images …). A message must be
    `bytes`, `bytearray` or `memoryview` (anything else raises `TypeError`); a reply arrives
    as `bytes`.
    """

    name = "bytes"
    __slots__ = ()

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        raise TypeError(
            f"the bytes codec sends bytes, bytearray or memoryview, not {type(obj).__name__}"
        )

    def decode(self, data: bytes) -> Any:
        return bytes(data)

    def __repr__(self) -> str:
        return "BytesCodec()"


@final
class MsgpackCodec:
    """msgpack (needs the ``msgpack`` package): compact, keeps bytes as bytes."""

    name = "msgpack"
    __slots__ = ("_packb", "_unpackb")

    def __init__(self) -> None:
        try:
            msgpack = importlib.import_module("msgpack")
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("MsgpackCodec needs msgpack: pip install 'asyncmp[msgpack]'") from exc
        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb

    def encode(self, obj: Any) -> bytes:
        try:
            data: bytes = self._packb(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _cannot_encode(
                exc,
                "the msgpack codec carries str, bytes, int, float, bool, None, list, "
                "tuple and dict",
                "codec='bytes' with an encoding of your own, or "
                "codec=asyncmp.nats.PickleCodec(trusted=True) between processes that trust "
                "each other",
            ) from exc
        return data

    def decode(self, data: bytes) -> Any:
        return self._unpackb(data)

    def __repr__(self) -> str:
        return "MsgpackCodec()"


@final
class PickleCodec:
    """Pickle: any picklable Python object. **Unpickling runs code chosen by the sender.**

    Construct it with ``PickleCodec(trusted=True)`` to state that every process that can
    publish on the subject is trusted; without it the constructor refuses.
    """

    name = "pickle"
    __slots__ = ()

    def __init__(self, *, trusted: bool = False) -> None:
        if trusted is not True:
            raise ValueError(
                "unpickling network data runs code chosen by the sender: use "
                "PickleCodec(trusted=True) only when every publisher on the subject is trusted"
            )

    def encode(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError) as exc:
            raise TypeError(f"cannot pickle {obj!r}: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)

    def __repr__(self) -> str:
        return "PickleCodec(trusted=True)"


def resolve_codec(codec: Codec | str) -> Codec:
    """A codec object for *codec*: a `Codec`, ``"json"``, ``"msgpack"`` or ``"bytes"``."""
    if isinstance(codec, str):
        if codec == "json":
            return JsonCodec()
        if codec == "bytes":
            return BytesCodec()
        if codec == "msgpack":
            return MsgpackCodec()
        if codec == "pickle":
            raise ValueError(
                "pickle is never chosen by name, because unpickling network data runs code: "
                "pass codec=PickleCodec(trusted=True) to opt in"
            )
        raise ValueError(
            f"unknown codec {codec!r}: use 'json', 'msgpack', 'bytes' or a Codec object"
        )
    if not isinstance(codec, Codec):
        raise TypeError(
            f"codec must be 'json', 'msgpack', 'bytes' or a Codec object, not {codec!r}"
        )
    return codec
