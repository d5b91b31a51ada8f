"""Delivery as the cloud does it: at least once, unordered, concurrent, and retried when the
handler dies. Faults make each of those happen on purpose (``--faults``), on the same path a
fault-free run takes, so the engine's invariants (docs/architecture.md, "Invariants") are tested end to end.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cdk_app.local.faults import CrashPlan, InjectedCrash, NoCrash, RandomCrash

log = logging.getLogger(__name__)

MAX_DELIVERIES = 50
"""Bound on redeliveries of one event whose handler keeps raising; a crash probability below
one gets through long before (0.5 ** 50), so reaching it means the handler itself is broken."""

REORDER_WINDOW = 0.02
"""Seconds ``reorder`` collects deliveries before sending them in shuffled order."""

Handling = Callable[[CrashPlan, str], None]
GiveUp = Callable[[str, BaseException], None]
"""Called with the request id and the last error when the tries of a delivery are used up."""
"""One handler invocation: the crash plan it runs under and its Lambda request id."""


@dataclass(frozen=True, kw_only=True)
class FaultSettings:
    """What ``--faults`` and ``--seed`` ask for."""

    duplicate: int = 1
    """Copies of every delivery (1: each is delivered once)."""
    reorder: bool = False
    """Deliver in shuffled order."""
    crash: float = 0.0
    """Probability that one orchestrator or notifier handling crashes."""
    crash_jobs: float = 0.0
    """Probability that one job invocation crashes in the job wrapper, before or after one of
    its writes (never inside job code); Lambda then gives up on it, as on a real job function."""
    seed: int = 0
    """Seeds every random choice the faults make."""

    @classmethod
    def parse(cls, text: str | None, seed: int = 0) -> FaultSettings:
        """``duplicate=N,reorder,crash=P,crash_jobs=P``; raises ValueError saying what is wrong."""
        duplicate, reorder, crash, crash_jobs = 1, False, 0.0, 0.0
        for item in filter(None, (part.strip() for part in (text or "").split(","))):
            name, _, value = item.partition("=")
            try:
                if name == "duplicate" and value:
                    duplicate = int(value)
                elif name == "crash" and value:
                    crash = float(value)
                elif name == "crash_jobs" and value:
                    crash_jobs = float(value)
                elif name == "reorder" and not value:
                    reorder = True
                else:
                    raise ValueError(item)
            except ValueError:
                raise ValueError(
                    f"unknown fault {item!r}; expected duplicate=N, reorder or crash=P (or crash_jobs=P), "
                    "comma-separated"
                ) from None
        faults = cls(duplicate=duplicate, reorder=reorder, crash=crash, crash_jobs=crash_jobs, seed=seed)
        if faults.duplicate < 1:
            raise ValueError(f"duplicate={faults.duplicate}: deliver every event at least once (N >= 1)")
        for name, probability in (("crash", faults.crash), ("crash_jobs", faults.crash_jobs)):
            if not 0.0 <= probability < 1.0:
                raise ValueError(f"{name}={probability}: a probability from 0 up to (not including) 1")
        return faults


class HandlingCrash:
    """Crash one handling with probability ``p`` at a random point: a fair coin at each write or
    dispatch it passes, and after its last one if no coin fell (it did everything, then died)."""

    def __init__(self, rng: random.Random, p: float) -> None:
        self.armed = rng.random() < p
        self._points = RandomCrash(rng, 0.5)

    def check(self, point: str) -> None:
        if self.armed:
            self._points.check(point)

    def finish(self) -> None:
        if self.armed and not self._points.crashes:
            raise InjectedCrash("injected crash after the last write")


@dataclass
class FaultCounters:
    duplicated: int = 0
    """Extra copies delivered."""
    reordered: int = 0
    """Deliveries sent after one that arrived later than them."""
    crashes: int = 0
    """Handlings that died on purpose."""
    redeliveries: int = 0
    """Deliveries repeated because the handler raised (crashed or failed)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, count: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + count)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                "duplicated": self.duplicated,
                "reordered": self.reordered,
                "crashes": self.crashes,
                "redeliveries": self.redeliveries,
            }


class DaemonPool:
    """Worker threads that never keep the process alive: a job stuck forever must not block the
    exit after ``--timeout`` gave up on it (ThreadPoolExecutor joins its workers at exit)."""

    def __init__(self, name: str, size: int) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True) for index in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def close(self) -> None:
        """Idle workers end; a busy one ends after its task (or with the process)."""
        for _ in self._threads:
            self._tasks.put(None)


@dataclass(frozen=True, kw_only=True)
class Delivery:
    target: str
    identity: str
    """Names the delivery within its run; with the seed, it fixes the delivery's crash choices."""
    handling: Handling
    crashable: bool
    request_id: str
    sequence: int
    tries: int = MAX_DELIVERIES
    on_give_up: GiveUp | None = None


class Bus:
    """Sends each handling to its target's pool with the configured faults, and redelivers one
    that raises, with the same request id, as Lambda's asynchronous retry does."""

    def __init__(self, faults: FaultSettings, pools: dict[str, DaemonPool]) -> None:
        self.faults = faults
        self.counters = FaultCounters()
        self.undeliverable: list[str] = []
        self._pools = pools
        self._rng = random.Random(faults.seed)
        self._lock = threading.Condition()
        self._in_flight = 0
        self._running: Counter[str] = Counter()
        self._abandoned: Counter[str] = Counter()
        """Running deliveries given up on (a job past its timeout): they no longer count as in
        flight, though their thread goes on, as a handler Lambda stopped would not."""
        self._sequence = 0
        self._buffer: list[Delivery] = []
        self._closed = False
        if faults.reorder:
            threading.Thread(target=self._shuffle_buffered, name="reorder", daemon=True).start()

    def send(
        self,
        target: str,
        identity: str,
        handling: Handling,
        crashable: bool,
        tries: int = MAX_DELIVERIES,
        on_give_up: GiveUp | None = None,
    ) -> None:
        """Deliver ``handling`` (with the configured duplicates) and redeliver it while it raises,
        up to ``tries`` deliveries; then ``on_give_up`` (Lambda's on-failure destination) or, for
        a target without one, the run records it as undeliverable."""
        copies = self.faults.duplicate
        self.counters.add("duplicated", copies - 1)
        with self._lock:
            deliveries = []
            for copy in range(copies):
                deliveries.append(
                    Delivery(
                        target=target,
                        identity=f"{identity}#{copy}",
                        handling=handling,
                        crashable=crashable,
                        request_id=uuid.uuid4().hex,
                        sequence=self._sequence,
                        tries=tries,
                        on_give_up=on_give_up,
                    )
                )
                self._sequence += 1
            self._in_flight += copies
            if self.faults.reorder:
                self._buffer.extend(deliveries)
                self._lock.notify()
                return
        for delivery in deliveries:
            self._submit(delivery, 1)

    def idle(self) -> bool:
        """Nothing buffered, queued or running (but what was abandoned)."""
        with self._lock:
            return self._in_flight == self._abandoned.total()

    def abandon(self, identity: str) -> None:
        """Stop counting the running deliveries named ``identity`` (each of its copies)."""
        self.abandon_matching(lambda running: running == identity)

    def abandon_matching(self, matches: Callable[[str], bool]) -> None:
        """Stop counting the running deliveries whose name ``matches`` (each of their copies)."""
        with self._lock:
            for running, count in self._running.items():
                if matches(running.partition("#")[0]):
                    self._abandoned[running] = count

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        for pool in self._pools.values():
            pool.close()

    def _shuffle_buffered(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._buffer or self._closed)
                if self._closed:
                    return
            time.sleep(REORDER_WINDOW)
            with self._lock:
                batch, self._buffer = self._buffer, []
            self._rng.shuffle(batch)
            highest = -1
            for delivery in batch:
                if delivery.sequence < highest:
                    self.counters.add("reordered")
                highest = max(highest, delivery.sequence)
                self._submit(delivery, 1)

    def _submit(self, delivery: Delivery, number: int) -> None:
        self._pools[delivery.target].submit(lambda: self._deliver(delivery, number))

    def _plan(self, delivery: Delivery, number: int) -> HandlingCrash | NoCrash:
        probability = self.faults.crash_jobs if delivery.target == "job" else self.faults.crash
        if not delivery.crashable or not probability:
            return NoCrash()
        # Seeded by what is delivered, not by when: threads draw in any order, yet a seed gives
        # every delivery the same crash choices in every run.
        rng = random.Random(f"{self.faults.seed}/{delivery.identity}/{number}")
        return HandlingCrash(rng, probability)

    def _deliver(self, delivery: Delivery, number: int) -> None:
        with self._lock:
            self._running[delivery.identity] += 1
        try:
            self._handle(delivery, number)
        finally:
            with self._lock:
                self._running[delivery.identity] -= 1
                self._running += Counter()  # drops the zero counts
                if self._abandoned[delivery.identity] > 0:
                    self._abandoned[delivery.identity] -= 1
                    self._abandoned += Counter()

    def _handle(self, delivery: Delivery, number: int) -> None:
        plan = self._plan(delivery, number)
        try:
            delivery.handling(plan, delivery.request_id)
            if isinstance(plan, HandlingCrash):
                plan.finish()
        except BaseException as exc:  # whatever the handler raised, Lambda would retry it
            if isinstance(exc, InjectedCrash):
                self.counters.add("crashes")
            else:
                log.warning(
                    "%s handling of %s raised %s: %s%s",
                    delivery.target,
                    delivery.identity,
                    type(exc).__name__,
                    exc,
                    "; delivering it again" if number < delivery.tries else "",
                )
            if number < delivery.tries:
                self.counters.add("redeliveries")
                self._submit(delivery, number + 1)
                return
            if delivery.on_give_up is not None:
                delivery.on_give_up(delivery.request_id, exc)
            else:
                with self._lock:
                    self.undeliverable.append(f"{delivery.target} gave up on {delivery.identity}: {exc}")
        with self._lock:
            self._in_flight -= 1
