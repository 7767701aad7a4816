"""The Kepler Insights scoring API: ``AsyncKepler`` and everything only it needs.

- ``_client``: ``AsyncKepler`` (score, submit, resume, score_many, journal replay).
- ``_endpoints``: the plain read endpoints (history, cohort, usage...).
- ``_dialect``: Kepler's ``Dialect`` for the engine; ``_errors``: its error table.
- ``_models``: the response types; ``_domains``: domain and job id checks.
- ``_batch``: ``score_many``; ``_config``: key and base URL from arguments or env.
"""
