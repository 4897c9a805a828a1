"""Erasure tombstones: what makes an owner's erasure refuse every connect link and OAuth flow issued before it.

An erasure (`Disconnection.request_erasure`) records a tombstone, the owner's keyed hash with the erasure time,
kept `TOMBSTONE_KEPT` (a day), and deletes the owner's sessions and flows found through the ByOwnerKey index.
Every step of a connect calls `Erasures.check` with when its chain was issued: `POST /connect-sessions`,
`GET /connect/{provider}`, `GET /callback/{provider}` (before the code exchange and again before the connection
is stored). Later steps (claims) call the same function.
"""

from __future__ import annotations

from ..domain.deadlines import AWS_CALL_LIMIT, budget
from ..domain.erasure import TOMBSTONE_KEPT, issued_before_erasure
from ..domain.errors import OwnerErased
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, FlowStore, OwnerKeys

PURGE_PAGE = 100  # sessions and flows deleted per index page


class Erasures:
    def __init__(self, *, flows: FlowStore, owner_keys: OwnerKeys, clock: Clock, kept: int = TOMBSTONE_KEPT) -> None:
        """`kept`: seconds a tombstone lives after its erasure (at least two session lifetimes)."""
        self._flows = flows
        self._owner_keys = owner_keys
        self._clock = clock
        self._kept = kept

    def owner_key(self, owner_id: str) -> str:
        """The owner's keyed hash (64 hex digits), as sessions, flows and tombstones name the owner."""
        return self._owner_keys.owner_key(owner_id)

    def check(self, *, issued_at: int, owner_id: str | None = None, owner_key: str | None = None) -> str:
        """Refuse what was issued at `issued_at` (epoch seconds) for an owner erased at or after it.

        The owner is named by `owner_key` when the record carries it, else by `owner_id` (older records). Reads
        the tombstone strongly consistent and never from a cache, so an erasure applies to the next check.
        Returns the owner key. Raises OwnerErased; whatever the store raises (never skipped on trouble)."""
        if owner_key is None:
            if owner_id is None:
                raise ValueError("check needs owner_key or owner_id")
            owner_key = self.owner_key(owner_id)
        erased_at = self._flows.erased_at(owner_key)
        if issued_before_erasure(issued_at, erased_at):
            logger.info("Refused: issued before its owner's erasure")
            record_metric("ErasedOwnerRefusals", MetricUnit.Count, 1)
            raise OwnerErased("This was issued before its owner's data was erased. Start again.")
        return owner_key

    def record(self, owner_id: str, erased_at: int) -> str:
        """Write the owner's tombstone for an erasure at `erased_at` (epoch seconds); returns the owner key."""
        owner_key = self.owner_key(owner_id)
        self._flows.record_erasure(owner_key, int(erased_at), int(erased_at) + self._kept)
        return owner_key

    def purge(self, owner_id: str, erased_at: int, *, deadline: float | None = None) -> bool:
        """Delete the owner's sessions and flows issued at or before `erased_at`, page by page while at least two
        AWS calls' worth of `deadline` is left. True when none is left (as far as the index shows: it lags a
        little, and what it has not shown yet is refused by the tombstone all the same)."""
        owner_key = self.owner_key(owner_id)
        start, deleted = None, 0
        while True:
            if budget(deadline, self._clock.now()) < 2 * AWS_CALL_LIMIT:
                return False
            count, start = self._flows.delete_owned(owner_key, issued_until=int(erased_at), limit=PURGE_PAGE,
                                                    start=start)
            deleted += count
            if not start:
                break
        if deleted:
            record_metric("ErasedFlowsDeleted", MetricUnit.Count, deleted)
        return True
