"""Application-defined signals routed to subscribed receivers: dharma's Signaler.

Design note. One ``threading.Lock`` guards the subscription table and the registry, and
every `emit` and `terminate` pushes to the receivers while holding it. Pushes only append
to a receiver's queue (they never block), so holding the lock is cheap, and it gives the
guarantee dharma has: all receivers see emits and terminates in one global order, and a
`terminate` after every emit that came before it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar, final

from ._bridge import (
    Defined,
    DirectSender,
    Receiver,
    Sender,
    SignalId,
    SpecialCommand,
    _check_signal_id,
    connect,
    direct_connect,
)

__all__ = ("Signaler", "SignalerStatistics")

P = TypeVar("P")


@final
@dataclass(frozen=True)
class SignalerStatistics:
    """A snapshot of a `Signaler`, from `Signaler.statistics`."""

    signals: int
    """Signal ids with at least one subscription."""
    subscriptions: int
    """Deliveries one emit of every subscribed id would make: the subscriptions of
    receivers still alive (a receiver subscribed twice counts twice)."""
    registered: int
    """Receivers, still alive, registered for control commands (`Signaler.terminate`)."""


@final
class Signaler(Generic[P]):
    """Routes signals (an id and a payload) to the receivers subscribed to the id.

    Share one signaler between threads and event loops by passing the object around
    (dharma clones it; here every reference is the same signaler). Every method may be
    called from any thread and never blocks for long.
    """

    __slots__ = ("__weakref__", "_lock", "_registry", "_subscribers")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, Sender[P]] = {}
        self._registry: list[DirectSender[P]] = []

    def subscribe(self, signal_id: SignalId, receiver: Receiver[P]) -> None:
        """Deliver every later ``emit(signal_id, …)`` to *receiver* as ``Defined(signal_id, …)``.

        Subscribing the same receiver twice delivers each emit twice, as in dharma.

        Raises:
            TypeError: *signal_id* is not an int or *receiver* not a `Receiver`.
            ValueError: *signal_id* is negative.
        """
        signal_id = _check_signal_id(signal_id)
        if not isinstance(receiver, Receiver):
            raise TypeError(f"subscribe() needs a Receiver, not {receiver!r}")
        with self._lock:
            sender = self._subscribers.get(signal_id)
            if sender is None:
                sender = self._subscribers[signal_id] = Sender()
            connect(sender, receiver)

    def register(self, receiver: Receiver[P]) -> None:
        """Make *receiver* get control commands: `terminate` sends it ``Special(TERMINATE)``.

        Raises:
            TypeError: *receiver* is not a `Receiver`.
        """
        if not isinstance(receiver, Receiver):
            raise TypeError(f"register() needs a Receiver, not {receiver!r}")
        sender: DirectSender[P] = DirectSender()
        direct_connect(sender, receiver)
        with self._lock:
            self._registry.append(sender)

    def emit(self, signal_id: SignalId, payload: P) -> None:
        """Send ``Defined(signal_id, payload)`` to every receiver subscribed to *signal_id*.

        With no subscriber the signal is dropped. Never blocks; any thread.

        Raises:
            TypeError: *signal_id* is not an int.
            ValueError: *signal_id* is negative.
        """
        signal_id = _check_signal_id(signal_id)
        with self._lock:
            sender = self._subscribers.get(signal_id)
            if sender is not None:
                sender._push(Defined(signal_id, payload))  # send_defined, id checked above

    def terminate(self) -> None:
        """Send ``Special(SpecialCommand.TERMINATE)`` to every registered receiver.

        Receivers that are only subscribed get nothing. Every receiver sees it after every
        emit made before this call, so an event loop executes those before it finalizes.
        """
        with self._lock:
            registry = self._registry
            for sender in registry:
                sender.send_special(SpecialCommand.TERMINATE)
            # Drop the registrations of receivers that have been garbage-collected.
            if not all(sender.connected for sender in registry):
                self._registry = [sender for sender in registry if sender.connected]

    def statistics(self) -> SignalerStatistics:
        """A snapshot of the subscriptions and registrations. Takes no lock (the tables are
        copied in one C call each), so it answers while another thread emits."""
        senders = list(self._subscribers.values())
        registry = list(self._registry)
        return SignalerStatistics(
            signals=sum(1 for sender in senders if sender.receivers),
            subscriptions=sum(sender.receivers for sender in senders),
            registered=sum(1 for sender in registry if sender.connected),
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return f"<Signaler signals={stats.signals} registered={stats.registered}>"
