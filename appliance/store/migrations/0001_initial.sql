-- The core schema: audit trail, accounts and sessions, reviews and findings, jobs, site models.
-- Times are ISO 8601 UTC text ("2026-11-24T12:00:00.000000Z"), which sorts as time.

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,             -- gapless: assigned under the single writer
    at          TEXT NOT NULL,
    actor_id    TEXT,
    actor_name  TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,                   -- user, token, cli, system, anonymous
    source_addr TEXT,
    action      TEXT NOT NULL,                   -- area:subject:action
    target      TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    details     TEXT NOT NULL DEFAULT '{}'       -- canonical JSON
);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name        TEXT NOT NULL,
    role                TEXT NOT NULL,
    password_hash       TEXT,                    -- Argon2id PHC string; NULL: no password sign-in
    is_active           INTEGER NOT NULL DEFAULT 1,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    password_changed_at TEXT
);

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,           -- sha256 of the cookie value
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,                  -- absolute end
    peer         TEXT,
    user_agent   TEXT,
    ended_at     TEXT,
    end_reason   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,                  -- first characters, to recognise a token in lists
    token_hash   TEXT NOT NULL UNIQUE,           -- sha256 of the whole token
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE login_failures (
    id      INTEGER PRIMARY KEY,
    account TEXT NOT NULL COLLATE NOCASE,
    peer    TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX login_failures_account ON login_failures (account, at);
CREATE INDEX login_failures_peer ON login_failures (peer, at);

CREATE TABLE bootstrap_tokens (
    id         INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    superseded_at TEXT
);

CREATE TABLE submissions (
    id         INTEGER PRIMARY KEY,
    diff       BLOB NOT NULL,                    -- the bytes exactly as received
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE reviews (
    id                INTEGER PRIMARY KEY,
    submission_id     INTEGER NOT NULL REFERENCES submissions (id),
    source            TEXT NOT NULL,             -- api, dashboard, cli, scan
    title             TEXT NOT NULL DEFAULT '',
    repository        TEXT NOT NULL DEFAULT '',
    base_ref          TEXT,
    head_ref          TEXT,
    use_model         INTEGER NOT NULL DEFAULT 1,
    created_by        INTEGER REFERENCES users (id),
    created_by_name   TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    decoding_replaced INTEGER NOT NULL DEFAULT 0,
    files_total       INTEGER,
    files_reviewed    INTEGER,
    lines_added       INTEGER,
    findings_total    INTEGER NOT NULL DEFAULT 0,
    counts            TEXT NOT NULL DEFAULT '{}', -- JSON: by severity and by source
    model_status      TEXT,
    model_dropped     INTEGER NOT NULL DEFAULT 0,
    provenance        TEXT NOT NULL DEFAULT '{}'  -- JSON
);
-- A review's status, start, end and error are its job's (jobs.kind = 'review'): never stored twice.
CREATE INDEX reviews_repository ON reviews (repository, id);

CREATE TABLE review_files (
    id        INTEGER PRIMARY KEY,
    review_id INTEGER NOT NULL REFERENCES reviews (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    path      TEXT NOT NULL,
    old_path  TEXT,
    change    TEXT NOT NULL,                     -- added, modified, deleted, renamed, binary
    language  TEXT,
    added     INTEGER NOT NULL,
    removed   INTEGER NOT NULL,
    skipped   TEXT                               -- why it was not reviewed, or NULL
);
CREATE INDEX review_files_review ON review_files (review_id, position);

CREATE TABLE findings (
    id           INTEGER PRIMARY KEY,
    review_id    INTEGER NOT NULL REFERENCES reviews (id) ON DELETE CASCADE,
    rank         INTEGER NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('rule', 'model')),
    rule_id      TEXT NOT NULL,
    pack_id      TEXT,
    pack_version TEXT,
    path         TEXT NOT NULL,
    line         INTEGER NOT NULL,
    severity     TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    cwe          INTEGER,
    title        TEXT NOT NULL,
    message      TEXT NOT NULL,
    fix          TEXT,
    snippet      TEXT,
    fingerprint  TEXT NOT NULL
);
CREATE INDEX findings_review ON findings (review_id, rank);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    ref_id           INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    error            TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);
CREATE INDEX jobs_status ON jobs (status, id);
CREATE UNIQUE INDEX jobs_kind_ref ON jobs (kind, ref_id);

CREATE TABLE models (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    file          TEXT NOT NULL,                 -- absolute path
    sha256        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    license       TEXT NOT NULL,
    context       INTEGER,
    chat_template TEXT,
    added_by      TEXT NOT NULL,
    added_at      TEXT NOT NULL
);
