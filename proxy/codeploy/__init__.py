"""Co-deploy: Warden starts and supervises its model servers, reads their load, and rolls out versions.

Kept import-light: `proxy.settings` imports the settings module, so nothing here imports the
upstream pool at package import time.
"""
