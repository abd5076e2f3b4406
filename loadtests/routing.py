"""Where each request goes: the single node, Sentinel's current master, or the Cluster
node serving the key's slot, always as this host reaches it (the connection file's
address map: Sentinel announces fixed IPs, Cluster node names).

One `Router` per process knows the topology; each virtual user's `Client` holds its
own connections (one per node it talks to), so users never share a socket.
"""

from __future__ import annotations

import time
from typing import Any

import hiredis
from redis.crc import key_slot

from infra.core.connection import ConnectionInfo
from infra.operations.client import AddressMap
from loadtests.wire import Address, Connection, ReplyError, Watchdog, error_code, pack, tls_context

SLOTS = 16384
REDISCOVER_EVERY_S = 0.05  # while the topology is changing, ask at most this often
# Errors that mean "this node is not (or no longer) the one to write to".
MOVED_ON = {"READONLY", "MASTERDOWN", "LOADING", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS"}


class NoMasterError(ConnectionError):
    """The topology names no reachable node for the request right now."""


class Router:
    """Base: where a key's request goes, and what to do when that node fails."""

    def __init__(self, info: ConnectionInfo, watchdog: Watchdog) -> None:
        self.info = info
        self.address_map = AddressMap(info)
        self.context = tls_context(info.tls.ca_file, info.tls.cert_file, info.tls.key_file)
        self.credentials = info.credentials("app")
        self.watchdog = watchdog

    def connect(self, address: Address) -> Connection:
        connection = Connection(
            address, self.context, self.credentials.username, self.credentials.password
        )
        return self.watchdog.watch(connection)

    def address_for(self, key: bytes) -> Address:
        raise NotImplementedError

    def failed(self, address: Address) -> None:
        """A connection to `address` broke or the node refused the role."""

    def redirect(self, code: str, reply: object) -> tuple[Address, bool] | None:
        """For a MOVED/ASK reply: (where to, whether ASKING first), else None."""
        return None


class SingleRouter(Router):
    def __init__(self, info: ConnectionInfo, watchdog: Watchdog) -> None:
        super().__init__(info, watchdog)
        node = info.data_nodes()[0]
        if node.host is None or node.port is None:
            raise NoMasterError(f"{node.name} is not published on this host")
        self.address: Address = (node.host, node.port)

    def address_for(self, key: bytes) -> Address:
        return self.address


class SentinelRouter(Router):
    """The master as the sentinels name it, asked again after a failure."""

    def __init__(self, info: ConnectionInfo, watchdog: Watchdog) -> None:
        super().__init__(info, watchdog)
        self.sentinels: list[Address] = [
            (n.host, n.port) for n in info.sentinels() if n.host and n.port
        ]
        self.master: Address | None = None
        self.asked_at = 0.0
        self._discover()

    def _discover(self) -> None:
        self.asked_at = time.monotonic()
        query = pack("SENTINEL", "GET-MASTER-ADDR-BY-NAME", str(self.info.service_name))
        for sentinel in self.sentinels:
            try:
                connection = self.connect(sentinel)
            except (OSError, ReplyError):
                continue
            try:
                reply = connection.request(query)
            except OSError:
                continue
            finally:
                connection.close()
            if isinstance(reply, list) and len(reply) == 2:
                self.master = self.address_map((reply[0].decode(), int(reply[1])))
                return
        self.master = None

    def address_for(self, key: bytes) -> Address:
        if self.master is None and time.monotonic() - self.asked_at > REDISCOVER_EVERY_S:
            self._discover()
        if self.master is None:
            raise NoMasterError(f"no sentinel of {self.info.name} names a master now")
        return self.master

    def failed(self, address: Address) -> None:
        if address == self.master:
            self.master = None  # the next request asks the sentinels again


class ClusterRouter(Router):
    """A slot map from CLUSTER SLOTS, mended by MOVED and refreshed after a failure."""

    def __init__(self, info: ConnectionInfo, watchdog: Watchdog) -> None:
        super().__init__(info, watchdog)
        self.seeds: list[Address] = [
            (n.host, n.port) for n in info.data_nodes() if n.host and n.port
        ]
        self.slots: list[Address | None] = [None] * SLOTS
        self.refreshed_at = 0.0
        self._refresh()

    def _refresh(self) -> None:
        self.refreshed_at = time.monotonic()
        for seed in self.seeds:
            try:
                connection = self.connect(seed)
            except (OSError, ReplyError):
                continue
            try:
                reply = connection.request(pack("CLUSTER", "SLOTS"))
            except OSError:
                continue
            finally:
                connection.close()
            if not isinstance(reply, list):
                continue
            for start, end, master, *_ in reply:
                # The endpoint nodes announce (their name), mapped to this host's port.
                address = self.address_map((master[0].decode(), int(master[1])))
                for slot in range(start, end + 1):
                    self.slots[slot] = address
            return

    def address_for(self, key: bytes) -> Address:
        address = self.slots[key_slot(key)]
        if address is None:
            raise NoMasterError(f"no node of {self.info.name} serves slot {key_slot(key)} now")
        return address

    def failed(self, address: Address) -> None:
        if time.monotonic() - self.refreshed_at > REDISCOVER_EVERY_S:
            self._refresh()

    def redirect(self, code: str, reply: object) -> tuple[Address, bool] | None:
        if code not in ("MOVED", "ASK"):
            return None
        _, slot, target = str(reply).split(" ")
        host, _, port = target.rpartition(":")
        address = self.address_map((host, int(port)))
        if code == "MOVED":
            self.slots[int(slot)] = address  # and the rest of the map may follow
            if time.monotonic() - self.refreshed_at > REDISCOVER_EVERY_S:
                self._refresh()
        return address, code == "ASK"


ROUTERS: dict[str, type[Router]] = {
    "single": SingleRouter,
    "sentinel": SentinelRouter,
    "cluster": ClusterRouter,
}


def router_for(info: ConnectionInfo, watchdog: Watchdog) -> Router:
    return ROUTERS[info.topology](info, watchdog)


class Client:
    """One virtual user's connections: a request goes to the node its key belongs to.

    Redirects (MOVED, ASK) are followed once, as any cluster client does; anything
    else that fails raises, so the request is counted as failed: no retries here.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self.connections: dict[Address, Connection] = {}

    def _connection(self, address: Address) -> Connection:
        connection = self.connections.get(address)
        if connection is None or connection.closed:
            connection = self.connections[address] = self.router.connect(address)
        return connection

    def call(self, key: bytes, packed: bytes, replies: int = 1) -> Any:
        """Send a command (or `replies` pipelined ones) about `key`; the reply(ies)."""
        address = self.router.address_for(key)
        result = self._send(address, packed, replies)
        first = result[0] if replies > 1 else result
        code = error_code(first)
        if code is not None:
            redirect = self.router.redirect(code, first)
            if redirect is not None:
                target, asking = redirect
                result = self._send(target, (pack("ASKING") if asking else b"") + packed,
                                    replies + (1 if asking else 0))  # fmt: skip
                if asking:
                    result = result[1:] if replies > 1 else result[1]
                first = result[0] if replies > 1 else result
                code = error_code(first)
            if code in MOVED_ON:
                self.router.failed(address)
        for reply in result if replies > 1 else [result]:
            if isinstance(reply, hiredis.ReplyError):
                raise ReplyError(str(reply))
        return result

    def _send(self, address: Address, packed: bytes, replies: int) -> Any:
        try:
            return self._connection(address).request(packed, replies)
        except OSError:
            self.connections.pop(address, None)
            self.router.failed(address)
            raise

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()
