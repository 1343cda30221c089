"""Resets a dex run from Python grpcio stubs built only from the .proto files (issue 15, Done-when 4).

Arguments: the stubs directory, the server address, the workflow name, the
instance id, the input as JSON. Starts a run and waits for it to end, resets
it to its last workflow task (ResetRun, with a request id, twice: the retry
must name the same run), waits for the new run's result, and prints one JSON
line: {"old_run_id", "new_run_id", "same_on_retry", "status", "result",
"reset_from_run_id", "reset_to_run_id", "bad_point_code", "bad_point_message"}.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
address, workflow, instance_id, input_json = sys.argv[2:6]

import grpc  # noqa: E402
from dex.v1 import client_service_pb2 as client_pb  # noqa: E402
from dex.v1 import client_service_pb2_grpc as client_grpc  # noqa: E402
from dex.v1 import common_pb2  # noqa: E402
from run_result import wait_for_end as wait_for_result  # noqa: E402


def wait_for_end(client, run_id):
    return wait_for_result(client, common_pb2.RunSelector(run_id=run_id))


with grpc.insecure_channel(address) as channel:
    client = client_grpc.ClientServiceStub(channel)
    started = client.StartWorkflow(
        client_pb.StartWorkflowRequest(
            workflow_name=workflow,
            instance_id=instance_id,
            task_queue="default",
            input=common_pb2.Payload(encoding="json/plain", data=input_json.encode()),
        ),
        timeout=10,
    )
    wait_for_end(client, started.run_id)
    old = common_pb2.RunSelector(run_id=started.run_id)
    reset_request = client_pb.ResetRunRequest(
        run=old,
        to=client_pb.RESET_POINT_KIND_LAST_WORKFLOW_TASK,
        reason="python reset",
        request_id="python-reset-" + instance_id,
    )
    reset = client.ResetRun(reset_request, timeout=10)
    retried = client.ResetRun(reset_request, timeout=10)
    outcome = wait_for_end(client, reset.run_id)
    new_description = client.DescribeRun(client_pb.DescribeRunRequest(run=common_pb2.RunSelector(run_id=reset.run_id)), timeout=10)
    old_description = client.DescribeRun(client_pb.DescribeRunRequest(run=old), timeout=10)
    try:
        client.ResetRun(
            client_pb.ResetRunRequest(run=old, to=client_pb.RESET_POINT_KIND_EVENT, event_sequence=999), timeout=10
        )
        bad_point_code, bad_point_message = "OK", ""
    except grpc.RpcError as err:
        bad_point_code, bad_point_message = err.code().name, err.details()
    print(
        json.dumps(
            {
                "old_run_id": started.run_id,
                "new_run_id": reset.run_id,
                "same_on_retry": retried.run_id == reset.run_id and reset.created and not retried.created,
                "status": common_pb2.RunStatus.Name(outcome.status),
                "result": json.loads(outcome.result.data.decode()) if outcome.result.data else None,
                "reset_from_run_id": new_description.reset_from_run_id,
                "reset_to_run_id": old_description.reset_to_run_id,
                "bad_point_code": bad_point_code,
                "bad_point_message": bad_point_message,
            }
        )
    )
