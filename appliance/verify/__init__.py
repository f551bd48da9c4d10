"""The air-gap verification checklist behind ``cortex verify``.

How the parts combine:

- :mod:`~appliance.verify.manifest`: the release directory's signed MANIFEST (format, reader, verifier;
  the bundle builder renders it with :func:`manifest_text`).
- :mod:`~appliance.verify.install`: the installer's record, ``install.json``.
- :mod:`~appliance.verify.system`: the host's state read from ``/proc`` and ``/etc`` (routes, resolvers,
  the hosts file, listening sockets, processes). Nothing is resolved and no socket is opened.
- the checks, one function each, grouped by concern: :mod:`~appliance.verify.integrity` (release files,
  model, rule packs, audit chain, clock), :mod:`~appliance.verify.network` (default route, DNS, outbound
  destinations, listening sockets) and :mod:`~appliance.verify.host` (TLS, service user, data directory,
  FIPS, disk). Each returns PASS, WARN or FAIL with its evidence and, unless it passed, a remedy.
- :mod:`~appliance.verify.runner`: :func:`run_checks` runs them in order against one installation;
  :mod:`~appliance.verify.render` prints the report as a table, JSON or a printable HTML page.

The report is FAIL when any check fails, WARN when any warns, else PASS. The checklist only reads state:
it sends no packet (not even a DNS query), opens the database without migrating it and creates no key.

This package imports nothing on its own, so the bundle builder can import :mod:`~appliance.verify.manifest`
without loading the appliance's domain packages.
"""

