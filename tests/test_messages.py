"""Error and log messages name numbers as people write them (`_lowlevel._format.seconds`):
a timeout computed from a deadline reads "5", not "4.9999948430000245"."""

from __future__ import annotations

import pytest

import asyncmp


def test_a_join_timeout_names_the_timeout_rounded() -> None:
    """``handle.blocking.join(timeout)`` that runs out names the timeout as given, rounded."""

    class Quiet:
        def proc_req(self, msg: object, rctx: asyncmp.ReplyContext[object]) -> None:
            rctx.reply(msg)

    client, handle = asyncmp.thread.spawn(lambda client: Quiet())
    try:
        with pytest.raises(TimeoutError, match=r"still running after 0\.0123 s$"):
            handle.blocking.join(timeout=0.012345678)
    finally:
        client.close()
    assert handle.blocking.join(timeout=5) is None


def test_a_nats_connection_failure_names_its_deadline_rounded() -> None:
    """What connecting within a computed deadline reports: "within 5 seconds"."""
    pytest.importorskip("nats")
    from asyncmp.nats._link import ConnectionLog

    error = ConnectionLog().failure("nats://127.0.0.1:1", 4.9999948430000245)
    assert "within 5 seconds" in str(error)
