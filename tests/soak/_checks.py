"""What every round must show: each request, bridge message and Stage event ended or
arrived exactly once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from asyncmp import (
    Finished,
)
from asyncmp.dharma import (
    Receiver,
)

from ._bridge import Bridge
from ._round import EVENTS, GIVEN_UP_LAX, GIVEN_UP_STRICT, NEVER_SEEN, Round
from ._stage import SoakStage

# -- checks ---------------------------------------------------------------------------------


def check_channels(rd: Round) -> None:
    """Every request ended exactly once, and consistently with what its server did."""
    assert sorted(rd.client_ends) == sorted(rd.sent), "a request never ended (or one extra)"
    for rid, ends in rd.client_ends.items():
        assert len(ends) == 1, f"request {rid} ended {len(ends)} times: {ends}"
    for rid, served in rd.server_ends.items():
        assert len(served) == 1, f"request {rid} handled {len(served)} times: {served}"
    for rid, [(how, detail)] in rd.client_ends.items():
        [served] = rd.server_ends.get(rid, [None])  # type: ignore[list-item]
        where = f"request {rid} on {rd.sent[rid]}: client {how} {detail!r}, server {served}"
        if how == "reply":
            assert detail == rid * 2, where
            assert served == ("reply", True), where
        elif how == "fail":
            assert detail == rid, where
            assert served == ("fail", True), where
        elif how == "noreply":
            assert served is not None, where
            assert served[0] in ("noreply", "noreply-raise"), where
            # The exception that left the handler is the NoReply's cause.
            assert (detail == rid) == (served[0] == "noreply-raise"), where
        elif how in NEVER_SEEN:
            assert served is None, where
        elif how in GIVEN_UP_STRICT:
            # Withdrawn (never served), or orphaned: the server's answer went nowhere.
            assert served is None or served[1] is not True, where
        else:
            assert how in GIVEN_UP_LAX, where
    for rid, [(_, delivered)] in rd.server_ends.items():
        if delivered is False:
            client_how = rd.client_ends[rid][0][0]
            assert client_how in GIVEN_UP_STRICT | GIVEN_UP_LAX, f"request {rid}: {client_how}"


def check_bridge(rd: Round, bridge: Bridge) -> None:
    """Each receiver got every message sent to it exactly once, and holds nothing more."""
    for name in ("r1", "r2"):
        got = Counter(rd.received[name])
        sent = Counter(rd.bridge_sent[name])
        assert got == sent, f"{name}: lost {sent - got}, extra {got - sent}"
        assert len(bridge.receiver(name)) == 0


def check_stage(rd: Round, stage: SoakStage, events: Receiver[Any], tokens: list[str]) -> None:
    """Every event reached its token exactly once; the stage is free for a newcomer."""
    for token in tokens:
        assert sorted(rd.stage_got[token]) == list(range(EVENTS)), token
    assert len(events) == 0
    with stage.buffer() as buf:
        assert not any(buf.values()), buf
    ticket = stage.ticket("final")
    assert ticket is not None
    with ticket:
        outcome = stage.blocking.enter(ticket, lambda director: "final", timeout=1.0)
    assert outcome == Finished("final"), "the stage is left headed by nobody"
