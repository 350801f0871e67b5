"""Warden's scanning library (PII, toxicity, abuse) and its scanner runtime.

Imports neither `proxy` nor `drift`. Its detectors arrive with the scanner runtime work; until
then the proxy runs no detector and says so in its start-up log.
"""
