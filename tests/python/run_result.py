"""Waiting for a dex run to end, from the .proto files only: shared by the client scripts here.

Import it after the generated stubs' directory is on sys.path (each script puts it first).
"""
from dex.v1 import client_service_pb2 as client_pb
from dex.v1 import common_pb2

# A run is open while CREATED or RUNNING; every other status is an end (TIMED_OUT included, and any
# status a newer server adds), so a wait never spins on a run that has ended.
OPEN = {common_pb2.RUN_STATUS_CREATED, common_pb2.RUN_STATUS_RUNNING}


def wait_for_end(client, selector, metadata=None):
    """GetRunResult's long poll (about 20 s per call), asked again until the run has ended."""
    while True:
        outcome = client.GetRunResult(client_pb.GetRunResultRequest(run=selector, wait=True), timeout=30, metadata=metadata)
        if outcome.status not in OPEN:
            return outcome
