-- The tamper-evident audit log: a hash chain over audit_events, signed checkpoints, retention with
-- legal hold, and forwarders with persisted cursors. See offline-docs/audit-log.md.
--
-- hash = SHA-256(prev_hash ‖ canonical(event)), prev_hash of the first event is 64 zeros. Rows written
-- before this migration get their hashes from the recorder on the first append after it ("sealing").

ALTER TABLE audit_events ADD COLUMN actor_display TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
-- No index on prev_hash: its random keys would make every append a random B-tree insert. Forks cannot happen
-- (the head is read and the next event appended in one BEGIN IMMEDIATE transaction under the single writer),
-- and verification reports two events claiming one predecessor as "inserted".
CREATE INDEX audit_events_actor ON audit_events (actor_name, seq);
CREATE INDEX audit_events_target ON audit_events (target, seq);

-- 0001's triggers refused every UPDATE and DELETE. They are replaced by two narrower ones:
-- an UPDATE may only seal a row written before the chain existed (set its hashes once, and its details to
-- their canonical form); a DELETE is allowed only for the seqs a retention purge declared, in the purge's
-- own transaction (audit_purge_permit holds a row only inside that transaction).
DROP TRIGGER audit_events_append_only_update;
DROP TRIGGER audit_events_append_only_delete;

CREATE TABLE audit_purge_permit (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    up_to_seq  INTEGER NOT NULL
);

CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
WHEN OLD.hash IS NOT NULL
  OR NEW.seq IS NOT OLD.seq OR NEW.at IS NOT OLD.at OR NEW.actor_id IS NOT OLD.actor_id
  OR NEW.actor_name IS NOT OLD.actor_name OR NEW.actor_kind IS NOT OLD.actor_kind
  OR NEW.actor_display IS NOT OLD.actor_display OR NEW.source_addr IS NOT OLD.source_addr
  OR NEW.action IS NOT OLD.action OR NEW.target IS NOT OLD.target OR NEW.outcome IS NOT OLD.outcome
  OR NEW.hash IS NULL OR NEW.prev_hash IS NULL
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_purge_permit WHERE OLD.seq <= up_to_seq)
  OR OLD.action LIKE 'audit:retention:%'
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

-- Signed checkpoints: (size, head hash, time, appliance id) signed with the appliance's Ed25519 audit key.
-- The same text is written to <data_dir>/audit/checkpoints/; auditors keep copies off the box.
CREATE TABLE audit_checkpoints (
    size         INTEGER PRIMARY KEY,            -- seq of the newest event it covers
    head         TEXT NOT NULL,                  -- that event's hash
    at           TEXT NOT NULL,
    appliance_id TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    signature    TEXT NOT NULL,                  -- base64 Ed25519 over the text's first six lines
    text         TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoints_append_only_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

-- Runs of seqs a retention purge removed. The chain links across a gap through last_hash, which the purge
-- marker event (marker_seq, itself chained and signed) commits to.
CREATE TABLE audit_gaps (
    first_seq  INTEGER PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    last_hash  TEXT NOT NULL,
    marker_seq INTEGER NOT NULL
);
CREATE TRIGGER audit_gaps_append_only_update BEFORE UPDATE ON audit_gaps
BEGIN
    SELECT RAISE(ABORT, 'audit gaps are append-only');
END;
CREATE TRIGGER audit_gaps_append_only_delete BEFORE DELETE ON audit_gaps
BEGIN
    SELECT RAISE(ABORT, 'audit gaps are append-only');
END;

-- Retention per action class ("review", "auth:session", …), and legal holds that stop purges.
CREATE TABLE audit_retention (
    action_class TEXT PRIMARY KEY,
    days         INTEGER NOT NULL CHECK (days > 0),
    updated_at   TEXT NOT NULL,
    updated_by   TEXT NOT NULL
);

CREATE TABLE audit_legal_holds (
    id           INTEGER PRIMARY KEY,
    action_class TEXT NOT NULL DEFAULT '',       -- '' holds every event
    reason       TEXT NOT NULL,
    placed_at    TEXT NOT NULL,
    placed_by    TEXT NOT NULL,
    released_at  TEXT,
    released_by  TEXT
);

-- The site's collectors. Secrets (HMAC key, HEC token) stay in files named here, never in the database.
CREATE TABLE audit_forwarders (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('syslog-tcp', 'syslog-tls', 'webhook', 'splunk-hec')),
    target          TEXT NOT NULL,               -- host:port, or a URL
    ca_file         TEXT,
    secret_file     TEXT,
    created_at      TEXT NOT NULL,
    removed_at      TEXT,
    cursor_seq      INTEGER NOT NULL DEFAULT 0,  -- every event with seq <= cursor_seq was delivered
    delivered       INTEGER NOT NULL DEFAULT 0,
    last_success_at TEXT,
    last_attempt_at TEXT,
    last_error      TEXT,
    failing         INTEGER NOT NULL DEFAULT 0
);
