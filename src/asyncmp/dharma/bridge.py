"""Senders and receivers connected freely: dharma's bridge.

The implementation lives in `asyncmp.dharma._bridge`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._bridge import (
    EMPTY as EMPTY,
    TIMEOUT as TIMEOUT,
    Custom as Custom,
    Defined as Defined,
    DirectSender as DirectSender,
    NoMessage as NoMessage,
    Plain as Plain,
    Receiver as Receiver,
    ReceiveResult as ReceiveResult,
    Sender as Sender,
    SignalId as SignalId,
    Special as Special,
    SpecialCommand as SpecialCommand,
    connect as connect,
    direct_connect as direct_connect,
)

__all__ = (
    "EMPTY",
    "TIMEOUT",
    "Custom",
    "Defined",
    "DirectSender",
    "NoMessage",
    "Plain",
    "ReceiveResult",
    "Receiver",
    "Sender",
    "SignalId",
    "Special",
    "SpecialCommand",
    "connect",
    "direct_connect",
)
