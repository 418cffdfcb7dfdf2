"""Model services ("runners" in BentoML 1.4): one `@bentoml.service` per model family, with adaptive batching.

The API service reaches them through `bentoml.depends(...)`; each loads its models once, verified, on the
device the settings allow.
"""
