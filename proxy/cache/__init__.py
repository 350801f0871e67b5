"""Exact-match response cache and request coalescing for deterministic requests (docs/cache.md).

Nothing is imported here: proxy/settings.py imports `proxy.cache.settings`, and the service
imports the relay, which imports the settings.
"""
