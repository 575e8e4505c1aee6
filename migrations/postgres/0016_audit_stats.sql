-- Counts of audit events per hour and per (action, decision, purpose,
-- actor, reason), for the compliance console's charts: a chart over a
-- million events reads a few thousand rows instead of decoding every
-- block. Filled off the request path by the same passes that fill the
-- customer index (`stats::count_pending`), progress in
-- `audit_stats_progress`: every block of `instance` with
-- first_seq <= `counted_through` is counted. Derived data, never evidence:
-- the chain does not cover it. `purpose` is '' when the event had none.
-- `touching` counts the events that touched at least one customer.
CREATE TABLE IF NOT EXISTS audit_stats (
    instance    TEXT    NOT NULL,
    hour        BIGINT  NOT NULL,
    action      TEXT    NOT NULL,
    decision    TEXT    NOT NULL,
    purpose     TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    events      BIGINT  NOT NULL,
    touching    BIGINT  NOT NULL,
    PRIMARY KEY (instance, hour, action, decision, purpose, actor, reason)
);
CREATE INDEX IF NOT EXISTS audit_stats_hour ON audit_stats (hour);

-- Starts at 0 for every chain: existing blocks are counted by the first
-- passes after the upgrade.
CREATE TABLE IF NOT EXISTS audit_stats_progress (
    instance        TEXT    NOT NULL PRIMARY KEY,
    counted_through BIGINT  NOT NULL
);
