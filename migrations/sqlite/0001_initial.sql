-- Custodian schema, SQLite flavour. Keep in step with migrations/postgres.
-- Timestamps are microseconds since the Unix epoch (BIGINT) so that both
-- backends compare and index them the same way. Personal fields are stored
-- only as ciphertext (*_ct) plus keyed blind indexes (*_bidx) for equality
-- look-ups; see SECURITY.md.

CREATE TABLE customers (
    id              INTEGER PRIMARY KEY,
    external_id     TEXT    NOT NULL UNIQUE,
    email_ct        BLOB,
    email_bidx      BLOB,
    phone_ct        BLOB,
    phone_bidx      BLOB,
    name_ct         BLOB,
    birth_date_ct   BLOB,
    postcode_ct     BLOB,
    city            TEXT,
    country         TEXT,
    signup_at       BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    erased_at       BIGINT
);
CREATE INDEX customers_email_bidx ON customers (email_bidx);
CREATE INDEX customers_phone_bidx ON customers (phone_bidx);
CREATE INDEX customers_country ON customers (country);

-- KEK versions: never the key itself, only a check value that tells which
-- master key a version was derived from.
CREATE TABLE keys (
    version         BIGINT  PRIMARY KEY,
    check_value     BLOB    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('active', 'retired')),
    created_at      BIGINT  NOT NULL,
    rotation_started_at  BIGINT,
    rotation_finished_at BIGINT,
    -- Lease of the instance re-wrapping DEKs to this version (one rotation
    -- at a time across instances; a stale heartbeat lets another resume).
    rotation_owner       TEXT,
    rotation_heartbeat_at BIGINT
);

-- One data key (DEK) per customer, stored only wrapped under a KEK version.
-- Deleting the row crypto-shreds every ciphertext of that customer.
CREATE TABLE data_keys (
    customer_id     BIGINT  PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    kek_version     BIGINT  NOT NULL REFERENCES keys (version),
    wrapped_dek     BLOB    NOT NULL,
    created_at      BIGINT  NOT NULL,
    rewrapped_at    BIGINT
);
CREATE INDEX data_keys_kek_version ON data_keys (kek_version);

CREATE TABLE products (
    id              INTEGER PRIMARY KEY,
    sku             TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    price_cents     BIGINT  NOT NULL CHECK (price_cents >= 0),
    created_at      BIGINT  NOT NULL
);
CREATE INDEX products_category ON products (category);

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    external_id     TEXT    NOT NULL UNIQUE,
    customer_id     BIGINT  REFERENCES customers (id) ON DELETE SET NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('order', 'return')),
    return_of       BIGINT  REFERENCES orders (id),
    placed_at       BIGINT  NOT NULL,
    country         TEXT,
    total_cents     BIGINT  NOT NULL,
    source          TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX orders_customer_placed ON orders (customer_id, placed_at);
CREATE INDEX orders_placed ON orders (placed_at);

CREATE TABLE order_lines (
    id              INTEGER PRIMARY KEY,
    order_id        BIGINT  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no         BIGINT  NOT NULL,
    product_id      BIGINT  NOT NULL REFERENCES products (id),
    quantity        BIGINT  NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    UNIQUE (order_id, line_no)
);
CREATE INDEX order_lines_product ON order_lines (product_id);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    event_uid       TEXT    NOT NULL UNIQUE,
    customer_id     BIGINT  REFERENCES customers (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL CHECK (kind IN ('view', 'search', 'add_to_cart', 'purchase', 'click')),
    product_id      BIGINT  REFERENCES products (id),
    channel         TEXT    NOT NULL,
    occurred_at     BIGINT  NOT NULL,
    ingested_at     BIGINT  NOT NULL
);
CREATE INDEX events_customer_time ON events (customer_id, occurred_at);
CREATE INDEX events_product ON events (product_id);

-- Append-only consent ledger: the current state is the latest row per
-- (customer, purpose). Nothing updates or deletes a row.
CREATE TABLE consent_events (
    id              INTEGER PRIMARY KEY,
    receipt_id      TEXT    NOT NULL UNIQUE,
    customer_id     BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose         TEXT    NOT NULL,
    granted         BIGINT  NOT NULL CHECK (granted IN (0, 1)),
    occurred_at     BIGINT  NOT NULL,
    recorded_at     BIGINT  NOT NULL,
    source          TEXT    NOT NULL,
    evidence        TEXT,
    evidence_hash   BLOB,
    actor           TEXT    NOT NULL
);
CREATE INDEX consent_current ON consent_events (customer_id, purpose, id);
CREATE INDEX consent_purpose ON consent_events (purpose, customer_id, id);

-- Hash-chained audit trail, one chain per gateway instance (see
-- src/pipeline/audit/mod.rs for the canonical encoding each hash covers).
-- roles, customers and fields are JSON arrays; decision is 'allow' or 'deny'.
CREATE TABLE audit_events (
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
-- Newest-first paging of GET /v1/audit uses (occurred_at, instance, seq).
CREATE INDEX audit_events_time ON audit_events (occurred_at, instance, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, occurred_at);

-- Derived index of audit_events.customers (which the chain covers), for the
-- customer filter. Written in the same transaction as the event; not
-- authoritative and not verified.
CREATE TABLE audit_event_customers (
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    customer_id     BIGINT  NOT NULL,
    PRIMARY KEY (instance, seq, customer_id)
);
CREATE INDEX audit_event_customers_customer ON audit_event_customers (customer_id);

-- Ed25519-signed chain heads. A checkpoint also anchors what remains after
-- retention pruning removed the events before it.
CREATE TABLE audit_checkpoints (
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    hash            BLOB    NOT NULL,
    signed_at       BIGINT  NOT NULL,
    key_id          TEXT    NOT NULL,
    signature       BLOB    NOT NULL,
    PRIMARY KEY (instance, seq)
);

-- The shape the casbin sqlx adapter uses, so tooling that knows it can read it.
CREATE TABLE casbin_rule (
    id              INTEGER PRIMARY KEY,
    ptype           TEXT    NOT NULL,
    v0              TEXT    NOT NULL DEFAULT '',
    v1              TEXT    NOT NULL DEFAULT '',
    v2              TEXT    NOT NULL DEFAULT '',
    v3              TEXT    NOT NULL DEFAULT '',
    v4              TEXT    NOT NULL DEFAULT '',
    v5              TEXT    NOT NULL DEFAULT ''
);

-- Every policy change bumps the revision; instances poll (SQLite) or are
-- notified (PostgreSQL) and reload when it moves.
CREATE TABLE policy_revisions (
    revision        INTEGER PRIMARY KEY,
    sha256          TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);

CREATE TABLE dsr_requests (
    id              INTEGER PRIMARY KEY,
    request_uid     TEXT    NOT NULL UNIQUE,
    customer_id     BIGINT,
    kind            TEXT    NOT NULL CHECK (kind IN ('export', 'erase', 'rectify')),
    status          TEXT    NOT NULL CHECK (status IN ('received', 'in_progress', 'completed', 'rejected')),
    requested_by    TEXT    NOT NULL,
    requested_at    BIGINT  NOT NULL,
    completed_at    BIGINT,
    result          TEXT
);
CREATE INDEX dsr_requests_customer ON dsr_requests (customer_id);
