"""Warden's scanning library: the Detector protocol, PII, toxicity, abuse, redaction, and the
scanner runtime (a separate process that owns the models) with the client the proxy uses.

Imports neither `proxy` nor `drift`.
"""
