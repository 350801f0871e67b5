"""Grafana dashboards, provisioning and alert rules; the JSON is generated (`python -m dashboards.generate`)."""
