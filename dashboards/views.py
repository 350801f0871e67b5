"""The six dashboards. Metric names and meanings: docs/metrics.md; how to read them: docs/dashboards.md."""

from __future__ import annotations

from dashboards.grafana import CLICKHOUSE, Board, prom, quantiles, sql, variable

MT = '{model=~"$model",tenant=~"$tenant"}'
RATE = "[$__rate_interval]"


def overview() -> Board:
    b = Board("warden-overview", "Warden / Overview", "Traffic, latency, errors and saturation of the proxy.")
    b.variables = [variable("model", "label_values(warden_requests_total, model)"),
                   variable("tenant", "label_values(warden_requests_total, tenant)")]
    b.row("Traffic")
    b.timeseries("Requests by route", [prom(f"sum by (route) (rate(warden_requests_total{MT}{RATE}))", "{{route}}")],
                 unit="reqps")
    b.timeseries("Requests by tenant", [prom(f"sum by (tenant) (rate(warden_requests_total{MT}{RATE}))",
                                             "{{tenant}}")], unit="reqps")
    b.timeseries("Requests by model", [prom(f"sum by (model) (rate(warden_requests_total{MT}{RATE}))", "{{model}}")],
                 unit="reqps")
    b.timeseries("Tokens in and out", [
        prom(f"sum(rate(warden_prompt_tokens_total{MT}{RATE}))", "prompt (in)"),
        prom(f"sum(rate(warden_completion_tokens_total{MT}{RATE}))", "completion (out)")],
                 unit="short", w=12, description="Tokens per second as the backends report them in `usage`.")
    b.timeseries("Responses by status", [prom(f"sum by (code) (rate(warden_requests_total{MT}{RATE}))",
                                              "{{code}}")], unit="reqps", w=12)
    b.row("Errors")
    errors = 'warden_requests_total{code=~"5..",model=~"$model",tenant=~"$tenant"}'
    b.timeseries("Error ratio (5xx)", [prom(f"sum(rate({errors}{RATE})) / sum(rate(warden_requests_total{MT}{RATE}))",
                                            "5xx share")], unit="percentunit", w=12)
    b.timeseries("Errors by route and status", [prom(f"sum by (route, code) (rate({errors}{RATE}))",
                                                     "{{route}} {{code}}")], unit="reqps", w=12)
    b.row("Latency")
    b.timeseries("Request duration", quantiles("warden_request_duration_seconds", selector=MT), unit="s")
    b.timeseries("Time to first token (streams)", quantiles("warden_time_to_first_token_seconds", selector=MT),
                 unit="s")
    b.timeseries("Inter-token latency (streams)", quantiles("warden_inter_token_latency_seconds", selector=MT),
                 unit="s", description="Mean gap between tokens of each stream, one observation per stream.")
    b.timeseries("Proxy overhead by route", quantiles("warden_proxy_overhead_seconds", "route", qs=(0.5, 0.99)),
                 unit="s", w=12, description="Total time minus time waiting on the upstream: Warden's own cost.")
    b.timeseries("Time to first byte by route", quantiles("warden_time_to_first_byte_seconds", "route", qs=(0.5, 0.95)),
                 unit="s", w=12)
    b.row("Saturation")
    b.stat("In flight", [prom("sum(warden_in_flight_requests)", "requests")])
    b.stat("Healthy backends", [prom("sum(warden_upstream_healthy) / count(warden_upstream_healthy)", "healthy")],
           unit="percentunit")
    b.timeseries("Outstanding and waiting", [
        prom("sum by (group) (warden_upstream_outstanding)", "{{group}} in flight"),
        prom("sum by (group) (warden_upstream_queue_depth)", "{{group}} waiting")],
                 w=16, h=4)
    b.row("Telemetry")
    b.timeseries("Telemetry rows", [prom(f"sum(rate(warden_telemetry_rows_written_total{RATE}))", "written"),
                                    prom(f"sum(rate(warden_telemetry_rows_spooled_total{RATE}))", "spooled"),
                                    prom(f"sum(rate(warden_telemetry_rows_dropped_total{RATE}))", "dropped")],
                 unit="short")
    b.timeseries("Spool and buffer", [prom("sum(warden_telemetry_spool_bytes)", "spool bytes"),
                                      prom("sum(warden_telemetry_buffered_rows)", "buffered rows")])
    b.timeseries("Insert duration", quantiles("warden_telemetry_insert_duration_seconds", "table", qs=(0.95,)),
                 unit="s")
    b.stat("Store up", [prom("min(warden_telemetry_store_up)", "up")])
    return b


def upstreams() -> Board:
    g = '{group=~"$group"}'
    b = Board("warden-upstreams", "Warden / Upstreams", "Backends: health, load, failures, ejections, queueing.")
    b.variables = [variable("group", "label_values(warden_upstream_healthy, group)")]
    b.timeseries("Healthy backends per group", [prom(f"sum by (group) (warden_upstream_healthy{g})", "{{group}}")])
    b.panel("state-timeline", "Backend health", [prom(f"warden_upstream_healthy{g}", "{{backend}}")], w=16,
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.9})
    b.timeseries("Outstanding per backend", [prom(f"sum by (backend) (warden_upstream_outstanding{g})", "{{backend}}")])
    b.timeseries("Ejections", [prom(f"sum by (backend) (increase(warden_upstream_ejections_total{g}{RATE}))",
                                    "{{backend}}")])
    b.timeseries("Retries", [prom(f"sum by (group) (rate(warden_upstream_retries_total{g}{RATE}))", "{{group}}")],
                 unit="reqps")
    b.timeseries("Upstream answers by status", [prom(
        f"sum by (backend, code) (rate(warden_upstream_responses_total{g}{RATE}))", "{{backend}} {{code}}")],
        unit="reqps", w=12)
    b.timeseries("Upstream failures by kind", [prom(
        f"sum by (group, kind) (rate(warden_upstream_failures_total{g}{RATE}))", "{{group}} {{kind}}")],
        unit="reqps", w=12)
    b.timeseries("Queue wait", quantiles("warden_upstream_queue_wait_seconds", "group", g, (0.5, 0.95)), unit="s",
                 w=12)
    b.timeseries("Waiting for a slot", [prom(f"sum by (group) (warden_upstream_queue_depth{g})", "{{group}}")], w=12)
    b.table("Health transitions", [sql("upstream_health_events", table=True)])
    return b


def governance() -> Board:
    t = '{tenant=~"$tenant"}'
    b = Board("warden-governance", "Warden / Governance", "Detections, blocks, redactions and throttles per tenant.")
    b.variables = [variable("tenant", "label_values(warden_requests_total, tenant)")]
    for action, title in (("block", "Blocks"), ("redact", "Redactions"), ("flag", "Flags")):
        verdicts = f'warden_policy_verdicts_total{{action="{action}",tenant=~"$tenant"}}'
        b.timeseries(f"{title} per tenant", [prom(f"sum by (tenant, direction) (rate({verdicts}{RATE}))",
                                                  "{{tenant}} {{direction}}")], unit="reqps")
    b.timeseries("Detections by detector, label and action", [prom(
        f"sum by (detector, label, action) (rate(warden_detections_total{t}{RATE}))",
        "{{detector}} {{label}} {{action}}")], unit="short", w=12)
    b.timeseries("Refused by limits", [prom(
        f"sum by (tenant, reason) (rate(warden_governance_refusals_total{t}{RATE}))", "{{tenant}} {{reason}}")],
        unit="reqps", w=12)
    b.timeseries("Abuse throttles and suspensions", [prom(
        f"sum by (tenant, action) (increase(warden_abuse_actions_total{t}{RATE}))", "{{tenant}} {{action}}")])
    b.timeseries("Keys restricted now", [prom(f"sum by (tenant, kind) (warden_abuse_restrictions{t})",
                                              "{{tenant}} {{kind}}")])
    b.timeseries("Auth failures", [prom(f"sum by (reason) (rate(warden_auth_failures_total{RATE}))", "{{reason}}")],
                 unit="reqps")
    b.timeseries("Tokens charged per tenant", [prom(f"sum by (tenant) (rate(warden_tenant_tokens_total{t}{RATE}))",
                                                    "{{tenant}}")], w=12)
    b.timeseries("Policy outcomes per tenant (ClickHouse)", [sql("governance_verdicts")], w=12)
    b.table("Findings per tenant and category (ClickHouse)", [sql("governance_detections", table=True)])
    b.timeseries("Spend per tenant and model", [prom(
        f"sum by (tenant, model, currency) (rate(warden_spend_total{t}{RATE}))", "{{tenant}} {{model}} {{currency}}")],
        unit="short", w=12, description="Money per second at the `pricing:` prices; unpriced requests count 0 "
                                        "(warden_spend_unpriced_total).")
    b.timeseries("Budget used per tenant", [prom(f"max by (tenant) (warden_budget_used_ratio{t})", "{{tenant}}")],
                 unit="percentunit", w=12, description="Share of each tenant's budget spent in its period; the "
                                                       "alert rules fire at 80% and 100%.")
    return b


def drift() -> Board:
    m = '{model=~"$model"}'
    b = Board("warden-drift", "Warden / Drift", "Embedding drift per model over time, from ClickHouse `drift_windows`.")
    b.variables = [variable("model", sql("drift_models")["rawSql"], CLICKHOUSE)]
    b.timeseries("Drifted windows per model", [sql("drift_drifted_windows")], unit="short", w=12)
    b.timeseries("Votes and alert per model", [sql("drift_votes")], unit="short", w=12)
    b.timeseries("MMD² per model and stream", [sql("drift_mmd")], unit="short", w=12)
    b.timeseries("Domain-classifier AUC", [sql("drift_auc")], unit="short", w=12)
    b.table("Latest window per statistic", [sql("drift_latest", table=True)])
    b.row("Live (Prometheus)")
    b.stat("Streams in alert", [prom(f"sum(warden_drift_alert{m})", "alerting")], w=6)
    b.timeseries("Windows evaluated", [prom(f"sum by (drifted) (increase(warden_drift_windows_total{RATE}))",
                                            "drifted={{drifted}}")], w=6, h=4)
    b.timeseries("Last statistics", [prom(f"max by (model, stream, statistic) (warden_drift_statistic{m})",
                                          "{{model}} {{stream}} {{statistic}}")], w=6, h=4)
    b.timeseries("Embedding queue", [prom("sum(warden_drift_queue_depth)", "waiting"),
                                     prom(f"sum(rate(warden_drift_sampled_total{RATE}))", "sampled/s")], w=6, h=4)
    return b


def review() -> Board:
    m = '{model=~"$model"}'
    b = Board("warden-review", "Warden / Review", "The human review queue: depth, draws, labels and rate estimates.")
    b.variables = [variable("model", "label_values(warden_requests_total, model)")]
    b.stat("Queue depth", [prom("sum(warden_review_queue_depth)", "waiting")], w=6, h=8)
    b.timeseries("Labels given", [prom(f"sum by (label) (rate(warden_review_labels_total{RATE}))", "{{label}}")], w=9)
    b.timeseries("Drawn by stratum", [prom(f"sum by (stratum) (rate(warden_review_sampled_total{RATE}))",
                                           "{{stratum}}")], w=9)
    b.timeseries("Violation rate estimate (95% interval)", [
        prom(f"max by (model) (warden_review_violation_rate{m})", "{{model}} estimate"),
        prom(f"max by (model) (warden_review_violation_rate_low{m})", "{{model}} low"),
        prom(f"max by (model) (warden_review_violation_rate_high{m})", "{{model}} high")], unit="percentunit", w=12)
    b.timeseries("Decided items per model", [prom(f"max by (model) (warden_review_decided_items{m})", "{{model}}")],
                 w=6)
    b.timeseries("Sampling rate by stratum", [prom(
        f"sum by (stratum) (rate(warden_review_sampled_total{RATE})) / "
        f"sum by (stratum) (rate(warden_review_seen_total{RATE}))",
        "{{stratum}}")], unit="percentunit", w=6)
    b.timeseries("Labels over time (ClickHouse)", [sql("review_labels")], w=12)
    b.table("Sample by model and stratum (ClickHouse)", [sql("review_samples", table=True)], w=12)
    return b


def scanner() -> Board:
    k = '{task=~"$task"}'
    b = Board("warden-scanner", "Warden / Scanner", "The model process: queues, micro-batches, latency, utilisation.")
    b.variables = [variable("task", "label_values(warden_scanner_items_total, task)")]
    b.timeseries("Queue depth", [prom(f"sum by (task, priority) (warden_scanner_queue_depth{k})",
                                      "{{task}} {{priority}}")])
    b.timeseries("Texts scanned", [prom(f"sum by (task) (rate(warden_scanner_items_total{k}{RATE}))", "{{task}}")],
                 unit="short")
    b.timeseries("Utilisation", [prom(f"sum by (task) (rate(warden_scanner_batch_seconds_sum{k}{RATE}))", "{{task}}")],
                 unit="percentunit", description="Device-seconds per second spent in batches: 1 is a busy device.")
    b.timeseries("Batch size", [*quantiles("warden_scanner_batch_size", "task", k, (0.5, 0.95)), prom(
        f"sum by (task) (rate(warden_scanner_batch_size_sum{k}{RATE})) / "
        f"sum by (task) (rate(warden_scanner_batch_size_count{k}{RATE}))", "mean {{task}}")])
    b.timeseries("Batch latency", quantiles("warden_scanner_batch_seconds", "task", k, (0.5, 0.95)), unit="s")
    b.timeseries("Refused and failed", [
        prom(f"sum by (task, priority) (rate(warden_scanner_overloaded_total{k}{RATE}))",
             "overloaded {{task}} {{priority}}"),
        prom(f"sum by (task, stage) (rate(warden_scanner_errors_total{k}{RATE}))", "failed {{task}} {{stage}}")])
    b.timeseries("Detector latency (proxy side)", quantiles("warden_detector_seconds", "detector", qs=(0.95,)),
                 unit="s", w=12)
    b.timeseries("Detector failures", [prom(f"sum by (detector, outcome) (rate(warden_detector_failures_total{RATE}))",
                                            "{{detector}} fail-{{outcome}}")], w=6)
    b.timeseries("Device memory", [prom(f"sum by (task) (warden_scanner_device_memory_bytes{k})", "{{task}}")],
                 unit="bytes", w=6)
    b.timeseries("Detector findings cache: hit ratio", [prom(
        f'sum by (detector) (rate(warden_detector_cache_total{{result="hit"}}{RATE})) / '
        f"sum by (detector) (rate(warden_detector_cache_total{RATE}))", "{{detector}}")], unit="percentunit", w=12,
        description="Texts answered without the scanner (seen before: earlier turns, system prompts) over all "
                    "texts a scanner-backed detector read.")
    return b


BOARDS = {"warden-overview": overview, "warden-upstreams": upstreams, "warden-governance": governance,
          "warden-drift": drift, "warden-review": review, "warden-scanner": scanner}
