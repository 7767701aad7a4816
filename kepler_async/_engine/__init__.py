"""The job engine: everything that submits, polls and waits, for any job API.

Nothing here knows a vendor (a test checks that no module of this package imports one
or names a vendor model). A vendor plugs in through a *dialect*, a small pure object
implementing ``JobApi`` (``_protocol``); the engine does all the I/O and timing:

- ``_protocol``: the dialect protocol and the states its classifiers return.
- ``_http``: the one boundary to httpx (auth header, errors, transient retries).
- ``_handle``: ``JobHandle[T]``, the awaitable a caller holds for one job.
- ``_scheduler``: one heap of due polls for any number of jobs, a limit on requests.
- ``_engine``: ``JobEngine``, which owns a scheduler and its task group (lifecycle).
- ``_client``: ``ApiClient``, what every API client shares: constructor, the one
  submit path, journal replay, ``resume``, ``statistics``, ``aclose``.
- ``_journal``: the durable record of submitted jobs (SQLite).
- ``_adaptive``: a duration model for adaptive polling.
- ``_kit``: helpers that dialects share (error mappers, id checks, path segments).
"""
