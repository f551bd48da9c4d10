"""The appliance's settings: one frozen dataclass, loaded once and passed explicitly.

Precedence, lowest first: the defaults below, then the TOML file (``CORTEX_CONFIG`` or
``/etc/cortex/appliance.toml`` when it exists), then ``CORTEX_<NAME>`` environment variables.
Every field carries its help text; ``cortex config show`` prints the effective values and where each
came from, and ``offline-docs/configuration.md`` documents them all (a test keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError
from appliance.resources import resource_root

__all__ = ["DEFAULT_CONFIG_FILE", "LoadedSettings", "Settings", "load_settings", "load_settings_with_sources",
           "setting_fields"]

DEFAULT_CONFIG_FILE = Path("/etc/cortex/appliance.toml")
ENV_PREFIX = "CORTEX_"


def _setting(default: Any, help_text: str, *, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class Settings:
    """Effective configuration of one appliance process."""

    data_dir: Path = _setting(
        Path("var"), "Directory holding appliance.db, queue.db, added models and secrets. Relative paths are "
        "resolved against the working directory.")
    host: str = _setting("127.0.0.1", "Address the web server listens on.")
    port: int = _setting(8080, "TCP port the web server listens on.")
    tls_cert: Path | None = _setting(
        None, "PEM certificate chain for HTTPS. When set (with tls_key) the server speaks TLS only and "
        "session cookies get the Secure flag and the __Host- prefix.")
    tls_key: Path | None = _setting(None, "PEM private key matching tls_cert (mode 0600).")
    public_url: str = _setting(
        "", "Base URL users reach the dashboard at, used for links in Markdown comments. Empty: "
        "http(s)://host:port.")
    workers: int = _setting(
        2, "Queue consumer threads started by `cortex serve`. 0 runs the web server without a consumer "
        "(jobs wait in the queue).")
    models_dir: Path = _setting(
        None, "Directory with models/manifest.toml and the shipped GGUF files.",
        factory=lambda: resource_root() / "models")
    model: str = _setting(
        "smollm2-135m-instruct-q4_1", "Id of the active model (from the manifest or `cortex models add`).")
    model_enabled: bool = _setting(True, "Run the local model on reviews. Off: reviews are rules-only.")
    model_threads: int = _setting(0, "CPU threads for inference. 0: one per available core.")
    model_context: int = _setting(
        2048, "Context window (tokens) the model is loaded with; the diff is split into chunks that fit.")
    model_max_output_tokens: int = _setting(384, "Upper bound on tokens the model may generate per chunk.")
    model_max_chunks: int = _setting(
        24, "Most diff chunks the model reviews per review; the rest is reviewed by rules only and the "
        "review says how many chunks were skipped.")
    trust_root: Path = _setting(
        None, "The trust root the appliance starts from (which keys may sign rule packs, and which may rotate "
        "them). Installed into the database on first use; later roots come only through `cortex packs trust "
        "update`.", factory=lambda: resource_root() / "trust" / "root.json")
    pack_channel: str = _setting("stable", "The rule-pack channel this appliance takes; a pack for another "
                                 "channel is refused.")
    max_diff_bytes: int = _setting(5 * 1024 * 1024, "Largest diff accepted for review, in bytes (413 above).")
    session_idle_minutes: int = _setting(60, "A dashboard session ends after this many minutes without use.")
    session_max_hours: int = _setting(12, "A dashboard session ends this many hours after sign-in, used or not.")
    login_max_failures: int = _setting(
        5, "Failed sign-ins for one account within login_window_minutes before it is throttled.")
    login_max_failures_per_address: int = _setting(
        20, "Failed sign-ins from one peer address within login_window_minutes before it is throttled.")
    login_window_minutes: int = _setting(15, "Window over which failed sign-ins are counted.")
    bootstrap_token_hours: int = _setting(24, "Lifetime of the first admin's one-time sign-in token.")
    job_max_attempts: int = _setting(
        3, "Attempts a review job gets (a crash mid-review counts) before it is marked failed.")
    job_lease_seconds: int = _setting(
        300, "A running job whose worker has not renewed its lease for this long is handed to another worker.")
    log_level: str = _setting("info", "Log level: debug, info, warning or error.")
    audit_checkpoint_events: int = _setting(
        1000, "Sign an audit checkpoint after this many new events (checked every second by `cortex serve`).")
    audit_checkpoint_minutes: int = _setting(
        5, "Sign an audit checkpoint at least this often, in minutes, while new events arrive.")
    audit_view_minutes: int = _setting(
        15, "A user viewing or exporting the same review again within this many minutes is not recorded "
        "again (the first view is).")
    site_ranges: tuple[str, ...] = _setting(
        (), "The site's own networks (CIDRs, e.g. 10.20.0.0/16): every outbound destination the appliance is "
        "configured with (audit forwarders, the Git server, the IdP) must lie inside one, which `cortex verify` "
        "checks. Empty: loopback only. In the environment: comma-separated.")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "appliance.db"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.db"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_enabled else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def setting_fields() -> list[dataclasses.Field[Any]]:
    """The fields of :class:`Settings`, in declaration order."""
    return list(dataclasses.fields(Settings))


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """Return (type, optional) for ``T`` or ``T | None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _coerce(name: str, raw: Any, annotation: Any, where: str, base_dir: Path) -> Any:
    if typing.get_origin(annotation) is tuple:
        # A list of text: a TOML array, or comma-separated in the environment and on the command line.
        items = raw.split(",") if isinstance(raw, str) else raw
        if isinstance(items, list | tuple) and all(isinstance(item, str) for item in items):
            return tuple(item.strip() for item in items if item.strip())
        raise ConfigError(f"setting {name!r} in {where} must be a list of text, got {raw!r}")
    kind, optional = _base_type(annotation)
    if optional and (raw is None or raw == ""):
        return None
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is Path:
            path = Path(str(raw)).expanduser()
            return path if path.is_absolute() else (base_dir / path)
        if kind is str:
            if not isinstance(raw, str):
                raise ValueError(raw)
            return raw
    except ValueError:
        pass
    expected = {bool: "a boolean", int: "an integer", Path: "a path"}.get(kind, "text")
    raise ConfigError(f"setting {name!r} in {where} must be {expected}, got {raw!r}")


# CORTEX_* variables that are not settings: the config path itself and the test harness's.
_NOT_SETTINGS = frozenset({"CORTEX_CONFIG", "CORTEX_FROZEN_BINARY", "CORTEX_REQUIRE_FROZEN"})


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    sources: dict[str, str]  # setting name -> "default", the TOML file, "environment …" or "command line"
    unknown_environment: list[str]  # CORTEX_* variables that name no setting (probably misspelt)


def load_settings(
    environ: Mapping[str, str] | None = None, *, config_file: Path | None = None, **overrides: Any
) -> Settings:
    """The effective settings (see :func:`load_settings_with_sources`)."""
    return load_settings_with_sources(environ, config_file=config_file, **overrides).settings


def load_settings_with_sources(
    environ: Mapping[str, str] | None = None, *, config_file: Path | None = None, **overrides: Any
) -> LoadedSettings:
    """Build the effective settings and say where each value came from.

    Args:
        environ: the environment to read ``CORTEX_*`` variables from (default ``os.environ``).
        config_file: TOML file to read; default ``$CORTEX_CONFIG`` (empty: none) or /etc/cortex/appliance.toml
            if present.
        **overrides: values that win over everything (used by command-line options).

    Raises:
        ConfigError: an unknown setting, a value of the wrong type, or an unreadable file.
    """
    env = os.environ if environ is None else environ
    hints = _field_types()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {name: "default" for name in hints}
    unknown_environment: list[str] = []
    cwd = Path.cwd()

    path = config_file
    if path is None and "CORTEX_CONFIG" in env:
        # An empty CORTEX_CONFIG means: no configuration file at all.
        path = Path(env["CORTEX_CONFIG"]) if env["CORTEX_CONFIG"] else None
    elif path is None and DEFAULT_CONFIG_FILE.exists():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc
        for key, raw in data.items():
            if key not in hints:
                raise ConfigError(
                    f"unknown setting {key!r} in {path}; known settings: {', '.join(sorted(hints))}")
            values[key] = _coerce(key, raw, hints[key], str(path), path.parent.resolve())
            sources[key] = str(path)

    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == "CORTEX_CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in hints:
            if key not in _NOT_SETTINGS:
                unknown_environment.append(key)
            continue
        values[name] = _coerce(name, raw, hints[name], f"environment variable {key}", cwd)
        sources[name] = f"environment {key}"

    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in hints:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw, hints[key], "the command line", cwd)
        sources[key] = "command line"

    settings = Settings(**values)
    settings = _validate(settings.replace(
        data_dir=settings.data_dir.resolve(),
        models_dir=settings.models_dir.resolve(),
        trust_root=settings.trust_root.resolve(),
    ))
    return LoadedSettings(settings, sources, sorted(unknown_environment))


def _validate(settings: Settings) -> Settings:
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("tls_cert and tls_key must be set together (or neither)")
    if settings.log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"log_level must be debug, info, warning or error, got {settings.log_level!r}")
    for name in ("port", "model_context", "model_max_output_tokens", "max_diff_bytes", "job_max_attempts",
                 "job_lease_seconds", "session_idle_minutes", "session_max_hours", "login_window_minutes",
                 "login_max_failures", "login_max_failures_per_address", "bootstrap_token_hours",
                 "audit_checkpoint_events", "audit_checkpoint_minutes", "audit_view_minutes"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"setting {name!r} must be a positive integer, got {getattr(settings, name)}")
    for name in ("workers", "model_threads", "model_max_chunks"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"setting {name!r} must be zero or more, got {getattr(settings, name)}")
    if settings.model_context < settings.model_max_output_tokens + 256:
        raise ConfigError("model_context must exceed model_max_output_tokens by at least 256 tokens")
    for cidr in settings.site_ranges:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            loose = _loose_network(cidr)
            hint = f" (did you mean {loose}?)" if loose else ""
            raise ConfigError(f"site_ranges entry {cidr!r} is not a network in CIDR form{hint}") from exc
    return settings


def _loose_network(cidr: str) -> str | None:
    """The network an address with host bits set belongs to (10.1.2.3/8 → 10.0.0.0/8), if it parses at all."""
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        return None
