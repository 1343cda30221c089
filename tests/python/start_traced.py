"""A second-language client joining dex's traces: starts a workflow with a W3C
`traceparent` (and `tracestate`) in the gRPC metadata, as any OpenTelemetry
gRPC instrumentation sends it, and waits for the result. Plain grpcio, stubs
generated from the .proto files into the directory given as first argument.
Prints one JSON line: {"run_id", "status", "trace_id", "span_id"}.
"""
import json
import secrets
import sys

sys.path.insert(0, sys.argv[1])
address, workflow, instance_id, input_json = sys.argv[2:6]

import grpc  # noqa: E402
from dex.v1 import client_service_pb2 as client_pb  # noqa: E402
from dex.v1 import client_service_pb2_grpc as client_grpc  # noqa: E402
from dex.v1 import common_pb2  # noqa: E402
from run_result import wait_for_end  # noqa: E402

trace_id = secrets.token_hex(16)
span_id = secrets.token_hex(8)
metadata = (("traceparent", f"00-{trace_id}-{span_id}-01"), ("tracestate", "py=1"))

with grpc.insecure_channel(address) as channel:
    client = client_grpc.ClientServiceStub(channel)
    started = client.StartWorkflow(
        client_pb.StartWorkflowRequest(
            workflow_name=workflow,
            instance_id=instance_id,
            task_queue="default",
            input=common_pb2.Payload(encoding="json/plain", data=input_json.encode()),
        ),
        metadata=metadata,
        timeout=10,
    )
    outcome = wait_for_end(client, common_pb2.RunSelector(run_id=started.run_id))
    print(
        json.dumps(
            {
                "run_id": started.run_id,
                "status": common_pb2.RunStatus.Name(outcome.status),
                "trace_id": trace_id,
                "span_id": span_id,
            }
        )
    )
