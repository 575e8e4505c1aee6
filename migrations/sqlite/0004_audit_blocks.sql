-- The trail is stored as blocks: one row per writer batch, holding that
-- batch's events back to back in their canonical encoding, each followed by
-- its prev_hash and hash (src/pipeline/audit/store.rs defines the layout).
-- An event row with its indexes cost the writer more than the whole audited
-- request's budget; a block costs one row for the batch. Review filters are
-- evaluated on decoded events; the block's time and the customer index
-- narrow the blocks read.
--
-- Events already in `audit_events` are moved into blocks by the
-- application right after this migration (`store::move_legacy_events`), in
-- one transaction per chain: SQL cannot produce the binary encoding. The
-- emptied table stays until a later release drops it.
CREATE TABLE IF NOT EXISTS audit.audit_blocks (
    instance        TEXT    NOT NULL,
    first_seq       BIGINT  NOT NULL CHECK (first_seq >= 1),
    last_seq        BIGINT  NOT NULL,
    -- Every event of a block has this time (the writer stamps a batch once).
    at              BIGINT  NOT NULL,
    -- `[[customer_id, seq], ...]`: feeds the customer index (a trigger) and
    -- lets retention delete exactly this block's index rows.
    customers       TEXT    NOT NULL,
    events          BLOB    NOT NULL,
    PRIMARY KEY (instance, first_seq)
);
-- Newest-first paging of GET /v1/audit.
CREATE INDEX IF NOT EXISTS audit.audit_blocks_time ON audit_blocks (at, instance, first_seq);

DROP TRIGGER IF EXISTS audit.audit_event_customers_follow;
CREATE TRIGGER IF NOT EXISTS audit.audit_blocks_link AFTER INSERT ON audit_blocks
BEGIN
    INSERT OR IGNORE INTO audit_event_customers (customer_id, instance, seq)
    SELECT c.value ->> 0, NEW.instance, c.value ->> 1 FROM json_each(NEW.customers) AS c;
END;

-- An instance still running the previous version would keep inserting
-- into the retired table, which nothing reads any more: refuse, so that
-- it fails closed (503) instead of acknowledging events nobody will see.
CREATE TRIGGER IF NOT EXISTS audit.audit_events_retired BEFORE INSERT ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is retired (migration 0004): upgrade this instance');
END;
