import select
import threading

from services.worker.inference import failure
from services.worker.settlements import Settlement, SettlementQueue, Settler
from shared.messaging.schemas import InferenceOutcome
from tests.unit.worker.fakes import WAIT_S, FakeMessage, FakeSender, pending


def test_a_settlement_wakes_the_channel_thread_that_waits_for_it() -> None:
    settlements = SettlementQueue()
    message = FakeMessage()
    # nothing queued: the channel thread would sleep until its timeout
    assert select.select([settlements], [], [], 0)[0] == []
    threading.Thread(target=settlements.put, args=(message, Settlement.ACK)).start()
    readable, _, _ = select.select([settlements], [], [], WAIT_S)
    assert readable == [settlements]  # woken by the settlement, not by the timeout
    assert settlements.apply() == 1
    assert message.settlements == ["ack"]
    assert select.select([settlements], [], [], 0)[0] == []  # applied: asleep again


def test_each_settlement_is_applied_once_in_order() -> None:
    settlements = SettlementQueue()
    messages = [FakeMessage() for _ in range(3)]
    for message, settlement in zip(messages, Settlement, strict=True):
        settlements.put(message, settlement)
    assert settlements.apply() == 3
    assert settlements.apply() == 0
    assert [m.settlements for m in messages] == [["ack"], ["requeue"], ["reject"]]


class UnreachableSender:
    def send(self, outcome: InferenceOutcome) -> None:
        raise ConnectionError("post-processing is unreachable")


def test_a_message_is_acknowledged_only_after_its_outcome_is_handed_on() -> None:
    settlements = SettlementQueue()
    sent, unsent = pending(), pending()
    outcome = failure(sent.request, "failed", "test", "an outcome")
    Settler(FakeSender(), settlements).settle(sent.message, outcome)
    Settler(UnreachableSender(), settlements).settle(unsent.message, outcome)
    settlements.apply()
    assert sent.message.settlements == ["ack"]
    assert unsent.message.settlements == ["requeue"]  # redelivered later, never lost
