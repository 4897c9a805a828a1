"""Benchmarks for oauth-keeper (`make bench`, `python -m local.bench [a b c d]`): cold imports, sweep reads,
refresh throughput and a cost model. Never deployed; they print figures and assert no timings.

The arithmetic of the cost model lives in `local.bench.model` (pure functions, unit-tested).
"""
