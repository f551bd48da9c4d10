-- Signed rule packs: the trusted root chain, the active pack per id, selections per repository,
-- appliance-wide state (the clock floor, the packs generation), and finding triage for compliance reports.

CREATE TABLE trust_roots (
    version     INTEGER PRIMARY KEY,
    document    TEXT NOT NULL,                   -- the root JSON as accepted
    sha256      TEXT NOT NULL,
    environment TEXT NOT NULL,                   -- production or development
    accepted_at TEXT NOT NULL
);

CREATE TABLE packs (
    id               TEXT PRIMARY KEY,
    version          INTEGER NOT NULL,
    display_version  TEXT NOT NULL,
    name             TEXT NOT NULL,
    path             TEXT NOT NULL,              -- the activated folder, relative to the data directory
    content_digest   TEXT NOT NULL,              -- sha256 over the signed file list
    manifest_sha256  TEXT NOT NULL,
    signers          TEXT NOT NULL,              -- JSON list of key ids
    channel          TEXT NOT NULL,
    issued           TEXT NOT NULL,
    expires          TEXT NOT NULL,
    frameworks       TEXT NOT NULL,              -- JSON list
    rules            INTEGER NOT NULL,
    activated_at     TEXT NOT NULL,
    activated_by     TEXT NOT NULL,
    downgrade_reason TEXT
);

CREATE TABLE appliance_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE pack_selections (
    scope      TEXT PRIMARY KEY,                 -- 'default' or 'repo:<repository>'
    template   TEXT,                             -- healthcare, financial, government, or NULL
    packs      TEXT NOT NULL,                    -- JSON list of pack ids
    strict     INTEGER NOT NULL DEFAULT 0,       -- raise every severity one level
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

ALTER TABLE findings ADD COLUMN controls TEXT NOT NULL DEFAULT '[]';  -- JSON list of "framework|control"

CREATE TABLE finding_states (
    repository  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'fixed', 'accepted_risk', 'false_positive')),
    reason      TEXT NOT NULL DEFAULT '',
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (repository, fingerprint)
);
CREATE INDEX findings_fingerprint ON findings (fingerprint);

-- models.file (0001) is recorded relative to the data directory, like packs.path, so a restored or moved
-- data directory keeps working.
