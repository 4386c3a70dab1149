"""Which replica of a backend takes a call: the routing policies, pure (no channels, no I/O).

A policy sees the replicas that are eligible now (healthy, resolved) with the in-flight calls this
gateway has open on each, and an optional routing key (the session id, for generation):

- `round_robin`: each in turn.
- `least_loaded`: the fewest in-flight calls (ties: in turn), the usual choice when calls differ
  in cost (a 1k-token generation next to a 10-token one).
- `session_affinity`: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
  "Consistent Hashing with Bounded Loads", 2018). The key's point on a ring of virtual nodes picks
  the replica, so a session's turns meet the KV cache that holds their shared prefix; walking on
  from that point, a replica already at its cap, ceil((1 + ε) * (in flight + 1) / replicas), passes
  the call to the next one, so a hot session cannot pile onto one replica. Adding or removing a
  replica moves only the keys of its own arcs. Without a key it is `least_loaded`.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

RoutingPolicy = Literal["round_robin", "least_loaded", "session_affinity"]
VIRTUAL_NODES = 160  # points per replica on the ring: arcs within a few % of equal for 2-10 replicas


def _point(text: str) -> int:
    """A stable 64-bit position (the same in every gateway process, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Router(Protocol):
    """Picks one of `replicas` (non-empty, in a stable order) given their in-flight counts."""

    def pick(self, replicas: Sequence[str], load: Mapping[str, int], key: str | None) -> str: ...


class RoundRobin:
    """Each replica in turn."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, replicas: Sequence[str], load: Mapping[str, int], key: str | None) -> str:
        """The next replica."""
        chosen = replicas[self._next % len(replicas)]
        self._next += 1
        return chosen


class LeastLoaded:
    """The replica with the fewest in-flight calls; ties rotate."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, replicas: Sequence[str], load: Mapping[str, int], key: str | None) -> str:
        """The least loaded replica."""
        self._turn += 1
        n = len(replicas)
        order = [replicas[(self._turn + i) % n] for i in range(n)]
        return min(order, key=lambda r: load.get(r, 0))


class BoundedLoadHashRing:
    """Consistent hashing with bounded loads over the replicas (see module docstring)."""

    def __init__(self, load_factor: float = 0.25, virtual_nodes: int = VIRTUAL_NODES) -> None:
        if load_factor < 0:
            raise ValueError("load_factor must be >= 0")
        self.load_factor = load_factor
        self.virtual_nodes = virtual_nodes
        self._members: tuple[str, ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []
        self._fallback = LeastLoaded()

    def _rebuild(self, replicas: Sequence[str]) -> None:
        ring = sorted((_point(f"{replica}#{i}"), replica)
                      for replica in replicas for i in range(self.virtual_nodes))
        self._points = [p for p, _ in ring]
        self._owners = [r for _, r in ring]
        self._members = tuple(replicas)

    def cap(self, replicas: Sequence[str], load: Mapping[str, int]) -> int:
        """Most in-flight calls a replica may hold and still take one more."""
        total = sum(load.get(r, 0) for r in replicas) + 1
        return max(1, math.ceil((1 + self.load_factor) * total / len(replicas)))

    def home(self, replicas: Sequence[str], key: str) -> str:
        """The replica the key hashes to, loads aside."""
        if tuple(replicas) != self._members:
            self._rebuild(replicas)
        return self._owners[bisect.bisect(self._points, _point(key)) % len(self._points)]

    def pick(self, replicas: Sequence[str], load: Mapping[str, int], key: str | None) -> str:
        """The first replica from the key's point on the ring that is below its cap."""
        if key is None:
            return self._fallback.pick(replicas, load, key)
        if tuple(replicas) != self._members:
            self._rebuild(replicas)
        cap = self.cap(replicas, load)
        start = bisect.bisect(self._points, _point(key))
        seen: set[str] = set()
        for i in range(len(self._points)):
            owner = self._owners[(start + i) % len(self._points)]
            if owner in seen:
                continue
            if load.get(owner, 0) < cap:
                return owner
            seen.add(owner)
            if len(seen) == len(replicas):
                break
        return self._owners[start % len(self._points)]  # unreachable: someone is below the mean


def make_router(policy: RoutingPolicy, load_factor: float) -> Router:
    """The router of a policy."""
    if policy == "round_robin":
        return RoundRobin()
    if policy == "least_loaded":
        return LeastLoaded()
    return BoundedLoadHashRing(load_factor)
