"""Settlements: what becomes of each broker message once its job is decided (ack, requeue,
reject), handed from the threads that decide to the one thread that owns the channel.

A broker channel is not safe to use from several threads, so other threads only queue the
settlement; the consumer thread applies it. So that an ack does not wait for the consumer
thread's next timeout, every queued settlement also writes a byte to a pipe the consumer thread
waits on (beside the broker socket): it wakes at once and applies what is queued.

A job's message is acknowledged only once its outcome is handed on (``Settler``): a worker that
dies in between leaves the message to be redelivered, never a job without a result.
"""

from __future__ import annotations

import contextlib
import os
import queue
from enum import Enum
from typing import Protocol

from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome

log = get_logger(__name__)


class Settlement(Enum):
    ACK = "ack"
    REQUEUE = "requeue"  # could not be handled now (database down, engine error): try again
    REJECT = "reject"  # can never be handled: to the dead-letter exchange


class SettleableMessage(Protocol):
    """What a settlement needs of a broker message (kombu's ``Message`` is one)."""

    def ack(self) -> None: ...

    def requeue(self) -> None: ...

    def reject(self) -> None: ...


class OutcomeSender(Protocol):
    def send(self, outcome: InferenceOutcome) -> None: ...


class SettlementQueue:
    """Settlements queued by any thread, applied by the channel's thread; ``fileno`` is
    readable while some are waiting, so the channel's thread can ``select`` on it."""

    def __init__(self) -> None:
        self._queued: queue.SimpleQueue[tuple[SettleableMessage, Settlement]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def fileno(self) -> int:
        return self._wake_read

    def put(self, message: SettleableMessage, settlement: Settlement) -> None:
        self._queued.put((message, settlement))
        self.wake()

    def wake(self) -> None:
        """Wake the channel's thread (``put`` does; so does a stop, with nothing to settle)."""
        # a full pipe is full of wake-ups already: the reader is certain to wake
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def apply(self) -> int:
        """Apply every queued settlement (on the channel's thread); returns how many."""
        self._clear_wake_ups()  # first: a settlement queued from now on wakes the reader again
        applied = 0
        while True:
            try:
                message, settlement = self._queued.get_nowait()
            except queue.Empty:
                return applied
            applied += 1
            try:
                if settlement is Settlement.ACK:
                    message.ack()
                elif settlement is Settlement.REQUEUE:
                    message.requeue()
                else:
                    message.reject()
            except Exception as error:
                # Its channel died meanwhile: the broker will redeliver the message, and
                # redelivered jobs are idempotent.
                log.warning("settle_failed", settlement=settlement.value, error=repr(error))

    def close(self) -> None:
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _clear_wake_ups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass


class Settler:
    """Hands outcomes on and queues the settlement that follows (from any thread)."""

    def __init__(self, sender: OutcomeSender, settlements: SettlementQueue) -> None:
        self.sender = sender
        self.settlements = settlements

    def settle(self, message: SettleableMessage, outcome: InferenceOutcome | None) -> None:
        """Send ``outcome`` (``None``: nothing to send), then ack; requeue if it was not sent."""
        settlement = Settlement.ACK
        if outcome is not None:
            try:
                self.sender.send(outcome)
            except Exception:
                log.exception("outcome_send_failed", job_id=str(outcome.job_id))
                settlement = Settlement.REQUEUE
        self.settlements.put(message, settlement)

    def requeue(self, message: SettleableMessage) -> None:
        self.settlements.put(message, Settlement.REQUEUE)

    def wake(self) -> None:
        self.settlements.wake()
