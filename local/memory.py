"""In-memory adapters for tests, `make dev` and the benchmarks: one of each port, in one place.

Each keeps the contract of its AWS twin (atomic guarded writes, GSI-like partitions, single-use flows, KMS data
keys), so the same use cases run on them for simulated days over thousands of connections in seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from oauth_keeper.domain.errors import ConfigurationError, FlowRejection
from oauth_keeper.domain.flows import ConnectSession, OAuthFlow, secret_hash
from oauth_keeper.domain.providers import ProviderProfile
from oauth_keeper.domain.tokens import ClientCredentials
from oauth_keeper.ports import INDEXES, MISSING, PRESENT, AtMost, NotAfter, OneOf, TransactWrite, WriteResult


class ManualClock:
    """A clock that only moves when told to (tests, the local stack's "advance the clock")."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def no_sleep(seconds: float) -> None:
    """A `Sleep` that returns at once: waits for siblings happen in simulated time."""


class MemoryItemStore:
    """The `ItemStore` port in memory, atomic under one lock: for simulations of days and thousands of items."""

    def __init__(self, key_name: str = "connection_id") -> None:
        self.key_name = key_name
        self._items: dict[str, dict[str, Any]] = {}
        # index -> hash value -> keys, kept like a GSI so a query reads one partition, not the table
        self._partitions: dict[str, dict[Any, set[str]]] = {name: {} for name in INDEXES}
        self._lock = threading.Lock()
        self.read_items = 0

    def get(self, key: str, attributes: Sequence[str] = ()) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            return {k: v for k, v in item.items() if k in attributes} if attributes else dict(item)

    def update(self, key: str, *, set: dict[str, Any], remove: Iterable[str] = (),
               expect: dict[str, Any], add: dict[str, int] | None = None, returning: bool = False) -> WriteResult:
        with self._lock:
            current = self._items.get(key)
            if not self._holds(current, expect):
                return WriteResult(False, dict(current) if current is not None else None)
            if add:  # DynamoDB's ADD: a number added to the attribute, counted from 0 when absent
                set = {**set, **{attr: (current or {}).get(attr, 0) + amount for attr, amount in add.items()}}
            self._apply(key, current, set, remove)
            return WriteResult(True, dict(self._items[key]) if returning else None)

    def transact(self, writes: Sequence[TransactWrite]) -> bool:
        """All or nothing under the one lock, as TransactWriteItems: every expectation first, then every write."""
        if len({w.key for w in writes}) != len(writes):
            raise ValueError("a transaction writes each item once")  # DynamoDB's ValidationException
        with self._lock:
            if not all(self._holds(self._items.get(w.key), w.expect) for w in writes):
                return False
            for write in writes:
                current = self._items.get(write.key)
                if write.action == "update":
                    self._apply(write.key, current, write.set, write.remove)
                elif write.action == "delete" and current is not None:
                    self._reindex(write.key, current, {})
                    del self._items[write.key]
            return True

    @staticmethod
    def _holds(current: dict[str, Any] | None, expect: dict[str, Any]) -> bool:
        for attr, value in expect.items():
            actual = current.get(attr, MISSING) if current is not None else MISSING
            if value is MISSING:
                if actual is not MISSING:
                    return False
            elif isinstance(value, NotAfter):
                if actual is not MISSING and not actual <= value.value:
                    return False
            elif actual is MISSING:
                return False
            elif value is PRESENT:
                continue
            elif isinstance(value, AtMost):
                if not (isinstance(actual, int | float) and actual <= value.value):
                    return False
            elif isinstance(value, OneOf):
                if actual not in value.values:
                    return False
            elif actual != value:
                return False
        return True

    def _apply(self, key: str, current: dict[str, Any] | None, set: dict[str, Any], remove: Iterable[str]) -> None:
        item = dict(current) if current is not None else {self.key_name: key}
        for attr in remove:
            item.pop(attr, None)
        for attr, value in set.items():
            if value is None:
                item.pop(attr, None)
            else:
                item[attr] = value
        self._reindex(key, current, item)
        self._items[key] = item

    def delete(self, key: str, *, expect: dict[str, Any]) -> bool:
        with self._lock:
            current = self._items.get(key)
            if current is None:
                return True
            if any(current.get(attr, MISSING) != value for attr, value in expect.items()):
                return False
            self._reindex(key, current, {})
            del self._items[key]
            return True

    def _reindex(self, key: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        for index, (hash_attr, _) in INDEXES.items():
            before = (old or {}).get(hash_attr, MISSING)
            after = new.get(hash_attr, MISSING)
            if before == after:
                continue
            partitions = self._partitions[index]
            if before is not MISSING:
                partitions.get(before, set()).discard(key)
            if after is not MISSING:
                partitions.setdefault(after, set()).add(key)

    def query(self, index: str, hash_value: Any, *, range_max: Any = None, range_min: Any = None,
              limit: int | None = None, start: dict[str, Any] | None = None,
              ) -> tuple[list[str], dict[str, Any] | None]:
        hash_attr, range_attr = INDEXES[index]
        with self._lock:
            partition = [self._items[k] for k in self._partitions[index].get(hash_value, ())]
            matches = [
                item for item in partition
                if (range_attr is None or range_attr in item)
                and (range_max is None or range_attr is None or item[range_attr] <= range_max)
                and (range_min is None or range_attr is None or item[range_attr] >= range_min)
            ]
        matches.sort(key=lambda i: (i.get(range_attr, 0) if range_attr else 0, i[self.key_name]))
        if start:
            keys = [m[self.key_name] for m in matches]
            matches = matches[keys.index(start[self.key_name]) + 1:] if start[self.key_name] in keys else []
        page = matches[:limit] if limit else matches
        cursor = {self.key_name: page[-1][self.key_name]} if limit and len(matches) > limit else None
        self.read_items += len(page)
        return [m[self.key_name] for m in page], cursor

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(i) for i in self._items.values()]


class MemoryFlowStore:
    """The `FlowStore` port in memory: records keyed by the secret's hash, consumed once under one lock, and the
    tombstones of erased owners."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[str, Any]] = {}
        self.tombstones: dict[str, dict[str, int]] = {}  # owner_key -> {"erased_at", "purge_at"}
        self._lock = threading.Lock()

    def erased_at(self, owner_key: str) -> int | None:
        with self._lock:
            tombstone = self.tombstones.get(owner_key)
            return tombstone["erased_at"] if tombstone else None

    def record_erasure(self, owner_key: str, erased_at: int, until: int) -> None:
        with self._lock:
            current = self.tombstones.get(owner_key)
            if current is None or current["erased_at"] <= erased_at:
                self.tombstones[owner_key] = {"erased_at": int(erased_at), "purge_at": int(until)}

    def delete_owned(self, owner_key: str, *, issued_until: int, limit: int,
                     start: dict[str, Any] | None = None) -> tuple[int, dict[str, Any] | None]:
        with self._lock:
            owned = [key for key, (_, record) in self._records.items()
                     if record.owner_key == owner_key and record.issued <= issued_until][:limit]
            for key in owned:
                del self._records[key]
        return len(owned), None

    def records(self) -> list[Any]:
        """Every session and flow still held (tests look for an owner's)."""
        with self._lock:
            return [record for _, record in self._records.values()]

    def put_session(self, token: str, session: ConnectSession) -> None:
        self._put(secret_hash("session", token), session)

    def take_session(self, token: str, provider: str, now: float) -> ConnectSession | None:
        with self._lock:
            key = secret_hash("session", token)
            record = self._records.get(key)
            session = record[1] if record else None
            if session is None or session.provider != provider or session.expires_at <= int(now):
                return None
            del self._records[key]
            return session

    def put_flow(self, state: str, flow: OAuthFlow) -> None:
        self._put(secret_hash("state", state), flow)

    def take_flow(self, state: str, provider: str, nonce: str, now: float) -> OAuthFlow:
        with self._lock:
            key = secret_hash("state", state)
            record = self._records.get(key)
            flow: OAuthFlow | None = record[1] if record else None
            if flow is None:
                raise FlowRejection("unknown")
            if flow.expires_at <= int(now):
                raise FlowRejection("expired")
            if flow.provider != provider:
                raise FlowRejection("wrong_provider")
            if flow.nonce_hash != secret_hash("nonce", nonce):
                raise FlowRejection("foreign_browser")
            del self._records[key]
            return flow

    def _put(self, key: str, record: Any) -> None:
        with self._lock:
            if key in self._records:
                raise ValueError("a record with this secret exists")  # DynamoDB's attribute_not_exists guard
            self._records[key] = (key, record)


class MemoryDeliveryLog:
    """The `DeliveryLog` port in memory: handled webhook deliveries by key, each forgotten after its time."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def seen(self, key: str, now: float) -> bool:
        with self._lock:
            record = self.records.get(key)
            return record is not None and record["purge_at"] > now

    def remember(self, key: str, provider: str, now: float, until: int) -> None:
        with self._lock:
            self.records[key] = {"provider": provider, "received_at": int(now), "purge_at": until}


class FakeKms:
    """KMS's data-key calls in memory: data keys wrapped under a local master key (never leaves the process).

    A blob it did not wrap raises `InvalidCiphertextException`, as KMS does."""

    class InvalidCiphertextException(Exception):
        pass

    def __init__(self) -> None:
        self._master = AESGCM(AESGCM.generate_key(bit_length=256))
        self._mac_key = os.urandom(32)
        self.calls: list[str] = []
        self.contexts: list[dict[str, str]] = []  # the encryption context of each data-key call, in order

    def generate_mac(self, KeyId: str, Message: bytes, MacAlgorithm: str) -> dict[str, Any]:  # noqa: N803
        """KMS GenerateMac (HMAC_SHA_256 only) under a local key: deterministic, as KMS's is."""
        self.calls.append("GenerateMac")
        assert MacAlgorithm == "HMAC_SHA_256"  # noqa: S101 - the only algorithm the service uses
        return {"Mac": hmac.new(self._mac_key, KeyId.encode() + b"\0" + Message, hashlib.sha256).digest(),
                "KeyId": KeyId, "MacAlgorithm": MacAlgorithm}

    def generate_data_key(self, KeyId: str, KeySpec: str,  # noqa: N803 - boto3's names
                          EncryptionContext: dict[str, str] | None = None) -> dict[str, bytes]:  # noqa: N803
        """A data key wrapped under the key id and the encryption context: Decrypt needs the same two, as in KMS."""
        self.calls.append("GenerateDataKey")
        self.contexts.append(dict(EncryptionContext or {}))
        key, nonce = os.urandom(32), os.urandom(12)
        aad = _kms_aad(KeyId, EncryptionContext)
        return {"Plaintext": key, "CiphertextBlob": nonce + self._master.encrypt(nonce, key, aad)}

    def decrypt(self, CiphertextBlob: bytes, KeyId: str,  # noqa: N803
                EncryptionContext: dict[str, str] | None = None) -> dict[str, bytes]:  # noqa: N803
        self.calls.append("Decrypt")
        self.contexts.append(dict(EncryptionContext or {}))
        try:
            key = self._master.decrypt(CiphertextBlob[:12], CiphertextBlob[12:], _kms_aad(KeyId, EncryptionContext))
        except InvalidTag as exc:
            raise FakeKms.InvalidCiphertextException() from exc
        return {"Plaintext": key}


def _kms_aad(key_id: str, context: dict[str, str] | None) -> bytes:
    """Without a context, the key id alone (as data keys were wrapped before contexts existed)."""
    if not context:
        return key_id.encode()
    return key_id.encode() + b"\0" + json.dumps(sorted(context.items())).encode()


class MemoryPublisher:
    """The `EventPublisher` port in memory; `down` makes it refuse everything (EventBridge unavailable)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.down = False

    def publish(self, pending: list[Any]) -> list[str]:
        if self.down:
            return []
        self.events.extend(pending)
        return [e["event_id"] for e in pending]

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["detail_type"] == detail_type]


# The in-memory removal queue's ARN: where a worker over ListQueue takes removals from (Settings.removal_queue_arn).
REMOVALS_ARN = "arn:aws:sqs:local:000000000000:memory-removals"


class ListQueue:
    """The `RefreshQueue` and `RemovalQueue` ports as lists; `drain` hands the messages over as SQS records (a
    removal's with `eventSourceARN` REMOVALS_ARN, as Lambda names its queue)."""

    def __init__(self) -> None:
        self.messages: list[str] = []  # connection ids, in the order sent
        self.forced: list[bool] = []  # ...and whether each was sent to be refreshed whatever its schedule
        self.due_by: list[int | None] = []  # ...and the horizon of the sweep that sent it
        self.removals: list[str] = []  # bodies of the removals the webhook queued, in the order sent
        self.down = False  # True: every send raises, as SQS unreachable does

    def send(self, connection_ids: list[str], *, force: bool = False, due_by: int | None = None) -> int:
        if self.down:
            raise ConnectionError("queue down")
        self.messages.extend(connection_ids)
        self.forced.extend([force] * len(connection_ids))
        self.due_by.extend([due_by] * len(connection_ids))
        return len(connection_ids)

    def send_removal(self, removal: Any) -> None:
        if self.down:
            raise ConnectionError("queue down")
        self.removals.append(removal.message())

    def drain(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The oldest `limit` messages (all without one) as SQS records, removals first; the rest stay queued."""
        from oauth_keeper.adapters.sqs import refresh_message

        taken = len(self.removals) + len(self.messages) if limit is None else limit
        records = [{"messageId": f"r{i}", "body": body, "eventSourceARN": REMOVALS_ARN}
                   for i, body in enumerate(self.removals[:taken])]
        self.removals = self.removals[taken:]
        taken -= len(records)
        records += [{"messageId": f"m{i}", "body": refresh_message(cid, force=force, due_by=due_by)}
                    for i, (cid, force, due_by) in enumerate(zip(self.messages[:taken], self.forced[:taken],
                                                                 self.due_by[:taken], strict=True))]
        self.messages, self.forced = self.messages[taken:], self.forced[taken:]
        self.due_by = self.due_by[taken:]
        return records


class StaticCredentials:
    """The `Credentials` port from a dict the test can change (`values["client_secret"] = ...`).

    `values` maps `client_id` (or the profile's client id parameter) and `client_secret`; a missing one is
    a ConfigurationError, as a missing SSM parameter is."""

    def __init__(self, values: dict[str, str] | Callable[[], dict[str, str]]) -> None:
        self._values = values

    def credentials(self, profile: ProviderProfile, *, with_id: bool = True, with_secret: bool = True,
                    fresh: bool = False) -> ClientCredentials:
        values = self._values() if callable(self._values) else self._values
        client_id = values.get(profile.client_id_param, values.get("client_id"))
        secret = values.get("client_secret")
        if (with_id and not client_id) or (with_secret and not secret):
            raise ConfigurationError(f"Client credentials for {profile.name} are missing.")
        return ClientCredentials(client_id=client_id or "", client_secret=secret or "")
