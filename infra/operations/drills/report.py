"""The drill report: what happened to the writes and to the topology, as JSON data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from infra.operations.drills.writer import WriteLog

Reader = Callable[[Sequence[str]], list[bytes | str | None]]
BATCH = 1000


@dataclass
class WriteOutcome:
    attempted: int
    acknowledged: int
    failed: int
    acknowledged_lost: int  # acknowledged, yet not readable after the drill
    rejected: int  # refused by the server or never sent: surely not applied
    indeterminate: int  # no reply (timeout, reset): applied or not, the client cannot know
    indeterminate_applied: int  # ... of which the data holds the value afterwards
    write_outage_s: float  # longest stretch without an acknowledged write, around the fault
    outage_from_s: float  # last acknowledged write before it (writer clock)
    outage_to_s: float  # first acknowledged write after it
    lost_sequence_numbers: list[int] = field(default_factory=list)  # the first 50
    lost_sequence_numbers_all: list[int] = field(default_factory=list, repr=False)


def present_sequences(log: WriteLog, seqs: list[int], read: Reader) -> set[int]:
    present: set[int] = set()
    for start in range(0, len(seqs), BATCH):
        chunk = seqs[start : start + BATCH]
        values = read([log.key(seq) for seq in chunk])
        for seq, value in zip(chunk, values, strict=True):
            text = value.decode() if isinstance(value, bytes) else value
            if text == str(seq):
                present.add(seq)
    return present


def write_outcome(log: WriteLog, read: Reader, fault_at_s: float) -> WriteOutcome:
    """Compare what the writer was told with what the data holds now."""
    acknowledged = [r.seq for r in log.acknowledged()]
    indeterminate = [r.seq for r in log.indeterminate()]
    present_acknowledged = present_sequences(log, acknowledged, read)
    lost = sorted(set(acknowledged) - present_acknowledged)
    applied = present_sequences(log, indeterminate, read)
    gap, gap_from, gap_to = log.longest_gap(fault_at_s)
    return WriteOutcome(
        attempted=len(log.records),
        acknowledged=len(acknowledged),
        failed=len(log.failed()),
        acknowledged_lost=len(lost),
        rejected=len(log.failed()) - len(indeterminate),
        indeterminate=len(indeterminate),
        indeterminate_applied=len(applied),
        write_outage_s=round(gap, 4),
        outage_from_s=round(gap_from, 4),
        outage_to_s=round(gap_to, 4),
        lost_sequence_numbers=lost[:50],  # the first ones, to look at; the count is above
        lost_sequence_numbers_all=lost,
    )


@dataclass
class DrillReport:
    scenario: str
    topology: str
    deployment: str
    configured: dict[str, Any]
    writes: WriteOutcome | None = None
    old_master: str | None = None
    new_master: str | None = None
    failover: bool = False
    fault_at_s: float = 0.0  # writer clock
    time_to_new_master_s: float | None = None
    old_master_rejoined_as_replica: bool | None = None
    converged: bool = False
    seconds_to_converge: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["writes"]:
            del data["writes"]["lost_sequence_numbers_all"]  # the count says it; keep JSON small
        return data
