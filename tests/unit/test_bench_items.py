"""The connection item as ConnectionStore writes it stays under DynamoDB's 1 KB write unit, and the bench's write-unit
count of a refresh adds up: lease 1 (returning the item: no read) + commit 1, and no index write for a connection on
its cadence (ADR 0023); the first refresh after a connect moves it out of the Due index (+ 2)."""

import pytest

from local.bench import model, writes
from local.bench.common import RealSizeKms

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def ordinary():
    return writes.recorded_refresh(at_risk=False)


def test_the_largest_item_a_refresh_writes_stays_under_one_write_unit(ordinary):
    access, refresh = ordinary["token_lengths"]
    assert min(access, refresh) >= writes.DOCUMENTED_TOKEN  # at least as long as TikTok's documented examples
    tokens = ordinary["largest"]["tokens"]
    assert int.from_bytes(tokens[1:3], "big") == RealSizeKms.BLOB  # a real-size wrapped data key in the item
    assert model.item_size(ordinary["largest"]) < model.WRITE_UNIT_BYTES


def test_the_documented_token_length_leaves_room_below_one_kilobyte(ordinary):
    length, documented_size = writes.crossing_token_length(ordinary)
    assert documented_size < model.WRITE_UNIT_BYTES
    assert length > writes.DOCUMENTED_TOKEN


def test_an_ordinary_refresh_costs_two_write_units_and_no_read(ordinary):
    units = writes.units_of(ordinary["log"])
    assert (units["table_wru"], units["index_wru"], units["rru"]) == (2, 0, 0)
    assert [writes._purpose(i, e) for i, e in enumerate(ordinary["log"])] == [
        "lease (ReturnValues=ALL_NEW: the read)", "commit"]


def test_the_first_refresh_after_a_connect_moves_the_connection_from_due_to_its_cadence_once():
    first = writes.recorded_refresh(at_risk=False, first=True)
    assert [e["wru"] for e in first["log"]] == [{"table": 1}, {"table": 1, "Due": 1, "Cadence": 1}]
