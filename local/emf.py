"""The local console's sink for CloudWatch EMF: keeps the handlers' metric lines off `make demo`'s and `make dev`'s
output and totals them.

In Lambda, Powertools Metrics prints each metric blob (Embedded Metric Format: one JSON object per line with an
`_aws.CloudWatchMetrics` block) to stdout, and CloudWatch Logs turns it into metrics. Locally nothing reads them,
and POWERTOOLS_METRICS_DISABLED does not stop them all: the cold-start metric (`single_metric`) and a blob that
reaches 100 values are printed whatever it says. So the local entry points put this sink in front of stdout.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

EMF_START = '{"_aws"'  # how every Powertools EMF blob begins (json.dumps of a dict whose first key is _aws)


class EmfSink:
    """A text stream in front of `stream`: EMF lines are kept (totalled per metric name), everything else is
    written through unchanged. Safe for the dev server's threads: `print` writes a line and its newline in two
    calls, so a line that starts as EMF is held per thread until its newline arrives."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._held = threading.local()
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._blobs = 0

    def write(self, text: str) -> int:
        held = getattr(self._held, "text", "")
        if not held and not text.startswith(EMF_START):
            return self.stream.write(text)
        held += text
        line, newline, rest = held.partition("\n")
        if not newline:
            self._held.text = held
            return len(text)
        self._held.text = ""
        if not self._keep(line):
            self.stream.write(line + "\n")
        if rest:
            self.write(rest)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, buffer, ...: the real stream's
        return getattr(self.stream, name)

    def totals(self) -> dict[str, float]:
        """{metric name: sum of its values} over every EMF blob kept so far."""
        with self._lock:
            return dict(self._totals)

    def summary(self) -> str:
        """One line for the console, e.g. `ColdStart 1, WebhookDisconnects 2 (3 EMF blobs kept off the console)`."""
        with self._lock:
            if not self._blobs:
                return "none"
            figures = ", ".join(f"{name} {value:g}" for name, value in sorted(self._totals.items()))
            return f"{figures} ({self._blobs} EMF blobs kept off the console)"

    def _keep(self, line: str) -> bool:
        try:
            blob = json.loads(line)
            names = [metric["Name"] for directive in blob["_aws"]["CloudWatchMetrics"]
                     for metric in directive["Metrics"]]
        except (ValueError, KeyError, TypeError):
            return False  # only looked like EMF: shown as it is
        with self._lock:
            self._blobs += 1
            for name in names:
                value = blob.get(name, 0)
                self._totals[name] += sum(value) if isinstance(value, list) else value
        return True


@contextmanager
def emf_kept_off_stdout() -> Iterator[EmfSink]:
    """sys.stdout goes through an EmfSink until the block ends; yields the sink (for its totals)."""
    sink = EmfSink(sys.stdout)
    previous, sys.stdout = sys.stdout, sink
    try:
        yield sink
    finally:
        sys.stdout = previous
