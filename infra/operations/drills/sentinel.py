"""Sentinel drills: faults on the master (or the sentinels) under sequenced writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import docker

import redis
from infra.core.connection import ConnectionInfo
from infra.core.errors import DeploymentError
from infra.operations.client import AddressMap, no_retry, sentinel_manager
from infra.operations.drills.base import Drill, Reader, Scenario
from infra.operations.drills.report import DrillReport
from infra.operations.drills.writer import NotSentError, SequencedWriter
from infra.operations.observe_sentinel import wait_converged

SCENARIOS = ("kill-master", "pause-master", "partition-master", "kill-sentinels", "restart-master")


class SentinelTarget:
    """Writes through the Sentinel-following connection pool, one connection at a time,
    so each acknowledgement is attributed to the node that sent it."""

    def __init__(self, info: ConnectionInfo, socket_timeout: float) -> None:
        assert info.service_name is not None
        self.manager = sentinel_manager(info, socket_timeout=socket_timeout, retry=no_retry())
        self.address_map: AddressMap = self.manager.address_map
        self.client = self.manager.master_for(info.service_name)
        self.pool = self.client.connection_pool

    def write(self, key: str, value: str) -> str | None:
        try:
            connection = self.pool.get_connection()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise NotSentError(f"no master to write to: {exc}") from exc
        try:
            connection.send_command("SET", key, value)
            reply = connection.read_response()
        except BaseException:
            connection.disconnect()
            raise
        finally:
            self.pool.release(connection)
        if reply not in (b"OK", "OK", True):
            raise redis.ResponseError(f"unexpected reply to SET: {reply!r}")
        return self.address_map.node_name((connection.host, connection.port))

    def recover(self) -> None:
        self.pool.disconnect()  # the next write asks the sentinels where the master is

    def close(self) -> None:
        self.client.close()
        self.manager.close()


class SentinelDrill(Drill):
    topology = "sentinel"

    def __init__(self, info: ConnectionInfo, engine: docker.DockerClient) -> None:
        if info.topology != "sentinel" or info.service_name is None:
            raise DeploymentError(f"deployment {info.name} is not a Sentinel topology")
        super().__init__(info, engine)
        self.service = info.service_name

    def scenarios(self) -> dict[str, Scenario]:
        return {
            "kill-master": lambda r, w, m: self.fail_over(
                r, w, m, self.faults.kill, self.faults.start
            ),
            "pause-master": lambda r, w, m: self.fail_over(
                r, w, m, self.faults.pause, self.faults.unpause
            ),
            "partition-master": self._partition_master,
            "kill-sentinels": self._kill_sentinels,
            "restart-master": self._restart_master,
        }

    # -- observing ------------------------------------------------------------------

    def sentinel_masters(self) -> dict[str, str | None]:
        """The master each sentinel names now (None: unreachable)."""
        views: dict[str, str | None] = {}
        for sentinel in self.info.sentinels():
            client = self._admin(sentinel.name)
            try:
                reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                views[sentinel.name] = self.info.node_name(str(reply[0])) if reply else None
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                views[sentinel.name] = None
            finally:
                client.close()
        return views

    def client_masters(self) -> dict[str, str | None]:
        """The master each sentinel's own entry holds now (`SENTINEL MASTER`, what
        redis-py's discover_master reads; None: unreachable). It moves only once the
        failover ends: until then the leader already names the promoted replica to
        GET-MASTER-ADDR-BY-NAME, but sends a client to the old master if that is back."""
        views: dict[str, str | None] = {}
        for sentinel in self.info.sentinels():
            client = self._admin(sentinel.name)
            try:
                views[sentinel.name] = self.info.node_name(str(self._master_entry(client)["ip"]))
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                views[sentinel.name] = None
            finally:
                client.close()
        return views

    def _master_entry(self, sentinel: redis.Redis) -> dict[str, Any]:
        reply = sentinel.execute_command("SENTINEL", "MASTER", self.service)
        if isinstance(reply, dict):
            return {str(key): value for key, value in reply.items()}
        return dict(zip(reply[::2], reply[1::2], strict=True))

    def current_master(self) -> str:
        named = {master for master in self.sentinel_masters().values() if master}
        if len(named) != 1:
            raise DeploymentError(f"sentinels disagree on the master of {self.info.name}: {named}")
        return named.pop()

    def configuration(self) -> dict[str, Any]:
        sentinel = self._admin(self.info.sentinels()[0].name)
        try:
            fields = self._master_entry(sentinel)
        finally:
            sentinel.close()
        # The data nodes' settings, as deployed: no day-to-day user may CONFIG GET (it
        # would show masterauth) or CONFIG SET them, so the deployed ones are live.
        settings = self.deployed("sentinel")
        return {
            "down_after_ms": int(fields["down-after-milliseconds"]),
            "failover_timeout_ms": int(fields["failover-timeout"]),
            "quorum": int(fields["quorum"]),
            "parallel_syncs": int(fields["parallel-syncs"]),
            "sentinels": len(self.info.sentinels()),
            "replicas": len(self.info.data_nodes()) - 1,
            "min_replicas_to_write": int(settings["min_replicas_to_write"]),
            "min_replicas_max_lag": int(settings["min_replicas_max_lag"]),
        }

    def target(self) -> SentinelTarget:
        return SentinelTarget(self.info, socket_timeout=0.5)

    def victim(self, writer: SequencedWriter) -> str:
        return self.current_master()

    def master_now(self, writer: SequencedWriter) -> str | None:
        for master in self.sentinel_masters().values():
            if master:
                return master
        return None

    def wait_for_master_other_than(
        self, old: str, writer: SequencedWriter, timeout_s: float
    ) -> tuple[str, float] | None:
        """Until any sentinel names another master (sentinels switch one by one)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for master in self.sentinel_masters().values():
                if master and master != old:
                    return master, writer.now()
            time.sleep(0.05)
        return None

    def wait_converged(self, timeout_s: float) -> tuple[str, dict[str, str]]:
        state = wait_converged(self.info, timeout_s)
        roles = {
            name: ("master" if role.role == "master" else "replica")
            for name, role in state.roles.items()
            if role is not None
        }
        return state.masters()[0], roles

    def reader(self) -> tuple[Reader, Callable[[Sequence[str]], None], Callable[[], None]]:
        manager = sentinel_manager(self.info, socket_timeout=5.0)
        client = manager.master_for(self.service)

        def delete(keys: Sequence[str]) -> None:
            client.unlink(*keys)

        def close() -> None:
            client.close()
            manager.close()

        return (lambda keys: list(client.mget(list(keys))), delete, close)

    def failover_window_s(self) -> float:
        return float(self.configured["down_after_ms"]) / 1000 * 3 + 15

    # -- scenarios --------------------------------------------------------------------

    def _partition_master(
        self, report: DrillReport, writer: SequencedWriter, old_master: str
    ) -> None:
        self.fail_over(
            report,
            writer,
            old_master,
            self.faults.partition,
            lambda node: self.faults.heal(node, node),
        )
        report.notes.append(
            "partition: the old master stays reachable from this host, like an application "
            "server on its side of the split; min-replicas-to-write decides how long it "
            "keeps acknowledging writes no replica will ever see"
        )

    def _kill_sentinels(
        self, report: DrillReport, writer: SequencedWriter, old_master: str
    ) -> None:
        sentinels = self.info.sentinels()
        majority = len(sentinels) // 2 + 1
        killed = [node.container for node in sentinels[:majority]]
        survivor = sentinels[majority].name
        # Long enough for a failover several times over, had a majority remained
        # (detection at down-after, then election and promotion: ~1.8 s at 1000 ms).
        hold = float(self.configured["down_after_ms"]) / 1000 * 3 + 5
        for container in killed:
            self.faults.kill(container)
        report.fault_at_s = writer.now()
        self.faults.kill(old_master)
        found = self.wait_for_master_other_than(old_master, writer, hold)
        if found:
            report.notes.append(f"{found[0]} was promoted although a majority was missing")
        client = self._admin(survivor)
        try:
            client.execute_command("SENTINEL", "CKQUORUM", self.service)
            report.details["ckquorum"] = "OK (unexpected: a majority should be missing)"
        except redis.ResponseError as exc:
            report.details["ckquorum"] = str(exc)
        finally:
            client.close()
        report.details["sentinels_killed"] = killed
        report.details["held_without_master_s"] = round(hold, 1)
        self.faults.start(old_master)
        self.wait_writes_on(writer, old_master, 30)
        for container in killed:
            self.faults.start(container)

    def _restart_master(
        self, report: DrillReport, writer: SequencedWriter, old_master: str
    ) -> None:
        started = time.monotonic()
        report.fault_at_s = writer.now()
        self.faults.restart(old_master)
        report.details["restart_s"] = round(time.monotonic() - started, 3)
        if not self.wait_writes_on(writer, old_master, 30):
            found = self.wait_for_master_other_than(old_master, writer, self.failover_window_s())
            if found:
                report.time_to_new_master_s = round(found[1] - report.fault_at_s, 4)
