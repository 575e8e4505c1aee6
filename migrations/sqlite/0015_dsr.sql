-- Data subject rights (src/dsr): requests with steps, generated documents,
-- the erasure state machine, legal holds and the suppression list.
-- Keep in step with migrations/postgres/0015_dsr.sql.

-- One request of a data subject. `customer_id` stays valid after an
-- erasure: the customer row is kept, emptied, as the anchor of the
-- tombstone (src/dsr/erasure.rs).
CREATE TABLE dsr_requests (
    id              INTEGER PRIMARY KEY,
    request_uid     TEXT    NOT NULL UNIQUE,
    customer_id     BIGINT  NOT NULL REFERENCES customers (id),
    kind            TEXT    NOT NULL CHECK (kind IN ('access', 'portability', 'rectification', 'erasure')),
    status          TEXT    NOT NULL CHECK (status IN ('received', 'in_progress', 'on_hold', 'completed', 'refused')),
    requested_by    TEXT    NOT NULL CHECK (requested_by IN ('data_subject', 'authorized_agent', 'parent_or_guardian')),
    channel         TEXT    NOT NULL CHECK (channel IN ('email', 'web_form', 'post', 'phone', 'in_person', 'other')),
    received_at     BIGINT  NOT NULL,
    due_at          BIGINT  NOT NULL,
    extended_at     BIGINT,
    extension_reason TEXT,
    status_reason   TEXT,
    opened_by       TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    completed_at    BIGINT
);
CREATE INDEX dsr_requests_due ON dsr_requests (status, due_at);
-- At most one open request of each kind per customer.
CREATE UNIQUE INDEX dsr_requests_one_open ON dsr_requests (customer_id, kind)
    WHERE status IN ('received', 'in_progress', 'on_hold');

-- What was done for a request, in order; each step names the audit event
-- that records it (instance, seq), which the erasure certificate lists.
CREATE TABLE dsr_steps (
    id              INTEGER PRIMARY KEY,
    request_id      BIGINT  NOT NULL REFERENCES dsr_requests (id),
    step            TEXT    NOT NULL,
    at              BIGINT  NOT NULL,
    actor           TEXT    NOT NULL,
    detail          TEXT,
    audit_instance  TEXT,
    audit_seq       BIGINT
);
CREATE INDEX dsr_steps_request ON dsr_steps (request_id, id);

-- An access document (JSON) or portability archive (zip), stored in
-- chunks encrypted under the customer's own data key: erasing the customer
-- shreds every document too. Deleted at `expires_at`.
CREATE TABLE dsr_documents (
    id              INTEGER PRIMARY KEY,
    document_uid    TEXT    NOT NULL UNIQUE,
    request_id      BIGINT  NOT NULL REFERENCES dsr_requests (id),
    customer_id     BIGINT  NOT NULL,
    format          TEXT    NOT NULL CHECK (format IN ('json', 'zip')),
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    bytes           BIGINT  NOT NULL DEFAULT 0,
    chunks          BIGINT  NOT NULL DEFAULT 0,
    sha256          BLOB,
    complete        BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX dsr_documents_expiry ON dsr_documents (expires_at);
CREATE INDEX dsr_documents_request ON dsr_documents (request_id);

CREATE TABLE dsr_document_chunks (
    document_id     BIGINT  NOT NULL REFERENCES dsr_documents (id) ON DELETE CASCADE,
    chunk_no        BIGINT  NOT NULL,
    ciphertext      BLOB    NOT NULL,
    PRIMARY KEY (document_id, chunk_no)
);

-- The erasure state machine: one row per erasure, advanced one durable
-- step at a time and resumed at start (src/dsr/erasure.rs).
CREATE TABLE dsr_erasures (
    request_id      BIGINT  PRIMARY KEY REFERENCES dsr_requests (id),
    customer_id     BIGINT  NOT NULL UNIQUE,
    tombstone       TEXT    NOT NULL UNIQUE,
    subject_digest  BLOB    NOT NULL UNIQUE,
    key_id          TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('started', 'key_destroyed', 'rows_removed', 'derived_removed', 'completed')),
    started_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    completed_at    BIGINT,
    certificate     TEXT
);
CREATE INDEX dsr_erasures_state ON dsr_erasures (state);

-- Legal holds: while one is active the customer cannot be erased.
CREATE TABLE dsr_legal_holds (
    id              INTEGER PRIMARY KEY,
    customer_id     BIGINT  NOT NULL REFERENCES customers (id),
    reason          TEXT    NOT NULL,
    set_by          TEXT    NOT NULL,
    set_at          BIGINT  NOT NULL,
    lifted_by       TEXT,
    lifted_at       BIGINT,
    lift_reason     TEXT
);
CREATE UNIQUE INDEX dsr_legal_holds_active ON dsr_legal_holds (customer_id) WHERE lifted_at IS NULL;

-- Keyed digests (never plaintext) of erased customers' external id, e-mail
-- and phone (the blind indexes): creating or importing the same person
-- again is refused and counted.
CREATE TABLE dsr_suppressions (
    field           TEXT    NOT NULL CHECK (field IN ('external_id', 'email', 'phone')),
    blind_index     BLOB    NOT NULL,
    request_id      BIGINT  NOT NULL REFERENCES dsr_requests (id),
    added_at        BIGINT  NOT NULL,
    hits            BIGINT  NOT NULL DEFAULT 0,
    last_hit_at     BIGINT,
    PRIMARY KEY (field, blind_index)
);

-- Orders stay for accounting; an erased customer's link is replaced by an
-- irreversible tombstone (random, shared by that customer's orders only).
ALTER TABLE orders ADD COLUMN customer_tombstone TEXT;
CREATE INDEX orders_customer_tombstone ON orders (customer_tombstone);

-- The consent ledger stays append-only, with one exception: erasure may
-- remove the evidence text, source and actor of an erased customer's
-- events (the fact, purpose, decision and times stay).
DROP TRIGGER IF EXISTS consent_events_append_only;
CREATE TRIGGER consent_events_append_only BEFORE UPDATE ON consent_events
WHEN NOT (
    NEW.id = OLD.id AND NEW.receipt_id = OLD.receipt_id AND NEW.customer_id = OLD.customer_id
    AND NEW.purpose = OLD.purpose AND NEW.granted = OLD.granted
    AND NEW.occurred_at = OLD.occurred_at AND NEW.recorded_at = OLD.recorded_at
    AND NEW.evidence IS NULL AND NEW.source = 'erased' AND NEW.actor = 'erased'
    AND NEW.evidence_hash IS OLD.evidence_hash
    AND (SELECT erased_at FROM customers WHERE id = OLD.customer_id) IS NOT NULL
)
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only');
END;
