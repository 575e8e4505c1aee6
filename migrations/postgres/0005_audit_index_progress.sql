-- The customer index is filled off the request path: the writer inserts a
-- block alone (appending a row touches a few pages; indexing its customers
-- touched one random index page per event, inside every commit every
-- audited request waits for) and indexes new blocks in passes a fraction
-- of a second apart (`store::index_customers`). This table says how far
-- that got: every event of `instance` with seq <= `indexed_through` is in
-- `audit_event_customers`. The customer filter reads later blocks without
-- the index, so it never misses an event that is not indexed yet.
CREATE TABLE audit_index_progress (
    instance        TEXT    NOT NULL PRIMARY KEY,
    indexed_through BIGINT  NOT NULL
);

-- Until now the insert statement indexed every block as it was written.
INSERT INTO audit_index_progress (instance, indexed_through)
    SELECT instance, MAX(last_seq) FROM audit_blocks GROUP BY instance;
