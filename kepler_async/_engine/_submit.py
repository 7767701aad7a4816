"""The submit path in steps: single flight, then send -> classify -> record.

- **Single flight** (``Flight``): concurrent submits with the same submission key
  share one request and one job; each caller keeps its own deadline.
- **Send** (``send``): take an in-flight slot, write ahead (with a journal: the
  claimed key is marked *sending*, so a crash from here on leaves the submit in
  doubt, never unknown), send the billed request.
- **Classify** (``classify``): the dialect turns the answer into a result (a cached
  answer) or an accepted job to poll.
- **Record**: the binding keeps the job and writes its id ahead of acting on it.

A failure on the way is looked up in one table (``AFTER_FAILURE``) that says what the
journal should then hold: the claim dropped (nothing can have started), the submit in
doubt (something may have started), or nothing to write.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from typing import Any

import anyio

from kepler_async._exceptions import (
    APIError,
    AuthenticationError,
    KeplerError,
    ProtocolError,
    RateLimited,
    SubmitUncertain,
    TransportError,
)

from ._dialect import Accepted, Dialect, Done, Request, SubmitState
from ._http import HttpBoundary, Redirected, Reply
from ._record import JobRecord
from ._scheduler import Scheduler
from ._writer import JournalWriter

__all__ = [
    "AFTER_FAILURE",
    "Flight",
    "JournalAction",
    "classify",
    "cut_off_in_flight",
    "journal_action",
    "send",
]


class Flight:
    """One submit in progress, shared by every caller with the same submission key."""

    __slots__ = ("_done", "error", "key", "record", "request", "sent", "trace")

    def __init__(self, request: Request, key: Hashable, trace: object = None) -> None:
        self._done = anyio.Event()
        self.request = request
        self.key = key
        #: The context of the call that started it (``Telemetry.capture``).
        self.trace = trace
        self.record: JobRecord[Any] | None = None
        self.error: BaseException | None = None
        #: True once the request may be on its way to the API.
        self.sent = False

    def finish(self, record: JobRecord[Any] | None, error: BaseException | None) -> None:
        """End the flight for its callers; the first end counts (closing may come
        before the submit's own task ends it, or instead of it)."""
        if self._done.is_set():
            return
        self.record, self.error = record, error
        self._done.set()

    async def wait(self) -> JobRecord[Any]:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.record is not None
        return self.record


# --- send ---------------------------------------------------------------------------


async def send(
    scheduler: Scheduler,
    http: HttpBoundary,
    flight: Flight,
    writer: JournalWriter | None,
    journal_key: str | None,
) -> Reply:
    """Send the flight's request on an in-flight slot, written ahead in the journal."""
    request = flight.request
    async with scheduler.slot():
        if writer is not None and journal_key is not None:
            await writer.mark_sending(journal_key)  # not recorded: not sent
        flight.sent = True
        try:
            return await http.request(
                request.method,
                request.path,
                params=request.params,
                json=request.json,
                headers=request.headers,
                billed=request.billed,
                template=request.template or request.path,
                trace=flight.trace,
            )
        except Redirected:  # refused before anything was read: nothing to doubt
            raise
        except ProtocolError as exc:  # answered, but not in a way we can read
            raise unreadable(request, exc) from exc


# --- classify -----------------------------------------------------------------------


def classify(dialect: Dialect[Any], request: Request, reply: Reply) -> SubmitState:
    """The dialect's reading of a submit answer: a result, or a job to poll."""
    try:
        state = dialect.classify_submit(reply.status, reply.body)
        if not isinstance(state, (Done, Accepted)):
            raise ProtocolError(
                f"the {dialect.name} dialect classified a submit answer as "
                f"{type(state).__name__}, which the engine does not know"
            )
    except Exception as exc:  # whatever the bytes did to the dialect
        raise unreadable(request, exc) from exc
    return state


def unreadable(request: Request, error: Exception) -> KeplerError:
    """The error for a submit answer that cannot be read: a request that may start
    paid work may have started it, so it is ``SubmitUncertain`` (and journaled so)."""
    text = str(error) if isinstance(error, KeplerError) else type(error).__name__
    if not request.billed:
        return error if isinstance(error, KeplerError) else ProtocolError(text)
    return SubmitUncertain(
        f"the answer to {request.method} {request.path} could not be read ({text}); it may "
        "have started a job, so it was not sent again",
        method=request.method,
        path=request.path,
        request_sent=True,
    )


def cut_off_in_flight(request: Request) -> SubmitUncertain:
    """The error of a submit that the client's closing cut off after it was sent."""
    return SubmitUncertain(
        "the client closed while the submit was in flight; it may have started a job",
        method=request.method,
        path=request.path,
        request_sent=True,
    )


# --- what a failure leaves in the journal -------------------------------------------


class JournalAction(enum.Enum):
    """What the journal holds for a key whose submit failed."""

    #: Nothing can have started: drop the claim (the key may be submitted again).
    FORGET = "forget"
    #: Something may have started: keep the key *in doubt* (never sent blindly again).
    IN_DOUBT = "in doubt"
    #: Nothing to write (the journal step itself failed, and said so).
    NOTHING = "nothing"


def _sent(error: Any, never_started: Callable[[APIError], bool]) -> JournalAction:
    return JournalAction.IN_DOUBT if error.request_sent else JournalAction.FORGET


def _answered(error: Any, never_started: Callable[[APIError], bool]) -> JournalAction:
    refused = error.status < 500 or never_started(error)  # a 5xx may have started one
    return JournalAction.FORGET if refused else JournalAction.IN_DOUBT


Rule = JournalAction | Callable[[Any, Callable[[APIError], bool]], JournalAction]

#: Error class -> journal action, first match wins (``journal_action``).
AFTER_FAILURE: tuple[tuple[type[BaseException], Rule], ...] = (
    (RateLimited, JournalAction.FORGET),  # refused: a quota or a rate
    (AuthenticationError, JournalAction.FORGET),  # refused: the key
    (Redirected, JournalAction.FORGET),  # not followed: nothing reached the API
    (TransportError, _sent),  # in doubt once it may have reached the API
    (APIError, _answered),  # a 4xx refused it; a 5xx may have started it
    (KeplerError, JournalAction.NOTHING),  # the journal's own error, a bad id...
)


def journal_action(
    error: BaseException, never_started: Callable[[APIError], bool]
) -> JournalAction:
    """What the journal should hold after ``error`` (see ``AFTER_FAILURE``)."""
    for cls, rule in AFTER_FAILURE:
        if isinstance(error, cls):
            return rule if isinstance(rule, JournalAction) else rule(error, never_started)
    return JournalAction.NOTHING
