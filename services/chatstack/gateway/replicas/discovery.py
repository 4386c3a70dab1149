"""Where a backend's replicas are: the address forms a backend setting accepts, and resolving them.

- `host:port`: one replica (gRPC's own resolver behind one channel, as before: right for a
  single server, or for a ClusterIP Service when balancing per connection is acceptable);
- `host:port,host:port,...`: a static list, one replica each;
- `dns:///name:port`: every address the name resolves to is a replica: a Kubernetes headless
  Service gives one A record per ready pod. Resolved with the system's resolver (search domains,
  /etc/hosts), periodically and after a replica fails;
- `dns://server:port/name:port`: the same, asking that DNS server (gRPC's target syntax for an
  authority), e.g. a cluster's DNS from outside or a test's own server on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass


def split_host_port(text: str, what: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` as (host, port); ValueError naming `what` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what}: {text!r} is not host:port")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    """`host:port`, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Target:
    """A parsed backend address: a static list of replicas or a DNS name to resolve."""

    static: tuple[str, ...] = ()
    dns_name: str = ""
    port: int = 0
    dns_server: tuple[str, int] | None = None

    @property
    def dynamic(self) -> bool:
        """Whether the replicas come from DNS (and may change)."""
        return bool(self.dns_name)


def parse_target(text: str, what: str = "address") -> Target:
    """A backend address setting (see module docstring); ValueError naming `what` if malformed."""
    text = text.strip()
    if text.startswith("dns:"):
        rest = text.removeprefix("dns:")
        server: tuple[str, int] | None = None
        if rest.startswith("//"):
            authority, slash, rest = rest[2:].partition("/")
            if not slash:
                raise ValueError(f"{what}: {text!r} is not dns:///name:port or dns://server:port/name:port")
            if authority:
                server = split_host_port(authority, what)
        host, port = split_host_port(rest, what)
        return Target(dns_name=host, port=port, dns_server=server)
    entries = tuple(entry.strip() for entry in text.split(",") if entry.strip())
    if not entries:
        raise ValueError(f"{what}: empty")
    for entry in entries:
        split_host_port(entry, what)
    return Target(static=entries)


async def resolve(target: Target, timeout: float = 5.0) -> list[str]:  # noqa: ASYNC109
    """The replicas' `host:port` addresses now, sorted (so every gateway orders them alike).
    Raises OSError when the name does not resolve."""
    if not target.dynamic:
        return list(target.static)
    async with asyncio.timeout(timeout):
        if target.dns_server is None:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.dns_name, target.port, type=socket.SOCK_STREAM)
            hosts = {str(info[4][0]) for info in infos}
        else:
            hosts = await _ask_server(target.dns_name, target.dns_server)
    if not hosts:
        raise OSError(f"{target.dns_name}: no addresses")
    return [join_host_port(h, target.port) for h in sorted(hosts, key=ipaddress.ip_address)]


async def _ask_server(name: str, server: tuple[str, int]) -> set[str]:
    """A and AAAA records of `name` from one DNS server."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [server[0]]
    resolver.port = server[1]
    hosts: set[str] = set()
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise OSError(f"{name}: {exc}") from exc
        hosts.update(record.to_text() for record in answer)
    return hosts
