-- dex schema v14: a run's trace context (docs/decisions/0030-opentelemetry-traces.md).
-- Expand only: new nullable columns, so a server of the previous schema keeps
-- working on this one (it never writes them; its runs simply carry no trace).

-- The W3C trace context (traceparent, tracestate) of the request that started
-- the run, as a JSON object of header name to value; NULL when the start
-- carried none (the default, and the whole cost when tracing is off). Written
-- by the start insert, read by the workflow task claim, which reads the run row
-- already; every task of the run hands it to the worker, so the worker's spans
-- join the starter's trace, on any server and after restarts.
alter table dex.runs add column trace_context jsonb;

-- The same, copied from the run when the completion inserts the activity task
-- (it holds the run row locked then): the activity claim reads only its own
-- rows, as it does for instance_id and workflow_name.
alter table dex.activity_tasks add column trace_context jsonb;
