"""What every drill does, whatever the topology: converge, write, inject a fault,
restore, converge again, and account for every write."""

from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import docker

import redis
from infra.core.connection import ConnectionInfo
from infra.core.errors import DeploymentError
from infra.operations.client import admin_probe
from infra.operations.drills.faults import Faults
from infra.operations.drills.report import DrillReport, present_sequences, write_outcome
from infra.operations.drills.writer import SequencedWriter, WriteLog, WriteTarget

BASELINE_S = 1.0  # writes before the fault, so "last acknowledged before" exists
RESUMED_STREAK = 50  # acknowledged writes in a row that count as "writes resumed"
Scenario = Callable[[DrillReport, SequencedWriter, str], None]
Reader = Callable[[Sequence[str]], list[Any]]


class Drill(ABC):
    """A fault drill against one deployment; subclasses know their topology."""

    topology: str = ""

    def __init__(self, info: ConnectionInfo, engine: docker.DockerClient) -> None:
        self.info = info
        self.faults = Faults.of(engine, info)
        self.configured: dict[str, Any] = {}

    # -- what a topology provides -----------------------------------------------------

    @abstractmethod
    def scenarios(self) -> dict[str, Scenario]: ...

    @abstractmethod
    def configuration(self) -> dict[str, Any]:
        """The live settings that shape a failover (read from the nodes, not the files)."""

    @abstractmethod
    def target(self) -> WriteTarget:
        """Where the drill's writes go: the master the client follows."""

    @abstractmethod
    def victim(self, writer: SequencedWriter) -> str:
        """The master the fault hits (the one the writes go to)."""

    @abstractmethod
    def master_now(self, writer: SequencedWriter) -> str | None:
        """The master the writes' key belongs to now, as the topology says."""

    @abstractmethod
    def wait_converged(self, timeout_s: float) -> tuple[str, dict[str, str]]:
        """Until healthy again; (master for the writes' key, role of every data node)."""

    @abstractmethod
    def reader(self) -> tuple[Reader, Callable[[Sequence[str]], None], Callable[[], None]]:
        """(read values, delete keys, close) through the topology's client."""

    def failover_window_s(self) -> float:
        """A generous bound for detection, agreement and promotion."""
        return 20.0

    def deployed(self, section: str) -> dict[str, Any]:
        """A section of the settings the deployment was made with (the operator file)."""
        found = self.info.settings.get(section)
        if not isinstance(found, dict):
            raise DeploymentError(
                f"the settings of {self.info.name} are not loaded (operator.json holds them); "
                "run the drill where the deployment was made, or pass --operator"
            )
        return found

    def prefix(self) -> str:
        return f"drill:{secrets.token_hex(4)}"

    # -- the run ------------------------------------------------------------------------

    def run(self, scenario: str) -> DrillReport:
        scenarios = self.scenarios()
        if scenario not in scenarios:
            raise DeploymentError(
                f"unknown scenario {scenario!r}; choose one of {', '.join(scenarios)}"
            )
        self.wait_converged(90)
        self.configured = self.configuration()  # read once, while every node answers
        report = DrillReport(scenario, self.topology, self.info.name, dict(self.configured))
        writer = SequencedWriter(self.target(), self.prefix()).start()
        try:
            time.sleep(BASELINE_S)
            old_master = self.victim(writer)
            report.old_master = old_master
            report.fault_at_s = writer.now()  # each scenario sets it as it injects the fault
            scenarios[scenario](report, writer, old_master)
        finally:
            self.restore_all()
        converge_started = time.monotonic()
        try:
            master, roles = self.wait_converged(120)
            report.converged = True
            report.seconds_to_converge = round(time.monotonic() - converge_started, 3)
            report.new_master = master
            report.failover = master != report.old_master
            if report.failover and report.old_master:
                report.old_master_rejoined_as_replica = roles.get(report.old_master) == "replica"
        except DeploymentError as exc:
            report.notes.append(str(exc))
        time.sleep(0.3)  # a few writes on the converged deployment
        log = writer.stop()
        report.details["fault_at_epoch"] = round(writer.epoch(report.fault_at_s), 3)
        self.account(report, log)
        return report

    def restore_all(self) -> None:
        for node in self.info.nodes:
            self.faults.restore(node.container, node.name)

    def account(self, report: DrillReport, log: WriteLog) -> None:
        read, delete, close = self.reader()
        try:
            report.writes = write_outcome(log, read, report.fault_at_s)
            if report.failover and report.old_master:
                # Writes the old master acknowledged after the fault: a stale master's.
                stale = [
                    r.seq
                    for r in log.acknowledged()
                    if r.node == report.old_master and r.done_s > report.fault_at_s
                ]
                kept = present_sequences(log, stale, read)
                report.details["stale_master_acknowledged"] = len(stale)
                report.details["stale_master_lost"] = len(stale) - len(kept)
            lost = set(report.writes.lost_sequence_numbers_all)
            lost_records = [r for r in log.acknowledged() if r.seq in lost]
            if lost_records:
                # From the fault to the last acknowledged write that was later lost.
                last = max(r.done_s for r in lost_records)
                report.details["loss_window_s"] = round(last - report.fault_at_s, 4)
                report.details["lost_acknowledged_by"] = {
                    node: sum(1 for r in lost_records if (r.node or "?") == node)
                    for node in sorted({r.node or "?" for r in lost_records})
                }
            keys = [log.key(r.seq) for r in log.records]
            for start in range(0, len(keys), 1000):
                delete(keys[start : start + 1000])
        finally:
            close()

    # -- helpers for scenarios ----------------------------------------------------------

    def _admin(self, node: str) -> redis.Redis:
        """Fails fast: during a fault, a hung node must not stall the drill."""
        return admin_probe(self.info, node, timeout_s=0.5)

    def wait_for_master_other_than(
        self, old: str, writer: SequencedWriter, timeout_s: float
    ) -> tuple[str, float] | None:
        """Until the topology names another master; (name, writer time) or None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            master = self.master_now(writer)
            if master and master != old:
                return master, writer.now()
            time.sleep(0.05)
        return None

    def wait_writes_on(self, writer: SequencedWriter, node: str, timeout_s: float) -> bool:
        """Until RESUMED_STREAK writes in a row were acknowledged by `node`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            recent = writer.log.records[-RESUMED_STREAK:]
            if len(recent) == RESUMED_STREAK and all(
                r.acknowledged and r.node == node for r in recent
            ):
                return True
            time.sleep(0.02)
        return False

    def fail_over(
        self,
        report: DrillReport,
        writer: SequencedWriter,
        old_master: str,
        inject: Callable[[str], None],
        undo: Callable[[str], None],
    ) -> None:
        """Inject, wait for a new master and for writes to resume on it, undo."""
        report.fault_at_s = writer.now()  # the fault starts as the Docker call goes out
        inject(old_master)
        found = self.wait_for_master_other_than(old_master, writer, self.failover_window_s())
        if found is None:
            report.notes.append("no new master within the failover window")
            undo(old_master)
            return
        new_master, seen_at = found
        report.time_to_new_master_s = round(seen_at - report.fault_at_s, 4)
        if not self.wait_writes_on(writer, new_master, 30):
            report.notes.append(f"writes did not resume on {new_master} within 30 s")
        undo(old_master)
