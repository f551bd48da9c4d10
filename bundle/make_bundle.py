"""Build the offline install bundle: one tar with everything a host without a network needs.

Run by ``python3 build.py bundle`` inside the project's virtualenv, after the frozen binary, the model and
the signed packs exist::

    .venv/bin/python bundle/make_bundle.py --binary dist/frozen/cortex/cortex --packs .cache/dev-packs \
        --key .keys/dev-release.pem --out dist

The tar holds one directory, ``cortex-appliance-VERSION/``, that is the release directory an install
copies to ``PREFIX/releases/VERSION``: the binary, the installer, the model and its manifest, the signed
packs and their trust root, the rendered manual, a CycloneDX SBOM, the licenses, ``SHA256SUMS`` and the
Ed25519-signed ``MANIFEST`` (format in :mod:`appliance.verify.manifest`).

Reproducibility: every tar entry has the same owner (0:0), a normalised mode and the build time as its
mtime, and entries are sorted, so two bundles from the same binary, model and packs with the same
``SOURCE_DATE_EPOCH`` are byte-identical. The frozen binary itself is not: PyInstaller embeds compiled
bytecode and archive offsets that vary between builds (see offline-docs/install.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import html
import importlib.metadata as metadata
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
import tomllib
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from markdown_it import MarkdownIt
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance import __version__  # noqa: E402
from appliance.errors import ApplianceError  # noqa: E402
from appliance.packs.keys import load_private_key  # noqa: E402
from appliance.verify.manifest import manifest_text  # noqa: E402

PRODUCT = "cortex-appliance"
_CHUNK = 1 << 20
_LICENSE_FILE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE|AUTHORS)[^/]*$", re.IGNORECASE)
_NATIVE = re.compile(r"\.so(\.\d+)*$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def machine_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


# --- the manual -------------------------------------------------------------------------------------

_PAGE_CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .4rem;text-align:left;vertical-align:top}
code,pre{font-family:ui-monospace,monospace;background:#f4f4f4}pre{padding:.5rem;overflow:auto}
nav{margin-bottom:1rem}@media print{nav{display:none}}"""


def render_manual(source: Path, target: Path) -> list[str]:
    """Render every ``offline-docs/*.md`` page to a standalone HTML file (no external assets)."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    link = re.compile(r'href="([a-z0-9][a-z0-9-]*)\.md(#[^"]*)?"')
    target.mkdir(parents=True)
    pages = []
    for page in sorted(source.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), page.stem)
        body = link.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', md.render(text))
        (target / f"{page.stem}.html").write_text(
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · '
            f"Cortex Code Appliance {__version__}</title><style>{_PAGE_CSS}</style></head>\n<body><nav>"
            f'<a href="index.html">Manual</a> · Cortex Code Appliance {__version__}</nav>\n{body}</body></html>\n',
            encoding="utf-8")
        pages.append(page.stem)
    return pages


# --- SBOM and licenses ------------------------------------------------------------------------------

def runtime_distributions() -> list[metadata.Distribution]:
    """The installed distributions the appliance needs at run time: its dependencies, transitively."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    environment = {k: str(v) for k, v in default_environment().items()} | {"extra": ""}
    pending = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    found: dict[str, metadata.Distribution] = {}
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if key in found:
            continue
        dist = metadata.distribution(requirement.name)
        found[key] = dist
        pending.extend(Requirement(r) for r in dist.requires or [])
    return sorted(found.values(), key=lambda d: d.metadata["Name"].lower())


def _license_of(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return expression
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    text = (meta.get("License") or "").strip()
    if classifiers:
        return ", ".join(classifiers)
    return text.splitlines()[0][:120] if text else "unknown (see licenses/)"


def build_sbom(dists: list[metadata.Distribution], release: Path, model: dict[str, Any], built: str,
               binary_sha256: str) -> dict[str, Any]:
    """A CycloneDX 1.5 JSON SBOM: every Python package, the native libraries inside them, and the model."""
    components: list[dict[str, Any]] = []
    for dist in dists:
        name, version = dist.metadata["Name"], dist.version
        ref = f"pkg:pypi/{re.sub(r'[-_.]+', '-', name).lower()}@{version}"  # the purl spec's PyPI name
        component: dict[str, Any] = {
            "type": "library", "bom-ref": ref, "name": name, "version": version, "purl": ref,
            "licenses": [{"license": {"name": _license_of(dist)}}],
        }
        natives = []
        for file in dist.files or []:
            if _NATIVE.search(str(file)):
                path = Path(str(dist.locate_file(file)))
                if path.is_file():
                    natives.append({"type": "library", "bom-ref": f"{ref}#{file}", "name": Path(str(file)).name,
                                    "version": version,
                                    "hashes": [{"alg": "SHA-256", "content": sha256_file(path)}],
                                    "properties": [{"name": "cortex:path-in-package", "value": str(file)}]})
        if natives:
            component["components"] = natives
        components.append(component)
    model_file = release / "models" / model["file"]
    components.append({
        "type": "machine-learning-model", "bom-ref": f"model:{model['id']}", "name": model["name"],
        "version": model["sha256"][:12], "licenses": [{"license": {"id": model["license"]}}],
        "hashes": [{"alg": "SHA-256", "content": sha256_file(model_file)}],
        "properties": [{"name": "cortex:file", "value": f"models/{model['file']}"},
                       {"name": "cortex:source", "value": json.dumps(model.get("source", {}), sort_keys=True)}],
    })
    python = platform.python_version()
    components.append({"type": "application", "bom-ref": f"python@{python}", "name": "CPython",
                       "version": python, "licenses": [{"license": {"id": "PSF-2.0"}}]})
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{PRODUCT}/{__version__}/{binary_sha256}')}",
        "version": 1,
        "metadata": {
            "timestamp": built,
            "tools": {"components": [{"type": "application", "name": "cortex bundle builder",
                                      "version": __version__}]},
            "component": {"type": "application", "bom-ref": f"{PRODUCT}@{__version__}", "name": PRODUCT,
                          "version": __version__, "hashes": [{"alg": "SHA-256", "content": binary_sha256}]},
        },
        "components": components,
        "dependencies": [{"ref": f"{PRODUCT}@{__version__}",
                          "dependsOn": [c["bom-ref"] for c in components]}],
    }


def copy_licenses(dists: list[metadata.Distribution], target: Path, model: dict[str, Any]) -> None:
    for dist in dists:
        folder = target / f"{dist.metadata['Name']}-{dist.version}"
        for file in dist.files or []:
            if _LICENSE_FILE.search(str(file)):
                source = Path(str(dist.locate_file(file)))
                if source.is_file():
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, folder / Path(str(file)).name)
        if not folder.exists():
            folder.mkdir(parents=True)
            (folder / "LICENSE-NOTE.txt").write_text(
                f"{dist.metadata['Name']} {dist.version}: license {_license_of(dist)} "
                "(the package ships no license file).\n", encoding="utf-8")
    (target / "models").mkdir(parents=True, exist_ok=True)
    (target / "models" / f"{model['id']}.txt").write_text(
        f"{model['name']} ({model['file']}): license {model['license']}.\n"
        f"Fetched from {json.dumps(model.get('source', {}), sort_keys=True)}; sha256 {model['sha256']}.\n",
        encoding="utf-8")
    (target / "cortex-appliance.txt").write_text(
        f"Cortex Code Appliance {__version__}: proprietary; see your licence agreement.\n", encoding="utf-8")


# --- assembling -------------------------------------------------------------------------------------

def _default_model() -> dict[str, Any]:
    models = tomllib.loads((ROOT / "models" / "manifest.toml").read_text(encoding="utf-8"))["model"]
    return dict(models[0])


def assemble(release: Path, *, binary: Path, packs: list[Path], trust_root: Path, models_dir: Path,
             key: Ed25519PrivateKey, built: str, arch: str) -> None:
    """Write the release directory: every file, then SHA256SUMS, MANIFEST and MANIFEST.sig."""
    release.mkdir(parents=True)
    # PyInstaller's one folder: the executable and its runtime/ beside it. Links inside runtime/ (shared
    # libraries PyInstaller lists twice) become copies: the bundle holds regular files only.
    shutil.copyfile(binary, release / "cortex")
    (release / "cortex").chmod(0o755)
    runtime = binary.parent / "runtime"
    if not runtime.is_dir():
        raise SystemExit(f"bundle: {runtime} is missing: the frozen program is PyInstaller's one-folder "
                         "layout (python3 build.py freeze builds it)")
    shutil.copytree(runtime, release / "runtime", symlinks=False)
    shutil.copyfile(ROOT / "installer" / "install", release / "install")
    (release / "install").chmod(0o755)
    model = _default_model()
    (release / "models").mkdir()
    shutil.copyfile(ROOT / "models" / "manifest.toml", release / "models" / "manifest.toml")
    model_path = models_dir / model["file"]
    if sha256_file(model_path) != model["sha256"]:
        raise SystemExit(f"bundle: {model_path} does not match its sha256 in models/manifest.toml")
    shutil.copyfile(model_path, release / "models" / model["file"])
    (release / "packs").mkdir()
    for pack in sorted(packs):
        shutil.copyfile(pack, release / "packs" / pack.name)
    (release / "trust").mkdir()
    shutil.copyfile(trust_root, release / "trust" / "root.json")
    render_manual(ROOT / "offline-docs", release / "docs")
    dists = runtime_distributions()
    copy_licenses(dists, release / "licenses", model)
    sbom = build_sbom(dists, release, model, built, sha256_file(release / "cortex"))
    (release / "sbom.cdx.json").write_text(json.dumps(sbom, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    (release / "release-key.pem").write_bytes(public)

    files = sorted(p for p in release.rglob("*") if p.is_file())
    listed = [(p.relative_to(release).as_posix(), sha256_file(p), p.stat().st_size) for p in files]
    for path, _, _ in listed:
        if " " in path or "\n" in path:
            raise SystemExit(f"bundle: file name with white space cannot be listed: {path!r}")
    (release / "SHA256SUMS").write_text("".join(f"{digest}  {path}\n" for path, digest, _ in listed),
                                        encoding="utf-8")
    sums = release / "SHA256SUMS"
    listed.append(("SHA256SUMS", sha256_file(sums), sums.stat().st_size))
    text = manifest_text(version=__version__, arch=arch, built=built,
                         files=sorted((p, d, n) for p, d, n in listed))
    (release / "MANIFEST").write_text(text, encoding="utf-8")
    (release / "MANIFEST.sig").write_bytes(key.sign(text.encode("utf-8")))


def write_tar(release: Path, target: Path, mtime: int) -> None:
    """A deterministic tar of ``release`` (sorted, owner 0:0, normalised modes, one mtime)."""
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = release.name
        entries = [release, *sorted(release.rglob("*"))]
        for path in entries:
            name = top if path == release else f"{top}/{path.relative_to(release).as_posix()}"
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            if info.isdir():
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
        raw.flush()
        os.fsync(raw.fileno())
    partial.replace(target)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, required=True,
                        help="the frozen cortex executable (its runtime/ beside it)")
    parser.add_argument("--packs", type=Path, required=True, help="folder of signed pack tars")
    parser.add_argument("--trust-root", type=Path, required=True, help="the pack trust root (root.json)")
    parser.add_argument("--models", type=Path, required=True, help="folder holding the default model's GGUF")
    parser.add_argument("--key", type=Path, required=True, help="the release signing key (Ed25519, PEM)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the bundle tar")
    parser.add_argument("--arch", default=machine_arch(), help="the architecture the binary is built for")
    args = parser.parse_args(argv)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or dt.datetime.now(dt.UTC).timestamp())
    built = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"cortex-appliance-{__version__}"
    target = args.out / f"{name}-linux-{args.arch}.tar"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-", dir=args.out) as work:
        release = Path(work) / name
        try:
            key = load_private_key(args.key)
        except ApplianceError as exc:
            raise SystemExit(f"bundle: {exc.message}") from exc
        assemble(release, binary=args.binary, packs=sorted(args.packs.glob("*.tar")),
                 trust_root=args.trust_root, models_dir=args.models, key=key, built=built, arch=args.arch)
        write_tar(release, target, epoch)
    print(target)
    return target


if __name__ == "__main__":
    main()
