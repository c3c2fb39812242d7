"""The one runner for background work (appliance/background.py): a step that raises is
logged with its traceback once per run of failures, and the loop goes on."""
from __future__ import annotations

import asyncio
import logging
import threading

from appliance.background import every


def run_until(loop_coro, done: threading.Event, timeout: float = 10) -> None:
    async def main():
        task = asyncio.create_task(loop_coro)
        try:
            for _ in range(int(timeout / 0.01)):
                if done.is_set() or task.done():
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
        if task.done() and not task.cancelled() and task.exception():
            raise task.exception()
    asyncio.run(main())


def test_a_failing_step_is_logged_once_and_the_loop_goes_on(caplog):
    rounds = []
    told = []
    done = threading.Event()

    def step():
        rounds.append(len(rounds) + 1)
        if len(rounds) <= 3:
            raise OSError("No space left on device")
        if len(rounds) == 5:
            done.set()

    with caplog.at_level(logging.INFO, logger="custodian.background"):
        run_until(every(0.01, step, name="the test step", on_failure=told.append), done)
    assert rounds[:5] == [1, 2, 3, 4, 5]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1                  # three failed rounds, one traceback
    assert tracebacks[0].getMessage() == "the test step failed; trying again every 0.01 s"
    assert "No space left on device" in caplog.text and "Traceback" in caplog.text
    assert "the test step works again after 3 failed round(s)" in caplog.text
    assert [str(e) for e in told] == ["No space left on device"]    # a person is told once per run


def test_a_different_failure_is_logged_again_and_a_new_run_tells_again(caplog):
    errors = [ValueError("first"), ValueError("first"), KeyError("second"), None, ValueError("first"), None]
    told = []
    done = threading.Event()
    calls = iter(errors)

    def step():
        error = next(calls, None)
        if error is None and len(told) == 2:
            done.set()
        if error is not None:
            raise error

    with caplog.at_level(logging.INFO, logger="custodian.background"):
        run_until(every(0.01, step, name="step", on_failure=told.append), done)
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == ["first", "'second'", "first"]
    assert [str(e) for e in told] == ["first", "first"]


def test_the_step_runs_under_the_lock_in_a_worker_thread():
    lock = threading.Lock()
    seen = []
    done = threading.Event()

    def step():
        seen.append((lock.locked(), threading.current_thread() is threading.main_thread()))
        done.set()

    run_until(every(0.01, step, name="step", lock=lock), done)
    assert seen[0] == (True, False)
    assert not lock.locked()


def test_wait_first_waits_one_interval_before_the_first_round():
    ran = threading.Event()

    async def main():
        task = asyncio.create_task(every(0.5, ran.set, name="step", wait_first=True))
        await asyncio.sleep(0.2)
        early = ran.is_set()
        for _ in range(1000):
            if ran.is_set():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        return early

    assert asyncio.run(main()) is False
    assert ran.is_set()


def test_a_failing_on_failure_does_not_end_the_loop(caplog):
    rounds = []
    done = threading.Event()

    def step():
        rounds.append(1)
        if len(rounds) == 3:
            done.set()
        raise RuntimeError("the step fails")

    def tell(_error):
        raise RuntimeError("the alert fails too")

    with caplog.at_level(logging.INFO, logger="custodian.background"):
        run_until(every(0.01, step, name="step", on_failure=tell), done)
    assert len(rounds) >= 3
    assert "step: telling of its failure failed too" in caplog.text
