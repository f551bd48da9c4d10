"""The host's state as its own files tell it: routes, resolvers, the hosts file, sockets and processes.

Everything here reads ``/proc`` and ``/etc`` and nothing else: no socket is opened, no name is resolved,
so the checklist never sends a packet (not even a DNS query). The locations are parameters
(:class:`SystemFiles`) so a check can be pointed at another root.

The formats are the kernel's (``net/ipv4/route.c``, ``net/ipv6/route.c``, ``net/ipv4/tcp_ipv4.c``,
``net/ipv6/tcp_ipv6.c``, ``net/ipv4/udp.c``): IPv4 addresses in ``/proc/net/{route,tcp,udp}`` are the
32-bit value in host byte order; IPv6 addresses in ``tcp6``/``udp6`` are four such words, and in
``ipv6_route`` plain network order.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["Listener", "Process", "Route", "SystemFiles", "appliance_processes", "default_routes", "descriptors",
           "hosts_entries", "listeners", "nameservers", "socket_inodes"]

_RTF_UP = 0x0001
_RTF_REJECT = 0x0200
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"  # TCP_CLOSE: a bound UDP socket with no peer receives from anyone
_MAX_READ = 8 << 20


@dataclass(frozen=True)
class SystemFiles:
    """Where the host's state is read from."""

    proc: Path = Path("/proc")
    resolv_conf: Path = Path("/etc/resolv.conf")
    hosts: Path = Path("/etc/hosts")


def _read_text(path: Path) -> str:
    with path.open("rb") as fh:
        return fh.read(_MAX_READ).decode("utf-8", "replace")


def _ipv4(word: str) -> str:
    return socket.inet_ntop(socket.AF_INET, int(word, 16).to_bytes(4, sys.byteorder))


def _ipv6_words(text: str) -> str:
    raw = b"".join(int(text[i:i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, raw)


def _ipv6_plain(text: str) -> str:
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(text))


@dataclass(frozen=True)
class Route:
    family: str  # IPv4 or IPv6
    interface: str
    gateway: str

    def describe(self) -> str:
        via = f" via {self.gateway}" if ipaddress.ip_address(self.gateway).packed.strip(b"\0") else ""
        return f"{self.family} default route{via} on {self.interface}"


def default_routes(files: SystemFiles) -> tuple[list[Route], list[str]]:
    """Default routes that are up and not reject routes; and notes about files that could not be read."""
    found: list[Route] = []
    notes: list[str] = []
    route4 = files.proc / "net" / "route"
    try:
        for line in _read_text(route4).splitlines()[1:]:
            cols = line.split()
            if len(cols) < 8:
                continue
            flags = int(cols[3], 16)
            if cols[1] == "00000000" and cols[7] == "00000000" and flags & _RTF_UP and not flags & _RTF_REJECT:
                found.append(Route("IPv4", cols[0], _ipv4(cols[2])))
    except (OSError, ValueError) as exc:
        notes.append(f"{route4} could not be read ({exc})")
    route6 = files.proc / "net" / "ipv6_route"
    try:
        for line in _read_text(route6).splitlines():
            cols = line.split()
            if len(cols) < 10:
                continue
            flags = int(cols[8], 16)
            if int(cols[0], 16) == 0 and cols[1] == "00" and flags & _RTF_UP and not flags & _RTF_REJECT:
                found.append(Route("IPv6", cols[9], _ipv6_plain(cols[4])))
    except FileNotFoundError:
        notes.append(f"{route6} does not exist (IPv6 is off)")
    except (OSError, ValueError) as exc:
        notes.append(f"{route6} could not be read ({exc})")
    return found, notes


def nameservers(files: SystemFiles) -> list[str]:
    """The ``nameserver`` lines of resolv.conf (resolver(5)); an absent file configures none.

    Raises:
        OSError: the file exists but cannot be read.
    """
    try:
        text = _read_text(files.resolv_conf)
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 2 and cols[0] == "nameserver":
            found.append(cols[1])
    return found


def hosts_entries(files: SystemFiles) -> dict[str, list[str]]:
    """Names of the hosts file (hosts(5)), lower-cased, each with its addresses; an absent file has none."""
    try:
        text = _read_text(files.hosts)
    except FileNotFoundError:
        return {}
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        cols = line.split("#", 1)[0].split()
        if len(cols) < 2:
            continue
        for name in cols[1:]:
            entries.setdefault(name.lower().rstrip("."), []).append(cols[0])
    return entries


@dataclass(frozen=True)
class Listener:
    protocol: str  # tcp, tcp6, udp, udp6
    address: str
    port: int
    inode: int

    def describe(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol} {host}:{self.port}"

    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.address)


def listeners(net_dir: Path) -> tuple[list[Listener], list[str]]:
    """Listening TCP sockets and bound, unconnected UDP sockets from one network namespace's ``net`` folder."""
    found: list[Listener] = []
    notes: list[str] = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        path = net_dir / protocol
        try:
            lines = _read_text(path).splitlines()[1:]
        except FileNotFoundError:
            continue
        except OSError as exc:
            notes.append(f"{path} could not be read ({exc.strerror})")
            continue
        wanted = _TCP_LISTEN if protocol.startswith("tcp") else _UDP_UNCONNECTED
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != wanted:
                continue
            address, _, port = cols[1].partition(":")
            remote = cols[2].partition(":")[0]
            if protocol.startswith("udp") and int(remote, 16) != 0:
                continue
            text = _ipv4(address) if len(address) == 8 else _ipv6_words(address)
            found.append(Listener(protocol, text, int(port, 16), int(cols[9])))
    return found, notes


@dataclass(frozen=True)
class Process:
    pid: int
    argv: list[str]
    exe: str | None  # None when this user may not read it
    uids: tuple[int, ...] = field(default=())  # real, effective, saved, filesystem

    def describe(self) -> str:
        return f"pid {self.pid} ({' '.join(self.argv)[:120]})"


def _is_appliance_server(argv: list[str], exe: str | None, binaries: set[str]) -> bool:
    """``cortex serve``, however started: the frozen binary, the ``cortex`` script or ``python -m appliance``."""
    start = None
    if exe is not None and exe in binaries:
        start = 1
    for index, arg in enumerate(argv):
        if start is not None:
            break
        if PurePosixPath(arg).name == "cortex":
            start = index + 1
        elif arg == "-m" and index + 1 < len(argv) and argv[index + 1] == "appliance":
            start = index + 2
    if start is None:
        return False
    # The first word that is not an option is the command; global options may take a value.
    rest = argv[start:]
    skip = False
    for arg in rest:
        if skip:
            skip = False
            continue
        if arg in ("--data-dir", "--config"):
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg == "serve"
    return False


def appliance_processes(files: SystemFiles, *, binaries: set[str] | None = None,
                        exclude: set[int] | None = None) -> list[Process]:
    """Running ``cortex serve`` processes (matched by executable, or by command line), ours excluded."""
    known = {str(Path(b)) for b in (binaries or set())}
    skip = exclude or set()
    found: list[Process] = []
    try:
        pids = sorted(int(entry.name) for entry in files.proc.iterdir() if entry.name.isdigit())
    except OSError:
        return []
    for pid in pids:
        if pid in skip:
            continue
        base = files.proc / str(pid)
        try:
            argv = [a.decode("utf-8", "replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue  # exited meanwhile
        try:
            exe: str | None = str((base / "exe").readlink())
        except OSError:
            exe = None
        if not argv or not _is_appliance_server(argv, exe, known):
            continue
        uids: tuple[int, ...] = ()
        try:
            for line in _read_text(base / "status").splitlines():
                if line.startswith("Uid:"):
                    uids = tuple(int(v) for v in line.split()[1:])
        except (OSError, ValueError):
            pass
        found.append(Process(pid, argv, exe, uids))
    return found


def descriptors(files: SystemFiles, pid: int) -> list[str]:
    """What process ``pid``'s open descriptors point at (paths, ``socket:[inode]``, ``pipe:[…]``).

    Raises:
        PermissionError: this user may not look at the process's descriptors (run as root or its user).
        FileNotFoundError: the process has exited.
    """
    targets = []
    for link in (files.proc / str(pid) / "fd").iterdir():
        try:
            targets.append(str(link.readlink()))
        except OSError:
            continue  # closed meanwhile
    return targets


def socket_inodes(files: SystemFiles, pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open (raises as :func:`descriptors`)."""
    return {int(t[8:-1]) for t in descriptors(files, pid) if t.startswith("socket:[") and t.endswith("]")}
