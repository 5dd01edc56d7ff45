import pytest
from confluent_kafka import KafkaError

from connectors.source.exceptions import DeliveryFailed
from connectors.source.producer import DeliveryTracker


def _ticket(tracker, end_lsn, records):
    ticket = tracker.open(end_lsn, commit_time_us=end_lsn * 10)
    ticket.outstanding = records
    ticket.sealed = True
    return ticket


def test_confirmable_lsn_waits_for_every_earlier_transaction():
    tracker = DeliveryTracker()
    first = _ticket(tracker, 100, 2)
    second = _ticket(tracker, 200, 1)
    second.delivered(None)  # the later transaction is acked first
    assert not tracker.advance()
    assert tracker.confirmed_lsn is None
    first.delivered(None)
    assert not tracker.advance()  # one record of the first still out
    first.delivered(None)
    assert tracker.advance()
    assert tracker.confirmed_lsn == 200
    assert tracker.confirmed_commit_time_us == 2000
    assert tracker.in_flight == 0


def test_unsealed_ticket_blocks_even_with_nothing_outstanding():
    tracker = DeliveryTracker()
    ticket = tracker.open(50)
    assert not tracker.advance()
    ticket.sealed = True
    assert tracker.advance()
    assert tracker.confirmed_lsn == 50


def test_partial_batches_and_heartbeats_never_move_the_lsn_backwards():
    tracker = DeliveryTracker()
    _ticket(tracker, 300, 0)
    _ticket(tracker, 0, 0)  # an early-sent part of a large transaction / a heartbeat record
    tracker.advance()
    assert tracker.confirmed_lsn == 300


def test_a_failed_delivery_stops_confirmation():
    tracker = DeliveryTracker()
    ticket = _ticket(tracker, 100, 1)
    ticket.delivered(KafkaError(KafkaError._MSG_TIMED_OUT))
    with pytest.raises(DeliveryFailed):
        tracker.advance()
    assert tracker.confirmed_lsn is None
