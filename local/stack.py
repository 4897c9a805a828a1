"""The template's AWS resources created in moto (in-process or a moto server), for tests and the demo."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3

from local import cfn

REGION = "us-east-1"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass(frozen=True)
class LocalResources:
    env: dict[str, str]  # the environment the template would give every function
    events_queue_url: str  # every connection event, delivered by an EventBridge rule

    def received_events(self, wait: int = 0) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        found: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10,
                                         WaitTimeSeconds=wait)
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])


def create_resources(
    *,
    name: str = "oauth-keeper-local",
    public_base_url: str,
    allowed_return_origins: list[str],
    tiktok_base_url: str,
    client_key: str,
    client_secret: str,
    ssm_prefix: str = "/oauth-keeper",
    pkce_mode: str = "s256-hex",
    scopes: str = "user.info.basic",
    connect_confirmation: str = "off",
) -> LocalResources:
    """Create tables (from the template's own definitions), the KMS key, SSM parameters and the event bus."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    tables = {}
    for logical_id in ("ConnectionsTable", "FlowsTable"):
        table_name = f"{name}-{logical_id}"
        dynamodb.create_table(**cfn.table_definition(logical_id, table_name))
        ttl = cfn.table_ttl_attribute(logical_id)
        if ttl:
            dynamodb.update_time_to_live(TableName=table_name,
                                         TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})
        tables[logical_id] = table_name

    key_arn = boto3.client("kms", region_name=REGION).create_key(
        Description=f"{name} token envelope key", KeyUsage="ENCRYPT_DECRYPT"
    )["KeyMetadata"]["Arn"]
    owner_key_arn = boto3.client("kms", region_name=REGION).create_key(
        Description=f"{name} owner key", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC"
    )["KeyMetadata"]["Arn"]

    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=f"{ssm_prefix}/tiktok/client_key", Value=client_key, Type="String", Overwrite=True)
    ssm.put_parameter(Name=f"{ssm_prefix}/tiktok/client_secret", Value=client_secret, Type="SecureString",
                      Overwrite=True)

    events = boto3.client("events", region_name=REGION)
    bus = f"{name}-connections"
    events.create_event_bus(Name=bus)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    refresh_queue_url = sqs.create_queue(QueueName=f"{name}-refresh")["QueueUrl"]
    removal_queue_url = sqs.create_queue(QueueName=f"{name}-removals")["QueueUrl"]
    removal_queue_arn = sqs.get_queue_attributes(QueueUrl=removal_queue_url,
                                                 AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"{name}-all", EventBusName=bus, EventPattern=json.dumps({"source": ["oauth-keeper"]}))
    events.put_targets(Rule=f"{name}-all", EventBusName=bus, Targets=[{"Id": "capture", "Arn": queue_arn}])

    env = {
        "CONNECTIONS_TABLE": tables["ConnectionsTable"],
        "FLOWS_TABLE": tables["FlowsTable"],
        "TOKEN_KEY_ARN": key_arn,
        "OWNER_KEY_ARN": owner_key_arn,
        "STACK_NAME": name,
        "EVENT_BUS_NAME": bus,
        "SSM_PREFIX": ssm_prefix,
        "PUBLIC_BASE_URL": public_base_url,
        "ALLOWED_RETURN_ORIGINS": ",".join(allowed_return_origins),
        "TIKTOK_SCOPES": scopes,
        "TIKTOK_PKCE_MODE": pkce_mode,
        "TIKTOK_AUTHORIZE_URL": f"{tiktok_base_url}/v2/auth/authorize/",
        "TIKTOK_TOKEN_URL": f"{tiktok_base_url}/v2/oauth/token/",
        "TIKTOK_REVOKE_URL": f"{tiktok_base_url}/v2/oauth/revoke/",
        "TIKTOK_USERINFO_URL": f"{tiktok_base_url}/v2/user/info/",
        "ALLOW_HTTP_ENDPOINTS": "true",  # local mode: the simulated TikTok serves http:// on loopback
        "DUE_SHARDS": "16",
        "CONNECT_CONFIRMATION": connect_confirmation,
        "REFRESH_QUEUE_URL": refresh_queue_url,
        "REMOVAL_QUEUE_URL": removal_queue_url,
        "REMOVAL_QUEUE_ARN": removal_queue_arn,
        "POWERTOOLS_SERVICE_NAME": "oauth-keeper",
        "POWERTOOLS_METRICS_NAMESPACE": "OAuthKeeper",
    }
    return LocalResources(env=env, events_queue_url=queue_url)


@contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """Make moto's DynamoDB as atomic as the real one: one request at a time.

    Real DynamoDB applies a conditional write atomically. moto checks the condition and applies the update
    without a lock, so two threads can both pass `attribute_not_exists` or `revision = :r` (seen here with
    four concurrent callbacks). Serialising the calls models the real service; nothing else changes.
    """
    import botocore.client

    original = botocore.client.BaseClient._make_api_call
    lock = threading.RLock()

    def one_at_a_time(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name != "dynamodb":
            return original(client, operation, params)
        with lock:
            return original(client, operation, params)

    botocore.client.BaseClient._make_api_call = one_at_a_time
    try:
        yield
    finally:
        botocore.client.BaseClient._make_api_call = original


def install_from_env(*, clock: Any = None, sleep: Any = None, **parts: Any) -> Any:
    """A composition root built from the current environment, as a cold start builds it, with the given
    clock (default: the installed container's) and in-memory parts; installed so the handlers use it."""
    from oauth_keeper import root
    from oauth_keeper.settings import Settings

    if clock is None or sleep is None:
        current = root._current  # noqa: SLF001 - keep the running world's clock and sleep
        clock = clock if clock is not None else (current.clock if current else None)
        sleep = sleep if sleep is not None else (current.sleep if current else None)
    return root.install(root.Container(Settings.from_env(), clock=clock, sleep=sleep, **parts))


def another_container() -> Any:
    """A second warm container beside the installed one: same settings, clock and AWS, its own caches and
    lease identity (another worker or API function running at the same time)."""
    from oauth_keeper import root

    current = root.container()
    return root.Container(current.settings, clock=current.clock, sleep=current.sleep)


def sweep_into(queue: Any, container: Any = None) -> Any:
    """One sweep of the installed (or given) container's connections into `queue` (a local.memory.ListQueue)."""
    from oauth_keeper import root
    from oauth_keeper.usecases.sweep import Sweep

    parts = container or root.container()
    return Sweep(parts.connections, queue, parts.clock, parts.settings.sweep_interval, breakers=parts.breakers,
                 providers=parts.settings.providers).run()




def deliver_refresh_queue() -> list[dict[str, Any]]:
    """What the refresh worker's SQS event sources do in AWS, done now: every message waiting in the removal queue,
    then in the refresh queue (moto), goes to the worker's Lambda handler (template.yaml's RefreshWorkerFunction,
    in this process, on the installed container), ten to a batch, each record naming its queue in
    `eventSourceARN` as Lambda does; a message it reports failed stays queued (invisible for the queue's
    visibility timeout, as in SQS). Returns the records handed over."""
    from oauth_keeper import root

    from local.apigw import LambdaContext, Route

    worker = cfn.resources_of_type("AWS::Serverless::Function")["RefreshWorkerFunction"]["Properties"]
    handler = Route("RefreshWorkerFunction", worker["Handler"], "", "", "NONE", worker["CodeUri"]).load_handler()
    sqs = boto3.client("sqs", region_name=REGION)
    settings = root.container().settings
    delivered: list[dict[str, Any]] = []
    for url in filter(None, (settings.removal_queue_url, settings.refresh_queue_url)):
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            records = [{"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs",
                        "eventSourceARN": arn} for m in messages]
            answer = handler({"Records": records}, LambdaContext("RefreshWorkerFunction"))
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            delivered += records
    return delivered
