"""The pure arithmetic of the cost model: DynamoDB item sizes and capacity units, refreshes per month, prices.

No I/O and no measurement here: `local.bench.cost` measures (item sizes, calls per refresh, CPU) and feeds
the figures to these functions; tests/unit/test_bench_model.py checks the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

KB = 1024
WRITE_UNIT_BYTES = 1 * KB  # one write request unit per started KB of the item
READ_UNIT_BYTES = 4 * KB  # one (strongly consistent) read request unit per started 4 KB
INDEX_ENTRY_OVERHEAD = 100  # bytes DynamoDB adds to every index entry
MONTH_SECONDS = 30 * 86_400  # "a month" in every figure below
DAY_SECONDS = 86_400
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one full vCPU at 1,769 MB; CPU scales with memory below that

# The sweep refreshes at access_expires_at - max(15 min, 20% of the lifetime) (shared/oauth_keeper/schedule.py).
EAGER_MIN_MARGIN = 15 * 60
EAGER_MARGIN_SHARE = 0.20


# ---- DynamoDB item size (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)

def number_size(value: int | float | Decimal) -> int:
    """1 byte per two significant digits (leading and trailing zeroes trimmed), plus 1 byte."""
    digits = Decimal(str(value)).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return (significant + 1) // 2 + 1


def value_size(value: Any) -> int:
    """The size of one attribute value, without its name."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | Decimal):
        return number_size(value)
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bytes | bytearray | memoryview):
        return len(bytes(value))
    if isinstance(value, list | tuple):  # List: 3 bytes, plus 1 byte per element
        return 3 + sum(1 + value_size(v) for v in value)
    if isinstance(value, Mapping):  # Map: 3 bytes, plus each element's name and 1 byte
        return 3 + sum(len(str(k).encode("utf-8")) + 1 + value_size(v) for k, v in value.items())
    if isinstance(value, set | frozenset):  # sets: the sum of their elements
        return sum(value_size(v) for v in value)
    raise TypeError(f"no DynamoDB size for {type(value).__name__}")


def item_size(item: Mapping[str, Any]) -> int:
    """Attribute name lengths plus value sizes. A None value is an absent attribute (the stores drop them)."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items() if value is not None)


def write_units(size: int) -> int:
    """Write request units of one write: ceil(size / 1 KB), at least 1."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool = True) -> float:
    """Read request units of one read: ceil(size / 4 KB), at least 1; eventually consistent costs half."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return units if consistent else units / 2


def index_entry_size(item: Mapping[str, Any], key_attributes: tuple[str, ...]) -> int:
    """A KEYS_ONLY index entry: the table key and the index key attributes, plus DynamoDB's 100 bytes."""
    return item_size({a: item.get(a) for a in key_attributes}) + INDEX_ENTRY_OVERHEAD


def index_write_units(before: Mapping[str, Any] | None, after: Mapping[str, Any], *, table_key: str,
                      index_keys: tuple[str, ...]) -> int:
    """Write units one item write costs on one KEYS_ONLY index.

    The item is in the index when all its index key attributes are present (sparse indexes). Entering costs a
    put, leaving a delete, a changed key a delete plus a put; unchanged keys cost nothing (KEYS_ONLY projects
    nothing else, so no other attribute change reaches the index).
    """
    before = before or {}
    was_in = all(before.get(a) is not None for a in index_keys)
    is_in = all(after.get(a) is not None for a in index_keys)
    attributes = (table_key, *index_keys)
    old_units = write_units(index_entry_size(before, attributes)) if was_in else 0
    new_units = write_units(index_entry_size(after, attributes)) if is_in else 0
    if was_in and is_in:
        same = all(before.get(a) == after.get(a) for a in index_keys)
        return 0 if same else old_units + new_units
    return old_units + new_units


def update_write_units(before: Mapping[str, Any] | None, after: Mapping[str, Any], *, table_key: str,
                       indexes: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """The write units of one item write: the table (the larger of the item before and after) and each index."""
    units = {"table": write_units(max(item_size(before or {}), item_size(after)))}
    for name, keys in indexes.items():
        units[name] = index_write_units(before, after, table_key=table_key, index_keys=keys)
    return units


def query_read_units(returned_bytes: int, *, queries: int = 1) -> float:
    """Index queries (always eventually consistent): each rounds its own bytes up to 4 KB, at least one unit.

    With `queries` > 1 the bytes are assumed spread evenly over them.
    """
    if queries <= 0:
        return 0.0
    per_query = returned_bytes / queries
    return queries * read_units(math.ceil(per_query), consistent=False)


# ---- refreshes per month ---------------------------------------------------------------------------------

def eager_refresh_interval(access_lifetime: int) -> float:
    """Seconds between two eager refreshes: the access lifetime less max(15 min, 20% of it) (jitter ignored)."""
    return access_lifetime - max(EAGER_MIN_MARGIN, EAGER_MARGIN_SHARE * access_lifetime)


def eager_refreshes_per_month(access_lifetime: int = 7200) -> float:
    """One connection, eager policy: 2 h tokens refresh every 96 min, 450 times in 30 days."""
    return MONTH_SECONDS / eager_refresh_interval(access_lifetime)


def on_demand_refreshes_per_month(reads_per_day: float = 3, keepalives_per_day: float = 0,
                                  access_lifetime: int = 7200) -> float:
    """One connection, on_demand policy: every token read finds the token expired (reads further apart than its
    lifetime, at most one per lifetime), plus the sweep's keep-alive refreshes (at most one a day)."""
    reads = min(reads_per_day, DAY_SECONDS / access_lifetime)
    return 30 * (reads + min(1.0, keepalives_per_day))


# ---- prices and costs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prices:
    """us-east-1 on-demand list prices as of 2024-2025 (they may change; free tiers ignored)."""

    dynamodb_per_million_wru: float = 0.625
    dynamodb_per_million_rru: float = 0.125
    kms_per_10k_requests: float = 0.03
    lambda_arm64_per_gb_second: float = 0.0000133334
    lambda_per_million_requests: float = 0.20
    sqs_per_million_requests: float = 0.40
    scheduler_per_million_invocations: float = 1.00

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("DynamoDB on-demand writes", f"${self.dynamodb_per_million_wru} per million WRU"),
            ("DynamoDB on-demand reads", f"${self.dynamodb_per_million_rru} per million RRU"),
            ("KMS requests", f"${self.kms_per_10k_requests} per 10,000"),
            ("Lambda arm64 duration", f"${self.lambda_arm64_per_gb_second} per GB-second"),
            ("Lambda requests", f"${self.lambda_per_million_requests} per million"),
            ("SQS standard requests", f"${self.sqs_per_million_requests} per million"),
            ("EventBridge Scheduler", f"${self.scheduler_per_million_invocations} per million invocations"),
        ]


@dataclass(frozen=True)
class RefreshUsage:
    """What one refresh consumes (averages; fractions where a call is shared by many refreshes)."""

    write_units: float
    read_units: float
    kms_requests: float
    sqs_requests: float
    lambda_gb_seconds: float
    lambda_requests: float


def lambda_cpu_share(memory_mb: int) -> float:
    """The share of one vCPU a function gets at this memory size (1,769 MB = one vCPU)."""
    return memory_mb / LAMBDA_MB_PER_VCPU


def worker_seconds_per_refresh(*, cpu_ms: float, memory_mb: int, wait_ms: float, concurrency: int,
                               batch: int) -> float:
    """Billed worker seconds per refresh, one invocation per SQS batch.

    CPU-bound time: the batch's CPU at this memory's CPU share. Wait-bound time: ceil(batch / concurrency)
    waves of one provider round trip. Threads overlap the two, so the batch takes the larger of them.
    """
    cpu_bound = batch * cpu_ms / lambda_cpu_share(memory_mb)
    wait_bound = math.ceil(batch / concurrency) * wait_ms
    return max(cpu_bound, wait_bound) / 1000 / batch


def cost_per_refresh(usage: RefreshUsage, prices: Prices) -> dict[str, float]:
    """Dollars per refresh, by service."""
    return {
        "dynamodb_writes": usage.write_units * prices.dynamodb_per_million_wru / 1e6,
        "dynamodb_reads": usage.read_units * prices.dynamodb_per_million_rru / 1e6,
        "kms": usage.kms_requests * prices.kms_per_10k_requests / 1e4,
        "sqs": usage.sqs_requests * prices.sqs_per_million_requests / 1e6,
        "lambda_duration": usage.lambda_gb_seconds * prices.lambda_arm64_per_gb_second,
        "lambda_requests": usage.lambda_requests * prices.lambda_per_million_requests / 1e6,
    }


def sweeps_per_month(sweep_interval: int = 300) -> float:
    return MONTH_SECONDS / sweep_interval


def scheduler_cost_per_month(prices: Prices, sweep_interval: int = 300) -> float:
    return sweeps_per_month(sweep_interval) * prices.scheduler_per_million_invocations / 1e6


def monthly_cost(connections: int, refreshes_per_connection: float, per_refresh: float, fixed: float = 0.0) -> float:
    """Dollars a month: every connection's refreshes at the per-refresh cost, plus fixed costs (the schedule)."""
    return connections * refreshes_per_connection * per_refresh + fixed


# ---- the all-in parts (issue 16): SQS, KMS at scale, logs, metrics, events, the sweeper ----------------

@dataclass(frozen=True)
class MorePrices:
    """us-east-1 list prices for the parts `Prices` leaves out (as of 2024-2025; free tiers ignored)."""

    logs_ingest_per_gb: float = 0.50  # CloudWatch Logs, standard class
    custom_metric_per_month: float = 0.30  # CloudWatch custom metric (first 10,000), per name + dimensions
    eventbridge_per_million_events: float = 1.00  # custom events on a custom bus (64 KB chunks)

    def rows(self) -> list[tuple[str, str]]:
        return [("CloudWatch Logs ingestion", f"${self.logs_ingest_per_gb} per GB"),
                ("CloudWatch custom metrics", f"${self.custom_metric_per_month} per metric per month"),
                ("EventBridge PutEvents", f"${self.eventbridge_per_million_events} per million events")]


GB = 1024 ** 3
LOG_EVENT_OVERHEAD = 26  # bytes CloudWatch Logs adds to every log event it bills
LAMBDA_PLATFORM_LOG_BYTES = 3 * LOG_EVENT_OVERHEAD + 330  # START, END, REPORT lines of one invocation (typical)


def sqs_requests_per_refresh(*, batch: int, send_batch: int = 10) -> float:
    """Requests per refreshed message: the sweep sends in batches of `send_batch`; Lambda's poller receives up
    to `batch` messages a ReceiveMessage and deletes them with one DeleteMessageBatch."""
    return 1 / send_batch + 1 / batch + 1 / batch


def sqs_idle_polls_per_month(pollers: int = 5, wait_seconds: int = 20) -> float:
    """Empty long polls of Lambda's SQS pollers (at least 5 per event source mapping, 20 s long polls)."""
    return pollers * MONTH_SECONDS / wait_seconds


def kms_calls_per_month(containers: int, *, window: float = 300.0, refresh_interval: float = 5760.0,
                        unwrapped_max_age: float = 3600.0) -> float:
    """KMS calls of `containers` warm worker containers in a month: each makes one data key per cache window
    (GenerateDataKey) and unwraps, once, every data key it opens tokens of (Decrypt; the tokens it refreshes were
    sealed one `refresh_interval` earlier, seconds: 96 min for eager 2 h tokens, by any container). Its own keys
    are among them when that interval outlasts the unwrapped-key cache's `unwrapped_max_age` (seconds;
    oauth_keeper.adapters.kms.UNWRAPPED_MAX_AGE): the key it made has left its cache by then. Assumes the cache
    (256) holds a refresh interval's keys (containers x interval / window <= 256) and containers that live the
    whole month."""
    windows = MONTH_SECONDS / window
    unwrapped = containers if refresh_interval >= unwrapped_max_age else containers - 1
    return containers * windows + containers * unwrapped * windows


def log_bytes_per_refresh(*, batch_bytes: int, batch_lines: int, batch: int) -> float:
    """CloudWatch Logs bytes billed per refresh: what one invocation of `batch` refreshes printed, each line's
    overhead, and Lambda's START/END/REPORT lines, shared by the batch."""
    return (batch_bytes + batch_lines * LOG_EVENT_OVERHEAD + LAMBDA_PLATFORM_LOG_BYTES) / batch


def logs_cost(log_bytes: float, more: MorePrices) -> float:
    return log_bytes / GB * more.logs_ingest_per_gb


def sweeper_seconds_per_sweep(*, due: float, seconds_per_due: float, sends: float, send_cpu_ms: float,
                              send_wait_ms: float, threads: int, memory_mb: int) -> float:
    """One sweep's billed seconds: its per-id work and the SendMessageBatch CPU at this memory's CPU share,
    plus the sends' round trips spread over `threads`."""
    cpu = (due * seconds_per_due + sends * send_cpu_ms / 1000) / lambda_cpu_share(memory_mb)
    return cpu + sends * send_wait_ms / 1000 / threads


def adaptive_refreshes_per_month(*, active_share: float, access_lifetime: int = 7200,
                                 wakeups_per_active: float = 1.0) -> dict[str, float]:
    """Per connection a month under `adaptive`, as modelled (part (g) counts it through the real code path, and
    prints this beside it): the active share is kept
    fresh eagerly, the rest get the on_demand daily keep-alive; each active connection's first read after
    idleness costs one synchronous refresh (`wakeups_per_active` a month); recording reads costs at most one write
    per connection per one-day window."""
    return {
        "worker": active_share * eager_refreshes_per_month(access_lifetime)
        + (1 - active_share) * on_demand_refreshes_per_month(0, 1, access_lifetime),
        "synchronous": active_share * wakeups_per_active,
        "read_marks": active_share * 30,
    }
