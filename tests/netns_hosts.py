"""Players on separate (simulated) hosts: one Linux network namespace per player.

:class:`Network` makes a namespace holding a bridge, and one namespace per player with a
veth pair whose outer end is a port of that bridge and whose inner end, ``eth0``, has the
player's own address, ``192.0.2.(rank + 1)/24`` (TEST-NET-1).  Nothing is created in the
namespace the tests run in: the bridge and every veth live in namespaces of the network's
own, so :meth:`Network.close` (deleting them) removes everything, and names never clash
with the host's or another run's (they carry the pid and a counter).

A player is started with ``ip netns exec <namespace> python ...`` (:meth:`Network.command`);
``ip`` execs the program, so the process it returns is the player itself.  :meth:`cut`
takes a player's interface down inside its namespace: from then on its packets, and those
sent to it, are silently lost (no FIN, no RST), as when a host drops off the network.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["SUBNET", "Network", "NetworkUnavailable", "netem_available"]

SUBNET = "192.0.2"  # TEST-NET-1 (RFC 5737): never routed anywhere real
_COUNTER = itertools.count()


class NetworkUnavailable(Exception):
    """Namespaces, veth pairs or bridges cannot be made here (the reason is the message)."""


def _ip(*arguments: str) -> None:
    result = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NetworkUnavailable(f"'ip {' '.join(arguments)}' failed: {result.stderr.strip()}")


class Network:
    """``size`` players, each in a network namespace of its own, joined by a bridge."""

    def __init__(self, size: int) -> None:
        tag = f"{os.getpid()}-{next(_COUNTER)}"
        self.size = size
        self.bridge_namespace = f"cicada-bridge-{tag}"
        self.namespaces = [f"cicada-p{rank}-{tag}" for rank in range(size)]
        self._made: list[str] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be used here, or None if they might be."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return "network namespaces need root"
        if shutil.which("ip") is None:
            return "the 'ip' command (iproute2) is not installed"
        return None

    def address(self, rank: int) -> str:
        return f"{SUBNET}.{rank + 1}"

    def create(self) -> None:
        """Make the namespaces, the bridge and the links; raises NetworkUnavailable."""
        reason = self.unavailable()
        if reason is not None:
            raise NetworkUnavailable(reason)
        _ip("netns", "add", self.bridge_namespace)
        self._made.append(self.bridge_namespace)
        bridge = ("-n", self.bridge_namespace)
        _ip(*bridge, "link", "add", "br0", "type", "bridge")
        _ip(*bridge, "link", "set", "br0", "up")
        for rank, namespace in enumerate(self.namespaces):
            _ip("netns", "add", namespace)
            self._made.append(namespace)
            port = f"port{rank}"
            _ip(*bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip(*bridge, "link", "set", port, "master", "br0")
            _ip(*bridge, "link", "set", port, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "address", "add", f"{self.address(rank)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Delete every namespace made (with them go the veth pairs and the bridge).

        Never raises; safe to call twice.  Call it after the players have exited: a
        namespace outlives its name while a process still runs in it.
        """
        while self._made:
            namespace = self._made.pop()
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)

    def __enter__(self) -> Network:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def command(self, rank: int, arguments: Sequence[str]) -> list[str]:
        """The command line that runs ``arguments`` inside player ``rank``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[rank], *arguments]

    def cut(self, rank: int) -> None:
        """Take player ``rank`` off the network: its interface goes down, packets are lost."""
        _ip("-n", self.namespaces[rank], "link", "set", "eth0", "down")

    def restore(self, rank: int) -> None:
        """Undo :meth:`cut` (the address stays configured; its route comes back)."""
        _ip("-n", self.namespaces[rank], "link", "set", "eth0", "up")

    def cap_retransmission_timeout(self, milliseconds: int) -> bool:
        """Cap TCP's retransmission timeout in every player's namespace (``tcp_rto_max_ms``,
        Linux 6.15+).  Returns False where the kernel has no such setting."""
        done = True
        for namespace in self.namespaces:
            result = subprocess.run(["ip", "netns", "exec", namespace, "sh", "-c",
                                     f"echo {int(milliseconds)} > /proc/sys/net/ipv4/tcp_rto_max_ms"],
                                    capture_output=True, timeout=30)
            done = done and result.returncode == 0
        return done

    def netem(self, delay_ms: float) -> None:
        """Delay every packet a player sends by ``delay_ms`` (tc netem on every eth0)."""
        for namespace in self.namespaces:
            _ip("netns", "exec", namespace, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                "delay", f"{delay_ms}ms")


def netem_available() -> str | None:
    """None if ``tc ... netem`` works in a namespace here, else why not."""
    if shutil.which("tc") is None:
        return "the 'tc' command is not installed"
    try:
        with Network(1) as network:
            network.netem(1)
    except NetworkUnavailable as exc:
        return str(exc)
    return None
