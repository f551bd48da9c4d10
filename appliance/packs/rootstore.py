"""The appliance's trusted root: installed once from the file it ships with (setting ``trust_root``),
then changed only by a verified rotation (``cortex packs trust update``). Every root ever accepted stays
in the database, so the chain can be shown to an assessor."""

from __future__ import annotations

import hashlib
from pathlib import Path

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import PackError
from appliance.packs import repo
from appliance.packs.trust import Root, check_threshold, verify_root_update
from appliance.store import Database

__all__ = ["current_root", "root_history", "update_root"]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PackError(f"cannot read the trust root {path}: {exc.strerror}. A source checkout creates a "
                        "development root with `python3 build.py packs`; an installed appliance ships one") from exc


def current_root(db: Database, settings: Settings) -> Root:
    """The trusted root; on first use, the shipped one (which must carry a threshold of its own root keys).

    Raises:
        PackError: no root is installed and the shipped file is missing, malformed, unsigned or expired.
    """
    with db.read() as tx:
        row = repo.latest_root(tx)
    if row is not None:
        return Root.parse(row["document"], where=f"trusted root version {row['version']}")
    data = _read(settings.trust_root)
    root = Root.parse(data, where=str(settings.trust_root))
    check_threshold(root.payload, root.signatures, root.keys, root.roles["root"], what=str(settings.trust_root),
                    role_name="root")
    if root.expires <= clock.now():
        raise PackError(f"the shipped trust root {settings.trust_root} expired on {clock.iso(root.expires)}")
    with db.write() as tx:
        if repo.latest_root(tx) is None:
            repo.insert_root(tx, version=root.version, document=root.document,
                             sha256=hashlib.sha256(root.document.encode()).hexdigest(), environment=root.environment)
            record_event(tx, AuditTag.PACKS_ROOT_INSTALLED, Actor.system(), target=f"root:{root.version}",
                         details={"version": root.version, "environment": root.environment,
                                  "source": str(settings.trust_root), "expires": clock.iso(root.expires)})
    return current_root(db, settings)


def update_root(db: Database, settings: Settings, path: Path, *, actor: Actor) -> Root:
    """Rotate to the root in ``path`` (version + 1, signed by thresholds of the old and the new root keys).

    Raises:
        PackError: the new root is refused (audited with the reason).
    """
    current = current_root(db, settings)
    try:
        new = Root.parse(_read(path), where=str(path))
        verify_root_update(current, new)
    except PackError as exc:
        with db.write() as tx:
            record_event(tx, AuditTag.PACKS_ROOT_REFUSED, actor, target=f"root:{current.version + 1}",
                         outcome="failure", details={"source": str(path), "reason": exc.message})
        raise
    with db.write() as tx:
        repo.insert_root(tx, version=new.version, document=new.document,
                         sha256=hashlib.sha256(new.document.encode()).hexdigest(), environment=new.environment)
        record_event(tx, AuditTag.PACKS_ROOT_UPDATED, actor, target=f"root:{new.version}",
                     details={"version": new.version, "previous_version": current.version,
                              "environment": new.environment, "expires": clock.iso(new.expires),
                              "pack_keys": sorted(new.roles["packs"].keyids)})
    return new


def root_history(db: Database) -> list[dict[str, object]]:
    with db.read() as tx:
        return tx.query("SELECT version, sha256, environment, accepted_at FROM trust_roots ORDER BY version")
