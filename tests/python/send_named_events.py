"""Named external events from a client written only from the .proto files.

Arguments: the stubs directory, the server address, an instance id. Starts
the shopping cart (examples/shopping-cart, workflow "cart") with a first
`add-item` event (SendEventWithStart), sends more: with an id, the same id
again, without an id (the server generates one), and in the form from before
names (an id alone, which is also the name); then `checkout`, and prints one
JSON line with what each answer said and the run's result.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
address, instance_id = sys.argv[2:4]

import grpc  # noqa: E402
from dex.v1 import client_service_pb2 as client_pb  # noqa: E402
from dex.v1 import client_service_pb2_grpc as client_grpc  # noqa: E402
from dex.v1 import common_pb2  # noqa: E402
from run_result import wait_for_end  # noqa: E402


def payload(value):
    return common_pb2.Payload(encoding="json/plain", data=json.dumps(value).encode())


with grpc.insecure_channel(address) as channel:
    client = client_grpc.ClientServiceStub(channel)
    started = client.SendEventWithStart(
        client_pb.SendEventWithStartRequest(
            start=client_pb.StartWorkflowRequest(
                workflow_name="cart",
                instance_id=instance_id,
                task_queue="default",
                input=payload({"items": [], "itemsPerRun": 1000, "runsBefore": 0}),
                request_id="python-" + instance_id,
            ),
            event_name="add-item",
            event_id="py-1",
            payload=payload("apple"),
        ),
        timeout=10,
    )
    run = common_pb2.RunSelector(instance_id=instance_id)

    def send(**fields):
        return client.SendEvent(client_pb.SendEventRequest(run=run, **fields), timeout=10)

    again = send(event_name="add-item", event_id="py-1", payload=payload("apple"))
    generated = send(event_name="add-item", payload=payload("pear"))
    legacy = send(event_id="add-item", payload=payload("plum"))
    try:
        send(payload=payload("nothing"))
        missing_code = "OK"
    except grpc.RpcError as err:
        missing_code = err.code().name
    described = client.DescribeRun(client_pb.DescribeRunRequest(run=run), timeout=10)
    counts = {c.event_name: c.in_history + c.in_inbox for c in described.received_events}
    send(event_name="checkout", payload=payload("paid"))
    outcome = wait_for_end(client, run)
    print(
        json.dumps(
            {
                "started": started.started,
                "first_id": started.event_id,
                "again_duplicate": again.duplicate,
                "generated_id": generated.event_id,
                "generated_duplicate": generated.duplicate,
                "legacy_id": legacy.event_id,
                "missing_code": missing_code,
                "counts": counts,
                "status": common_pb2.RunStatus.Name(outcome.status),
                "result": json.loads(outcome.result.data.decode()) if outcome.result.data else None,
            }
        )
    )
