-- Issue 13: audience segments, customer profiles and output privacy.
-- Keep in step with migrations/postgres/0013_segments.sql.

-- Per-customer features, one row per customer (also those without orders),
-- rebuilt by analytics::features::refresh when the source data moved. A
-- segment over millions of customers is one indexed query over this table.
-- Money in cents, times in microseconds since the epoch.
CREATE TABLE customer_features (
    customer_id     BIGINT  PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    country         TEXT,
    signup_at       BIGINT  NOT NULL,
    orders_count    BIGINT  NOT NULL,
    first_order_at  BIGINT,
    last_order_at   BIGINT,
    monetary_cents  BIGINT  NOT NULL,
    aov_cents       BIGINT,
    items           BIGINT  NOT NULL,
    top_category    TEXT,
    r_score         BIGINT,
    f_score         BIGINT,
    m_score         BIGINT,
    rfm_cell        TEXT
);
CREATE INDEX customer_features_last_order ON customer_features (last_order_at);
CREATE INDEX customer_features_country ON customer_features (country);
CREATE INDEX customer_features_rfm_cell ON customer_features (rfm_cell);
CREATE INDEX customer_features_monetary ON customer_features (monetary_cents);

-- Spend per (customer, category), for category shares in profiles.
CREATE TABLE customer_category_spend (
    customer_id     BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    category        TEXT    NOT NULL,
    spend_cents     BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, category)
);

-- One row: which source state the features were built from.
CREATE TABLE analytics_features_meta (
    id              BIGINT  PRIMARY KEY CHECK (id = 1),
    version         BIGINT  NOT NULL,
    source_mark     TEXT    NOT NULL,
    refreshed_at    BIGINT  NOT NULL,
    refresh_micros  BIGINT  NOT NULL
);

-- Saved, named segment definitions (no personal data: a definition only).
CREATE TABLE segments (
    id              INTEGER PRIMARY KEY,
    segment_uid     TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL,
    definition      TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_purpose TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);

-- Privacy budget spent per (principal, purpose, window), in micro-epsilon.
-- Debited in the transaction that records the query's audit event.
CREATE TABLE privacy_budget (
    principal       TEXT    NOT NULL,
    purpose         TEXT    NOT NULL,
    window_start    BIGINT  NOT NULL,
    spent_micro     BIGINT  NOT NULL CHECK (spent_micro >= 0),
    queries         BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (principal, purpose, window_start)
);

-- Released (already noisy) answers, so the same question on the same data in
-- the same window gets the same answer at no cost. Never a true value.
CREATE TABLE privacy_answers (
    principal       TEXT    NOT NULL,
    purpose         TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    window_start    BIGINT  NOT NULL,
    data_version    TEXT    NOT NULL,
    answer          TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (principal, purpose, fingerprint, window_start)
);
CREATE INDEX privacy_answers_window ON privacy_answers (window_start);

-- Cluster assignments of one k-means run (per purpose, k and data version):
-- lets a segment say "in profile cluster 2 of k = 5".
CREATE TABLE profile_assignments (
    purpose         TEXT    NOT NULL,
    k               BIGINT  NOT NULL,
    customer_id     BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    cluster         BIGINT  NOT NULL,
    PRIMARY KEY (purpose, k, customer_id)
);
CREATE INDEX profile_assignments_cluster ON profile_assignments (purpose, k, cluster);

CREATE TABLE profile_runs (
    purpose         TEXT    NOT NULL,
    k               BIGINT  NOT NULL,
    data_version    TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (purpose, k)
);

-- Windowed conditions (category bought, events by kind) probe these.
CREATE INDEX events_kind_time ON events (kind, occurred_at);
