"""Calls one MPS push action through the older official SDK (aliyun-python-sdk-mpaas with
aliyun-python-sdk-core: API version 2019-08-21, the version 1 RPC signature, HMAC-SHA1).

    python mps_legacy_call.py ENDPOINT KEY_ID SECRET ACTION PARAMS_JSON [NONCE [TIMESTAMP]]

ENDPOINT is host:port (plain HTTP); PARAMS_JSON the request's parameters by their MPS names,
each set with the request's own setter; NONCE and TIMESTAMP, when given, replace the ones
the SDK would make (and sign). Prints one JSON line: `{"body": ...}` with the answer's body,
or `{"error": {"code": ..., "status": ...}}` when the SDK raised.
"""

import importlib
import json
import sys

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.utils import parameter_helper


def main():
    endpoint, key_id, secret, action, params = sys.argv[1:6]
    if len(sys.argv) > 6:
        nonce = sys.argv[6]
        parameter_helper.get_uuid = lambda: nonce
    if len(sys.argv) > 7:
        timestamp = sys.argv[7]
        parameter_helper.get_iso_8061_date = lambda: timestamp
    module = importlib.import_module(f"aliyunsdkmpaas.request.v20190821.{action}Request")
    request = getattr(module, f"{action}Request")()
    for name, value in json.loads(params).items():
        getattr(request, f"set_{name}")(value)
    request.set_endpoint(endpoint)
    request.set_protocol_type("http")
    client = AcsClient(key_id, secret, "cn-hangzhou")
    try:
        body = client.do_action_with_exception(request)
    except ServerException as e:
        print(json.dumps({"error": {"code": e.get_error_code(), "status": e.get_http_status(), "message": e.get_error_msg()}}))
        return
    except ClientException as e:
        print(json.dumps({"error": {"code": e.get_error_code(), "status": None, "message": e.get_error_msg()}}))
        return
    print(json.dumps({"body": json.loads(body)}))


if __name__ == "__main__":
    main()
