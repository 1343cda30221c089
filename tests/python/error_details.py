"""Typed error details read by a Python grpcio client from the .proto files alone.

The stubs (protoc + grpc_python_plugin) are in the directory given as the
first argument. The server sends a google.rpc.Status-compatible dex.v1.RpcStatus
in the standard `grpc-status-details-bin` trailer; grpcio-status's
`rpc_status.from_call` reads that trailer too where it is installed (Debian
has no package for it), so this reads it by hand, as any client can.

Prints one JSON line: what each refusal's details held.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
address, workflow, instance_id = sys.argv[2:5]

import grpc  # noqa: E402
from dex.v1 import client_service_pb2 as client_pb  # noqa: E402
from dex.v1 import client_service_pb2_grpc as client_grpc  # noqa: E402
from dex.v1 import common_pb2  # noqa: E402
from dex.v1 import errors_pb2  # noqa: E402

TRAILER = "grpc-status-details-bin"


def details_of(err):
    """The dex.v1.ErrorDetails of a refused call, checked as grpcio-status checks a status."""
    trailer = dict(err.trailing_metadata() or ()).get(TRAILER)
    if trailer is None:
        return None
    status = errors_pb2.RpcStatus.FromString(trailer)
    if status.code != err.code().value[0] or status.message != err.details():
        raise ValueError("the status in the trailer does not match the call's")
    for packed in status.details:
        if packed.Is(errors_pb2.ErrorDetails.DESCRIPTOR):
            details = errors_pb2.ErrorDetails()
            packed.Unpack(details)
            return {
                "code": err.code().name,
                "reason": errors_pb2.ErrorReason.Name(details.reason),
                "run_id": details.run_id,
                "instance_id": details.instance_id,
                "run_status": common_pb2.RunStatus.Name(details.run_status),
            }
    return None


def refusal(call):
    try:
        call()
    except grpc.RpcError as err:
        return err
    raise AssertionError("the call was not refused")


with grpc.insecure_channel(address) as channel:
    client = client_grpc.ClientServiceStub(channel)
    start = client_pb.StartWorkflowRequest(workflow_name=workflow, instance_id=instance_id, task_queue="default")
    first = client.StartWorkflow(start, timeout=10)
    already = refusal(lambda: client.StartWorkflow(start, timeout=10))
    client.TerminateRun(client_pb.TerminateRunRequest(run=common_pb2.RunSelector(run_id=first.run_id), reason="from python"), timeout=10)
    ended = refusal(
        lambda: client.SendEvent(client_pb.SendEventRequest(run=common_pb2.RunSelector(run_id=first.run_id), event_id="late"), timeout=10)
    )
    invalid = refusal(lambda: client.StartWorkflow(client_pb.StartWorkflowRequest(workflow_name="", instance_id="x"), timeout=10))
    print(
        json.dumps(
            {
                "run_id": first.run_id,
                "already_exists": details_of(already),
                "ended": details_of(ended),
                "invalid_argument": details_of(invalid),
                "invalid_argument_code": invalid.code().name,
            }
        )
    )
