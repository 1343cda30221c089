"""Creates a dex schedule from Python grpcio stubs built only from the .proto files.

Arguments: the stubs directory, the server address, the schedule id, the
workflow name, the input as JSON. Creates a schedule firing every second,
waits (up to 60 s) until DescribeSchedule shows its first action, and prints
one JSON line: {"schedule_id", "run_id", "instance_id", "bad_cron_code"}.
"""
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
address, schedule_id, workflow, input_json = sys.argv[2:6]

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from dex.v1 import common_pb2  # noqa: E402
from dex.v1 import schedule_service_pb2 as schedule_pb  # noqa: E402
from dex.v1 import schedule_service_pb2_grpc as schedule_grpc  # noqa: E402

with grpc.insecure_channel(address) as channel:
    schedules = schedule_grpc.ScheduleServiceStub(channel)
    schedules.CreateSchedule(
        schedule_pb.CreateScheduleRequest(
            schedule_id=schedule_id,
            schedule=schedule_pb.Schedule(
                spec=schedule_pb.ScheduleSpec(intervals=[schedule_pb.ScheduleInterval(every=duration_pb2.Duration(seconds=1))]),
                action=schedule_pb.ScheduleAction(
                    workflow_name=workflow,
                    task_queue="default",
                    input=common_pb2.Payload(encoding="json/plain", data=input_json.encode()),
                    labels={"client": "python"},
                ),
                policies=schedule_pb.SchedulePolicies(overlap_policy=schedule_pb.SCHEDULE_OVERLAP_POLICY_SKIP),
            ),
            remaining_actions=1,
        ),
        timeout=10,
    )
    deadline = time.monotonic() + 60
    while True:
        described = schedules.DescribeSchedule(schedule_pb.DescribeScheduleRequest(schedule_id=schedule_id), timeout=10)
        if described.info.recent_actions or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    try:
        schedules.CreateSchedule(
            schedule_pb.CreateScheduleRequest(
                schedule_id=schedule_id + "-bad",
                schedule=schedule_pb.Schedule(
                    spec=schedule_pb.ScheduleSpec(cron_expressions=["61 * * * *"]),
                    action=schedule_pb.ScheduleAction(workflow_name=workflow),
                ),
            ),
            timeout=10,
        )
        bad_cron_code = "OK"
    except grpc.RpcError as err:
        bad_cron_code = err.code().name
    action = described.info.recent_actions[0] if described.info.recent_actions else None
    print(
        json.dumps(
            {
                "schedule_id": described.schedule_id,
                "run_id": action.run_id if action else None,
                "instance_id": action.instance_id if action else None,
                "bad_cron_code": bad_cron_code,
            }
        )
    )
