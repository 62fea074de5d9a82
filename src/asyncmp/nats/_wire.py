"""The wire format shared by the client and the servers (see the docs pages for the contract).

- A request is a NATS message on the service subject whose payload is the encoded message
  and whose reply subject is the requester's inbox; it carries no headers.
- A successful reply has neither ``Asyncmp-Status`` nor ``Nats-Service-Error-Code`` and the
  encoded value as payload.
- Any other reply has ``Asyncmp-Status``: ``fail`` (payload: the failure record of
  `_errors.encode_failure`), ``noreply`` (the reply context closed unanswered) or ``gone``
  (the local server was closed before taking the request: safe to retry) — and the NATS
  Services framework's standard error headers, ``Nats-Service-Error`` (a description) and
  ``Nats-Service-Error-Code`` (an HTTP-like code, below), so that any NATS client reads it
  as an error.
- A reply from another service that has the standard error headers and no
  ``Asyncmp-Status`` is that service's error.
- A requester that gives up publishes the request's reply subject on
  ``_ASYNCMP.CANCEL.<subject>``; every asyncmp server on the subject listens there (no queue
  group), and the one holding that request withdraws it.
- A service (`serve_service`) also answers the Services framework's discovery and monitoring
  requests on ``$SRV.<VERB>``, ``$SRV.<VERB>.<name>`` and ``$SRV.<VERB>.<name>.<id>`` for the
  verbs PING, INFO and STATS.
"""

from __future__ import annotations

from typing import Final

STATUS: Final = "Asyncmp-Status"
FAIL: Final = "fail"
NOREPLY: Final = "noreply"
GONE: Final = "gone"
NATS_STATUS: Final = "Status"
NO_RESPONDERS: Final = "503"

# The NATS Services framework ("micro").
ERROR: Final = "Nats-Service-Error"
ERROR_CODE: Final = "Nats-Service-Error-Code"
SRV_PREFIX: Final = "$SRV"
VERBS: Final = ("PING", "INFO", "STATS")
DEFAULT_QUEUE: Final = "q"
PING_TYPE: Final = "io.nats.micro.v1.ping_response"
INFO_TYPE: Final = "io.nats.micro.v1.info_response"
STATS_TYPE: Final = "io.nats.micro.v1.stats_response"

# The codes of the failures asyncmp's servers report (Nats-Service-Error-Code), HTTP-like as
# across the NATS ecosystem. `serve` is a gateway in front of a local server, hence 503 and
# 504 for a local server that is gone or that gave no reply.
BAD_REQUEST: Final = "400"
TOO_LARGE: Final = "413"
HANDLER_FAILED: Final = "500"
SERVER_GONE: Final = "503"
NO_REPLY: Final = "504"


def cancel_subject(subject: str) -> str:
    """Where requesters of *subject* announce that they gave up."""
    return f"_ASYNCMP.CANCEL.{subject}"


def control_subjects(verb: str, name: str, service_id: str) -> tuple[str, str, str]:
    """The three subjects a service answers *verb* on: all services, by name, by instance."""
    return (
        f"{SRV_PREFIX}.{verb}",
        f"{SRV_PREFIX}.{verb}.{name}",
        f"{SRV_PREFIX}.{verb}.{name}.{service_id}",
    )


def header_size(headers: dict[str, str]) -> int:
    """The bytes of a NATS header block: "NATS/1.0", one "Key: Value" line per header, an
    empty line, each ended by CRLF. nats-server counts them against max_payload together with
    the payload (and drops a connection that publishes more); nats-py checks the payload only.
    """
    lines = sum(len(f"{k}: {v}\r\n".encode()) for k, v in headers.items())
    return len("NATS/1.0\r\n") + lines + 2
