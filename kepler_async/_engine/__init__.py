"""The job engine: everything that submits, polls and waits, for any job API.

Nothing here knows a vendor (a test checks that no module of this package imports one
or names a vendor model). A vendor plugs in through a *dialect* and an ``ApiSpec``;
the engine does all the I/O and timing.

Layers, from the bottom; a module imports only from layers below its own
(``tests/test_layout.py`` fails on any import circle in the package, imports under
``TYPE_CHECKING`` and inside functions included):

1. Parts that know none of the others: ``_dialect`` (the ``Dialect`` protocol and
   the states its classifiers return), ``_stats`` (counts and ``EngineStatistics``),
   ``_adaptive`` (how long jobs take), ``_secrets`` (keys masked in every text),
   ``_progress`` (``JobEvent``, ``BatchProgress``: the engine seen from outside),
   ``_cap`` (a fan-out's cap on billed runs), ``wires/`` (what moves the bytes: httpx,
   with its ``PromisingPool``, and aiohttp) and ``stores/`` (the journal's contract,
   SQLite, PostgreSQL; the columns in one table).
2. ``_telemetry`` (``Telemetry``: a client's spans, metrics and event hook, through
   OpenTelemetry's global providers) and ``_traced`` (the hooks the engine calls:
   a public call's span, one HTTP attempt observed, a job's end); ``_http``: the one
   HTTP boundary (headers, error tree, retries, bounded reads, no redirects), sending
   through a wire, its httpx error mapping in ``_http_errors``; ``_spec``:
   ``ApiSpec``, each API's key, origin, auth header and error mapping; ``_kit``:
   helpers dialects share; ``_backlog``: journal writes that wait out an outage.
3. ``_record``: ``JobRecord`` (the engine's record of one job) and ``JobOwner`` (what
   the scheduler and the handles need from whoever owns a record).
4. Built on records: ``_handle`` (``JobHandle``, a caller's view), ``_poll`` (what one
   poll does), ``_writer`` (one binding's journal); then ``_scheduler`` (which job is
   due, on which in-flight slot) and ``_replay`` (what the journal says before a
   submit).
5. ``_submit``: the submit path in steps (single flight, send, classify), with the one
   table from error class to journal action.
6. ``_binding``: ``Binding``, one client's place on an engine (the owner of its
   records, its throttle, its close).
7. ``_engine``: ``JobEngine`` (lifecycle as one ``EngineState``, bindings, statistics);
   ``_fanout``: ``FanOut``, every client's ``*_many`` (its parts, ``Outcome`` and
   each API's plan, in ``_fanout_plan``).
8. ``_client``: ``ApiClient``, what every API client shares.

Glossary, one name per concept:

- *job*: one unit of an API's work, named by its job id. The engine's record of it is a
  ``JobRecord``; a caller holds a ``JobHandle`` (Kepler's is ``ScoreJob``); what an API
  says of it is its *job body* (``KeplerJob``, ``DeepidvJob``, ``MidLyrJob``,
  ``EnrichJob``).
- *dialect*: what one API's requests and answers mean (``Dialect``; sans-IO); its
  *spec* (``ApiSpec``): what a client needs to reach it (key, origin, errors).
- *binding*: one client on one engine (dialect, HTTP boundary, journal, throttle).
- *wire*: what moves the bytes, httpx or aiohttp (chosen with ``http_backend``).
- *journal*: the durable record of submits; a *store* keeps it (``JobStore``).
- *in doubt*: a billed submit that may have started a job whose id never came back.
  The call that lost the answer raises ``SubmitUncertain``; a later call that cannot
  settle it raises ``SubmitInDoubt``; the journal stores it as ``uncertain``.
- *settle*: a pending job ends with its result or its error (``settle``); *untrack*
  only stops a binding tracking it (a cancelled handle).
- *throttle*: a 429; it pauses submits, or every request, until its ``Retry-After``
  (``paused_until``).
- *slot*: one of ``max_in_flight`` requests at a time (``Scheduler.slot``).
- *fan-out*: many inputs, one ``Outcome`` each (``*_many``).

A walk through ``await kepler.score("stripe.com")``, file by file. The submit, down
and back:

1. ``_kepler/_client.py`` ``AsyncKepler.score`` -> ``submit``: the domain normalised
   (``_kepler/_domains.py``), the POST built (``_kepler/_dialect.py``
   ``submit_request``).
2. ``_engine/_client.py`` ``ApiClient._submit``: the call's deadline.
3. ``_engine/_binding.py`` ``Binding.submit``: a job for this key already? a flight
   already? (with a journal: ``_replay.py`` ``JournalReplay.lookup`` claims the key);
   ``_fly`` starts ``_post`` in the engine's task group.
4. ``_engine/_submit.py`` ``send``: an in-flight slot (``_scheduler.py``
   ``Scheduler.slot``), the write ahead (``_writer.py``), then
5. ``_engine/_http.py`` ``HttpBoundary.request`` -> ``wires/_httpx.py``
   ``HttpxWire.exchange`` -> httpx -> the socket; back in ``_http.py``: the body read
   within its limits, the status mapped (``_kepler/_errors.py``).
6. Back in ``_submit.py`` ``classify`` (the dialect's ``classify_submit``), and in
   ``_binding.py`` ``_record``: a cached score ends the walk; a 202's job id is
   journaled and ``Scheduler.watch`` puts its ``JobRecord`` (``_record.py``) in the heap.
7. ``_engine/_handle.py`` ``JobHandle._wait``: the caller sleeps on the record.

The poll, down and back, from the engine's task: ``_scheduler.py`` ``_drive`` ->
``_work`` -> ``_poll.py`` ``Poller.step`` -> ``_http.py`` -> ``wires/_httpx.py`` ->
the socket; the answer classified by ``_kepler/_dialect.py`` (``classify_poll``, then
``classify_result`` for the score), and ``_poll.settle`` -> ``_binding.py``
``Binding.settle`` -> ``_record.py`` ``JobRecord.settle``, which wakes the handle: the
``Score`` goes back up through ``score()``. Going down, each leg enters each file once;
answers come back up through the files they came down, and the submit leg enters the
scheduler a second time, on its way back, to hand it the job (``watch``).
"""
