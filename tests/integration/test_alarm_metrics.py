"""The custom metrics the alarms and the operations dashboard of template.yaml read are really emitted by the
handlers, with the names, namespace and dimensions they select on: each handler runs on moto and its Powertools EMF
output (what CloudWatch turns into metrics) is read back from stdout."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from oauth_keeper import root

from local import apigw
from local.apigw import LambdaContext
from local.cfn import resources_of_type
from tests.integration.test_refresh import connect
from tests.integration.test_sample_events import load

pytestmark = pytest.mark.integration


def emf_metrics(out: str) -> dict[str, list[dict[str, Any]]]:
    """Metric name -> the EMF documents (one JSON line each) that carry it, in the order printed."""
    found: dict[str, list[dict[str, Any]]] = {}
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                found.setdefault(metric["Name"], []).append(document)
    return found


def _values(value: float | list[float]) -> list[float]:
    """An EMF metric's values: Powertools writes a list, a single value may also stand alone."""
    return value if isinstance(value, list) else [value]


def custom_metrics_alarms_read() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Metric name -> (namespace, dimensions) for every metric outside AWS/* that an alarm of the template reads."""
    read = {}
    for res in resources_of_type("AWS::CloudWatch::Alarm").values():
        props = res["Properties"]
        metrics = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m] or [props]
        for metric in metrics:
            if not metric["Namespace"].startswith("AWS/"):
                read[metric["MetricName"]] = (metric["Namespace"], metric.get("Dimensions", []))
    return read


def _sweep(tiktok, browser, clock) -> None:
    import sweeper_handler

    sweeper_handler.handler(load("sweeper"), LambdaContext("SweeperFunction"))


def _refresh_one(tiktok, browser, clock, *, then: Callable[[], None] = lambda: None) -> None:
    """Connect, wait until the connection is due, run `then` (a fault), and let the worker handler refresh it."""
    import refresh_worker_handler

    connection_id = connect(browser, tiktok)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())
    then()
    body = json.dumps({"connection_id": connection_id})
    refresh_worker_handler.handler({"Records": [{"messageId": "m1", "body": body}]},
                                   LambdaContext("RefreshWorkerFunction"))


def _refresh_failing(tiktok, browser, clock) -> None:
    _refresh_one(tiktok, browser, clock, then=lambda: tiktok.fail_next(1, "5xx"))


def _refresh_with_a_refused_client_secret(tiktok, browser, clock) -> None:
    # Rotated in TikTok's portal, not yet in SSM: TikTok answers invalid_client.
    _refresh_one(tiktok, browser, clock, then=lambda: tiktok.rotate_client_secret("rotated-in-the-portal"))


def _token_read_after_an_owner_rewrite(tiktok, browser, clock) -> None:
    """Someone with write access to the table moved the connection to another owner: its tokens no longer open."""
    connection_id = connect(browser, tiktok)
    boto3.client("dynamodb").update_item(
        TableName=os.environ["CONNECTIONS_TABLE"], Key={"connection_id": {"S": connection_id}},
        UpdateExpression="SET owner_id = :o", ExpressionAttributeValues={":o": {"S": "owner-2"}})
    answer = apigw.invoke("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-2")
    assert answer["statusCode"] == 500


# Metric -> a handler run that must emit it. Every custom metric an alarm reads needs a row here.
SCENARIOS: dict[str, Callable[..., None]] = {
    "SweepSucceeded": _sweep,
    "RefreshSucceeded": _refresh_one,
    "RefreshFailed": _refresh_failing,
    "CircuitBreakerOpen": _refresh_with_a_refused_client_secret,
    "TokenIntegrityFailures": _token_read_after_an_owner_rewrite,
}


def _work(connection_id: str, *, force: bool = False) -> None:
    import refresh_worker_handler

    body = json.dumps({"connection_id": connection_id, **({"force": True} if force else {})})
    refresh_worker_handler.handler({"Records": [{"messageId": "m1", "body": body}]},
                                   LambdaContext("RefreshWorkerFunction"))


def _refresh_failing_after_the_access_token_ended(tiktok, browser, clock) -> str:
    """Eager policy: with its access token gone, one failed refresh puts the connection at risk."""
    connection_id = connect(browser, tiktok)
    clock.advance(root.container().connections.get(connection_id).access_expires_at + 1 - clock.now())
    tiktok.fail_next(1, "5xx")
    _work(connection_id)
    return connection_id


def _refresh_recovering(tiktok, browser, clock) -> None:
    connection_id = _refresh_failing_after_the_access_token_ended(tiktok, browser, clock)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())
    _work(connection_id)


def _refresh_of_a_revoked_grant(tiktok, browser, clock) -> None:
    _refresh_one(tiktok, browser, clock, then=lambda: tiktok.revoke_user(tiktok.users["alice"].open_id))


def _refreshes_during_an_outage(tiktok, browser, clock) -> None:
    from oauth_keeper.usecases.breaker import OUTAGE_WINDOW

    connection_id = connect(browser, tiktok)
    tiktok.set_outage("5xx")
    for _ in range(OUTAGE_WINDOW):  # every call of the container's window failed: the provider is down
        _work(connection_id, force=True)


def _refresh_answered_429_with_retry_after(tiktok, browser, clock) -> None:
    # The simulated TikTok sends no Retry-After: the provider client's answer is what the refresher sees.
    from oauth_keeper.adapters.provider_http import HttpProviderClient
    from oauth_keeper.domain.errors import FailureKind, ProviderError

    def rate_limited(*args, **kwargs):
        raise ProviderError("Too many requests", code="rate_limit_exceeded", kind=FailureKind.TRANSIENT,
                            http_status=429, retry_after=120)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HttpProviderClient, "refresh", rate_limited)
        _refresh_one(tiktok, browser, clock)


# Metric -> a handler run that must emit it: every custom metric the dashboard reads beyond the alarms'.
DASHBOARD_SCENARIOS: dict[str, Callable[..., object]] = {
    **SCENARIOS,
    "RefreshOutcome": _refresh_one,
    "RefreshLatency": _refresh_one,
    "ConnectionsAtRisk": _refresh_failing_after_the_access_token_ended,
    "ConnectionsRecovered": _refresh_recovering,
    "NeedsReauthTransitions": _refresh_of_a_revoked_grant,
    "ProviderPaused": _sweep,
    "ProviderOutage": _refreshes_during_an_outage,
    "ProviderRateLimited": _refresh_answered_429_with_retry_after,
}


def custom_metrics_the_dashboard_reads() -> dict[str, tuple[str, frozenset[str], dict[str, str]]]:
    """Metric name -> (namespace, the dimension names it is filed under, the values a graph requires) for every
    metric outside AWS/* the operations dashboard graphs."""
    from tests.template.test_template_structure import dashboard_metrics

    read: dict[str, tuple[str, frozenset[str], dict[str, str]]] = {}
    for graphed in dashboard_metrics():
        if not graphed.namespace.startswith("AWS/"):
            names = graphed.search if graphed.search is not None else frozenset(graphed.dimensions)
            fixed = {k: v for k, v in graphed.dimensions.items() if k == "service" or graphed.search is None}
            read[graphed.name] = (graphed.namespace, names, fixed)
    return read


def test_every_custom_metric_an_alarm_reads_has_a_handler_run_that_emits_it():
    read = set(custom_metrics_alarms_read())
    assert read, "no alarm reads a custom metric?"
    assert read <= set(SCENARIOS), f"add a scenario for {sorted(read - set(SCENARIOS))}"


def _directive(document: dict, metric: str) -> dict:
    """The EMF directive of `document` that declares `metric` (its namespace and dimension sets)."""
    return next(d for d in document["_aws"]["CloudWatchMetrics"] if metric in {m["Name"] for m in d["Metrics"]})


@pytest.mark.parametrize("metric", sorted(SCENARIOS))
def test_the_handler_emits_the_metric_with_the_namespace_and_dimensions_its_alarm_reads(
        metric, stack, tiktok, browser, clock, capfd):
    namespace, dimensions = custom_metrics_alarms_read()[metric]
    capfd.readouterr()
    SCENARIOS[metric](tiktok, browser, clock)
    documents = emf_metrics(capfd.readouterr().out).get(metric)
    assert documents, f"{metric} was not emitted"
    for document in documents:
        directive = _directive(document, metric)
        assert directive["Namespace"] == namespace
        # CloudWatch files an EMF metric under exactly its dimension set: the alarm must name that set.
        assert directive["Dimensions"] == [[d["Name"] for d in dimensions]]
        assert {d["Name"]: document[d["Name"]] for d in dimensions} == {d["Name"]: d["Value"] for d in dimensions}
        assert sum(_values(document[metric])) >= 1


def test_every_custom_metric_the_dashboard_reads_has_a_handler_run_that_emits_it():
    read = set(custom_metrics_the_dashboard_reads())
    assert read, "the dashboard reads no custom metric?"
    assert read <= set(DASHBOARD_SCENARIOS), f"add a scenario for {sorted(read - set(DASHBOARD_SCENARIOS))}"


@pytest.mark.parametrize("metric", sorted(set(DASHBOARD_SCENARIOS) - set(SCENARIOS)))
def test_the_handler_emits_the_metric_under_the_namespace_and_dimensions_the_dashboard_reads(
        metric, stack, tiktok, browser, clock, capfd):
    namespace, dimensions, fixed = custom_metrics_the_dashboard_reads()[metric]
    capfd.readouterr()
    DASHBOARD_SCENARIOS[metric](tiktok, browser, clock)
    documents = emf_metrics(capfd.readouterr().out).get(metric)
    assert documents, f"{metric} was not emitted"
    for document in documents:
        directive = _directive(document, metric)
        assert directive["Namespace"] == namespace
        # CloudWatch files an EMF metric under exactly its dimension set: a SEARCH names that whole set.
        assert [set(names) for names in directive["Dimensions"]] == [set(dimensions)]
        assert {name: document[name] for name in fixed} == fixed
        assert all(isinstance(document[name], str) and document[name] for name in dimensions)
    assert sum(v for document in documents for v in _values(document[metric])) >= (metric != "ProviderPaused")


def test_refresh_outcomes_are_counted_by_outcome_and_reason(stack, tiktok, browser, clock, capfd):
    capfd.readouterr()
    _refresh_of_a_revoked_grant(tiktok, browser, clock)
    (document,) = emf_metrics(capfd.readouterr().out)["RefreshOutcome"]
    assert (document["outcome"], document["reason"], _values(document["RefreshOutcome"])) == (
        "needs_reauth", "invalid_grant", [1.0])


def test_the_sweep_reports_each_provider_s_breaker_paused_only_while_it_is_open(stack, tiktok, browser, clock,
                                                                               capfd):
    capfd.readouterr()
    _sweep(tiktok, browser, clock)
    (closed,) = emf_metrics(capfd.readouterr().out)["ProviderPaused"]
    _refresh_with_a_refused_client_secret(tiktok, browser, clock)  # invalid_client: the breaker opens
    capfd.readouterr()
    _sweep(tiktok, browser, clock)
    (opened,) = emf_metrics(capfd.readouterr().out)["ProviderPaused"]
    assert [(d["provider"], _values(d["ProviderPaused"])) for d in (closed, opened)] == [
        ("tiktok", [0.0]), ("tiktok", [1.0])]


def test_no_emf_line_is_printed_while_metrics_are_disabled_as_make_demo_and_make_dev_run(
        stack, tiktok, browser, clock, capfd, monkeypatch):
    from oauth_keeper.observability import metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    capfd.readouterr()
    try:
        _refresh_of_a_revoked_grant(tiktok, browser, clock)
        _sweep(tiktok, browser, clock)
    finally:
        metrics.clear_metrics()  # disabled, Powertools never flushed them: the next test must not inherit them
    # Powertools' own ColdStart metric (its single_metric, on a container's first invocation) ignores the switch.
    assert set(emf_metrics(capfd.readouterr().out)) - {"ColdStart"} == set()


def test_a_sweep_emits_its_heartbeat_once_per_run(stack, tiktok, browser, clock, capfd):
    import sweeper_handler

    capfd.readouterr()
    for _ in range(2):
        sweeper_handler.handler(load("sweeper"), LambdaContext("SweeperFunction"))
    (first, second) = emf_metrics(capfd.readouterr().out)["SweepSucceeded"]
    assert _values(first["SweepSucceeded"]) == _values(second["SweepSucceeded"]) == [1]


def test_a_failing_sweep_emits_no_heartbeat(stack, tiktok, browser, clock, capfd):
    """The sweep found a due connection but the refresh queue is gone: nothing was queued, so nothing may tell
    the heartbeat alarm that all is well."""
    import sweeper_handler

    connection_id = connect(browser, tiktok)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())
    sqs = boto3.client("sqs")
    sqs.delete_queue(QueueUrl=stack.env["REFRESH_QUEUE_URL"])
    capfd.readouterr()
    with pytest.raises(ClientError, match="QueueDoesNotExist|NonExistentQueue"):
        sweeper_handler.handler(load("sweeper"), LambdaContext("SweeperFunction"))
    emitted = emf_metrics(capfd.readouterr().out)
    assert "SweepSucceeded" not in emitted
