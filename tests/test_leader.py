"""Leader election over the Lease, against the API emulator over HTTP, with an injected clock (no waiting)."""

from __future__ import annotations

import datetime
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from producer.scaling.kube.client import KubeClient, Lease
from producer.scaling.kube.leader import LeaderElector
from tests.conftest import Proc, wait_for
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi.server import KubeAPI

LEASE = "task-processor-autoscaler"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def elector(api: KubeAPI, identity: str, clock: FakeClock) -> LeaderElector:
    return LeaderElector(KubeClient(api.api_client(), "default", attempts=1), LEASE, identity, clock=clock)


def lease_spec(api: KubeAPI) -> dict[str, Any]:
    lease = api.get("leases", LEASE)
    assert lease is not None
    return {**lease["spec"], "resourceVersion": lease["metadata"]["resourceVersion"]}


def test_renewals_keep_acquire_time_and_a_takeover_sets_it(kube_api: KubeAPI) -> None:  # noqa: F811
    clock = FakeClock()
    first, second = elector(kube_api, "first", clock), elector(kube_api, "second", clock)
    assert first.tick()
    created = lease_spec(kube_api)
    assert (created["holderIdentity"], created["leaseTransitions"]) == ("first", 0)
    assert created["acquireTime"]
    versions = {created["resourceVersion"]}
    for _ in range(5):
        clock.advance(first.retry_period)
        assert first.tick()
        assert not second.tick()
        renewed = lease_spec(kube_api)
        versions.add(renewed["resourceVersion"])
        assert (renewed["holderIdentity"], renewed["leaseTransitions"]) == ("first", 0)
        assert renewed["acquireTime"] == created["acquireTime"]  # carried, not erased nor moved
    assert len(versions) == 6  # each tick did renew

    # The first stops renewing (no release): the second takes over once the Lease expired on its own clock.
    for _ in range(20):
        clock.advance(second.retry_period)
        if second.tick():
            break
    taken = lease_spec(kube_api)
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("second", 1)
    assert taken["acquireTime"] > created["acquireTime"]
    clock.advance(second.retry_period)
    assert second.tick()
    renewed = lease_spec(kube_api)
    assert (renewed["acquireTime"], renewed["leaseTransitions"]) == (taken["acquireTime"], 1)
    assert renewed["resourceVersion"] != taken["resourceVersion"]


@pytest.mark.parametrize("skew", [datetime.timedelta(hours=5), -datetime.timedelta(hours=5), None])
def test_a_lease_still_renewed_is_never_taken_whatever_its_renew_time(
    kube_api: KubeAPI,  # noqa: F811
    skew: datetime.timedelta | None,
) -> None:
    """The holder's wall clock is hours ahead, hours behind, or stuck: only whether the record changes counts."""
    clock = FakeClock()
    renew_time = datetime.datetime.now(datetime.UTC) + (skew or datetime.timedelta())
    kube_api.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE},
            "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 15, "renewTime": micro_time(renew_time)},
        }
    )
    follower = elector(kube_api, "follower", clock)
    for renewal in range(60):  # two minutes of renewals every 2 s
        if skew is not None:
            renew_time += datetime.timedelta(seconds=2)
        kube_api.patch(
            "leases",
            LEASE,
            {"metadata": {"annotations": {"renewal": str(renewal)}}, "spec": {"renewTime": micro_time(renew_time)}},
        )
        clock.advance(follower.retry_period)
        assert not follower.tick()
    stopped = clock.now  # the holder stops renewing: the follower takes over after a lease duration, not before
    while not follower.tick():
        clock.advance(0.5)
        assert clock.now < stopped + 15 + follower.retry_period + 1
    assert clock.now >= stopped + 15
    assert lease_spec(kube_api)["holderIdentity"] == "follower"


def test_two_electors_stepping_alternately_never_both_lead(kube_api: KubeAPI) -> None:  # noqa: F811
    clock, rng = FakeClock(), random.Random(7)
    electors = [elector(kube_api, "first", clock), elector(kube_api, "second", clock)]
    led = set()
    stalled = {0: 0.0, 1: 0.0}  # an elector that stalls (a GC pause, a partition) does not tick until then
    for _ in range(400):
        clock.advance(rng.choice([0.1, 0.5, 1.0, 2.0, 3.0]))
        for index in rng.sample([0, 1], 2):
            if rng.random() < 0.02:
                stalled[index] = clock.now + rng.uniform(5, 25)
            if clock.now >= stalled[index]:
                electors[index].tick()
            leading = [e.identity for e in electors if e.leading]
            assert len(leading) <= 1, f"both lead at {clock.now}"
            led.update(leading)
    assert led == {"first", "second"}  # leadership did move between them


def micro_time(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_leader_that_cannot_renew_steps_down_before_its_lease_can_expire(kube_api: KubeAPI) -> None:  # noqa: F811
    clock = FakeClock()
    leader, follower = elector(kube_api, "leader", clock), elector(kube_api, "follower", clock)
    assert leader.tick()
    assert not follower.tick()
    renewed_at = clock.now
    fault = kube_api.fail("PUT", rf"/leases/{LEASE}$", 503, times=10_000)  # the leader's renewals fail from now on
    stepped_down = None
    while clock.now < renewed_at + 15:
        clock.advance(0.5)
        leading = leader.tick()
        assert not follower.tick()  # the Lease has not expired for the follower yet
        if not leading and stepped_down is None:
            stepped_down = clock.now
        assert not (leading and clock.now >= renewed_at + leader.renew_deadline)
    assert stepped_down is not None
    assert stepped_down <= renewed_at + leader.renew_deadline + leader.retry_period < renewed_at + 15
    fault.times = 0  # the follower can write again (the old leader stays cut off: it no longer ticks)
    while not follower.tick():
        clock.advance(0.5)
        assert clock.now < renewed_at + 15 + follower.retry_period + 1
    assert not leader.leading
    assert lease_spec(kube_api)["holderIdentity"] == "follower"


def test_a_leader_that_sees_another_holder_stops_at_once(kube_api: KubeAPI) -> None:  # noqa: F811
    """Someone else holds a fresh Lease (an operator's edit, a partition healed): the old leader stops leading
    on the read that shows it, not when its own renew deadline runs out."""
    clock = FakeClock()
    leader = elector(kube_api, "leader", clock)
    assert leader.tick()
    now = micro_time(datetime.datetime.now(datetime.UTC))
    kube_api.patch("leases", LEASE, {"spec": {"holderIdentity": "intruder", "renewTime": now}})
    clock.advance(leader.retry_period)
    assert not leader.tick()
    assert not leader.leading
    assert lease_spec(kube_api)["holderIdentity"] == "intruder"


@pytest.mark.timeout(90)
def test_a_killed_leader_process_is_replaced_within_the_lease_duration(
    kube_api: KubeAPI,  # noqa: F811
    spawn: Callable[..., Proc],
) -> None:
    """Real ``task-producer autoscale`` processes with the default Lease (15 s, renewed every 2 s)."""
    kube_api.create_deployment("task-processor", replicas=0)

    def producer(name: str) -> Proc:
        env = {"WORKER_NAMESPACE": "default", "POD_NAME": name}
        return spawn("task-producer", "autoscale", "--kubeconfig", str(kube_api.kubeconfig), extra_env=env)

    def holder() -> str:
        lease = kube_api.get("leases", LEASE)
        return str(lease["spec"].get("holderIdentity") or "") if lease else ""

    first = producer("first")
    wait_for(lambda: holder().startswith("first-"), timeout=20, what="the first to lead")
    second = producer("second")
    wait_for(lambda: "standing by" in second.output(), timeout=20, what="the second to stand by")
    first.signal(signal.SIGKILL)  # no release: the Lease must expire
    killed = time.time()
    first.wait()
    last_renewal = datetime.datetime.fromisoformat(lease_spec(kube_api)["renewTime"]).timestamp()
    assert holder().startswith("first-")
    wait_for(lambda: holder().startswith("second-"), timeout=15 + 2 + 5, what="the second to take over")
    taken = lease_spec(kube_api)
    acquired = datetime.datetime.fromisoformat(taken["acquireTime"]).timestamp()
    assert acquired - last_renewal >= 15  # never before a whole lease duration without renewal
    assert acquired - killed <= 15 + 2 + 1  # within the lease duration and a retry period (and a pass)
    assert taken["leaseTransitions"] == 1


def test_lease_times_on_a_whole_second_are_written_as_the_server_parses_them(kube_api: KubeAPI) -> None:  # noqa: F811
    """The API server reads Lease times with exactly six fractional digits; a renewal that falls on a whole
    second must not be sent as "…:05+00:00" (a 400 that would cost the Lease)."""
    whole = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    client = KubeClient(kube_api.api_client(), "default", attempts=1)
    client.write_lease(Lease(LEASE, "first", 15, whole, 0, None, acquired_at=whole))
    spec = lease_spec(kube_api)
    assert spec["renewTime"].startswith("2026-01-02T03:04:05.000000")
    assert spec["acquireTime"] == spec["renewTime"]
