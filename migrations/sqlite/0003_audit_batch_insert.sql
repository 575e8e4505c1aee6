-- The audit trail moves into its own database file, attached as `audit` on
-- every connection (src/db/mod.rs): its own WAL and write lock, so the
-- audit writer never waits behind a data write and a write can commit only
-- after its audit event, as on PostgreSQL. Unqualified names resolve
-- across both files, so the queries are unchanged.
--
-- Also: the writer inserts a whole batch with one statement, and the
-- derived customer index is filled by a trigger from each event's
-- `customers` column (the value the chain hash covers), so the two cannot
-- disagree. The index table is WITHOUT ROWID and keyed by customer first:
-- one B-tree per event instead of three, and the customer filter is a
-- prefix scan of the key.
--
-- A transaction over two WAL files is atomic per file, not across them, so
-- this migration destroys nothing: the old tables are renamed to
-- `*_pre0003` (kept until a later release drops them), and every step can
-- run again (IF NOT EXISTS, OR IGNORE) if only one file committed.
CREATE TABLE IF NOT EXISTS audit.audit_events (
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL CHECK (seq >= 1),
    occurred_at     BIGINT  NOT NULL,
    request_id      TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    roles           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    resource        TEXT    NOT NULL,
    customers       TEXT    NOT NULL,
    purpose         TEXT,
    decision        TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    fields          TEXT    NOT NULL,
    status          BIGINT  NOT NULL,
    records         BIGINT  NOT NULL,
    prev_hash       BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    PRIMARY KEY (instance, seq)
);
INSERT OR IGNORE INTO audit.audit_events SELECT * FROM main.audit_events ORDER BY instance, seq;
CREATE INDEX IF NOT EXISTS audit.audit_events_time ON audit_events (occurred_at, instance, seq);
CREATE INDEX IF NOT EXISTS audit.audit_events_actor ON audit_events (actor, occurred_at);

CREATE TABLE IF NOT EXISTS audit.audit_event_customers (
    customer_id     BIGINT  NOT NULL,
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, instance, seq)
) WITHOUT ROWID;
INSERT OR IGNORE INTO audit.audit_event_customers (customer_id, instance, seq)
    SELECT customer_id, instance, seq FROM main.audit_event_customers;

CREATE TABLE IF NOT EXISTS audit.audit_checkpoints (
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    hash            BLOB    NOT NULL,
    signed_at       BIGINT  NOT NULL,
    key_id          TEXT    NOT NULL,
    signature       BLOB    NOT NULL,
    PRIMARY KEY (instance, seq)
);
INSERT OR IGNORE INTO audit.audit_checkpoints SELECT * FROM main.audit_checkpoints;

ALTER TABLE main.audit_event_customers RENAME TO audit_event_customers_pre0003;
ALTER TABLE main.audit_events RENAME TO audit_events_pre0003;
ALTER TABLE main.audit_checkpoints RENAME TO audit_checkpoints_pre0003;

CREATE TRIGGER IF NOT EXISTS audit.audit_event_customers_follow AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_event_customers (customer_id, instance, seq)
    SELECT DISTINCT c.value, NEW.instance, NEW.seq FROM json_each(NEW.customers) AS c;
END;
