"""A proxy with governance on: keys for two tenants, made fresh per test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.governance.keys import digest, new_key
from tests.proxy.conftest import proxy_config


@dataclass
class Key:
    id: str
    secret: str
    tenant: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def config(self) -> dict[str, str]:
        return {"id": self.id, "tenant": self.tenant, "sha256": digest(self.secret)}


def make_key(tenant: str) -> Key:
    key_id, secret = new_key()
    return Key(key_id, secret, tenant)


def governed_config(backends: list[str], keys: list[Key], tenants: dict[str, Any] | None = None,
                    **governance: Any) -> dict[str, Any]:
    config = proxy_config(backends)
    config["governance"] = {"keys": [k.config() for k in keys], "tenants": tenants or {}, **governance}
    return config
