"""The offline bundle: its size, the time from the tarball to a ready appliance, and the frozen binary's
cold start to ``/readyz``.

Needs the bundle (``python3 build.py bundle`` builds ``dist/cortex-appliance-VERSION-linux-ARCH.tar``;
``python3 build.py bench`` builds it first). Each run unpacks the tar with the real ``tar``, runs the real
``./install --prefix DIR --no-systemd`` (which verifies every file), starts the installed binary and polls
``/readyz`` over TLS until it answers 200 (database, queue consumer, packs and the model all ready). The
cold start is measured separately on the installed binary: from ``exec`` to the first 200.
Run alone: ``.venv/bin/python benchmarks/bench_install.py [--runs N]``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import ROOT, Row, median, standalone

from appliance import __version__

TARGET_COLD_START = 3.0
ANCHOR = "design: frozen binary cold start ≤ 3 s"


def _bundle() -> Path:
    found = sorted((ROOT / "dist").glob(f"cortex-appliance-{__version__}-linux-*.tar"))
    if not found:
        raise RuntimeError("no bundle in dist/: run `python3 build.py bundle` first")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(base: str, ca: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    context = ssl.create_default_context(cafile=str(ca))
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the appliance exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", context=context, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"not ready within {timeout} s")


def _serve(prefix: Path) -> tuple[subprocess.Popen[bytes], float]:
    config = prefix / "etc" / "appliance.toml"
    port = next(line.split("=")[1].strip() for line in config.read_text().splitlines() if line.startswith("port"))
    started = time.perf_counter()
    proc = subprocess.Popen([str(prefix / "current" / "cortex"), "--config", str(config), "serve"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CORTEX_CONFIG": "", "PYTHONPATH": ""})
    ready = _ready(f"https://localhost:{port}", prefix / "etc" / "tls" / "cert.pem", proc)
    return proc, ready - started


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(*, runs: int = 3) -> dict[str, Any]:
    bundle = _bundle()
    user = pwd.getpwuid(os.geteuid()).pw_name
    service_user = "nobody" if user == "root" else user
    installs, colds = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-install-") as work:
            base = Path(work)
            started = time.perf_counter()
            subprocess.run(["tar", "-xf", str(bundle), "-C", str(base)], check=True)
            unpacked = time.perf_counter()
            prefix = base / "opt"
            subprocess.run([str(base / f"cortex-appliance-{__version__}" / "install"), "--prefix", str(prefix),
                            "--no-systemd", "--service-user", service_user, "--hostname", "localhost",
                            "--port", str(_free_port())], check=True, capture_output=True,
                           env={**os.environ, "CORTEX_CONFIG": "", "PYTHONPATH": ""})
            installed = time.perf_counter()
            proc, to_ready = _serve(prefix)
            installs.append({"unpack": unpacked - started, "install": installed - unpacked,
                             "start": to_ready, "total": installed - started + to_ready})
            _stop(proc)
            # The cold start: the same installed binary, started again from nothing.
            proc, cold = _serve(prefix)
            colds.append(cold)
            _stop(proc)
            shutil.rmtree(base / f"cortex-appliance-{__version__}", ignore_errors=True)
    return {
        "bundle": bundle.name, "bundle_bytes": bundle.stat().st_size,
        "install_total_seconds": median([r["total"] for r in installs]),
        "unpack_seconds": median([r["unpack"] for r in installs]),
        "install_seconds": median([r["install"] for r in installs]),
        "first_start_seconds": median([r["start"] for r in installs]),
        "cold_start_seconds": median(colds), "cold_start_runs": [round(c, 2) for c in colds], "runs": runs,
    }


def rows(fig: dict[str, Any]) -> list[Row]:
    return [
        {"benchmark": "offline bundle size", "measured": f"{fig['bundle_bytes'] / (1 << 20):.0f} MiB "
         f"({fig['bundle']})", "target": "—", "anchor": "one USB file", "status": "—"},
        {"benchmark": f"install from the tarball to /readyz ({fig['runs']} runs)",
         "measured": f"{fig['install_total_seconds']:.1f} s (unpack {fig['unpack_seconds']:.1f} s, ./install with "
                     f"every file verified {fig['install_seconds']:.1f} s, start {fig['first_start_seconds']:.1f} s)",
         "target": "—", "anchor": "measured", "status": "—"},
        {"benchmark": "frozen binary cold start to /readyz (model loaded, packs checked)",
         "measured": f"{fig['cold_start_seconds']:.1f} s "
                     f"(runs: {', '.join(f'{c:.1f}' for c in fig['cold_start_runs'])} s)",
         "target": f"≤ {TARGET_COLD_START:.0f} s", "anchor": ANCHOR,
         "status": "meets" if fig["cold_start_seconds"] <= TARGET_COLD_START else "misses"},
    ]


def main(argv: list[str] | None = None) -> None:
    standalone(__doc__ or "", run, rows, "--runs", 3, "installs to time", argv)


if __name__ == "__main__":
    main()
