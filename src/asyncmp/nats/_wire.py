"""The wire format shared by the client and `serve` (see the docs page for the contract).

- A request is a NATS message on the service subject whose payload is the encoded message
  and whose reply subject is the requester's inbox; it carries no headers.
- A successful reply has no ``Asyncmp-Status`` header and the encoded value as payload.
- Any other reply has ``Asyncmp-Status``: ``fail`` (payload: the failure record of
  `_errors.encode_failure`), ``noreply`` (the reply context closed unanswered) or ``gone``
  (the local server was closed before taking the request: safe to retry).
- A requester that gives up publishes the request's reply subject on
  ``_ASYNCMP.CANCEL.<subject>``; every server on the subject listens there (no queue group),
  and the one holding that request withdraws it.
"""

from __future__ import annotations

from typing import Final

STATUS: Final = "Asyncmp-Status"
FAIL: Final = "fail"
NOREPLY: Final = "noreply"
GONE: Final = "gone"
NATS_STATUS: Final = "Status"
NO_RESPONDERS: Final = "503"


def cancel_subject(subject: str) -> str:
    """Where requesters of *subject* announce that they gave up."""
    return f"_ASYNCMP.CANCEL.{subject}"
