"""The simulated cluster: one FIFO queue, a Deployment of one-slot worker Pods, and a heap of timed events.

Pods are created when the replica count goes up and get ready after a start delay drawn per Pod from a
seeded RNG (the k-th Pod created gets the k-th draw, whatever the policy). A ready Pod takes the oldest
queued job at once (Redis serves blocked BLMOVE clients first come, first served). When the replica count
goes down the ReplicaSet picks the victims: Pods not yet ready first, then (with pod-deletion-cost, as our
autoscaler annotates) idle before busy, newest first. A busy victim gets SIGTERM: its job finishes if it
can within the grace period, else the Pod is killed at the end of it and the job goes back to the front of
the queue (at-least-once), counted in ``jobs_requeued``.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from producer.scaling.rates import WorkerTally

STARTING, IDLE, BUSY, DRAINING = "starting", "idle", "busy", "draining"

# Event kinds, in the order they run when they fall on the same instant: state changes first, so a
# controller's tick sees the cluster as it is at that instant.
DONE, READY, GRACE_END, ARRIVE, TICK = range(5)


@dataclass
class Job:
    index: int
    arrived: float
    duration: float
    enqueued: float


@dataclass
class Pod:
    number: int
    name: str
    created: float
    state: str = STARTING
    job: Job | None = None
    job_end: float = 0.0
    token: int = 0
    tally: WorkerTally = field(default_factory=lambda: WorkerTally(completed=0, working_time=0.0))


@dataclass
class Sample:
    at: float
    queued: int
    replicas: int
    pods: int


@dataclass(frozen=True)
class SimConfig:
    start_delay: tuple[float, float] = (5.0, 20.0)
    grace_period: float = 30.0
    seed: int = 1


Periodic = tuple[float, Callable[[float], None]]
"""(period, action): a controller's loop, called with the simulated time."""


class Cluster:
    def __init__(self, jobs: list[tuple[float, float]], horizon: float, config: SimConfig, sample_every: float) -> None:
        self.jobs = jobs
        self.horizon = horizon
        self.config = config
        self.delays = random.Random(config.seed)  # same seed for every policy: Pod k gets draw k
        self.phases = random.Random(f"phase:{config.seed}")  # loop k of a policy starts at the same draw
        self.now = 0.0
        self.queue: deque[Job] = deque()
        self.pods: dict[int, Pod] = {}  # the Deployment's Pods, not terminating
        self.draining: dict[int, Pod] = {}  # terminating, finishing their job
        self.idle: deque[int] = deque()
        self.replicas = 0
        self.created = 0
        self.arrived = 0
        self.completed = 0
        self.last_completion = 0.0
        self.running = 0
        self.waits: list[float] = []
        self.pod_seconds = 0.0
        self.scale_changes = 0
        self.busy_pods_killed = 0
        self.jobs_requeued = 0
        self.prefer_idle_victims = False
        self.samples: list[Sample] = []
        self.sample_every = sample_every
        self._next_sample = 0.0
        self._events: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self._periodic: list[Periodic] = []

    # -- what a controller may read --------------------------------------------------------------------------

    def oldest_wait(self) -> float:
        return self.now - self.queue[0].enqueued if self.queue else 0.0

    def busy_workers(self) -> int:
        return self.running  # one slot per Pod: Pods with a job (draining ones too) = jobs in flight

    def worker_tallies(self) -> dict[str, WorkerTally]:
        """Registered workers (ready Pods, draining ones included) and their RQ counters."""
        tallies = {pod.name: pod.tally for pod in self.pods.values() if pod.state != STARTING}
        tallies.update((pod.name, pod.tally) for pod in self.draining.values())
        return tallies

    # -- what a controller may do ----------------------------------------------------------------------------

    def every(self, period: float, action: Callable[[float], None]) -> None:
        """Run `action` every `period` seconds from a seeded phase in [0, period): a real controller's loop
        runs from whenever its process started, so the trace's arrivals fall anywhere in its period."""
        self._periodic.append((period, action))
        self._push(self.phases.uniform(0.0, period), TICK, len(self._periodic) - 1)

    def set_replicas(self, replicas: int) -> None:
        if replicas == self.replicas:
            return
        self.scale_changes += 1
        self.replicas = replicas
        while len(self.pods) < replicas:
            self._create_pod()
        if len(self.pods) > replicas:
            for pod in sorted(self.pods.values(), key=self._victim_rank)[: len(self.pods) - replicas]:
                self._remove(pod)

    # -- the event loop --------------------------------------------------------------------------------------

    def run(self, limit: float) -> None:
        """Run until the horizon has passed and every job is done (or `limit` seconds, whatever comes first)."""
        for index, (at, _) in enumerate(self.jobs):
            self._push(at, ARRIVE, index)
        events = self._events
        total = len(self.jobs)
        while events:
            at = events[0][0]
            if (at > self.horizon and self.completed == total) or at > limit:
                break
            at, kind, _, ref, token = heapq.heappop(events)
            self._advance(at)
            if kind == TICK:
                period, action = self._periodic[ref]
                action(at)
                self._push(at + period, TICK, ref)
            elif kind == ARRIVE:
                arrived, duration = self.jobs[ref]
                self.arrived += 1
                self.queue.append(Job(ref, arrived, duration, arrived))
                self._dispatch()
            elif kind == DONE:
                self._done(ref, token)
            elif kind == READY:
                pod = self.pods.get(ref)
                if pod is not None and pod.state == STARTING:
                    pod.state = IDLE
                    self.idle.append(pod.number)
                    self._dispatch()
            else:  # GRACE_END: the job did not finish in time; the kubelet kills the Pod
                self._kill(ref)
        end = max(self.horizon, self.last_completion) if self.completed == total else self.now
        self._advance(end)

    def jobs_lost(self) -> int:
        """Jobs neither done, queued nor running: must be 0 (checked as an invariant by the caller)."""
        return len(self.jobs) - self.completed - len(self.queue) - self.running

    # -- internals --------------------------------------------------------------------------------------------

    def _push(self, at: float, kind: int, ref: int, token: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, kind, self._seq, ref, token))

    def _advance(self, at: float) -> None:
        while self._next_sample <= at:
            self.samples.append(Sample(self._next_sample, len(self.queue), self.replicas, self._alive()))
            self._next_sample += self.sample_every
        if at > self.now:
            self.pod_seconds += self._alive() * (at - self.now)
            self.now = at

    def _alive(self) -> int:
        return len(self.pods) + len(self.draining)

    def _create_pod(self) -> None:
        low, high = self.config.start_delay
        delay = self.delays.uniform(low, high)
        self.created += 1
        pod = Pod(self.created, f"worker-{self.created}", self.now)
        self.pods[pod.number] = pod
        self._push(self.now + delay, READY, pod.number)

    def _victim_rank(self, pod: Pod) -> tuple[bool, bool, int]:
        # ReplicaSet: not ready first; then the lower pod-deletion-cost (ours: -1000 idle, 1000 busy); then newest.
        busy_cost = self.prefer_idle_victims and pod.state == BUSY
        return pod.state != STARTING, busy_cost, -pod.number

    def _remove(self, pod: Pod) -> None:
        del self.pods[pod.number]
        if pod.state != BUSY:
            pod.state = "gone"  # starting or idle: gone at once (a stale entry in `idle` is skipped)
            return
        self.busy_pods_killed += 1
        pod.state = DRAINING
        self.draining[pod.number] = pod
        if pod.job_end - self.now > self.config.grace_period:
            self._push(self.now + self.config.grace_period, GRACE_END, pod.number, pod.token)

    def _kill(self, number: int) -> None:
        pod = self.draining.pop(number, None)
        if pod is None or pod.job is None:
            return
        job = pod.job
        pod.job, pod.token, pod.state = None, pod.token + 1, "gone"
        self.running -= 1
        self.jobs_requeued += 1
        job.enqueued = self.now
        self.queue.appendleft(job)  # the reaper requeues it at the front
        self._dispatch()

    def _done(self, number: int, token: int) -> None:
        pod = self.pods.get(number) or self.draining.get(number)
        if pod is None or pod.token != token or pod.job is None:
            return
        tally = pod.tally
        pod.tally = WorkerTally(completed=tally.completed + 1, working_time=tally.working_time + pod.job.duration)
        pod.job = None
        self.running -= 1
        self.completed += 1
        self.last_completion = self.now
        if pod.state == DRAINING:
            del self.draining[number]
            pod.state = "gone"
            return
        pod.state = IDLE
        self.idle.append(number)
        self._dispatch()

    def _dispatch(self) -> None:
        queue, idle, pods = self.queue, self.idle, self.pods
        while queue and idle:
            number = idle.popleft()
            pod = pods.get(number)
            if pod is None or pod.state != IDLE:
                continue
            job = queue.popleft()
            self.waits.append(self.now - job.enqueued)
            pod.state, pod.job = BUSY, job
            pod.token += 1
            pod.job_end = self.now + job.duration
            self.running += 1
            self._push(pod.job_end, DONE, number, pod.token)
