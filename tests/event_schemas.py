"""The connection events' JSON Schemas (`docs/events/`, draft 2020-12) and the check of events against them."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from local.cfn import ROOT

SCHEMAS = ROOT / "docs" / "events"


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """detail-type -> its schema, one `<detail-type in kebab case>.schema.json` file each."""
    found = {}
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        found[schema["properties"]["detail-type"]["const"]] = schema
    return found


@cache
def _validator(detail_type: str) -> Draft202012Validator:
    # The format checker makes `format` (date-time, uuid) an assertion, not the annotation draft 2020-12 defaults to.
    # The published schemas let a detail gain fields within its schema_version (consumers must accept them); the
    # tests hold the code to exactly the documented ones, so a new field cannot ship undocumented.
    schema = json.loads(json.dumps(schemas()[detail_type]))
    schema["properties"]["detail"]["additionalProperties"] = False
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(event: dict[str, Any]) -> list[str]:
    """Why an EventBridge event (the envelope a rule delivers, `detail` included) breaks the schema of its
    detail-type, one line each; [] when it matches. An event of a detail-type without a schema is one problem."""
    detail_type = event.get("detail-type")
    if detail_type not in schemas():
        return [f"{detail_type!r}: no schema in docs/events/"]
    return [f"{detail_type}: {'/'.join(map(str, error.absolute_path)) or '(event)'}: {error.message}"
            for error in _validator(detail_type).iter_errors(event)]


def envelope(pending: dict[str, Any]) -> dict[str, Any]:
    """An event as it waits in the outbox (`detail_type`, `detail`), in the envelope EventBridge delivers it in:
    the detail goes through the same JSON the publisher sends; the envelope's own fields are an example."""
    return {
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": pending["detail_type"],
        "source": "oauth-keeper", "account": "123456789012", "time": "2027-01-15T08:00:00Z",
        "region": "us-east-1", "resources": [], "detail": json.loads(json.dumps(pending["detail"])),
    }
