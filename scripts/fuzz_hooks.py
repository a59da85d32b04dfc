"""schemathesis hooks for scripts/fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Every request is authenticated as the demo user (FUZZ_TOKEN), except the webhooks, which are
signed the way each provider signs, so the fuzzer reaches the payload parsers behind the
signature instead of stopping at 401: `generic` with a Standard Webhooks signature of the exact
body sent, `instantly` with its Bearer secret and a fresh `timestamp`, `inbound-mail` with its
Bearer secret. The key is the fuzzed server's WEBHOOK_SECRET (FUZZ_WEBHOOK_SECRET).

Half of the cases with an id in the path (chosen by a hash of the case, so a seeded run repeats)
aim at the demo objects (FUZZ_IDS) instead of a random id: random ids only ever meet a 404, and
the stateful phase alone would reach the objects' pages."""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import UTC, datetime

import schemathesis


def _generic_headers(body: bytes) -> dict[str, str]:
    msg_id, stamp = uuid.uuid4().hex, str(int(time.time()))
    key = os.environ["FUZZ_WEBHOOK_SECRET"].encode()
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


IDS = json.loads(os.environ.get("FUZZ_IDS") or "{}")
ID_PARAMETERS = {"id": "campaigns", "campaign_id": "campaigns", "recipient_id": "recipients"}


def _aim_at_demo_objects(case) -> None:
    params = case.path_parameters or {}
    if not any(name in ID_PARAMETERS for name in params):
        return
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).digest()
    if digest[0] % 2:
        return
    for name, kind in ID_PARAMETERS.items():
        if name in params and IDS.get(kind):
            params[name] = IDS[kind][digest[1] % len(IDS[kind])]
    case.path_parameters = params


@schemathesis.hook
def before_call(context, case, kwargs):
    _aim_at_demo_objects(case)
    path = case.operation.path
    headers = dict(case.headers or {})
    if path.endswith("/webhooks/generic/"):
        if isinstance(case.body, bytes):
            body = case.body
        elif isinstance(case.body, dict | list | str | int | float | bool) or case.body is None:
            body = case.body = json.dumps(case.body).encode()
        else:  # no body at all (schemathesis' NOT_SET): sign the empty one
            body = b""
        headers.update(_generic_headers(body))
    elif path.endswith("/webhooks/inbound-mail/"):
        # The inbound-mail secret defaults to WEBHOOK_SECRET: the fuzzer reaches the MIME parser.
        headers["Authorization"] = "Bearer " + os.environ["FUZZ_WEBHOOK_SECRET"]
    elif path.endswith("/webhooks/instantly/"):
        if isinstance(case.body, dict):
            case.body = {**case.body, "timestamp": datetime.now(UTC).isoformat()}
        headers["Authorization"] = "Bearer " + os.environ["FUZZ_WEBHOOK_SECRET"]
    else:
        headers["Authorization"] = "Token " + os.environ["FUZZ_TOKEN"]
    case.headers = headers
