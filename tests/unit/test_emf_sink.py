"""local/emf.py: the handlers' EMF lines stay off the local console and are totalled; everything else gets through."""

from __future__ import annotations

import io
import json
import sys
import threading

import pytest
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from local.emf import EmfSink, emf_kept_off_stdout

pytestmark = pytest.mark.unit


def test_powertools_metrics_are_kept_and_totalled_and_other_output_passes_through(capsys):
    """single_metric prints its own blob, as the cold-start metric does (the Metrics instances share one metric
    set across the process, so flushing one here would print what other tests left in it)."""
    before = sys.stdout
    with emf_kept_off_stdout() as sink:
        print("[1] a step of the demo")
        for value in (2, 1):
            with single_metric(name="WebhookDisconnects", unit=MetricUnit.Count, value=value, namespace="Test"):
                pass
        with single_metric(name="ColdStart", unit=MetricUnit.Count, value=1, namespace="Test") as metric:
            metric.add_dimension(name="function_name", value="WebhookFunction")
        print('{"level": "INFO", "message": "a JSON log line, not a metric"}')
        print('{"_aws": "not an EMF blob after all"}')
    assert sys.stdout is before  # the real stream is back afterwards
    assert capsys.readouterr().out.splitlines() == [
        "[1] a step of the demo", '{"level": "INFO", "message": "a JSON log line, not a metric"}',
        '{"_aws": "not an EMF blob after all"}']
    assert sink.totals() == {"WebhookDisconnects": 3.0, "ColdStart": 1.0}
    assert sink.summary() == "ColdStart 1, WebhookDisconnects 3 (3 EMF blobs kept off the console)"


def test_only_emf_lines_are_held_back_even_when_threads_interleave_their_writes():
    out = io.StringIO()
    sink = EmfSink(out)
    blob = json.dumps({"_aws": {"Timestamp": 0, "CloudWatchMetrics": [
        {"Namespace": "Test", "Dimensions": [["service"]], "Metrics": [{"Name": "Refreshes", "Unit": "Count"}]}]},
        "service": "t", "Refreshes": [1.0]}, separators=(",", ":"))
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(50):
            print(blob, file=sink)  # two writes: the blob, then its newline
            print(f"request {n}-{i}", file=sink)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(f"request {n}-{i}" for n in range(8) for i in range(50))
    assert sink.totals() == {"Refreshes": 400.0}


def test_a_line_that_only_starts_like_emf_is_shown_whole():
    out = io.StringIO()
    sink = EmfSink(out)
    sink.write('{"_aws": ')
    sink.write('[1, 2]}\nnext line\n')
    assert out.getvalue() == '{"_aws": [1, 2]}\nnext line\n'
    assert sink.summary() == "none"
