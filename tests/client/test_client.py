"""The Python client against the local stack: a whole connect, owner scoping, pages, errors as exceptions, retries."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

import pytest
from oauth_keeper_client import (
    AccessToken,
    ClaimRejected,
    ClaimResult,
    Connection,
    Forbidden,
    InvalidRequest,
    NeedsReauthorization,
    NotFound,
    Operation,
    ProviderUnavailable,
    RetryPolicy,
    Throttled,
    TransportError,
)

from tests.client.conftest import connect, finish_erasure, make_client, play_user, sweep

pytestmark = pytest.mark.integration
UNKNOWN = "con_" + "a" * 32


def test_a_whole_connect_claim_token_read_and_disconnect(dev, client, owner, tiktok_user, waits):
    session = client.create_connect_session(owner_id=owner, return_to=dev.dashboard_url,
                                            scopes=["user.info.basic", "video.list"])
    assert session.expires_at is not None and session.expires_at.tzinfo is not None
    assert "session=" not in repr(session)  # the link is a secret

    landed = play_user(session.connect_url, tiktok_user)
    claimed = client.claim(landed["claim"], owner_id=owner)
    assert isinstance(claimed, ClaimResult) and claimed.result == "created"
    connection = claimed.connection
    assert isinstance(connection, Connection)
    assert (connection.owner_id, connection.provider, connection.status) == (owner, "tiktok", "active")
    assert connection.scopes_granted == ("user.info.basic", "video.list") and connection.missing_scopes == ()
    assert client.claim(landed["claim"], owner_id=owner) == claimed  # the same claim again answers the same

    token = client.get_token(connection.connection_id, owner_id=owner, min_valid_seconds=600)
    assert isinstance(token, AccessToken) and token.access_token and token.token_type == "Bearer"
    assert token.account_id == connection.account_id and token.scopes == ("user.info.basic", "video.list")
    now = dt.datetime.fromtimestamp(dev.clock.now(), dt.UTC)
    assert token.expires_at - now >= dt.timedelta(seconds=600)
    assert token.access_token not in repr(token) and token.authorization == f"Bearer {token.access_token}"

    operation = client.disconnect(connection.connection_id, owner_id=owner)
    assert isinstance(operation, Operation)
    assert (operation.kind, operation.status, operation.connection_id) == ("disconnect", "running",
                                                                           connection.connection_id)
    assert operation.status_url == f"/operations/{operation.operation_id}" and not operation.done
    with pytest.raises(NeedsReauthorization) as refused:  # no token is served from the 202 on
        client.get_token(connection.connection_id, owner_id=owner)
    assert (refused.value.http_status, refused.value.status) == (409, "disconnecting")

    sweep(dev)  # in AWS the refresh worker takes the job within seconds
    finished = client.wait_for_operation(operation, timeout=30, interval=1)
    assert (finished.status, finished.remaining, finished.revoke_failed) == ("succeeded", 0, 0)
    assert client.get_connection(connection.connection_id, owner_id=owner).status == "disconnected"
    with pytest.raises(NeedsReauthorization) as ended:
        client.get_token(connection.connection_id, owner_id=owner)
    assert (ended.value.status, ended.value.reason, ended.value.retryable) == ("disconnected", "app_disconnected",
                                                                               False)
    assert waits.seconds == []  # nothing was retried


def test_every_per_connection_call_acts_for_its_owner(dev, client, owner, tiktok_user):
    """owner_id goes with each call: another owner's connection is answered as an unknown id and left alone."""
    connection_id = connect(dev, client, owner, tiktok_user)
    intruder = owner + "-other"
    for call in (lambda: client.get_connection(connection_id, owner_id=intruder),
                 lambda: client.get_token(connection_id, owner_id=intruder),
                 lambda: client.refresh(connection_id, owner_id=intruder),
                 lambda: client.disconnect(connection_id, owner_id=intruder)):
        with pytest.raises(NotFound) as unknown:
            call()
        assert (unknown.value.http_status, unknown.value.code) == (404, "connection_not_found")
    assert client.get_connection(connection_id, owner_id=owner).status == "active"
    with pytest.raises(ValueError, match="owner_id is required"):
        client.get_token(connection_id, owner_id="")


def test_channels_are_listed_and_an_unknown_one_is_not_found(dev, client, owner, tiktok_user):
    connection_id = connect(dev, client, owner, tiktok_user)
    assert client.list_channels(connection_id, owner_id=owner) == ()  # TikTok's profile lists none
    with pytest.raises(NotFound) as unknown:
        client.get_token(connection_id, owner_id=owner, channel_id="1")
    assert unknown.value.code == "channel_not_found"
    with pytest.raises(InvalidRequest):
        client.get_token(connection_id, owner_id=owner, channel_id="a b")
    with pytest.raises(NotFound):
        client.list_channels(connection_id, owner_id=owner + "-other")


def test_the_page_iterator_follows_the_cursor(dev, client, owner):
    made = {connect(dev, client, owner, user) for user in ("alice", "bob", "carol")}
    pages = [client.list_connections(owner_id=owner, limit=2)]
    while pages[-1].next_cursor:  # a page may come back short (or empty) with a cursor: only null ends it
        pages.append(client.list_connections(owner_id=owner, limit=2, cursor=pages[-1].next_cursor))
    paged = [c.connection_id for page in pages for c in page.connections]
    assert len(pages) >= 2 and all(len(page.connections) <= 2 for page in pages)
    assert sorted(paged) == sorted(made)
    assert [c.connection_id for c in client.iter_connections(owner_id=owner, page_size=2)] == paged
    assert list(client.iter_connections(owner_id=owner + "-nobody")) == []


def test_refusals_are_typed_exceptions(dev, client, owner, tiktok_user, waits):
    with pytest.raises(InvalidRequest) as bad:
        client.create_connect_session(owner_id=owner, return_to="https://elsewhere.example/")
    assert (bad.value.http_status, bad.value.code, bad.value.field) == (400, "return_to_not_allowed", "return_to")
    with pytest.raises(NotFound) as missing:
        client.get_connection(UNKNOWN, owner_id=owner)
    assert missing.value.code == "connection_not_found"
    with pytest.raises(NotFound) as no_operation:
        client.get_operation("op_unknown")
    assert no_operation.value.code == "operation_not_found"

    session = client.create_connect_session(owner_id=owner, return_to=dev.dashboard_url)
    claim = play_user(session.connect_url, tiktok_user)["claim"]
    with pytest.raises(ClaimRejected) as forwarded:  # the link was forwarded to someone else's session
        client.claim(claim, owner_id=owner + "-other")
    assert (forwarded.value.http_status, forwarded.value.code) == (409, "owner_mismatch")
    with pytest.raises(ClaimRejected) as burned:
        client.claim(claim, owner_id=owner)
    assert (burned.value.http_status, burned.value.code) == (410, "claim_used")
    with pytest.raises(NotFound) as unknown_claim:
        client.claim("no-such-claim", owner_id=owner)
    assert unknown_claim.value.code == "claim_not_found"
    assert waits.seconds == []  # none of these is retried


def test_a_refused_signature_is_forbidden_not_retried_and_the_gateway_says_why(dev, waits, owner, caplog):
    wrong_region = make_client(dev.base_url, waits, region="eu-west-1")
    with caplog.at_level(logging.WARNING, logger="local.gateway"), pytest.raises(Forbidden) as refused:
        wrong_region.list_connections(owner_id=owner)
    assert refused.value.http_status == 403 and not refused.value.retryable and waits.seconds == []
    assert "signed for region 'eu-west-1', but this gateway is in 'us-east-1'" in caplog.text

    with caplog.at_level(logging.WARNING, logger="local.gateway"), pytest.raises(Forbidden):
        make_client(dev.base_url, waits, secret_key="not-the-secret").list_connections(owner_id=owner)
    assert "signature mismatch" in caplog.text and "not-the-secret" not in caplog.text


def test_needs_reauthorization_carries_status_and_reason(dev, client, owner, tiktok_user):
    connection_id = connect(dev, client, owner, tiktok_user)
    dev.tiktok.revoke_user(dev.tiktok.users[tiktok_user].open_id)  # the user removed the app inside TikTok
    with pytest.raises(NeedsReauthorization):
        client.refresh(connection_id, owner_id=owner)
    with pytest.raises(NeedsReauthorization) as refused:
        client.get_token(connection_id, owner_id=owner)
    assert (refused.value.http_status, refused.value.code) == (409, "needs_reauth")
    assert (refused.value.status, refused.value.reason) == ("needs_reauth", "invalid_grant")
    assert client.get_connection(connection_id, owner_id=owner).needs_user


def expire_access_token(dev, client, connection_id: str, owner: str) -> None:
    """Move the shared clock past the access token's expiry: a token read must refresh it first."""
    expires = client.get_connection(connection_id, owner_id=owner).access_expires_at
    dev.clock.advance(expires.timestamp() - dev.clock.now() + 10)


def test_a_provider_outage_is_retried_with_backoff_then_raised(dev, client, owner, tiktok_user, waits, tiktok_faults):
    connection_id = connect(dev, client, owner, tiktok_user)
    expire_access_token(dev, client, connection_id, owner)
    tiktok_faults.set_outage("5xx")
    with pytest.raises(ProviderUnavailable) as unavailable:
        client.get_token(connection_id, owner_id=owner)
    assert (unavailable.value.http_status, unavailable.value.code, unavailable.value.retryable) == (
        503, "provider_unavailable", True)
    assert len(waits.seconds) == 2  # three attempts in all
    assert 0.25 <= waits.seconds[0] <= 0.5 and 0.5 <= waits.seconds[1] <= 1.0


def test_a_provider_hiccup_is_absorbed_by_a_retry(dev, client, owner, tiktok_user, waits, tiktok_faults):
    connection_id = connect(dev, client, owner, tiktok_user)
    expire_access_token(dev, client, connection_id, owner)
    tiktok_faults.fail_next(1, "temporarily_unavailable")
    token = client.get_token(connection_id, owner_id=owner)
    assert token.expires_at.timestamp() - dev.clock.now() > 300 and len(waits.seconds) == 1


def test_no_answer_is_retried_then_a_transport_error(waits):
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", waits, retry=RetryPolicy(max_attempts=4))
    with pytest.raises(TransportError) as failed:
        client.list_connections(owner_id="user-1")
    assert failed.value.retryable and failed.value.http_status is None and len(waits.seconds) == 3


def test_an_owner_id_with_reserved_characters_is_erased_through_a_signed_escaped_path(dev, client, tiktok_user):
    """`tenant:7` travels as /owners/tenant%3A7/connections, signed as sent (as AWS verifies it)."""
    owner = f"tenant:7:{tiktok_user}"
    connection_id = connect(dev, client, owner, tiktok_user)
    operation = client.erase_owner(owner)
    assert (operation.kind, operation.owner_id, operation.status) == ("erase_owner", owner, "running")
    finish_erasure(dev)
    assert client.wait_for_operation(operation.operation_id, timeout=30, interval=1).status == "succeeded"
    assert list(client.iter_connections(owner_id=owner)) == []
    with pytest.raises(NotFound):
        client.get_connection(connection_id, owner_id=owner)


class ThrottlingProxy:
    """API Gateway's route throttling in front of the local stack (whose gateway has none): the first `refuse`
    requests get API Gateway's 429, the rest pass through unchanged (Host included: the signature covers it)."""

    def __init__(self, upstream: str, refuse: int = 0, retry_after: str | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.seen = 0
        proxy = self
        target = urlsplit(upstream)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def answer(self) -> None:
                proxy.seen += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.seen <= refuse:
                    self.send_response(429)
                    self.send_header("Content-Type", "application/json")
                    if retry_after:
                        self.send_header("Retry-After", retry_after)
                    self.end_headers()
                    self.wfile.write(b'{"message":"Too Many Requests"}')
                    return
                upstream_call = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                upstream_call.request(self.command, self.path, body=body or None, headers=dict(self.headers))
                answer = upstream_call.getresponse()
                content = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
                upstream_call.close()

            do_GET = do_POST = do_DELETE = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        if tls:  # (certificate, key): an HTTPS front, as API Gateway's
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = self.url.replace("http://", "https://")

    def __enter__(self):
        import threading

        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_throttling_is_retried_with_backoff(dev, waits, owner):
    with ThrottlingProxy(dev.base_url, refuse=2) as proxy:
        page = make_client(proxy.url, waits).list_connections(owner_id=owner)
    assert page.connections == () and proxy.seen == 3
    assert len(waits.seconds) == 2 and 0.25 <= waits.seconds[0] <= 0.5 and 0.5 <= waits.seconds[1] <= 1.0

    with ThrottlingProxy(dev.base_url, refuse=10) as proxy, pytest.raises(Throttled) as throttled:
        make_client(proxy.url, waits, retry=RetryPolicy(max_attempts=4)).list_connections(owner_id=owner)
    assert throttled.value.http_status == 429 and throttled.value.retryable and proxy.seen == 4


def test_a_retry_after_is_honoured_and_one_too_long_is_left_to_the_caller(dev, waits, owner):
    with ThrottlingProxy(dev.base_url, refuse=1, retry_after="3") as proxy:
        make_client(proxy.url, waits).list_connections(owner_id=owner)
    assert waits.seconds == [3.0] and proxy.seen == 2

    with ThrottlingProxy(dev.base_url, refuse=1, retry_after="60") as proxy, pytest.raises(Throttled) as throttled:
        make_client(proxy.url, waits).list_connections(owner_id=owner)
    assert throttled.value.retry_after == 60.0 and proxy.seen == 1 and waits.seconds == [3.0]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_is_verified_against_the_ca_bundle_botocore_would_use(dev, waits, owner, tmp_path):
    from botocore.session import Session

    cert_file, key_file = self_signed(tmp_path)
    trusting = Session()
    trusting.set_config_variable("ca_bundle", str(cert_file))  # what AWS_CA_BUNDLE or a profile's ca_bundle set
    with ThrottlingProxy(dev.base_url, tls=(cert_file, key_file)) as front:
        assert make_client(front.url, waits, session=trusting).list_connections(owner_id=owner).connections == ()
        untrusting = Session()
        untrusting.set_config_variable("ca_bundle", None)
        with pytest.raises(TransportError) as unverified:
            make_client(front.url, waits, session=untrusting).list_connections(owner_id=owner)
    assert "CERTIFICATE_VERIFY_FAILED" in unverified.value.message
    assert not unverified.value.retryable and waits.seconds == []
