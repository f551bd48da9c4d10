"""Run inside a network namespace that has only loopback, beside the installed appliance: sign in, review
a diff with the model, load every dashboard page. Exit status 0 when all of it worked.

    python airgap_client.py BASE CA_FILE API_TOKEN PASSWORD
"""

from __future__ import annotations

import re
import sys
import time

import httpx

DIFF = (b"--- a/app.py\n+++ b/app.py\n@@ -0,0 +1,4 @@\n+import pickle\n+def load(request):\n"
        b"+    state = pickle.loads(request.data)\n+    return state\n")
CSRF = re.compile(r'name="_csrf" value="([^"]*)"')
NAV = re.compile(r'<nav[^>]*>(.*?)</nav>', re.S)
HREF = re.compile(r'href="(/[^"#?]*)')


def check(condition: bool, what: str) -> None:
    if not condition:
        print(f"airgap client: FAILED: {what}", flush=True)
        raise SystemExit(1)
    print(f"airgap client: ok: {what}", flush=True)


def main(base: str, ca: str, token: str, password: str) -> None:
    deadline = time.monotonic() + 180
    ready: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base}/readyz", verify=ca, timeout=5)
            ready = response.json()
            if response.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    check(ready.get("status") == "ready", f"the appliance is ready: {ready}")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, verify=ca, timeout=30) as api:
        submitted = api.post("/api/v1/reviews", content=DIFF, headers={**headers, "Content-Type": "text/x-diff"})
        check(submitted.status_code == 202, f"review accepted ({submitted.status_code})")
        review_id = submitted.json()["id"]
        review: dict[str, object] = {}
        while time.monotonic() < deadline + 180:
            review = api.get(f"/api/v1/reviews/{review_id}", headers=headers).json()
            if review["status"] in ("done", "failed"):
                break
            time.sleep(0.5)
        model = review.get("model") or {}
        check(review.get("status") == "done" and isinstance(model, dict) and model.get("status") == "reviewed",
              f"review {review_id} done with the model: {review.get('status')}, {model}")
        findings = review.get("findings") or []
        check(any(isinstance(f, dict) and f.get("rule_id") == "CORE-DESER-001" for f in findings),
              "the rule packs found the unsafe deserialisation")
    with httpx.Client(base_url=base, verify=ca, timeout=30, follow_redirects=True) as browser:
        page = browser.get("/login")
        match = CSRF.search(page.text)
        check(match is not None, "the sign-in form")
        assert match is not None
        signed = browser.post("/login", data={"username": "admin", "password": password, "_csrf": match.group(1)})
        check(signed.url.path == "/reviews", f"signed in (landed on {signed.url.path})")
        nav = NAV.search(signed.text)
        pages = sorted({*HREF.findall(nav.group(1) if nav else ""), "/reviews", f"/reviews/{review_id}",
                        "/reviews/new", "/docs", "/api/docs"})
        check(len(pages) >= 6, f"the dashboard links {len(pages)} pages: {pages}")
        for path in pages:
            if path in ("/logout",):
                continue
            response = browser.get(path)
            check(response.status_code == 200, f"page {path} ({response.status_code})")
            external = [u for u in re.findall(r'(?:src|href)="(https?://[^"]+)"', response.text)
                        if not u.startswith(base)]
            check(external == [], f"page {path} loads nothing from another origin")


if __name__ == "__main__":
    main(*sys.argv[1:5])
