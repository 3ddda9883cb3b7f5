import os
from dagster import DagsterInstance, DagsterEventType
os.environ.setdefault("DAGSTER_HOME", os.getcwd())
inst = DagsterInstance.get()
runs = inst.get_runs(limit=6)
for r in reversed(runs):
    recs = inst.all_logs(r.run_id)
    start = {}
    t0 = recs[0].timestamp; tend = recs[-1].timestamp
    print(r.run_id[:8], r.tags.get("dagster/partition"), f"run {tend-t0:.1f}s")
    for e in recs:
        if e.is_dagster_event and e.dagster_event.event_type in (DagsterEventType.STEP_START,):
            start[e.step_key] = e.timestamp
        if e.is_dagster_event and e.dagster_event.event_type in (DagsterEventType.STEP_SUCCESS,):
            print(f"   {e.step_key:40s} {e.timestamp-start[e.step_key]:6.1f}  (at {start[e.step_key]-t0:6.1f})")
