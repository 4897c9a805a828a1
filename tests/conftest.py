"""Every test: each connection event the code hands to a publisher must match its schema in `docs/events/`."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def every_published_event_matches_its_schema():
    """Wraps both publishers (EventBridge and the in-memory one) for the test's length, and fails the test when
    an event it made the code publish has no schema or breaks it: the schemas are a contract with consumers."""
    from oauth_keeper.adapters.eventbridge import EventBridgePublisher

    from local.memory import MemoryPublisher
    from tests.event_schemas import envelope, problems

    published: list[dict[str, Any]] = []

    def recording(publish):
        def wrapper(self, pending):
            published.extend(pending)  # checked after the test: a failing check must not change what it does
            return publish(self, pending)
        return wrapper

    with pytest.MonkeyPatch.context() as patch:
        for publisher in (EventBridgePublisher, MemoryPublisher):
            patch.setattr(publisher, "publish", recording(publisher.publish))
        yield published
    found = []
    for event in published:
        try:
            found.extend(problems(envelope(event)))
        except (TypeError, ValueError) as exc:  # a detail that is no JSON at all
            found.append(f"{event.get('detail_type')!r}: not JSON: {exc}")
    if found:
        pytest.fail("events that break their schema (docs/events/):\n" + "\n".join(dict.fromkeys(found)))
