"""One runner for the central's background work: a step every few seconds, while it serves.

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
from collections.abc import Callable
from typing import Any

log = logging.getLogger("custodian.background")


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
