"""The errors asyncmp.nats adds, and how a failure travels in a reply.

A failed request's reply carries the header ``Asyncmp-Status: fail`` and a JSON payload
``{"type": "<module>.<qualname>", "message": str(exc), "args": [...]}`` (``args`` only when
JSON can carry them), and the NATS Services framework's ``Nats-Service-Error`` (a one-line
description) and ``Nats-Service-Error-Code`` (an HTTP-like code) for every other client.
The client raises the original type only when that type was registered with the client
(``errors=``) or belongs to asyncmp; any other failure becomes a
`RemoteError`, because constructing arbitrary named classes
from network data is how deserialisation attacks start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .._errors import (
    AlreadyReplied,
    ClientsDisappeared,
    Closed,
    Disconnected,
    Error,
    NoReply,
    ServerDisappeared,
    WouldBlock,
)
from .._lowlevel._check import is_int
from ._wire import (
    BAD_REQUEST,
    ERROR,
    ERROR_CODE,
    FAIL,
    HANDLER_FAILED,
    NO_REPLY,
    SERVER_GONE,
    STATUS,
    TOO_LARGE,
    header_size,
)

__all__ = ("MalformedMessage", "PayloadTooLarge", "Registry", "RemoteError", "ServiceError")


class RemoteError(Error):
    """The server failed the request with an exception whose type is not registered here.

    Unlike a registered type, which is re-raised as itself, this keeps only what travelled:
    the exception's type name and message, and the standard error code of the reply.
    """

    type_name: str
    """The remote exception's type as ``module.QualName`` (just ``QualName`` for builtins);
    empty for a `ServiceError` from a service that is not
    asyncmp's."""
    message: str
    """``str()`` of the remote exception (a service error's description)."""
    code: str | None
    """The reply's ``Nats-Service-Error-Code`` (``"500"`` for a handler's failure, see the
    table of codes), or ``None`` if the server sent none (asyncmp before it sent codes)."""

    def __init__(self, type_name: str, message: str, code: str | None = None) -> None:
        text = f"{type_name}: {message}" if type_name and message else type_name or message
        super().__init__(f"{text} (error code {code})" if code else text)
        self.type_name = type_name
        self.message = message
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles (multiprocessing, a pickle codec) rebuild it from its attributes.
        return (type(self), (self.type_name, self.message, self.code))


class ServiceError(RemoteError):
    """An error of the NATS Services framework: a code and a description.

    A handler fails a request with it to choose what other NATS clients see —
    ``rctx.fail(ServiceError(404, "no such item"))`` replies with the headers
    ``Nats-Service-Error-Code: 404`` and ``Nats-Service-Error: no such item``, the
    convention of services written with nats.go, nats.js or nats-py's ``micro``. An asyncmp
    client raises it for such a reply from any service, asyncmp's or not (it is a
    `RemoteError` whose `type_name` is empty).

    Args:
        code: an HTTP-like error code, a positive integer (or its decimal digits).
        description: what went wrong, for people: a single line.
        data: the payload of an error reply received from a service that is not asyncmp's
            (an asyncmp server's failure reply carries its own failure record there).
    """

    code: str
    """The error code as it travelled (``"404"``): the decimal digits of a positive integer
    for an error made here; a received one is kept as the service sent it (empty if it sent
    a description only)."""
    data: bytes
    """The payload of the error reply (empty unless the service sent one)."""

    def __init__(self, code: int | str, description: str, *, data: bytes = b"") -> None:
        text = str(code) if is_int(code) or isinstance(code, str) else ""
        if not text.isdigit() or not text.isascii() or int(text) == 0:
            raise ValueError(f"a service error code is a positive integer, not {code!r}")
        if not isinstance(description, str):
            raise TypeError(f"a service error description is a str, not {description!r}")
        super().__init__("", description, str(int(text)))
        # args as the constructor takes them: an asyncmp client rebuilds it from them.
        self.args = (self.code, description)
        self.data = data

    @classmethod
    def _received(cls, code: str, description: str, data: bytes) -> ServiceError:
        # What another service sent, unchecked: nothing it said is dropped.
        self = cls.__new__(cls)
        RemoteError.__init__(self, "", description, code)
        self.args = (code, description)
        self.data = data
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ServiceError._received, (self.code, self.message, self.data))

    def __str__(self) -> str:
        if not self.code:
            return self.message
        return f"{self.message} (error code {self.code})" if self.message else self.code


class MalformedMessage(Error, ValueError):
    """A payload could not be decoded: a malformed request (the server answers with this
    error and keeps serving) or a malformed reply (raised by the client's `send`).

    Also a `ValueError`. Unlike `RemoteError` no handler ran.
    """


class PayloadTooLarge(Error, ValueError):
    """An encoded message is bigger than the NATS server's ``max_payload``.

    Raised by the client before anything is sent; a reply that is too large reaches the
    client as this error instead of the reply. Also a `ValueError`.
    """


def type_name(cls: type[BaseException]) -> str:
    """``module.QualName`` of an exception class, the key of the registry."""
    return f"{cls.__module__}.{cls.__qualname__}"


_BUILTIN_TYPES: tuple[type[BaseException], ...] = (
    AlreadyReplied,
    ClientsDisappeared,
    Closed,
    Disconnected,
    Error,
    NoReply,
    ServerDisappeared,
    WouldBlock,
    MalformedMessage,
    PayloadTooLarge,
    ServiceError,
)


def _public_name(cls: type[BaseException]) -> str:
    # asyncmp re-exports its errors from the package, so name them by the public path
    # whatever module they were defined in.
    if cls in (MalformedMessage, PayloadTooLarge, RemoteError, ServiceError):
        return f"asyncmp.nats.{cls.__qualname__}"
    if cls.__module__.startswith("asyncmp."):
        return f"asyncmp.{cls.__qualname__}"
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return type_name(cls)


class Registry:
    """Exception types a client re-raises as themselves (its ``errors=`` argument)."""

    __slots__ = ("_types",)

    def __init__(self, types: Iterable[type[BaseException]]) -> None:
        self._types: dict[str, type[BaseException]] = {}
        for cls in (*_BUILTIN_TYPES, *types):
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                raise TypeError(f"errors= takes exception classes, not {cls!r}")
            self._types[_public_name(cls)] = cls

    def rebuild(self, data: bytes, code: str | None) -> BaseException:
        """The exception a failure payload stands for (*code*: its reply's error code)."""
        try:
            record = json.loads(data)
            name = record["type"]
            message = record["message"]
            args = record.get("args")
            if not isinstance(name, str) or not isinstance(message, str):
                raise TypeError("bad types")
        except Exception as exc:
            return MalformedMessage(f"the server sent a failure that cannot be decoded: {exc}")
        cls = self._types.get(name)
        if cls is not None:
            for attempt in (args, [message]):
                if isinstance(attempt, list):
                    try:
                        return cls(*attempt)
                    except Exception:
                        continue
        return RemoteError(name, message, code)


def encode_failure(exc: BaseException) -> bytes:
    """The payload of a failure reply for *exc*."""
    record: dict[str, Any] = {"type": _public_name(type(exc)), "message": str(exc)}
    try:
        return json.dumps({**record, "args": list(exc.args)}).encode()
    except (TypeError, ValueError):
        return json.dumps(record).encode()


_TRUNCATED = "..."
# The most bytes of Nats-Service-Error (the description, a copy of what the failure record
# says): at most this, and at most a quarter of max_payload, so that the header stays small
# next to the record.
_MAX_DESCRIPTION = 1024


def _describe(exc: BaseException, limit: int) -> tuple[str, str]:
    """The standard error code and description of a failure reply for *exc*, the
    description cut to *limit* bytes (marked ``...``)."""
    if isinstance(exc, ServiceError):
        code, description = exc.code, exc.message
    else:
        name = _public_name(type(exc))
        text = str(exc)
        description = f"{name}: {text}" if text else name
        code = _CODES.get(type(exc), HANDLER_FAILED)
    # A header value is one line: no CR or LF (nor other runs of whitespace).
    description = " ".join(description.split())
    encoded = description.encode()
    if len(encoded) > limit:
        cut = encoded[: max(limit - len(_TRUNCATED), 0)].decode(errors="ignore")
        description = cut + _TRUNCATED if limit >= len(_TRUNCATED) else ""
    return code, description


_CODES: dict[type[BaseException], str] = {
    MalformedMessage: BAD_REQUEST,
    PayloadTooLarge: TOO_LARGE,
    ServerDisappeared: SERVER_GONE,
    NoReply: NO_REPLY,
}

_TOO_LARGE_HEADERS = {
    STATUS: FAIL,
    ERROR: "asyncmp.nats.PayloadTooLarge: the failure reply does not fit in the NATS "
    "server's max_payload",
    ERROR_CODE: TOO_LARGE,
}


def failure_reply(exc: BaseException, max_payload: int) -> tuple[dict[str, str], bytes] | None:
    """The headers and payload of a failure reply for *exc* that fit in *max_payload* bytes
    together, or None if not even an empty `PayloadTooLarge` record fits.

    A reply over *max_payload* is replaced by a `PayloadTooLarge` one (code 413) whose record
    names the original type and message, the message cut (and marked ``...``) to fit: the
    requester learns what happened, and the NATS server never sees a message over its
    ``max_payload`` (nats-server counts the headers in, and drops a connection that
    publishes more).
    """
    code, description = _describe(exc, min(_MAX_DESCRIPTION, max_payload // 4))
    headers = {STATUS: FAIL, ERROR: description, ERROR_CODE: code}
    data = encode_failure(exc)
    if len(data) + header_size(headers) <= max_payload:
        return headers, data
    limit = max_payload - header_size(_TOO_LARGE_HEADERS)
    original = f"{_public_name(type(exc))}: {exc}"
    message = (
        f"the failure reply is {len(data) + header_size(headers)} bytes with its headers, "
        f"over its NATS server's max_payload ({max_payload}); the failure was {original}"
    )
    name = _public_name(PayloadTooLarge)

    def record(message: str) -> bytes:
        # No "args": the client rebuilds PayloadTooLarge from the message alone.
        return json.dumps({"type": name, "message": message}).encode()

    data = record(message)
    if len(data) <= limit:
        return _TOO_LARGE_HEADERS, data
    # Cut the message to the longest prefix whose record, marked "...", fits. Measured in
    # encoded bytes: JSON escapes a character to as many as twelve bytes ("é" is \u00e9, one
    # outside the BMP two such escapes), so counting characters would cut far too much —
    # down to nothing. Fitting is monotonic in the prefix's length: a binary search.
    fits, too_long = 0, len(message)
    if len(record(_TRUNCATED)) > limit:
        data = record("")
        return (_TOO_LARGE_HEADERS, data) if len(data) <= limit else None
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(record(message[:middle] + _TRUNCATED)) <= limit:
            fits = middle
        else:
            too_long = middle
    return _TOO_LARGE_HEADERS, record(message[:fits] + _TRUNCATED)
