"""The hardened systemd unit the installer writes (systemd.exec(5), systemd.resource-control(5))."""

from __future__ import annotations

import ipaddress

from appliance.errors import ConfigError

__all__ = ["UNIT_NAME", "check_site_ranges", "render_unit"]

UNIT_NAME = "cortex.service"


def check_site_ranges(ranges: list[str]) -> list[str]:
    """Each range as a normalised CIDR.

    Raises:
        ConfigError: a range that is not an IPv4 or IPv6 network, named.
    """
    normalised = []
    for text in ranges:
        try:
            normalised.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError as exc:
            raise ConfigError(f"--site-range {text!r} is not a network (write it as CIDR, e.g. 10.20.0.0/16)") from exc
    return normalised


def render_unit(*, binary: str, config_file: str, data_dir: str, user: str, site_ranges: list[str]) -> str:
    allow = "\n".join(f"IPAddressAllow={cidr}" for cidr in site_ranges)
    return f"""# Written by the Cortex Code Appliance installer; changes are lost on upgrade.
[Unit]
Description=Cortex Code Appliance (offline AI code review)
Documentation=file:///opt/cortex/current/docs/index.html
After=local-fs.target

[Service]
Type=simple
User={user}
Group={user}
Environment=CORTEX_CONFIG={config_file}
ExecStart={binary} serve --no-show-bootstrap-token
Restart=on-failure
RestartSec=5
UMask=0077
# No privilege at all: nothing to gain, nothing to keep.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictSUIDSGID=yes
# The file system is read-only but for the data directory; /tmp is private.
ProtectSystem=strict
ReadWritePaths={data_dir}
PrivateTmp=yes
PrivateDevices=yes
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictNamespaces=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# The air gap, enforced by the kernel: loopback and the site's own ranges only.
IPAddressDeny=any
IPAddressAllow=localhost
{allow}

[Install]
WantedBy=multi-user.target
"""
