"""The one runner for background work (appliance/background.py): a step that raises is
logged with its traceback once per run of failures, and the loop goes on."""
from __future__ import annotations

import asyncio
import logging
import threading
import time

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


# --------------------------------------------------------------------------- Ahead: a producer thread


def test_ahead_gives_the_items_in_order_and_produces_at_most_depth_ahead():
    from appliance.background import Ahead

    produced = []

    def items():
        for n in range(20):
            produced.append(n)
            yield n

    with Ahead(items(), depth=3, name="test-ahead") as ahead:
        stream = iter(ahead)
        assert next(stream) == 0
        time.sleep(0.3)                   # time for the producer to run as far ahead as it may
        assert len(produced) <= 1 + 3 + 1    # the one taken, three queued, one waiting for room
        assert list(stream) == list(range(1, 20))
    assert not ahead._thread.is_alive()


def test_a_producer_failure_comes_out_where_its_next_item_would_have():
    from appliance.background import Ahead

    def items():
        yield "first"
        raise OSError("the disk went away")

    got = []
    try:
        with Ahead(items(), depth=2, name="test-ahead") as ahead:
            for item in ahead:
                got.append(item)
    except OSError as e:
        assert str(e) == "the disk went away"
    else:
        raise AssertionError("the producer's failure was lost")
    assert got == ["first"]
    assert not ahead._thread.is_alive()


def test_a_consumer_that_stops_early_stops_the_producer_and_its_generator_is_closed():
    from appliance.background import Ahead

    closed = threading.Event()
    produced = []

    def items():
        try:
            for n in range(10_000):
                produced.append(n)
                yield n
        finally:
            closed.set()                 # runs in the producer's thread when it is stopped

    try:
        with Ahead(items(), depth=2, name="test-ahead") as ahead:
            for item in ahead:
                if item == 5:
                    raise ValueError("the consumer gave up")
    except ValueError:
        pass
    assert not ahead._thread.is_alive() and closed.is_set()
    assert len(produced) < 10                 # stopped, not run to the end
