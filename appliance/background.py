"""One runner for the central's background work: a step every few seconds, while it serves;
and `Ahead`, which runs a producer in its own thread a bounded number of items ahead.

Retention sweeps, camera-offline checks, the end of acting directors' key slots, notice
expiry, notification retries and audit checkpoints each run as `every(seconds, step)`.
A step runs in a worker thread (it reads files and TinyDB), under a lock if given (the
central's decision lock, so a check never races a person's decision). A step that
raises does not end the loop: the next round may succeed (a disk with space again, a
mail server back). The failure is logged with its traceback once, not every round while
it keeps failing the same way, and its end is logged too.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

log = logging.getLogger("custodian.background")
T = TypeVar("T")


async def every(seconds: float, step: Callable[[], Any], *, name: str, lock: Any = None, wait_first: bool = False,
                on_failure: Callable[[Exception], None] | None = None) -> None:
    """Run `step()` every `seconds` until cancelled; `name` says what it does, in the log.

    `wait_first`: the first round comes after `seconds`, not at once. `on_failure(error)`
    runs in the event loop at the first failure of each run of failures (to alert a
    person once, not every round).
    """
    failing: str | None = None          # the failure being repeated, as logged
    failed_rounds = 0
    if wait_first:
        await asyncio.sleep(seconds)
    while True:
        try:
            await asyncio.to_thread(_run, step, lock)
        except Exception as e:          # noqa: BLE001 -- a failed round must not end the next ones
            failed_rounds += 1
            this = f"{type(e).__name__}: {e}"
            if this != failing:
                log.exception("%s failed; trying again every %s s", name, seconds)
            if failing is None and on_failure is not None:
                try:
                    on_failure(e)
                except Exception:       # noqa: BLE001
                    log.exception("%s: telling of its failure failed too", name)
            failing = this
        else:
            if failing is not None:
                log.warning("%s works again after %d failed round(s)", name, failed_rounds)
            failing, failed_rounds = None, 0
        await asyncio.sleep(seconds)


def _run(step: Callable[[], Any], lock: Any) -> None:
    with lock if lock is not None else contextlib.nullcontext():
        step()


class Ahead(Generic[T]):
    """Iterate over `items` while a thread of its own produces them, at most `depth` items ahead.

    Use it where producing an item (reading, verifying, decrypting) can overlap with using
    the one before (writing it to a pipe). Items come in order; an exception the producer
    raises comes out of the consumer's loop where its next item would have. Leaving the
    `with` block, normally or not, stops the producer at its next item and waits for its
    thread: nothing of it outlives the consumer, and a producer's generator gets its
    GeneratorExit (its `finally` blocks run) in its own thread.
    """

    _ITEM, _END, _ERROR = range(3)
    POLL_SECONDS = 0.1             # how soon a producer blocked on a full queue notices a stop
    JOIN_SECONDS = 120.0           # a producer busy with one item (a large read) is waited for this long

    def __init__(self, items: Iterable[T], *, depth: int, name: str):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def __enter__(self) -> Ahead[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        self._thread.join(self.JOIN_SECONDS)
        if self._thread.is_alive():
            log.error("%s did not stop within %.0f s", self._thread.name, self.JOIN_SECONDS)
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == self._END:
                return
            if kind == self._ERROR:
                raise value
            yield value

    def _produce(self) -> None:
        items = iter(self._items)
        try:
            for item in items:
                if not self._put(self._ITEM, item):
                    return
            self._put(self._END, None)
        except BaseException as e:  # noqa: BLE001  (handed to the consumer, which decides)
            self._put(self._ERROR, e)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _put(self, kind: int, value: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=self.POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False
