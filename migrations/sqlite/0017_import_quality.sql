-- Data integration and quality (issue 17). Keep in step with
-- migrations/postgres/0017_import_quality.sql.

-- Orders carry their currency explicitly (ISO 4217); NULL only for rows
-- written before this migration.
ALTER TABLE orders ADD COLUMN currency TEXT;

-- Event properties, as the declared event schema (policies/events.toml)
-- allows them for the kind: a JSON object.
ALTER TABLE events ADD COLUMN properties TEXT;

-- One row per run of a mapped import or a replay. The run's data key (a
-- DEK like a customer's, wrapped under the active KEK with the record id
-- -id so it can never pass for a customer's key) encrypts the run's
-- quarantined rows.
CREATE TABLE import_runs (
    id              INTEGER PRIMARY KEY,
    source          TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    format          TEXT    NOT NULL,
    mapping_sha256  TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    started_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    status          TEXT    NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    summary         TEXT,
    kek_version     BIGINT,
    wrapped_dek     BLOB
);
CREATE INDEX import_runs_source ON import_runs (source, started_at);

-- Rows that failed validation, with their reasons (codes and column names,
-- never values) and the row itself encrypted under the run's data key.
-- A replayed row keeps its reasons and loses its ciphertext.
CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    run_id          BIGINT  NOT NULL REFERENCES import_runs (id),
    source          TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    line_no         BIGINT  NOT NULL,
    reasons         TEXT    NOT NULL,
    row_ct          BLOB,
    status          TEXT    NOT NULL CHECK (status IN ('open', 'replayed', 'discarded')),
    resolved_run_id BIGINT,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX quarantine_source_status ON quarantine (source, status, id);

-- Which customer a source's record became: created, or linked to an
-- existing customer by external id or by the blind index of a normalized
-- e-mail or phone (cross-source duplicates, never compared in clear).
CREATE TABLE customer_sources (
    source          TEXT    NOT NULL,
    source_key      TEXT    NOT NULL,
    customer_id     BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    matched_by      TEXT    NOT NULL CHECK (matched_by IN ('new', 'external_id', 'email', 'phone')),
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (source, source_key)
);
CREATE INDEX customer_sources_customer ON customer_sources (customer_id);

-- Quality check runs and their results per source and check.
CREATE TABLE quality_runs (
    id              INTEGER PRIMARY KEY,
    checked_at      BIGINT  NOT NULL,
    actor           TEXT    NOT NULL
);

CREATE TABLE quality_results (
    run_id          BIGINT  NOT NULL REFERENCES quality_runs (id) ON DELETE CASCADE,
    source          TEXT    NOT NULL,
    check_name      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    severity        TEXT    NOT NULL CHECK (severity IN ('warn', 'error')),
    rows_checked    BIGINT  NOT NULL,
    rows_failed     BIGINT  NOT NULL,
    verdict         TEXT    NOT NULL CHECK (verdict IN ('pass', 'warn', 'fail')),
    PRIMARY KEY (run_id, source, check_name)
);
