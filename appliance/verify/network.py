"""Checks of the air gap itself: routes, resolvers, configured outbound destinations, listening sockets.

All of them read files (``/proc``, ``/etc``, the settings, the database) and send nothing: a host name is
never resolved, only looked up in the hosts file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from appliance.audit.forwarders import list_forwarders
from appliance.errors import ApplianceError
from appliance.verify.context import VerifyContext
from appliance.verify.models import Status, Verdict, checklist_item
from appliance.verify.system import Listener, default_routes, hosts_entries, listeners, nameservers, socket_inodes

__all__ = ["check_default_route", "check_dns", "check_listening", "check_outbound", "site_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Settings that name where the appliance listens or how users reach it: not outbound destinations.
_NOT_OUTBOUND = frozenset({"host", "public_url"})


@checklist_item("default-route", "No default route")
def check_default_route(ctx: VerifyContext) -> Verdict:
    """5a. No default route: a packet to an unknown network has nowhere to go."""
    routes, notes = default_routes(ctx.files)
    if routes:
        return Verdict(Status.WARN, [r.describe() for r in routes] + notes,
                        "remove the default route (ip route del default; and the gateway in the host's network "
                        "configuration) and route only the site's own networks")
    return Verdict(Status.PASS,
                        ["no IPv4 or IPv6 default route in the routing tables", *notes])


@checklist_item("dns", "No DNS resolver configured")
def check_dns(ctx: VerifyContext) -> Verdict:
    """5b. No DNS resolver configured: no name lookup can leave the host."""
    where = ctx.files.resolv_conf
    try:
        servers = nameservers(ctx.files)
    except OSError as exc:
        return Verdict(Status.WARN, [f"{where} could not be read ({exc.strerror})"],
                       f"run cortex verify as root, or make {where} readable")
    if servers:
        return Verdict(Status.WARN, [f"{where}: nameserver {s}" for s in servers],
                       f"remove the nameserver lines from {where} (and from the network manager's configuration, "
                       "which may rewrite it); list the site's hosts in /etc/hosts instead")
    return Verdict(Status.PASS, [f"{where}: no nameserver lines"])


def site_networks(ctx: VerifyContext) -> tuple[list[Network], str]:
    """The site ranges (the setting, else the installer's record) and where they came from."""
    ranges, source = list(ctx.settings.site_ranges), "the site_ranges setting"
    if not ranges and ctx.install is not None and ctx.install.site_ranges:
        ranges, source = list(ctx.install.site_ranges), str(ctx.install.path)
    networks = []
    for text in ranges:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue  # the setting is validated at load; a bad record entry just does not count
    return networks, source if ranges else "none configured (loopback only)"


def _split_host(target: str) -> str:
    """The host of a URL, a ``host:port`` or a bare host."""
    if "://" in target:
        return urlsplit(target).hostname or ""
    if target.startswith("["):
        return target[1:].partition("]")[0]
    if target.count(":") == 1:
        return target.partition(":")[0]
    return target


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.partition("%")[0])  # an IPv6 zone (fe80::1%eth0) is not part of it
    except ValueError:
        return None


def _inside(address: Address, networks: Iterable[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in networks)


def _destinations(ctx: VerifyContext) -> tuple[list[tuple[str, str]], list[str]]:
    """(what, host) for every configured outbound destination; and notes on what could not be read."""
    found: list[tuple[str, str]] = []
    notes: list[str] = []
    for item in dataclasses.fields(ctx.settings):
        value = getattr(ctx.settings, item.name)
        if item.name in _NOT_OUTBOUND or not isinstance(value, str) or not value:
            continue
        if "://" in value or item.name.endswith(("_url", "_host", "_endpoint")):
            found.append((f"setting {item.name} = {value}", _split_host(value)))
    if ctx.db is None:
        notes.append("no database: audit forwarders not checked")
        return found, notes
    try:
        forwarders = list_forwarders(ctx.db)
    except ApplianceError as exc:
        notes.append(f"audit forwarders could not be read: {exc.message}")
        return found, notes
    for forwarder in forwarders:
        found.append((f"audit forwarder {forwarder.name} ({forwarder.kind}) → {forwarder.target}",
                      _split_host(forwarder.target)))
    return found, notes


@checklist_item("outbound", "Outbound destinations lie inside the site ranges")
def check_outbound(ctx: VerifyContext) -> Verdict:
    """6. Every configured outbound destination lies inside the site ranges (loopback always does)."""
    networks, source = site_networks(ctx)
    shown = f"{', '.join(map(str, networks))} (from {source})" if networks else source
    evidence = [f"site ranges: {shown}; loopback is always allowed"]
    destinations, notes = _destinations(ctx)
    allowed = [*networks, *LOOPBACK]
    hosts = hosts_entries(ctx.files)
    failed = warned = False
    for what, host in destinations:
        address = _literal(host)
        if address is not None:
            if _inside(address, allowed):
                evidence.append(f"{what}: {address} is inside the site ranges")
            else:
                evidence.append(f"{what}: {address} is OUTSIDE the site ranges")
                failed = True
            continue
        listed = hosts.get(host.lower().rstrip("."), [])
        addresses = [a for a in (_literal(text) for text in listed) if a is not None]
        if not addresses:
            evidence.append(f"{what}: {host} is a hostname, cannot be checked without DNS (not in "
                            f"{ctx.files.hosts})")
            warned = True
        elif all(_inside(a, allowed) for a in addresses):
            evidence.append(f"{what}: {host} is {', '.join(map(str, addresses))} in {ctx.files.hosts}, inside the "
                            "site ranges")
        else:
            outside = [str(a) for a in addresses if not _inside(a, allowed)]
            evidence.append(f"{what}: {host} is {', '.join(outside)} in {ctx.files.hosts}, OUTSIDE the site ranges")
            failed = True
    if not destinations:
        evidence.append("no outbound destination is configured")
    evidence.extend(notes)
    if failed:
        return Verdict(Status.FAIL, evidence,
                       "remove or correct the destinations outside the site ranges (cortex audit forwarders remove "
                       "NAME), or add the site's network to site_ranges if it is one")
    if warned or notes:
        return Verdict(Status.WARN, evidence,
                       "configure destinations by IP address, or list their names in /etc/hosts with addresses "
                       "inside site_ranges")
    return Verdict(Status.PASS, evidence)


def _configured(ctx: VerifyContext, sock: Listener) -> bool:
    """Is this the web server's socket (setting ``host``:``port``, TCP)?"""
    settings = ctx.settings
    if not sock.protocol.startswith("tcp") or sock.port != settings.port:
        return False
    wanted = _literal(settings.host)
    if wanted is None:
        names = hosts_entries(ctx.files).get(settings.host.lower(), [])
        listed = [a for a in (_literal(t) for t in names) if a is not None]
        return not listed or sock.ip() in listed
    have = sock.ip()
    if isinstance(have, ipaddress.IPv6Address) and have.ipv4_mapped is not None:
        have = have.ipv4_mapped
    return have == wanted


@checklist_item("listening", "Only the configured sockets listen")
def check_listening(ctx: VerifyContext) -> Verdict:
    """7. The appliance's processes listen on the configured host:port and nothing else."""
    settings = ctx.settings
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    configured = f"configured: tcp {host}:{settings.port} (settings host and port)"
    processes = ctx.processes()
    if not processes:
        return Verdict(Status.WARN,
                       [configured, f"the service is not running (no `cortex serve` process holds "
                        f"{settings.db_path} open): listening sockets not checked"],
                       "start the service (systemctl start cortex) and run cortex verify again")
    evidence = [configured]
    unexpected: list[str] = []
    unreadable: list[str] = []
    seen_configured = False
    for process in processes:
        try:
            inodes = socket_inodes(ctx.files, process.pid)
        except OSError as exc:
            unreadable.append(f"{process.describe()}: its sockets cannot be read ({exc.strerror})")
            continue
        sockets, notes = listeners(ctx.files.proc / str(process.pid) / "net")
        unreadable.extend(notes)
        own = [s for s in sockets if s.inode in inodes]
        for sock in own:
            if _configured(ctx, sock):
                seen_configured = True
                evidence.append(f"{process.describe()}: listens on {sock.describe()} (configured)")
            else:
                unexpected.append(f"{process.describe()}: listens on {sock.describe()}, which is not configured")
        if not own:
            evidence.append(f"{process.describe()}: no listening socket")
    if unexpected:
        return Verdict(Status.FAIL, [*evidence, *unexpected, *unreadable],
                       "find what opened the extra socket (a debugging option, a plug-in, a changed binary: check "
                       "the release check above) and restart the service from the installed release")
    if unreadable:
        return Verdict(Status.WARN, [*evidence, *unreadable],
                       "run cortex verify as root (or as the service user) so it can read the service's sockets")
    if not seen_configured:
        return Verdict(Status.WARN, [*evidence, "the configured socket is not listening"],
                       "the service may still be starting: wait for /readyz, then run cortex verify again; else read "
                       "its log (journalctl -u cortex)")
    return Verdict(Status.PASS, evidence)
