"""Calls one MPS action through Alibaba Cloud's official mPaaS server SDK
(alibabacloud-mpaas20201028), as an app backend written for MPS does.

    python mps_call.py ENDPOINT KEY_ID SECRET ACTION PARAMS_JSON [HEADERS_JSON]

ENDPOINT is host:port (plain HTTP). An action this SDK version has no model for (such as
CancelMpsScheduler) goes through the SDK's generic call_api, as the SDK's own methods do.
PARAMS_JSON the request model's fields by their MPS
names (`{"AppId": ..., "TargetMsgkey": {...}}`); HEADERS_JSON, headers the SDK sends (and
signs) in place of its own, such as `x-acs-date` or `x-acs-signature-nonce`. Prints one JSON line: `{"body": ...}` with
the answer's body, or `{"error": {"code": ..., "status": ...}}` when the SDK raised.
"""

import json
import re
import sys

from alibabacloud_mpaas20201028 import models
from alibabacloud_mpaas20201028.client import Client
from alibabacloud_tea_openapi import utils_models
from darabonba.runtime import RuntimeOptions


def main():
    endpoint, key_id, secret, action, params = sys.argv[1:6]
    headers = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
    config = utils_models.Config(
        access_key_id=key_id, access_key_secret=secret, endpoint=endpoint, protocol="http"
    )
    if headers:
        config.global_parameters = utils_models.GlobalParameters(headers=headers)
    client = Client(config)
    try:
        if hasattr(models, action + "Request"):
            request = getattr(models, action + "Request")().from_map(json.loads(params))
            method = re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()
            body = getattr(client, method)(request).body.to_map()
        else:
            api = utils_models.Params(
                action=action, version="2020-10-28", protocol="HTTPS", pathname="/", method="POST",
                auth_type="AK", style="RPC", req_body_type="formData", body_type="json",
            )
            request = utils_models.OpenApiRequest(body=json.loads(params))
            body = client.call_api(api, request, RuntimeOptions())["body"]
    except Exception as e:  # the SDK's ClientException / ServerException
        code = getattr(e, "code", None)
        status = getattr(e, "status_code", None)
        print(json.dumps({"error": {"code": code, "status": status, "message": str(e)}}))
        return
    print(json.dumps({"body": body}))


if __name__ == "__main__":
    main()
