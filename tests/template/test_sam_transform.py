"""What SAM generates from template.yaml: the schedule's role, the SQS mapping, the functions' roles,
the HTTP API's routes and its stage's throttling.

The structure tests read what we wrote; these read what CloudFormation will get, through the
SAM CLI's own translator (offline, no credentials).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from typing import Any

import pytest

from local.cfn import ROOT, TEMPLATE, resources_of_type
from tests.template.test_template_structure import ROUTES

pytestmark = pytest.mark.build

_TRANSLATE = textwrap.dedent("""
    import json, sys
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicyLookups:  # every policy here is inline: nothing to look up in IAM
        def load(self):
            return {}

    with open(sys.argv[1], encoding="utf-8") as f:
        sam_template = yaml_parse(f.read())
    for resource in sam_template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):  # what `sam package` puts there
            if isinstance(properties.get(key), str):
                properties[key] = "s3://bucket/" + properties[key].strip("/")
    parameters = {"AllowedReturnOrigins": "https://app.example.com"}
    print(json.dumps(transform(sam_template, parameters, NoManagedPolicyLookups())))
""")

_MANAGED = "arn:aws:iam::aws:policy/service-role/"


@pytest.fixture(scope="module")
def translated(sam_python, tool_env) -> dict[str, Any]:
    """The whole CloudFormation template SAM generates (Globals and policy templates expanded)."""
    result = subprocess.run(
        [sam_python, "-c", _TRANSLATE, str(TEMPLATE)],
        cwd=ROOT,
        env=tool_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"SAM transform failed\n{result.stderr[-6000:]}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def generated(translated) -> dict[str, Any]:
    return translated["Resources"]


def test_every_ref_getatt_and_sub_resolves_after_sams_own_translation(translated):
    """cfn-lint and `sam validate --lint` miss a bad !Ref inside Globals or a policy-template parameter;
    after SAM's translator has copied those into every function, the same reference check sees them."""
    from tests.template.test_template_structure import reference_problems

    problems = reference_problems(translated)
    assert not problems, "\n".join(problems)


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in resources.items() if res["Type"] == kind}


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def test_the_sweep_schedule_invokes_the_sweeper_with_its_input_retries_and_dlq(generated):
    (schedule,) = _of_type(generated, "AWS::Scheduler::Schedule").values()
    assert "Name" not in schedule  # CloudFormation names it: two stacks per account can coexist
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["SweeperFunction", "Arn"]}
    assert json.loads(target["Input"])["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 300}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SchedulerDLQ", "Arn"]}}


def test_the_schedule_role_may_write_to_the_scheduler_dlq_so_no_queue_policy_is_needed(generated):
    (schedule,) = _of_type(generated, "AWS::Scheduler::Schedule").values()
    role_id = schedule["Target"]["RoleArn"]["Fn::GetAtt"][0]
    role = generated[role_id]["Properties"]
    principals = [s["Principal"]["Service"] for s in role["AssumeRolePolicyDocument"]["Statement"]]
    assert principals == [["scheduler.amazonaws.com"]]
    granted = {(s["Action"], json.dumps(s["Resource"], sort_keys=True)) for s in _statements(role)}
    assert granted == {
        ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["SweeperFunction", "Arn"]})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["SchedulerDLQ", "Arn"]})),
    }


def test_the_refresh_queue_mapping_reports_partial_failures_and_caps_concurrency(generated):
    mappings = {m["EventSourceArn"]["Fn::GetAtt"][0]: m
                for m in _of_type(generated, "AWS::Lambda::EventSourceMapping").values()}
    assert set(mappings) == {"RefreshQueue", "RemovalQueue"}
    for mapping in mappings.values():
        assert mapping["FunctionName"] == {"Ref": "RefreshWorkerFunction"}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mappings["RemovalQueue"]["BatchSize"] == 10
    assert mappings["RefreshQueue"]["BatchSize"] == {"Ref": "WorkerBatchSize"}
    assert mappings["RefreshQueue"]["MaximumBatchingWindowInSeconds"] == {"Ref": "WorkerBatchingWindowSeconds"}
    assert mappings["RefreshQueue"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}}


def test_sam_adds_only_the_log_and_queue_polling_managed_policies_to_the_function_roles(generated):
    for name, function in resources_of_type("AWS::Serverless::Function").items():
        role = generated[f"{name}Role"]["Properties"]
        expected = {_MANAGED + "AWSLambdaBasicExecutionRole"}
        if any(e["Type"] == "SQS" for e in function["Properties"].get("Events", {}).values()):
            expected.add(_MANAGED + "AWSLambdaSQSQueueExecutionRole")
        assert set(role.get("ManagedPolicyArns", [])) == expected, name
        written = [s for p in function["Properties"].get("Policies", []) for s in p["Statement"]]
        # An asynchronous invocation's OnFailure queue: SAM grants sending to it (and to nothing else).
        on_failure = ((function["Properties"].get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get(
            "OnFailure")
        if on_failure:
            written.append({"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": on_failure["Destination"]})
        in_order = sorted(json.dumps(s, sort_keys=True) for s in _statements(role))
        assert in_order == sorted(json.dumps(s, sort_keys=True) for s in written), f"{name}: SAM changed the statements"


def test_a_failed_sweep_goes_to_the_sweeper_dlq_after_lambdas_retries(generated):
    (config,) = _of_type(generated, "AWS::Lambda::EventInvokeConfig").values()
    assert config["FunctionName"] == {"Ref": "SweeperFunction"} and config["Qualifier"] == "$LATEST"
    assert config["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": ["SweeperDLQ", "Arn"]}}}
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (2, 300)


def test_each_function_names_its_log_group_and_the_layer_its_stack(generated):
    for name in resources_of_type("AWS::Serverless::Function"):
        logging = generated[name]["Properties"]["LoggingConfig"]
        assert logging == {"LogGroup": {"Ref": name.removesuffix("Function") + "LogGroup"}}, name
    (layer,) = _of_type(generated, "AWS::Lambda::LayerVersion").values()
    assert layer["LayerName"] == {"Fn::Sub": "${AWS::StackName}-shared"}


def _generated_routes(generated: dict[str, Any]) -> dict[str, Any]:
    """Route key ("GET /path") -> its OpenAPI operation in the generated HTTP API's body."""
    (api,) = _of_type(generated, "AWS::ApiGatewayV2::Api").values()
    return {
        f"{method.upper()} {path}": operation
        for path, operations in api["Body"]["paths"].items()
        for method, operation in operations.items()
    }


def test_the_generated_api_signs_every_route_but_the_public_ones(generated):
    public = {"GET /connect/{provider}", "GET /callback/{provider}", "POST /webhooks/{provider}",
              "POST /deauthorize/{provider}", "POST /data-deletion/{provider}", "GET /data-deletion/{provider}"}
    routes = _generated_routes(generated)
    assert public <= set(routes)
    assert set(routes) == {f"{method} {path}" for method, path in ROUTES}  # the contract's routes, no other
    for key, operation in routes.items():
        expected = None if key in public else [{"AWS_IAM": []}]
        assert operation.get("security") == expected, key


def test_the_stage_throttles_each_public_route_on_top_of_the_default(generated):
    """The limits reach the stage as the template's parameters (their defaults: test_template_structure.py)."""
    (stage,) = _of_type(generated, "AWS::ApiGatewayV2::Stage").values()
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": {"Ref": "DefaultRouteBurstLimit"},
                                             "ThrottlingRateLimit": {"Ref": "DefaultRouteRateLimit"}}
    settings = stage["RouteSettings"]
    public = {"ThrottlingBurstLimit": {"Ref": "PublicRouteBurstLimit"},
              "ThrottlingRateLimit": {"Ref": "PublicRouteRateLimit"}}
    for key in ("GET /connect/{provider}", "GET /callback/{provider}", "POST /webhooks/{provider}"):
        assert settings[key] == public, key
    # A key naming no route of the API fails the stage at deploy time ("Unable to find Route by key").
    assert set(settings) <= set(_generated_routes(generated)), sorted(set(settings) - set(_generated_routes(generated)))


def test_the_webhook_lambda_is_updated_after_the_refresh_worker_lambda(generated):
    """SAM keeps the webhook's DependsOn on the Lambda function it generates (break-test of issue 13, finding 5:
    a removal queued by the new webhook must never reach a worker of the previous version, which drops it)."""
    depends = generated["WebhookFunction"].get("DependsOn", [])
    assert "RefreshWorkerFunction" in (depends if isinstance(depends, list) else [depends])
