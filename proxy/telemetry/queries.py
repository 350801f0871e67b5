"""The SQL the dashboards run, kept next to the schema so tests run every query on the real engine.

Each query reads one table's ordering-key prefix plus a time range, which is what the ORDER BY
keys in schema.py were chosen for. `{db}` is the database; `{window}` an interval such as
`1 HOUR` (a Grafana panel puts its time-range macro there instead).
"""

from __future__ import annotations

DASHBOARD_QUERIES: dict[str, str] = {
    "requests_per_minute_by_model": """
        SELECT toStartOfMinute(ts) AS t, model, count() AS requests
        FROM {db}.requests WHERE ts >= now64(3) - INTERVAL {window}
        GROUP BY t, model ORDER BY t, model""",
    "latency_quantiles_by_model": """
        SELECT model, count() AS requests,
               quantileTDigest(0.5)(latency_ms) AS p50_ms, quantileTDigest(0.95)(latency_ms) AS p95_ms,
               quantileTDigest(0.99)(latency_ms) AS p99_ms, avg(ttfb_ms) AS avg_ttfb_ms,
               avg(latency_ms - upstream_ms) AS avg_overhead_ms
        FROM {db}.requests WHERE ts >= now64(3) - INTERVAL {window}
        GROUP BY model ORDER BY requests DESC""",
    "errors_by_backend": """
        SELECT backend, count() AS requests, countIf(status >= 500) AS errors_5xx,
               countIf(status = 429) AS throttled, round(errors_5xx / requests, 4) AS error_rate
        FROM {db}.requests WHERE ts >= now64(3) - INTERVAL {window}
        GROUP BY backend ORDER BY error_rate DESC, requests DESC""",
    "tokens_by_tenant": """
        SELECT tenant, model, sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens
        FROM {db}.requests WHERE ts >= now64(3) - INTERVAL {window}
        GROUP BY tenant, model ORDER BY prompt_tokens + completion_tokens DESC""",
    "verdicts_over_time": """
        SELECT toStartOfFiveMinutes(ts) AS t, verdict, count() AS requests
        FROM {db}.requests WHERE ts >= now64(3) - INTERVAL {window} AND verdict != ''
        GROUP BY t, verdict ORDER BY t, verdict""",
    "lineage": """
        SELECT model, model_version, prompt_template_id, prompt_template_version, count() AS requests,
               countIf(verdict IN ('block', 'flag')) AS blocked_or_flagged
        FROM {db}.requests WHERE ts >= now64(3) - INTERVAL {window}
        GROUP BY model, model_version, prompt_template_id, prompt_template_version ORDER BY requests DESC""",
    "detections_by_category": """
        SELECT detector, category, direction, count() AS findings, avg(score) AS avg_score,
               countIf(action = 'block') AS blocked
        FROM {db}.detections WHERE ts >= now64(3) - INTERVAL {window}
        GROUP BY detector, category, direction ORDER BY findings DESC""",
    "drift_over_time": """
        SELECT ts AS window_end, model, stream, statistic, value, threshold, drifted, sample_size
        FROM {db}.drift_windows WHERE ts >= now64(3) - INTERVAL {window}
        ORDER BY model, stream, statistic, window_end""",
    "review_labels_weighted": """
        SELECT s.model, l.label, count() AS labelled, sum(1 / s.sampling_rate) AS estimated_population
        FROM {db}.review_labels AS l INNER JOIN {db}.review_samples AS s ON l.sample_id = s.sample_id
        WHERE l.ts >= now64(3) - INTERVAL {window} AND s.sampling_rate > 0
        GROUP BY s.model, l.label ORDER BY s.model, labelled DESC""",
    "backend_health_timeline": """
        SELECT ts, upstream_group, backend, previous_state, state, reason
        FROM {db}.backend_health WHERE ts >= now64(3) - INTERVAL {window}
        ORDER BY backend, ts""",
    "audit_trail": """
        SELECT ts, actor, action, target, tenant, outcome, request_id, details
        FROM {db}.audit_actions WHERE ts >= now64(3) - INTERVAL {window}
        ORDER BY ts DESC LIMIT 1000""",
}


def dashboard_query(name: str, database: str = "warden", window: str = "1 HOUR") -> str:
    return DASHBOARD_QUERIES[name].format(db=f"`{database}`", window=window).strip()
