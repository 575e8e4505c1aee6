"""Schemathesis hooks for .ci/schemathesis: the few rules of the API that a
JSON Schema cannot state, applied to generated *valid* requests only.

Each rule is written down in the description of the parameter or schema
in the OpenAPI document, and the server refuses a request breaking it with a documented
400 or 422; negative cases are left alone, so those refusals stay tested.

- Opaque cursors (`after` of the customer list, `cursor` of segment
  members): a cursor is valid only if the server issued it (sealed to the
  caller, purpose and list), so no generated value can be one. Valid
  requests leave it out; the stateful phase follows `next_cursor` links.
- Chart ranges (`/v1/audit/stats/*`, `/v1/consents/rates`): `from` and
  `days` exclude each other, `from` must be before `to`, and a range holds
  at most 2,000 buckets.
- Segment definitions (`POST /v1/segments`, `/v1/segments/query`): a range
  gives at least one bound and `min` is not above `max`; `bought`/`viewed`
  name exactly one of `product` and `category`; `rfm_score` gives at least
  one of r, f, m; a profile cluster is below its `k`; `in_segment` names a
  saved segment, which a generated id is not (replaced by a condition).
- Event batches (`POST /v1/events`): `event_id` is unique within a batch;
  repeated ids get a suffix.
- Policies (`POST /v1/admin/policies`, `/preview`): the body is a Casbin
  policy that must keep a rule letting some role manage the policy; a
  generated string is not one, so valid requests send the shipped
  `policies/policy.csv`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import schemathesis

CURSORS = {
    ("GET", "/v1/customers"): "after",
    ("GET", "/v1/segments/{id}/members"): "cursor",
}
RANGE_PATHS = {
    "/v1/audit/stats/decisions",
    "/v1/audit/stats/denials",
    "/v1/audit/stats/purposes",
    "/v1/consents/rates",
}
MAX_BUCKETS = 2000


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _buckets(start: datetime, end: datetime, hours: int) -> float:
    return (end - start) / timedelta(hours=hours) + 2


def _fix_range(query: dict) -> None:
    hours = 1 if query.get("bucket") == "hour" else 24
    if "from" in query and "days" in query:
        del query["days"]
    end = _parse(query.get("to")) or datetime.now(timezone.utc)
    if "from" in query:
        start = _parse(query["from"])
        if start is None or start >= end or _buckets(start, end, hours) > MAX_BUCKETS:
            del query["from"]
    days = query.get("days", 30)
    if isinstance(days, int) and days * 24 / hours + 2 > MAX_BUCKETS:
        query["days"] = (MAX_BUCKETS - 2) * hours // 24


POLICY_BODIES = {("POST", "/v1/admin/policies"), ("POST", "/v1/admin/policies/preview")}
SHIPPED_POLICY = (Path(__file__).resolve().parent.parent / "policies" / "policy.csv").read_text()
SEGMENT_BODIES = {("POST", "/v1/segments"), ("POST", "/v1/segments/query")}
# Ranges of the segment language: (lower name, upper name, lowest value).
BOUNDS = {
    "recency": ("min_days", "max_days", 0),
    "signup_age": ("min_days", "max_days", 0),
    "frequency": ("min", "max", 0),
    "monetary": ("min", "max", 0),
    "average_order_value": ("min", "max", 0),
}


def _given(d: dict, key: str):
    return d.get(key) is not None


def _fix_bounds(d: dict, low: str, high: str, lowest) -> None:
    if not _given(d, low) and not _given(d, high):
        d[low] = lowest
    elif _given(d, low) and _given(d, high) and d[low] > d[high]:
        d[low], d[high] = d[high], d[low]


def _fix_node(node):
    if not isinstance(node, dict) or len(node) != 1:
        return node
    (key, value), = node.items()
    if key in ("all", "any") and isinstance(value, list):
        return {key: [_fix_node(child) for child in value]}
    if key == "not":
        return {key: _fix_node(value)}
    if key == "in_segment":
        return {"recency": {"max_days": 30}}
    if not isinstance(value, dict):
        return node
    if key in BOUNDS:
        _fix_bounds(value, *BOUNDS[key])
    elif key == "rfm_score":
        if not any(_given(value, s) for s in "rfm"):
            value["r"] = {"min": 1}
        for s in "rfm":
            if isinstance(value.get(s), dict):
                _fix_bounds(value[s], "min", "max", 1)
    elif key in ("bought", "viewed"):
        if _given(value, "product") and _given(value, "category"):
            del value["category"]
        elif not _given(value, "product") and not _given(value, "category"):
            value["product"] = "85123A"
    elif key == "events":
        if _given(value, "min_count") and _given(value, "max_count") and value["min_count"] > value["max_count"]:
            value["min_count"], value["max_count"] = value["max_count"], value["min_count"]
    elif key == "profile_cluster":
        k, cluster = value.get("k"), value.get("cluster")
        number = (int, float)
        if isinstance(k, number) and isinstance(cluster, number) and cluster >= k:
            value["cluster"] = int(k) - 1
    return node


def _fix_segment_body(body: dict) -> None:
    if "definition" in body:
        body["definition"] = _fix_node(body["definition"])
    members = body.get("members")
    if isinstance(members, dict):
        members.pop("cursor", None)


def _unique_event_ids(body: dict) -> None:
    seen = set()
    for i, event in enumerate(body.get("events") or []):
        if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
            continue
        if event["event_id"] in seen:
            event["event_id"] = f"{event['event_id'][:56]}-dup{i}"
        seen.add(event["event_id"])


@schemathesis.hook
def map_case(ctx, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    operation = case.operation
    key = (operation.method.upper(), operation.path)
    if key in CURSORS and isinstance(case.query, dict):
        case.query.pop(CURSORS[key], None)
    if operation.path in RANGE_PATHS and isinstance(case.query, dict):
        _fix_range(case.query)
    if key == ("POST", "/v1/events") and isinstance(case.body, dict):
        _unique_event_ids(case.body)
    if key in POLICY_BODIES and isinstance(case.body, dict) and "csv" in case.body:
        case.body["csv"] = SHIPPED_POLICY
    if key in SEGMENT_BODIES and isinstance(case.body, dict):
        _fix_segment_body(case.body)
    return case
