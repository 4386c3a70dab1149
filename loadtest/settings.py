"""Settings of the load test: targets (`make run` defaults), loopback guard, API key, behaviour knobs.

Every option is a Locust command-line flag (`--gateway`, `--api-key`, ...) with an environment
fallback `CHATSTACK_LOADTEST_<OPTION>`. No Locust import here (Locust monkey-patches the
process with gevent), so tests and the runner can import this module safely.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chatstack.catalog import GATEWAY_HTTP_PORT, SERVICES

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "CHATSTACK_LOADTEST_"
# Where `make run` serves each service (the service catalog).
DEFAULT_TARGETS: dict[str, str] = {name: info.local_address for name, info in SERVICES.items()}
# The gateway's OpenAI-compatible HTTP API under `make run`; OpenAIUser's target.
DEFAULT_OPENAI_BASE_URL = f"http://127.0.0.1:{GATEWAY_HTTP_PORT}/v1"
OPENAI = "openai"  # OpenAIUser's `service`: its target is --openai-base-url, a URL
API_KEY_SERVICES = frozenset({"gateway", OPENAI})  # the targets that need the gateway API key
DEFAULT_API_KEY_FILE = REPO_ROOT / ".run" / "dev-api-key"  # written by `make run`
_SCHEMES = ("dns:///", "dns:", "ipv4:", "ipv6:")


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option of the locustfile."""

    name: str
    default: Any
    help: str
    type: type = str
    secret: bool = False
    flag: bool = False  # store_true


OPTIONS: tuple[OptionSpec, ...] = (
    *(OptionSpec(service, address, f"host:port of the {service} (default: the `make run` port)")
      for service, address in DEFAULT_TARGETS.items()),
    OptionSpec("openai-base-url", DEFAULT_OPENAI_BASE_URL,
               "base URL of the gateway's OpenAI-compatible API (default: the `make run` port)"),
    OptionSpec("allow-remote", False, "allow non-loopback targets (only ones you own)", flag=True),
    OptionSpec("api-key", "", "gateway API key (default: the first line of --api-key-file)", secret=True),
    OptionSpec("api-key-file", str(DEFAULT_API_KEY_FILE), "file holding the gateway API key"),
    OptionSpec("max-tokens", 16, "max_tokens of each Chat/GenerateStream", type=int),
    OptionSpec("rpc-timeout", 60.0, "deadline of every RPC, seconds", type=float),
    OptionSpec("think-time", "0.5,2", "ChatUser think time between actions: MIN,MAX seconds"),
    OptionSpec("service-think-time", "0.05,0.2", "per-service users' wait between calls: MIN,MAX seconds"),
    OptionSpec("turns", "3,6", "ChatUser turns per conversation: MIN,MAX"),
    OptionSpec("openai-turns", "2,3", "OpenAIUser turns per Responses conversation: MIN,MAX"),
    OptionSpec("p-regenerate", 0.15, "probability that a ChatUser regenerates an answer", type=float),
    OptionSpec("p-best-of", 0.15, "probability that a Chat asks best_of > 1", type=float),
    OptionSpec("max-best-of", 3, "largest best_of a ChatUser asks (2..N)", type=int),
    OptionSpec("p-cancel", 0.1, "probability that a ChatUser cancels a Chat mid-stream", type=float),
    OptionSpec("cancel-after", 2, "deltas received before a cancelled Chat is cancelled", type=int),
)


class SettingsError(ValueError):
    """A target, credential or knob the load test refuses to use."""


def env_var(option: str) -> str:
    """The environment variable behind an option: `api-key` -> CHATSTACK_LOADTEST_API_KEY."""
    return ENV_PREFIX + option.upper().replace("-", "_")


def add_arguments(parser: Any) -> None:
    """Add OPTIONS to Locust's (configargparse) parser, each with its env fallback.

    On the parser itself, not a group: only Locust's parser knows `is_secret` (masked in the web UI).
    """
    for spec in OPTIONS:
        kwargs: dict[str, Any] = {"env_var": env_var(spec.name), "help": spec.help}
        if spec.flag:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(default=spec.default, type=spec.type)
        if spec.secret:
            kwargs["is_secret"] = True
        parser.add_argument(f"--{spec.name}", **kwargs)


def default_options() -> argparse.Namespace:
    """OPTIONS' defaults, for an Environment built without Locust's parser."""
    return argparse.Namespace(**{spec.name.replace("-", "_"): spec.default for spec in OPTIONS})


def host_of(address: str) -> str:
    """The host part of a gRPC target (`127.0.0.1:50050`, `[::1]:50050`, `dns:///localhost:1`)."""
    for scheme in _SCHEMES:
        if address.startswith(scheme):
            address = address[len(scheme):]
            break
    if address.startswith("["):
        return address[1:address.find("]")] if "]" in address else address[1:]
    if address.count(":") > 1:
        return address  # a bare IPv6 address without a port
    return address.rsplit(":", 1)[0]


def is_loopback(address: str) -> bool:
    """True for targets that stay on this machine: 127.0.0.0/8, ::1, localhost, unix sockets."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = host_of(address).strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: never resolved here, so never assumed local


def reachable(address: str, timeout: float = 2.0) -> bool:
    """True if a TCP connection to a `host:port` target opens (unix sockets and odd forms: assumed)."""
    host = host_of(address)
    rest = address.split("]")[-1] if address.startswith("[") or "]" in address else address
    port = rest.rsplit(":", 1)[-1]
    if address.startswith(("unix:", "unix-abstract:")) or not port.isdigit() or host == address:
        return True
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def check_target(service: str, address: str, allow_remote: bool) -> str:
    """The address if it may be loaded; a non-loopback one needs --allow-remote (explicit consent)."""
    address = address.strip()
    if not address:
        raise SettingsError(f"--{service}: empty address")
    if not allow_remote and not is_loopback(address):
        raise SettingsError(f"--{service} {address}: not a loopback address; load tests target this machine "
                            f"unless --allow-remote ({env_var('allow-remote')}=true) is given for a target "
                            "you own")
    return address


def url_address(url: str) -> str:
    """The `host:port` an http(s) URL connects to (`[::1]:8080` for IPv6; the scheme's default port)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_base_url(option: str, url: str, allow_remote: bool) -> str:
    """An http(s) base URL (without its trailing slash) if it may be loaded: check_target's loopback
    rule, on the URL's host."""
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        address = url_address(url)  # ValueError for a port that is not a number
    except ValueError as err:
        raise SettingsError(f"--{option} {url}: not a URL ({err})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"--{option} {url!r}: expected an http:// or https:// URL with a host, "
                            f"e.g. {DEFAULT_OPENAI_BASE_URL}")
    if parts.username is not None or parts.query or parts.fragment:
        raise SettingsError(f"--{option} {url}: no credentials, query or fragment in the base URL "
                            "(the key goes in --api-key)")
    if not allow_remote and not is_loopback(address):
        raise SettingsError(f"--{option} {url}: not a loopback address; load tests target this machine "
                            f"unless --allow-remote ({env_var('allow-remote')}=true) is given for a target "
                            "you own")
    return url


def resolve_api_key(given: str, key_file: str | Path) -> str:
    """The API key: given directly (--api-key / env), else the first line of the key file."""
    if given.strip():
        return given.strip()
    path = Path(key_file)
    if not path.is_file():
        raise SettingsError(f"no API key: pass --api-key, set {env_var('api-key')}, or start the stack "
                            f"with `make run` (which writes {path})")
    lines = path.read_text().strip().splitlines()
    if not lines or not lines[0].strip():
        raise SettingsError(f"API key file {path} is empty")
    return lines[0].strip()


def parse_range(text: str, option: str) -> tuple[float, float]:
    """`MIN,MAX` (or one number for a constant) as a validated (min, max) pair."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        low, high = (float(parts[0]), float(parts[-1])) if len(parts) in (1, 2) else (-1.0, -1.0)
    except ValueError:
        low, high = -1.0, -1.0
    if low < 0 or high < low:
        raise SettingsError(f"--{option} {text!r}: expected MIN,MAX with 0 <= MIN <= MAX")
    return low, high


def _probability(value: float, option: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"--{option} {value}: a probability is between 0 and 1")
    return value


@dataclass(frozen=True)
class LoadSettings:
    """Validated settings, built once from Locust's parsed options."""

    gateway: str
    tokenizer: str
    generation: str
    reward: str
    session: str
    safety: str  # probed only (no user class drives it: the gateway calls it)
    openai_base_url: str
    api_key_given: str
    api_key_file: str
    max_tokens: int
    rpc_timeout: float
    think_time: tuple[float, float]
    service_think_time: tuple[float, float]
    turns: tuple[int, int]
    openai_turns: tuple[int, int]
    p_regenerate: float
    p_best_of: float
    max_best_of: int
    p_cancel: float
    cancel_after: int

    @classmethod
    def from_options(cls, options: Any) -> LoadSettings:
        """Check every option; SettingsError names the first bad one."""
        o = options if options is not None else default_options()
        allow_remote = bool(getattr(o, "allow_remote", False))
        targets = {service: check_target(service, str(getattr(o, service)), allow_remote)
                   for service in DEFAULT_TARGETS}
        openai_base_url = check_base_url("openai-base-url", str(o.openai_base_url), allow_remote)
        turns = parse_range(o.turns, "turns")
        openai_turns = parse_range(o.openai_turns, "openai-turns")
        if o.max_tokens < 1 or o.rpc_timeout <= 0 or o.max_best_of < 2 or o.cancel_after < 1 \
                or turns[0] < 1 or openai_turns[0] < 1:
            raise SettingsError("--max-tokens, --turns, --openai-turns and --cancel-after must be >= 1, "
                                "--max-best-of >= 2, --rpc-timeout > 0")
        return cls(
            **targets, openai_base_url=openai_base_url, api_key_given=str(o.api_key or ""),
            api_key_file=str(o.api_key_file),
            max_tokens=int(o.max_tokens), rpc_timeout=float(o.rpc_timeout),
            think_time=parse_range(o.think_time, "think-time"),
            service_think_time=parse_range(o.service_think_time, "service-think-time"),
            turns=(int(turns[0]), int(turns[1])), openai_turns=(int(openai_turns[0]), int(openai_turns[1])),
            p_regenerate=_probability(o.p_regenerate, "p-regenerate"),
            p_best_of=_probability(o.p_best_of, "p-best-of"), max_best_of=int(o.max_best_of),
            p_cancel=_probability(o.p_cancel, "p-cancel"), cancel_after=int(o.cancel_after))

    def api_key(self) -> str:
        """The gateway API key (ChatUser and OpenAIUser need one: API_KEY_SERVICES)."""
        return resolve_api_key(self.api_key_given, self.api_key_file)

    def target(self, service: str) -> tuple[str, str]:
        """A user class's target as (`host:port` to probe, the option that sets it)."""
        if service == OPENAI:
            return url_address(self.openai_base_url), "--openai-base-url URL"
        return getattr(self, service), f"--{service} HOST:PORT"
