"""Human review: a representative sample of traffic, a reviewer web UI, and what the labels say.

Imports nothing at package level, so `proxy.settings` can take `ReviewSettings` from
`proxy.review.settings` without pulling in the relay (which imports the settings).
"""
