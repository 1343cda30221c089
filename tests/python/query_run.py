"""Queries from Python, written only from the .proto files (grpcio).

Arguments: stubs dir, server address, run id. Calls QueryRun on the run
(a handler with an argument, the built-in __dex_pending, and a name the
workflow has no handler for) and prints one JSON line with the answers.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
address, run_id = sys.argv[2:4]

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from dex.v1 import client_service_pb2 as client_pb  # noqa: E402
from dex.v1 import client_service_pb2_grpc as client_grpc  # noqa: E402
from dex.v1 import common_pb2  # noqa: E402


def json_payload(value):
    return common_pb2.Payload(encoding="json/plain", data=json.dumps(value).encode())


with grpc.insecure_channel(address) as channel:
    client = client_grpc.ClientServiceStub(channel)
    run = common_pb2.RunSelector(run_id=run_id)
    timeout = duration_pb2.Duration(seconds=10)

    def query(name, args=None):
        request = client_pb.QueryRunRequest(run=run, query_name=name, timeout=timeout)
        if args is not None:
            request.args.CopyFrom(json_payload(args))
        response = client.QueryRun(request, timeout=20)
        return json.loads(response.result.data) if response.result.encoding == "json/plain" else None

    answer = query("greeting", {"punctuation": "?"})
    pending = query("__dex_pending")
    try:
        query("nope")
        unknown = {"code": "OK"}
    except grpc.RpcError as err:
        unknown = {"code": err.code().name, "message": err.details()}
    print(json.dumps({"answer": answer, "pending": pending, "unknown": unknown}))
