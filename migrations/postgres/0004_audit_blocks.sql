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
CREATE TABLE audit_blocks (
    instance        TEXT    NOT NULL,
    first_seq       BIGINT  NOT NULL CHECK (first_seq >= 1),
    last_seq        BIGINT  NOT NULL,
    -- Every event of a block has this time (the writer stamps a batch once).
    at              BIGINT  NOT NULL,
    -- `[[customer_id, seq], ...]`: lets retention delete exactly this
    -- block's customer index rows (the insert fills them from the same value).
    customers       TEXT    NOT NULL,
    events          BYTEA   NOT NULL,
    PRIMARY KEY (instance, first_seq)
);
-- Out of line without compression: compressing every block costs the writer
-- more CPU than the disk it saves is worth on the request path.
ALTER TABLE audit_blocks ALTER COLUMN events SET STORAGE EXTERNAL;
-- Newest-first paging of GET /v1/audit.
CREATE INDEX audit_blocks_time ON audit_blocks (at, instance, first_seq);

-- An instance still running the previous version would keep inserting
-- into the retired table, which nothing reads any more: refuse, so that
-- it fails closed (503) instead of acknowledging events nobody will see.
CREATE FUNCTION audit_events_retired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is retired (migration 0004): upgrade this instance';
END $$;
CREATE TRIGGER audit_events_retired BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_retired();
