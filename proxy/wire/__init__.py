"""The OpenAI wire format: SSE framing and where text stands in bodies and stream events.

It sits at the bottom of the proxy so that every wing (policy, review, drift, cache,
governance) reads traffic the same way: one decoder, one text extraction, no copies.
"""
