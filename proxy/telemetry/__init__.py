"""Telemetry to ClickHouse (or embedded chDB): schema and migrations, the batched writer, the spool.

Importing this package is cheap: clickhouse-connect and chDB load when a store is opened.
"""

from proxy.telemetry.schema import TABLES
from proxy.telemetry.store import Store, StoreError, open_store
from proxy.telemetry.writer import TelemetryWriter

__all__ = ["TABLES", "Store", "StoreError", "TelemetryWriter", "open_store"]
