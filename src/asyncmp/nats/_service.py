"""`serve_service`: asyncmp servers as a service of the NATS Services framework.

The framework (nats.go's ``micro``, nats.js's services, nats-py's ``nats.micro`` …) makes a
responder a named, versioned service that answers discovery and monitoring requests on
``$SRV.PING|INFO|STATS[.<name>[.<id>]]`` with the JSON documents
``io.nats.micro.v1.{ping,info,stats}_response``, and reports failures with the
``Nats-Service-Error`` / ``Nats-Service-Error-Code`` headers.

This implements the published protocol on the endpoints of `_serve` rather than on
``nats.micro``, whose endpoints await each handler inside the subscription callback (one
request at a time per endpoint, where asyncmp hands requests over as they arrive), count an
error only when the handler raises, and know nothing of asyncmp's cancellation.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from .._channel import Client as LocalClient
from .._lowlevel._public import NoPublicConstructor
from ._codec import Codec, resolve_codec
from ._link import settle
from ._serve import _Run, _Server, check_asyncio, check_queue, check_subject
from ._wire import (
    DEFAULT_QUEUE,
    INFO_TYPE,
    PING_TYPE,
    STATS_TYPE,
    VERBS,
    control_subjects,
)

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ("Endpoint", "Service", "serve_service")

# The framework's rules for names (services and endpoints) and versions (semantic
# versioning, semver.org), as its published JSON schemas state them. (nats-py's nats.micro
# has the same patterns, but only from nats-py 2.7 on; asyncmp.nats works with 2.6.)
_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
_IDENTIFIER = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER: Final = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"  # major.minor.patch
    rf"(?:-({_IDENTIFIER}(?:\.{_IDENTIFIER})*))?"  # -pre.release
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"  # +build.metadata
)
_NOT_NAME: Final = re.compile(r"[^A-Za-z0-9_-]")


def _check_metadata(metadata: object, what: str) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError(f"{what} metadata maps str to str, not {metadata!r}")
    return dict(metadata)


@final
@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a service: a subject whose requests a local asyncmp server answers.

    Args:
        subject: the NATS subject (wildcards allowed).
        client: the local server's client (from `asyncmp.task.spawn`,
            `asyncmp.thread.spawn`, `asyncmp.channel` …); the service does not close it.
        name: the endpoint's name in discovery and statistics (letters, digits, ``-`` and
            ``_``); by default the subject with every other character replaced by ``_``.
        metadata: free-form ``str`` → ``str`` pairs reported by INFO.
        queue: the endpoint's queue group; by default the service's.
    """

    subject: str
    client: LocalClient[Any, Any]
    name: str | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)
    queue: str | None = None

    def __post_init__(self) -> None:
        check_subject(self.subject)
        if not isinstance(self.client, LocalClient):
            raise TypeError(f"an Endpoint's client is an asyncmp.Client, not {self.client!r}")
        if self.name is not None and not (
            isinstance(self.name, str) and _NAME.fullmatch(self.name)
        ):
            raise ValueError(
                f"an endpoint name has only letters, digits, '-' and '_', not {self.name!r}"
            )
        check_queue(self.queue)
        _check_metadata(self.metadata, "endpoint")


@final
class Service(metaclass=NoPublicConstructor, made_by="asyncmp.nats.serve_service()"):
    """A running service of `serve_service`: what discovery
    and monitoring report about it, for the serving process itself.

    ``await task_group.start(serve_service, …)`` returns it once the service is subscribed.
    """

    __slots__ = ("_servers", "_started", "description", "id", "metadata", "name", "version")

    id: str
    """This instance's unique id (a NUID, as other NATS clients make them)."""
    name: str
    """The service's name, shared by all its instances."""
    version: str
    """The service's semantic version."""
    description: str
    """The service's description."""
    metadata: dict[str, str]
    """The service's metadata."""
    _servers: list[_Server]
    _started: datetime.datetime

    @classmethod
    def _create(
        cls,
        service_id: str,
        name: str,
        version: str,
        description: str,
        metadata: dict[str, str],
        servers: list[_Server],
    ) -> Service:
        self = object.__new__(cls)
        self.id = service_id
        self.name = name
        self.version = version
        self.description = description
        self.metadata = metadata
        self._servers = servers
        self._started = _utc_now()
        return self

    @property
    def started(self) -> datetime.datetime:
        """When the service started (or its statistics were last reset), in UTC."""
        return self._started

    def ping(self) -> dict[str, Any]:
        """The PING response (``io.nats.micro.v1.ping_response``)."""
        return {
            "type": PING_TYPE,
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "metadata": self.metadata,
        }

    def info(self) -> dict[str, Any]:
        """The INFO response (``io.nats.micro.v1.info_response``): the endpoints."""
        return {
            "type": INFO_TYPE,
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "description": self.description,
            "metadata": self.metadata,
            "endpoints": [
                {
                    "name": s.name,
                    "subject": s.subject,
                    "queue_group": s.queue or "",
                    "metadata": s.metadata,
                }
                for s in self._servers
            ],
        }

    def stats(self) -> dict[str, Any]:
        """The STATS response (``io.nats.micro.v1.stats_response``).

        Per endpoint: ``num_requests`` (requests finished: answered, failed, or withdrawn
        because their requester gave up), ``num_errors`` (answered with an error),
        ``processing_time`` and ``average_processing_time`` (nanoseconds from a request's
        arrival to its answer), ``last_error`` (``"code:description"``) and ``data``
        (asyncmp's own: ``in_flight``, the requests in hand now, and ``num_cancelled``, those
        withdrawn because their requester gave up).
        """
        return {
            "type": STATS_TYPE,
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "metadata": self.metadata,
            "started": self._started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "endpoints": [
                {
                    "name": s.name,
                    "subject": s.subject,
                    "queue_group": s.queue or "",
                    "num_requests": s.num_requests,
                    "num_errors": s.num_errors,
                    "last_error": s.last_error,
                    "processing_time": s.processing_time,
                    "average_processing_time": (
                        s.processing_time // s.num_requests if s.num_requests else 0
                    ),
                    "data": {"in_flight": len(s.in_flight), "num_cancelled": s.num_cancelled},
                }
                for s in self._servers
            ],
        }

    def reset(self) -> None:
        """Zero the endpoints' statistics; `started` becomes now."""
        for server in self._servers:
            server.reset_stats()
        self._started = _utc_now()

    async def _subscribe(self, run: _Run) -> list[Subscription]:
        nc = run.nc
        subs: list[Subscription] = []
        for verb in VERBS:
            document = getattr(self, verb.lower())

            async def respond(msg: Msg, document: Any = document) -> None:
                if msg.reply:
                    await nc.publish(msg.reply, json.dumps(document()).encode())

            # No queue group: every instance answers.
            subs += [
                await nc.subscribe(subject, cb=respond)
                for subject in control_subjects(verb, self.name, self.id)
            ]
        return subs

    def __repr__(self) -> str:
        return f"<asyncmp.nats.Service {self.name} {self.version} id={self.id}>"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _endpoints(
    endpoints: Endpoint | Iterable[Endpoint] | Mapping[str, LocalClient[Any, Any]],
) -> list[Endpoint]:
    if isinstance(endpoints, Endpoint):
        result = [endpoints]
    elif isinstance(endpoints, Mapping):
        result = [Endpoint(subject, client) for subject, client in endpoints.items()]
    elif isinstance(endpoints, Iterable):
        result = list(endpoints)
        for endpoint in result:
            if not isinstance(endpoint, Endpoint):
                raise TypeError(f"endpoints are asyncmp.nats.Endpoint objects, not {endpoint!r}")
    else:
        raise TypeError(
            "endpoints is an Endpoint, an iterable of them or a mapping of subjects to "
            f"asyncmp clients, not {endpoints!r}"
        )
    if not result:
        raise ValueError("a service needs at least one endpoint")
    subjects = [endpoint.subject for endpoint in result]
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"two endpoints serve the same subject: {subjects}")
    return result


async def serve_service(
    name: str,
    version: str,
    endpoints: Endpoint | Iterable[Endpoint] | Mapping[str, LocalClient[Any, Any]],
    servers: str | list[str] = "nats://127.0.0.1:4222",
    *,
    description: str = "",
    metadata: Mapping[str, str] | None = None,
    queue: str | None = DEFAULT_QUEUE,
    codec: Codec | str = "json",
    task_status: anyio.abc.TaskStatus[Service] = anyio.TASK_STATUS_IGNORED,
    **nats_options: Any,
) -> None:
    """Serve local asyncmp servers as a service of the NATS Services framework.

    Each endpoint is served as `serve` serves its subject (same
    wire format, errors and cancellation), and the service answers the framework's
    discovery and monitoring requests — ``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS``,
    each also as ``$SRV.<VERB>.<name>`` and ``$SRV.<VERB>.<name>.<id>`` — so that
    ``nats micro ls``, nats.go, nats.js and nats-py's service clients find it, and its
    failures carry the standard error headers that every NATS client reads.

    Runs on an asyncio event loop until cancelled, until one of its local servers is gone
    (then it stops serving every endpoint, finishes the requests in hand and returns: an
    instance is whole or not at all), or until its NATS connection is closed for good (then
    it raises `ServerDisappeared`). Start it with
    ``service = await task_group.start(serve_service, …)`` to continue once it is
    subscribed, with its `Service`.

    Args:
        name: the service's name, shared by its instances (letters, digits, ``-``, ``_``).
        version: its semantic version (``"1.0.0"``, ``"2.1.3-beta.1"`` …).
        endpoints: an `Endpoint`, several, or a mapping of
            subjects to the clients of the local servers that answer them.
        servers: NATS server URL(s), as for `nats.connect`.
        description: what the service does, for people (INFO).
        metadata: free-form ``str`` → ``str`` pairs (PING, INFO, STATS).
        queue: the queue group of the endpoints that do not choose their own: the
            instances of a service share its requests (``"q"``, the framework's default).
            ``None`` gives every instance every request of those endpoints.
        codec: ``"json"`` (default), ``"msgpack"``, ``"bytes"`` or a
            `Codec`, for every endpoint; the clients must use the
            same. (The discovery documents are always JSON.)
        task_status: for `TaskGroup.start`: reports the `Service` once it is subscribed.
        **nats_options: passed to `nats.connect`.

    Raises:
        ValueError: a name, version, subject or queue group that the framework does not
            accept, two endpoints on one subject, or no endpoint (before connecting).
        TypeError: an argument of the wrong type (before connecting).
        ServerDisappeared: as for `serve`.
        PermissionError: the NATS server refused the credentials.
    """
    check_asyncio("serve_service")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"a service name has only letters, digits, '-' and '_', not {name!r}")
    if not isinstance(version, str) or not _SEMVER.fullmatch(version):
        raise ValueError(f"a service version is a semantic version like '1.0.0', not {version!r}")
    if not isinstance(description, str):
        raise TypeError(f"description is a str, not {description!r}")
    service_metadata = _check_metadata(metadata, "service")
    check_queue(queue)
    listed = _endpoints(endpoints)
    resolved = resolve_codec(codec)

    from nats.nuid import NUID

    run = _Run()
    await run.connect({**nats_options, "servers": servers})
    try:
        service = Service._create(
            NUID().next().decode(), name, version, description, service_metadata, run.servers
        )
        subs = []
        for endpoint in listed:
            server = _Server(
                run,
                endpoint.client,
                endpoint.subject,
                queue if endpoint.queue is None else endpoint.queue,
                resolved,
                endpoint.name or _NOT_NAME.sub("_", endpoint.subject),
                _check_metadata(endpoint.metadata, "endpoint"),
            )
            subs += await server.subscribe()
        subs += await service._subscribe(run)
        await settle(run.nc)
        service._started = _utc_now()  # now that it serves
        task_status.started(service)
        await run.serve(subs)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await run.shut_down()
