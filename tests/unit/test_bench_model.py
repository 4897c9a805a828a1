"""The benchmark cost model's arithmetic: DynamoDB sizes and units, refreshes per month, prices."""

import pytest

from local.bench import model

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("size", "units"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (2048, 2), (2049, 3)])
def test_a_write_costs_one_unit_per_started_kilobyte(size, units):
    assert model.write_units(size) == units


def test_a_read_costs_one_unit_per_started_4_kb_and_half_when_eventually_consistent():
    assert model.read_units(4096) == 1
    assert model.read_units(4097) == 2
    assert model.read_units(100, consistent=False) == 0.5
    assert model.read_units(0) == 1  # a miss still costs a unit


@pytest.mark.parametrize(("number", "size"), [
    (7, 2), (123, 3), (1800000000, 2), (1800005700, 5), (0, 2), (-5, 2), (0.25, 2), (1234567890123, 8),
])
def test_numbers_cost_a_byte_per_two_significant_digits_plus_one(number, size):
    assert model.number_size(number) == size


def test_the_size_of_a_known_item():
    item = {
        "connection_id": "con_abc",  # 13 + 7
        "revision": 7,  # 8 + 2
        "tokens": b"\x00" * 100,  # 6 + 100
        "refresh_in_doubt": True,  # 16 + 1
        "scopes": ["a", "bb"],  # 6 + 3 + (1 + 1) + (1 + 2)
        "m": {"a": 1},  # 1 + 3 + (1 + 1 + 2)
        "lease_owner": None,  # absent
        "name": "é",  # 4 + 2 (UTF-8 bytes)
    }
    assert model.item_size(item) == 20 + 10 + 106 + 17 + 14 + 8 + 6


def test_a_1025_byte_item_write_costs_two_units_on_the_table():
    before = {"connection_id": "c", "blob": b"x" * (1025 - len("connection_id") - 1 - len("blob"))}
    assert model.item_size(before) == 1025
    units = model.update_write_units(before, before, table_key="connection_id", indexes={})
    assert units == {"table": 2}


def test_an_update_pays_for_the_larger_of_the_item_before_and_after():
    small = {"connection_id": "c", "blob": b"x" * 900}
    large = {"connection_id": "c", "blob": b"x" * 1100}
    assert model.update_write_units(large, small, table_key="connection_id", indexes={})["table"] == 2
    assert model.update_write_units(None, small, table_key="connection_id", indexes={})["table"] == 1


DUE = ("due_shard", "next_refresh_at")


def test_a_changed_index_key_costs_a_delete_and_a_put_on_the_index():
    before = {"connection_id": "con_a", "due_shard": 3, "next_refresh_at": 1_800_000_000, "status": "active"}
    after = {**before, "next_refresh_at": 1_800_005_760}
    assert model.index_write_units(before, after, table_key="connection_id", index_keys=DUE) == 2


def test_keys_only_indexes_ignore_writes_that_leave_their_keys_alone():
    before = {"connection_id": "con_a", "due_shard": 3, "next_refresh_at": 1_800_000_000}
    after = {**before, "lease_owner": "w1", "lease_expires_at": 1_800_000_020}
    assert model.index_write_units(before, after, table_key="connection_id", index_keys=DUE) == 0


def test_sparse_index_entries_cost_one_write_to_enter_or_leave():
    inside = {"connection_id": "con_a", "due_shard": 3, "next_refresh_at": 1_800_000_000}
    outside = {"connection_id": "con_a", "status": "needs_reauth"}
    assert model.index_write_units(outside, inside, table_key="connection_id", index_keys=DUE) == 1
    assert model.index_write_units(inside, outside, table_key="connection_id", index_keys=DUE) == 1
    assert model.index_write_units(None, outside, table_key="connection_id", index_keys=DUE) == 0


def test_an_index_entry_is_its_keys_plus_100_bytes():
    item = {"connection_id": "con_abc", "due_shard": 3, "next_refresh_at": 1_800_000_000, "tokens": b"x" * 5000}
    assert model.index_entry_size(item, ("connection_id", *DUE)) == (13 + 7) + (9 + 2) + (15 + 2) + 100


def test_two_hour_tokens_refresh_450_times_a_month_when_eager():
    assert model.eager_refresh_interval(7200) == 96 * 60
    assert model.eager_refreshes_per_month(7200) == pytest.approx(450)
    # A 24 h token keeps the 20% margin: every 19.2 h.
    assert model.eager_refreshes_per_month(86_400) == pytest.approx(30 * 86_400 / (0.8 * 86_400))
    # A 1 h token keeps the 15 min floor: every 45 min.
    assert model.eager_refreshes_per_month(3600) == pytest.approx(960)


def test_on_demand_refreshes_are_the_reads_that_find_an_expired_token_plus_keep_alives():
    assert model.on_demand_refreshes_per_month(3, 0) == 90
    assert model.on_demand_refreshes_per_month(3, 1) == 120
    assert model.on_demand_refreshes_per_month(3, 5) == 120  # at most one keep-alive a day
    assert model.on_demand_refreshes_per_month(50, 0) == 30 * 12  # no more than one per token lifetime


def test_worker_time_is_bound_by_cpu_or_by_waves_of_provider_waits():
    # A full vCPU (1,769 MB), 1 ms CPU each: 10 refreshes wait 2 waves of 100 ms.
    wait_bound = model.worker_seconds_per_refresh(cpu_ms=1, memory_mb=1769, wait_ms=100, concurrency=8, batch=10)
    assert wait_bound == pytest.approx(0.020)
    # 50 ms CPU each: 500 ms of CPU beats 200 ms of waiting.
    cpu_bound = model.worker_seconds_per_refresh(cpu_ms=50, memory_mb=1769, wait_ms=100, concurrency=8, batch=10)
    assert cpu_bound == pytest.approx(0.050)
    assert model.lambda_cpu_share(256) == pytest.approx(256 / 1769)


def test_cost_per_refresh_and_per_month():
    usage = model.RefreshUsage(write_units=4, read_units=1, kms_requests=0.5, sqs_requests=2.1,
                               lambda_gb_seconds=0.005, lambda_requests=0.1)
    cost = model.cost_per_refresh(usage, model.Prices())
    assert cost["dynamodb_writes"] == pytest.approx(2.5e-6)
    assert cost["dynamodb_reads"] == pytest.approx(0.125e-6)
    assert cost["kms"] == pytest.approx(1.5e-6)
    assert cost["sqs"] == pytest.approx(0.84e-6)
    assert cost["lambda_duration"] == pytest.approx(0.005 * 0.0000133334)
    assert cost["lambda_requests"] == pytest.approx(0.02e-6)
    assert model.monthly_cost(1_000_000, 450, 4e-6, fixed=1.0) == pytest.approx(1801.0)
    assert model.sweeps_per_month(300) == 8640
    assert model.scheduler_cost_per_month(model.Prices()) == pytest.approx(0.00864)


def test_queries_pay_at_least_one_eventually_consistent_unit_each():
    assert model.query_read_units(0, queries=32) == 16
    assert model.query_read_units(3 * 4096, queries=1) == 1.5
    assert model.query_read_units(0, queries=0) == 0


def test_sqs_counts_batched_receive_and_delete():
    assert model.sqs_requests_per_refresh(batch=10) == pytest.approx(0.3)
    assert model.sqs_requests_per_refresh(batch=100, send_batch=10) == pytest.approx(0.12)
    assert model.sqs_idle_polls_per_month(pollers=5, wait_seconds=20) == 5 * 30 * 86_400 / 20


def test_kms_grows_per_container_and_cache_window_not_per_refresh():
    windows = 30 * 86_400 / 300
    # One data key per window; every key unwrapped once by each container, its own too: an eager refresh opens
    # tokens sealed 96 min earlier, and an unwrapped key is kept an hour (see the test below).
    assert model.kms_calls_per_month(1) == windows + windows
    assert model.kms_calls_per_month(5) == 5 * windows + 5 * 5 * windows
    # A refresh interval within the cache's hour: a container's own keys are still cached when next opened.
    assert model.kms_calls_per_month(5, refresh_interval=1800) == 5 * windows + 5 * 4 * windows


def test_a_containers_own_data_key_is_unwrapped_again_when_the_next_eager_refresh_opens_its_tokens():
    """What the model's count rests on, on the real DataKeys: a key made by this container is no longer cached
    when tokens it sealed are opened one eager refresh interval (96 min for 2 h tokens) later."""
    from oauth_keeper.adapters.kms import UNWRAPPED_MAX_AGE, DataKeys

    from local.memory import FakeKms, ManualClock

    clock = ManualClock(1_800_000_000)
    kms = FakeKms()
    keys = DataKeys(lambda: kms, "arn:memory", clock.now)
    _, wrapped = keys.for_encryption()  # sealing at a refresh
    interval = model.MONTH_SECONDS / model.eager_refreshes_per_month(7200)
    assert interval > UNWRAPPED_MAX_AGE
    clock.advance(interval)
    before = keys.kms_calls
    keys.for_decryption(wrapped)  # the next refresh opens those tokens
    assert keys.kms_calls == before + 1


def test_log_bytes_per_refresh_share_the_invocation_lines():
    per = model.log_bytes_per_refresh(batch_bytes=1000, batch_lines=10, batch=10)
    assert per == (1000 + 10 * model.LOG_EVENT_OVERHEAD + model.LAMBDA_PLATFORM_LOG_BYTES) / 10
    assert model.logs_cost(model.GB, model.MorePrices()) == 0.50


def test_sweeper_seconds_add_cpu_at_the_memory_share_and_spread_waits():
    seconds = model.sweeper_seconds_per_sweep(due=1000, seconds_per_due=0.001, sends=100, send_cpu_ms=1,
                                              send_wait_ms=10, threads=8, memory_mb=1769)
    assert seconds == pytest.approx(1.0 + 0.1 + 100 * 0.01 / 8)


def test_adaptive_keeps_the_active_share_eager_and_the_rest_on_keepalive():
    mix = model.adaptive_refreshes_per_month(active_share=0.2)
    assert mix["worker"] == pytest.approx(0.2 * 450 + 0.8 * 30)
    assert mix["synchronous"] == 0.2
    assert mix["read_marks"] == pytest.approx(6)


def test_lazy_client_creation_saves_the_unused_clients_but_not_botocores_one_time_set_up():
    from local.bench.coldstart import lazy_saving

    assert lazy_saving([["dynamodb", 100.0], ["events", 20.0]], set()) == 120.0  # nothing used: all of it
    assert lazy_saving([["dynamodb", 100.0], ["events", 20.0]], {"dynamodb"}) == 20.0
    assert lazy_saving([["dynamodb", 100.0], ["ssm", 30.0]], {"ssm"}) == 30.0  # ssm would pay the set-up instead
    assert lazy_saving([["dynamodb", 100.0], ["kms", 25.0]], {"dynamodb", "kms"}) == 0.0


def test_part_g_run_alone_prices_with_the_per_refresh_totals_the_readme_publishes():
    """`python -m local.bench g` without (d) prices its policies with (d)'s published figures: they must be the
    README's, or (g) alone prints monthly costs the README contradicts (it printed $3.03 / $6.18, stale)."""
    import re
    from pathlib import Path

    from local.bench import adaptive

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text(encoding="utf-8")
    worker = re.search(r"^\| worker refresh \(sweep → SQS → worker\) \|.*\*\*\$([0-9.]+)\*\* \|$", readme, re.M)
    api = re.search(r"^\| on-demand refresh \(inside a token read\) \|.*\*\*\$([0-9.]+)\*\* \|$", readme, re.M)
    assert worker and api, "README's (d) table rows not found"
    assert float(worker.group(1)) == adaptive.PUBLISHED_WORKER_PER_MILLION
    assert float(api.group(1)) == adaptive.PUBLISHED_API_PER_MILLION
