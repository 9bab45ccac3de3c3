"""Redis behind Sentinel for the tests: a master, its replicas and three Sentinels, each a real redis-server on a free
loopback port with a directory of its own, tuned to fail over within a couple of seconds.

Every node runs as ``producer.commands.redis_server.LocalRedisServer`` does (AOF, a temp dir, started and killed the
same way), plus what replication needs: the replicas log in as the user ``replica`` (so a test can cut one off by
disabling that user on the master), and any node may be promoted. The Sentinels are ``redis-server <conf>
--sentinel``, their timers shortened with ``SENTINEL DEBUG``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from producer.commands.redis_server import LocalRedisServer
from tests.conftest import wait_for

SERVICE = "mymaster"
"""The master set's name, the service of every URL here."""

DOWN_AFTER_MS = 1000
"""How long a master may stay silent before a Sentinel calls it down (subjectively; two of three make it objective)."""

FAILOVER_TIMEOUT_MS = 2000
"""Sentinel's failover-timeout: bounds the replicas' reconfiguration, and spaces two failovers of one master set."""

SENTINEL_TIMERS = {"ping-period": 300, "info-period": 1000, "ask-period": 100, "publish-period": 200}
"""Milliseconds between a Sentinel's pings, INFO reads, is-master-down questions and hello messages (1000, 10000, 1000
and 2000 by default): what makes a failover and a node's return be noticed within a fraction of a second. A Sentinel
pings a node it starts watching (a newly promoted master) first one ping period after, and calls it down
DOWN_AFTER_MS after: the period must leave room for the answer, or a busy machine makes the new master flap. It must
not be much shorter either: a replica whose link to a dead master is down counts as fresh enough to promote for five
ping periods only, and its INFO is read every second whatever the setting."""

REPLICA_USER, REPLICA_PASSWORD = "replica", "replica-secret"
"""The login replicas replicate with."""


class Node(LocalRedisServer):
    """A Redis of the set; ``replica_of`` names the master's port at its first start (None: it starts as a master,
    as a restarted node does until the Sentinels make it a replica)."""

    def __init__(self, directory: Path, password: str | None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory=directory, appendfsync="everysec")
        self.password = password
        self.replica_of: int | None = None

    def arguments(self) -> list[str]:
        args = [*super().arguments(), "--repl-diskless-sync-delay", "0"]
        args += ["--user", REPLICA_USER, "on", f">{REPLICA_PASSWORD}", "+psync", "+replconf", "+ping"]
        args += ["--masteruser", REPLICA_USER, "--masterauth", REPLICA_PASSWORD]
        if self.password:
            args += ["--requirepass", self.password]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return args

    def client(self, **options: Any) -> redis.Redis:
        return super().client(password=self.password, **options)

    def replication(self) -> dict[str, Any]:
        client = self.client(socket_connect_timeout=0.5)
        try:
            return client.info("replication")
        finally:
            client.close()


class SentinelProcess(LocalRedisServer):
    """One Sentinel watching the set's master."""

    def __init__(self, directory: Path, password: str | None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory=directory)
        self.password = password
        self.master_port = 0
        self.config = directory / "sentinel.conf"

    def arguments(self) -> list[str]:
        assert self.executable is not None
        if not self.config.exists():  # a Sentinel rewrites its file as it learns: written once
            lines = [
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                *([f"sentinel auth-pass {SERVICE} {self.password}"] if self.password else []),
            ]
            self.config.write_text("\n".join(lines) + "\n")
        port, log = str(self.port), str(self.directory / "redis.log")
        return [
            self.executable,
            str(self.config),
            "--sentinel",
            "--bind",
            "127.0.0.1",
            "--port",
            port,
            "--logfile",
            log,
        ]

    def start(self) -> SentinelProcess:
        super().start()
        client = self.client(decode_responses=True)
        try:
            for name, value in SENTINEL_TIMERS.items():
                client.execute_command("SENTINEL", "DEBUG", name, value)
        finally:
            client.close()
        return self

    def master(self) -> dict[str, Any]:
        """What this Sentinel knows of the master set (SENTINEL MASTER)."""
        client = self.client(decode_responses=True, socket_timeout=1)
        try:
            state = client.sentinel_master(SERVICE)
        finally:
            client.close()
        # redis-py types the reply dict | bool: the bool is what its Sentinel class returns (having asked every
        # Sentinel); a plain client, as here, gets the parsed reply.
        assert isinstance(state, dict), state
        return state


class SentinelCluster:
    """A master, ``replicas`` replicas and three Sentinels under ``directory``; ``password`` is the Redis password
    clients give (the Sentinels ask for none)."""

    def __init__(self, directory: Path, replicas: int = 2, password: str | None = None) -> None:
        self.password = password
        self.nodes = [Node(directory / f"node{i}", password) for i in range(1 + replicas)]
        self.sentinels = [SentinelProcess(directory / f"sentinel{i}", password) for i in range(3)]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}{','.join(f'127.0.0.1:{s.port}' for s in self.sentinels)}/{SERVICE}/0"

    def start(self) -> SentinelCluster:
        master, *replicas = self.nodes
        master.start()
        for node in replicas:
            node.replica_of = master.port
            node.start()
        self.wait_for_replicas(len(replicas), timeout=10, master=master)
        for sentinel in self.sentinels:
            sentinel.master_port = master.port
            sentinel.start()
        wait_for(
            lambda: all(
                (view := s.master())["num-slaves"] == len(replicas) and view["num-other-sentinels"] == 2
                for s in self.sentinels
            ),
            timeout=10,
            what="every Sentinel to see the replicas and the other Sentinels",
        )
        return self

    def close(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.kill()  # nothing of theirs is kept: no need for a clean shutdown
            process.close()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def node(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def named_master(self, sentinel: SentinelProcess) -> int | None:
        """The master's port as ``sentinel`` names it (None while it does not answer)."""
        client = sentinel.client(socket_timeout=1)
        try:
            answer = client.sentinel_get_master_addr_by_name(SERVICE)
        except redis.ConnectionError:
            return None
        finally:
            client.close()
        return int(answer[1]) if isinstance(answer, tuple) else None  # (host, port), or None while it has no master

    def master(self) -> Node:
        """The node every Sentinel names master, once they agree and it says it is one."""

        def agreed() -> Node | None:
            ports = {self.named_master(s) for s in self.sentinels}
            if len(ports) != 1 or None in ports:
                return None
            node = self.node(ports.pop())  # type: ignore[arg-type]  # None is not in the set
            with contextlib.suppress(redis.ConnectionError):
                if node.process is not None and node.replication()["role"] == "master":
                    return node
            return None

        return wait_for(agreed, timeout=20, what="the Sentinels to agree on a master")  # type: ignore[no-any-return]

    def wait_for_failover(self, old: Node, timeout: float = 20) -> Node:
        """The new master once every Sentinel names a node other than ``old`` and it has been promoted."""
        return wait_for(  # type: ignore[no-any-return]
            lambda: (new := self.master()) is not old and new,
            timeout=timeout,
            what=f"a failover away from port {old.port}",
        )

    def wait_for_replicas(self, count: int, timeout: float = 20, master: Node | None = None) -> None:
        """Until the master (the current one, unless given) has ``count`` replicas online that acknowledge its
        writes: what TASK_REPLICA_ACKS needs."""
        master = master or self.master()

        def acknowledged() -> bool:
            client = master.client(socket_timeout=2)
            try:
                return int(client.execute_command("WAIT", count, 100)) >= count
            except redis.ConnectionError:
                return False
            finally:
                client.close()

        wait_for(acknowledged, timeout=timeout, what=f"{count} replicas to acknowledge the master's writes")

    def wait_for_replica(self, node: Node, timeout: float = 20) -> None:
        """Until ``node`` replicates the current master, in sync."""
        master = self.master()

        def in_sync() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                info = node.replication()
                return bool(
                    info["role"] == "slave"
                    and info.get("master_port") == master.port
                    and info.get("master_link_status") == "up"
                )
            return False

        wait_for(in_sync, timeout=timeout, what=f"port {node.port} to replicate the master at {master.port}")

    def only_promotable(self, chosen: Node) -> None:
        """Make every replica but ``chosen`` one a failover never promotes (replica-priority 0), once every Sentinel
        sees it so, and ``chosen`` healthy: the next failover promotes ``chosen``."""
        master = self.master()
        for node in self.nodes:
            if node not in (chosen, master) and node.process is not None:
                node.client().config_set("replica-priority", 0)

        def seen(sentinel: SentinelProcess) -> bool:
            client = sentinel.client(decode_responses=True, socket_timeout=1)
            try:
                views = {int(view["port"]): view for view in client.sentinel_slaves(SERVICE)}
            finally:
                client.close()
            good = views.get(chosen.port)
            if good is None or good["flags"] != "slave" or good["master-link-status"] != "ok":
                return False
            others = [n for n in self.nodes if n not in (chosen, master) and n.process is not None]
            return all(views.get(n.port, {}).get("slave-priority") == 0 for n in others)

        wait_for(lambda: all(seen(s) for s in self.sentinels), what=f"the Sentinels to see port {chosen.port} chosen")

    def cut_replication(self, master: Node) -> None:
        """The replicas lose their link to ``master`` and cannot log in again: its writes reach none of them."""
        client = master.client()
        try:
            client.execute_command("ACL", "SETUSER", REPLICA_USER, "off")
            client.client_kill_filter(user=REPLICA_USER)
        finally:
            client.close()
        wait_for(lambda: master.replication()["connected_slaves"] == 0, what="the replicas to be cut off")


def kill(node: Node) -> float:
    """SIGKILL ``node`` (a crash, an OOM kill, a lost machine); returns when, on the monotonic clock."""
    node.kill()
    return time.monotonic()
