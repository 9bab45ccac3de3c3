"""Leader election over the Lease, against the API emulator over HTTP, with an injected clock (no waiting)."""

from __future__ import annotations

from typing import Any

from producer.scaling.kube import KubeClient
from producer.scaling.leader import LeaderElector
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
