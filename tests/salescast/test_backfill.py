import io
import json
import sys

import orjson
import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError
from kafka.future import Future

from salescast import backfill, cli
from salescast.backfill import Message, encode, load, message_key, produce
from salescast.stream import kafka
from salescast.stream.core.settings import KafkaSettings, Settings

ORDER = {"order_id": "o-1", "user_id": "u-1", "ts": 3000, "items": [{"sku": "sku-1", "qty": 1, "unit_price": 9.5}]}
CLICK = {"user_id": "u-2", "sku": "sku-1", "action": "view", "ts": 1000}
STOCK = {"sku": "sku-1", "on_hand": 5, "ts": 2000}


def line(kind, record) -> bytes:
    return orjson.dumps({**record, "topic": kind}) + b"\n"


class FakeProducer:
    """kafka-python's producer as backfill uses it: send() gives a future, flush() completes them all."""

    def __init__(self, fail_async=(), raise_on=None, stuck=()):
        self.sent, self.pending, self.flushes, self.closed = [], [], 0, False
        self.fail_async = fail_async  # values whose delivery fails
        self.raise_on = raise_on or {}  # value -> exception send() raises
        self.stuck = stuck  # values whose delivery never completes (kafka-python's idempotent producer, brokers gone)

    def send(self, topic, value=None, key=None):
        if value in self.raise_on:
            raise self.raise_on[value]
        self.sent.append((topic, key, value))
        future = Future()
        self.pending.append((future, value))
        return future

    def flush(self, timeout=None):
        self.flushes += 1
        for future, value in self.pending:
            if value in self.stuck:
                continue
            if value in self.fail_async:
                future.failure(NotLeaderForPartitionError("gone"))
            else:
                future.success(object())
        self.pending = [(future, value) for future, value in self.pending if not future.is_done]
        if self.pending:
            raise KafkaTimeoutError("Timeout waiting for future")

    def close(self, timeout=None):
        self.flush(timeout)
        self.closed = True


def test_records_are_sent_in_ts_order_ties_in_file_order_without_their_topic():
    lines = [line("orders", ORDER), line("clicks", CLICK), line("inventory", STOCK),
             line("clicks", {**CLICK, "user_id": "u-3", "ts": 2000}), b"\n",
             line("orders", {"order_id": "o-2", "ts": "yesterday"})]
    loaded = load(lines)
    assert [(m.line, m.kind) for m in loaded.messages] == [
        (6, "orders"),  # a ts that is not an integer goes first, as in replay; the worker dead-letters it
        (2, "clicks"), (3, "inventory"), (4, "clicks"), (1, "orders")]
    assert [orjson.loads(m.value) for m in loaded.messages[1:]] == [
        CLICK, STOCK, {**CLICK, "user_id": "u-3", "ts": 2000}, ORDER]
    assert loaded.skipped == [] and loaded.counts() == {"orders": 2, "clicks": 2, "inventory": 1}


def test_keys_are_the_ones_the_contract_suggests():
    assert message_key("orders", ORDER) == b"o-1"
    assert message_key("clicks", CLICK) == b"u-2"
    assert message_key("inventory", STOCK) == b"sku-1"
    assert message_key("orders", {"ts": 1}) is None  # invalid, sent without a key: the worker dead-letters it
    assert message_key("clicks", {"user_id": 17}) is None
    assert encode(4, "orders", {**ORDER, "topic": "orders"}) == Message(4, "orders", b"o-1", orjson.dumps(ORDER))


def test_unusable_lines_are_skipped_by_line_number_and_invalid_records_kept():
    lines = [b"{not json\n", line("clicks", CLICK), b'{"ts": 5}\n', line("payments", {"ts": 1}), b"[1, 2]\n",
             b"\n", line("orders", {"order_id": "o-9", "ts": 7, "items": []}), b"\xff\xfe\n"]
    loaded = load(lines)
    assert [(s.line, s.reason) for s in loaded.skipped] == [
        (1, "not_json"), (3, "schema"), (4, "schema"), (5, "schema"), (8, "not_json")]
    assert "payments" in loaded.skipped[2].error
    assert [(m.line, m.kind, m.key) for m in loaded.messages] == [(7, "orders", b"o-9"), (2, "clicks", b"u-2")]


def test_produce_sends_each_record_to_its_topic_and_counts_deliveries():
    settings = Settings(kafka=KafkaSettings(topics={**KafkaSettings().topics, "orders": "shop1.orders"}))
    messages = load([line("orders", ORDER), line("clicks", CLICK), line("inventory", STOCK)]).messages
    producer = FakeProducer()
    delivery = produce(messages, producer, settings.kafka.topic)
    assert producer.sent == [("clicks", b"u-2", orjson.dumps(CLICK)), ("inventory", b"sku-1", orjson.dumps(STOCK)),
                             ("shop1.orders", b"o-1", orjson.dumps(ORDER))]
    assert producer.flushes == 1 and producer.pending == []
    assert delivery.sent == delivery.delivered == {"orders": 1, "clicks": 1, "inventory": 1}
    assert delivery.failed == [] and delivery.taken == 3 and delivery.stopped is None


def test_produce_reports_failed_deliveries_and_stops_when_the_cluster_is_out_of_reach():
    messages = [encode(n, "clicks", {**CLICK, "ts": n}) for n in range(1, 7)]
    values = [m.value for m in messages]
    producer = FakeProducer(fail_async={values[0]}, raise_on={values[1]: MessageSizeTooLargeError("big"),
                                                              values[3]: KafkaTimeoutError("no metadata")})
    delivery = produce(messages, producer, Settings().kafka.topic)
    assert sorted(m.line for m, _ in delivery.failed) == [1, 2, 4]
    errors = dict((m.line, error) for m, error in delivery.failed)
    assert "MessageSizeTooLargeError" in errors[2] and "big" in errors[2]
    assert delivery.sent == {"clicks": 2} and delivery.delivered == {"clicks": 1}  # line 3 went through
    assert delivery.taken == 4 and "line 4" in delivery.stopped and producer.flushes == 1


def test_produce_gives_up_on_deliveries_that_stall():
    now = [0.0]

    def clock():
        now[0] += 1.0  # a second a call
        return now[0]

    messages = [encode(n, "orders", {**ORDER, "ts": n}) for n in range(1, 6)]
    producer = FakeProducer(stuck={messages[0].value, messages[3].value}, fail_async={messages[4].value})
    delivery = produce(messages, producer, Settings().kafka.topic, stall_s=30, clock=clock)
    assert delivery.sent == {"orders": 5} and producer.flushes >= 1 and "out of reach" in delivery.stopped
    assert delivery.delivered == {"orders": 2}  # completed behind the oldest, which never did
    assert [(m.line, "not acknowledged" in error) for m, error in delivery.failed] == [
        (1, True), (4, True), (5, False)]
    backfill.close(producer)  # does not wait for ever either
    assert producer._closed


def test_ctrl_c_stops_the_sending_and_what_was_sent_is_still_delivered():
    messages = [encode(n, "clicks", {**CLICK, "ts": n}) for n in range(1, 6)]
    producer = FakeProducer(raise_on={messages[3].value: KeyboardInterrupt()})
    delivery = produce(messages, producer, Settings().kafka.topic)
    assert delivery.delivered == {"clicks": 3} and delivery.failed == [] and delivery.taken == 3
    assert delivery.stopped.startswith("interrupted")


def test_produce_reports_progress_every_few_seconds():
    now = [0.0]

    def clock():
        now[0] += 1.0  # a second a call
        return now[0]

    seen = []
    messages = [encode(n, "clicks", CLICK) for n in range(1, 21)]
    produce(messages, FakeProducer(), Settings().kafka.topic, progress=lambda d: seen.append(d.sent_total),
            every_s=5, clock=clock)
    assert seen and len(seen) < 20 and seen == sorted(seen)


def _run(tmp_path, lines, producer, path=None, **options):
    path = path or tmp_path / "history.jsonl"
    if lines is not None:
        path.write_bytes(b"".join(lines))
    out, err = io.StringIO(), io.StringIO()
    code = backfill.run(str(path), Settings(), lambda: producer, out=out, err=err, **options)
    return code, out.getvalue(), err.getvalue()


def test_run_prints_the_summary_and_reports_skipped_lines(tmp_path):
    producer = FakeProducer()
    lines = [line("orders", ORDER), b"oops\n", line("clicks", CLICK), line("clicks", {**CLICK, "ts": 4000})]
    code, out, err = _run(tmp_path, lines, producer)
    assert code == 0 and producer.closed
    assert out.startswith("backfill: 3 records produced (orders 1, clicks 2, inventory 0), 1 lines skipped in ")
    assert out.rstrip().endswith(" s") and out.count("\n") == 1
    assert "line 2 skipped (not_json)" in err and "read 3 records" in err
    assert not (tmp_path / "history.jsonl.undelivered.jsonl").exists()


def test_run_exits_1_and_keeps_what_was_not_delivered(tmp_path):
    records = [{**CLICK, "ts": ts} for ts in range(10)]
    values = [orjson.dumps(record) for record in records]
    producer = FakeProducer(fail_async={values[2], values[7]}, raise_on={values[8]: KafkaTimeoutError("down")})
    code, out, err = _run(tmp_path, [line("clicks", record) for record in records], producer)
    assert code == 1
    assert out.startswith("backfill: 6 records produced (orders 0, clicks 6, inventory 0), 0 lines skipped")
    assert "4 records were not delivered" in err and "NotLeaderForPartitionError" in err and "lines 3, 8" in err
    kept = tmp_path / "history.jsonl.undelivered.jsonl"
    assert f"salescast backfill {kept}" in err
    assert [json.loads(text) for text in kept.read_text().splitlines()] == [
        {**records[ts], "topic": "clicks"} for ts in (2, 7, 8, 9)]  # failed, and never sent after the stop


def test_run_reads_standard_input_and_reports_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(line("inventory", STOCK))))
    producer = FakeProducer()
    code, out, _ = _run(tmp_path, None, producer, path="-")
    assert code == 0 and out.startswith("backfill: 1 records produced (orders 0, clicks 0, inventory 1)")
    code, out, err = _run(tmp_path, None, FakeProducer(), path=tmp_path / "none" / "x.jsonl")
    assert code == 1 and out == "" and "cannot read" in err


def test_an_empty_file_needs_no_kafka(tmp_path):
    def no_kafka():
        raise AssertionError("no producer wanted")

    (tmp_path / "empty.jsonl").write_bytes(b"\n")
    out, err = io.StringIO(), io.StringIO()
    assert backfill.run(str(tmp_path / "empty.jsonl"), Settings(), no_kafka, out=out, err=err) == 0
    assert out.getvalue().startswith("backfill: 0 records produced")


@pytest.fixture
def fake_kafka(monkeypatch):
    producer = FakeProducer()
    monkeypatch.setattr(cli, "_producer", lambda settings, **tuning: producer)
    monkeypatch.setattr(kafka, "check_connection", lambda settings: None)  # this Kafka takes any connection
    return producer


def test_the_backfill_command_produces_through_the_shared_producer(tmp_path, fake_kafka, capsys):
    (tmp_path / "h.jsonl").write_bytes(line("orders", ORDER) + line("clicks", CLICK))
    assert cli.main(["backfill", str(tmp_path / "h.jsonl")]) == 0
    assert [key for _, key, _ in fake_kafka.sent] == [b"u-2", b"o-1"] and fake_kafka.closed
    assert capsys.readouterr().out.startswith("backfill: 2 records produced")


def test_generate_to_kafka_produces_through_the_same_path(fake_kafka):
    assert cli.main(["generate", "--days", "2", "--skus", "5", "--users", "50", "--limit", "40",
                     "--ignore-promotions"]) == 0
    assert len(fake_kafka.sent) == 40 and fake_kafka.closed
    assert all(key is not None and b'"topic"' not in value for _, key, value in fake_kafka.sent)
