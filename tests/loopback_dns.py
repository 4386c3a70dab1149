"""A real DNS server on loopback whose A records a test edits: the stand-in for a Kubernetes
headless Service (one A record per ready pod) that a gateway resolves with
`dns://127.0.0.1:<port>/<name>:<grpc port>`.

Replicas of one service share a port on distinct loopback addresses (127.0.0.2, 127.0.0.3, ...),
as pods share a port on distinct pod IPs.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class LoopbackDns:
    """Answers A queries from `records` (name -> addresses); unknown names are NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)

    def set(self, name: str, addresses: list[str]) -> None:
        """Replace the A records of `name`."""
        with self._lock:
            self.records[name] = list(addresses)

    def target(self, name: str, port: int) -> str:
        """The gateway address setting that resolves `name` here."""
        return f"dns://127.0.0.1:{self.port}/{name}:{port}"

    def start(self) -> LoopbackDns:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return  # closed
            with contextlib.suppress(Exception):  # a malformed query gets no answer, as from a real server
                self._sock.sendto(self._answer(dns.message.from_wire(data)).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        for question in query.question:
            name = question.name.to_text(omit_final_dot=True)
            with self._lock:
                addresses = self.records.get(name)
            if addresses is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A and addresses:
                reply.answer.append(dns.rrset.from_text_list(
                    question.name, 0, dns.rdataclass.IN, dns.rdatatype.A, addresses))
        return reply


def free_shared_port(hosts: list[str]) -> int:
    """A TCP port free on every one of `hosts` a moment ago."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((hosts[0], 0))
            port = int(first.getsockname()[1])
            ok = True
            for host in hosts[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
                    try:
                        other.bind((host, port))
                    except OSError:
                        ok = False
                        break
            if ok:
                return port
    raise OSError(f"no port free on all of {hosts}")
