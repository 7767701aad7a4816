"""The job engine: everything that submits, polls and waits, for any job API.

Nothing here knows a vendor (a test checks that no module of this package imports one
or names a vendor model). A vendor plugs in through a *dialect*, a small pure object
implementing ``Dialect`` (``_protocol``); the engine does all the I/O and timing:

- ``_protocol``: the dialect protocol and the states its classifiers return.
- ``_http``: the one HTTP boundary (auth header, errors, transient retries, bounded
  streamed reads, no redirects); httpx sends, or ``_aiohttp`` (extra ``aiohttp``,
  ``http_backend="aiohttp"``), which only moves bytes and reports failures as the
  httpx exceptions that mean the same.
- ``_secrets``: API keys masked in every error text and log record.
- ``_handle``: ``Job`` (the engine's record) and ``JobHandle[T]`` (a caller's view).
- ``_scheduler``: one heap of due polls for any number of jobs, a limit on requests,
  hard deadlines.
- ``_channel``: one client's place on an engine, and the one submit path of every API
  (single flight, write-ahead claims, throttle scopes, journal replay).
- ``_engine``: ``JobEngine``, which owns a scheduler and its task group (lifecycle).
- ``_client``: ``ApiClient``, what every API client shares: constructor, lifecycle,
  ``resume``, ``statistics``, the in-doubt rule's default.
- ``_journal``: the durable record of submitted jobs and the claims on them
  (``SQLiteJobStore``); ``_postgres``: the same in PostgreSQL.
- ``_backlog``: journal writes that failed during an outage, retried until it ends
  (so an outage fails one input, never the engine).
- ``_adaptive``: a duration model for adaptive polling.
- ``_kit``: helpers that dialects share (error mappers, id checks, path segments).
"""
