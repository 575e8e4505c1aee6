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
    created_at      BIGINT  NOT NULL,
    -- The rules of this revision as policy CSV, so the exact policy in
    -- force for any past decision can be shown (audit events name it).
    rules_csv       TEXT    NOT NULL
);

-- The current consent state per (customer, purpose), derived from the
-- append-only ledger by a trigger, so every insert path keeps it right and
-- bulk look-ups are primary-key probes instead of window queries over the
-- whole history. The ledger stays the source of truth.
CREATE TABLE consent_state (
    customer_id     BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose         TEXT    NOT NULL,
    granted         BIGINT  NOT NULL,
    occurred_at     BIGINT  NOT NULL,
    event_id        BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, purpose)
);
CREATE INDEX consent_state_purpose ON consent_state (purpose, granted, customer_id);

CREATE TRIGGER consent_state_follow AFTER INSERT ON consent_events
BEGIN
    INSERT OR IGNORE INTO consent_state (customer_id, purpose, granted, occurred_at, event_id)
    VALUES (NEW.customer_id, NEW.purpose, NEW.granted, NEW.occurred_at, NEW.id);
    UPDATE consent_state
       SET granted = NEW.granted, occurred_at = NEW.occurred_at, event_id = NEW.id
     WHERE customer_id = NEW.customer_id AND purpose = NEW.purpose
       AND (NEW.occurred_at > occurred_at OR (NEW.occurred_at = occurred_at AND NEW.id > event_id));
END;

-- The ledger is append-only: nothing may rewrite an event.
CREATE TRIGGER consent_events_append_only BEFORE UPDATE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only');
END;

-- The audit trail (src/audit/) lives in its own database file, attached as
-- schema `audit` on every connection (src/db/mod.rs): its own WAL and write
-- lock, so the audit writer never waits behind a data write and a write can
-- commit only after its audit event, as on PostgreSQL. Unqualified names
-- resolve across both files.
--
-- Events are stored as blocks: one row per writer batch, holding that
-- batch's events back to back in their canonical encoding, each followed by
-- its prev_hash and hash (src/audit/store.rs defines the layout). Review
-- filters are evaluated on decoded events; the block's time and the
-- customer index narrow the blocks read.
CREATE TABLE audit.audit_blocks (
    instance        TEXT    NOT NULL,
    first_seq       BIGINT  NOT NULL CHECK (first_seq >= 1),
    last_seq        BIGINT  NOT NULL,
    -- Every event of a block has this time (the writer stamps a batch once).
    at              BIGINT  NOT NULL,
    -- `[[customer_id, seq], ...]`: feeds the customer index and lets
    -- retention delete exactly this block's index rows.
    customers       TEXT    NOT NULL,
    events          BLOB    NOT NULL,
    PRIMARY KEY (instance, first_seq)
);
-- Newest-first paging of GET /v1/audit.
CREATE INDEX audit.audit_blocks_time ON audit_blocks (at, instance, first_seq);

-- Derived index of the events' customers (which the chain covers), for the
-- customer filter; not authoritative and not verified. Keyed by customer
-- first: the filter is a prefix scan of the key.
CREATE TABLE audit.audit_event_customers (
    customer_id     BIGINT  NOT NULL,
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, instance, seq)
) WITHOUT ROWID;

-- The customer index is filled off the request path, in passes a fraction
-- of a second apart (`store::index_customers`): every event of `instance`
-- with seq <= `indexed_through` is in `audit_event_customers`. The customer
-- filter reads later blocks without the index, so it never misses an event.
CREATE TABLE audit.audit_index_progress (
    instance        TEXT    NOT NULL PRIMARY KEY,
    indexed_through BIGINT  NOT NULL
);

-- Ed25519-signed chain heads. A checkpoint also anchors what remains after
-- retention pruning removed the events before it.
CREATE TABLE audit.audit_checkpoints (
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    hash            BLOB    NOT NULL,
    signed_at       BIGINT  NOT NULL,
    key_id          TEXT    NOT NULL,
    signature       BLOB    NOT NULL,
    PRIMARY KEY (instance, seq)
);
