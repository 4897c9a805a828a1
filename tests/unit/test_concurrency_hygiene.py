"""What the refresh worker's threads share is made safe to share: AWS clients, data-key unwrapping, metrics.

Each test makes the race as likely as it can be (threads released together at the racy step) and asserts what
a user would pay for if it were lost: a second client or KMS call, a lost metric value.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from oauth_keeper.adapters import aws
from oauth_keeper.adapters.kms import DataKeys
from oauth_keeper.observability import MetricUnit, metrics, record_metric

from local.memory import FakeKms

pytestmark = pytest.mark.unit
THREADS = 8


def test_the_worker_threads_share_one_client_per_service_created_once(monkeypatch):
    import boto3

    created: list[str] = []
    gate = threading.Barrier(THREADS)
    real_session = boto3.session.Session

    class SlowSession(real_session):  # creating a client takes tens of ms in Lambda: a wide window
        def client(self, service, **kwargs):
            created.append(service)
            return object()

    monkeypatch.setattr(boto3.session, "Session", SlowSession)
    monkeypatch.setattr(boto3, "client", lambda *a, **k: pytest.fail("the default session is not thread-safe"))
    aws.reset()

    def first_use(_):
        gate.wait(timeout=5)
        return aws.client("kms")

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            clients = list(pool.map(first_use, range(THREADS)))
    finally:
        aws.reset()
    assert created == ["kms"] and len({id(c) for c in clients}) == 1


def test_aws_clients_have_deadlines_that_fit_inside_the_functions():
    config = aws._config()  # noqa: SLF001 - the one place the deadlines are set
    worst = aws.MAX_ATTEMPTS * (config.connect_timeout + config.read_timeout)
    assert config.retries["mode"] == "standard" and worst < 10  # the shortest function timeout (template)


class SlowKms(FakeKms):
    """A KMS whose Decrypt holds until every caller that is going to call it has had the chance."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def decrypt(self, CiphertextBlob: bytes, KeyId: str, **context) -> dict[str, bytes]:  # noqa: N803 - boto3's
        self.entered.set()
        self.release.wait(timeout=5)
        return super().decrypt(CiphertextBlob=CiphertextBlob, KeyId=KeyId, **context)


def test_a_cold_batch_unwraps_each_data_key_with_one_kms_call():
    kms = SlowKms()
    writer = DataKeys(lambda: kms, "arn:memory", lambda: 0.0)
    _, wrapped = writer.for_encryption()  # another container sealed these tokens
    reader = DataKeys(lambda: kms, "arn:memory", lambda: 0.0)  # a cold container reads them
    gate = threading.Barrier(THREADS)

    def read(_):
        gate.wait(timeout=5)
        return reader.for_decryption(wrapped)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(read, i) for i in range(THREADS)]
        assert kms.entered.wait(timeout=5)
        # Every thread is past the barrier; those that would call KMS too are about to. Give them the chance.
        for _ in range(200):
            if kms.calls.count("Decrypt") > 1:
                break
            threading.Event().wait(0.001)
        kms.release.set()
        keys = {f.result(timeout=5) for f in futures}
    assert kms.calls.count("Decrypt") == 1 and len(keys) == 1
    assert reader.kms_calls == 1


def test_a_refused_unwrap_is_refused_for_every_waiting_thread_and_retried_later():
    kms = FakeKms()
    keys = DataKeys(lambda: kms, "arn:memory", lambda: 0.0)
    from oauth_keeper.domain.errors import TokenDecryptionError

    with pytest.raises(TokenDecryptionError):
        keys.for_decryption(b"\x00" * 60)
    with pytest.raises(TokenDecryptionError):  # not cached as a success, and no flight left behind
        keys.for_decryption(b"\x00" * 60)


def test_metrics_recorded_from_many_threads_lose_no_value(monkeypatch):
    class YieldingDict(dict):
        def get(self, key, default=None):  # the window between Powertools' read and write of a metric
            value = super().get(key, default)
            time.sleep(0)  # not a wait: releases the GIL, as any I/O between the two steps would
            return value

    monkeypatch.setattr(metrics.provider, "metric_set", YieldingDict())
    names = [f"Race{i}" for i in range(30)]
    gate = threading.Barrier(THREADS)

    def record(_):
        gate.wait(timeout=5)
        for name in names:
            record_metric(name, MetricUnit.Count, 1)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(record, range(THREADS)))
    recorded = {name: sum(metrics.provider.metric_set[name]["Value"]) for name in names}
    metrics.provider.metric_set.clear()
    assert recorded == {name: THREADS for name in names}
