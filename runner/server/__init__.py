"""`seqrun serve`'s HTTP side and lifecycle.

- `app.py`: the Starlette app (webhooks, /healthz, /readyz, /metrics) and where a dashboard mounts;
- `receiving.py`: one webhook delivery, verified and stored before it is answered;
- `deliveries.py`: the recent deliveries and their verdicts (in memory, for the dashboard);
- `health.py`, `metrics.py`: readiness checks and Prometheus metrics;
- `lifecycle.py`: the process: engine loop, HTTP server thread, start-up and stopping;
- `logs.py`: text or JSON log lines, redacted;
- `dashboard/`: the web dashboard mounted at `/` (`create_dashboard`).

Nothing below this package knows about the web framework.
"""
