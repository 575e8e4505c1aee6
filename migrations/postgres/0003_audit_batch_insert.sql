-- The audit writer inserts a whole batch, with the derived customer index
-- of each event, in one statement (src/pipeline/audit/store.rs).
--
-- The index table is keyed by customer first: one B-tree per event instead
-- of two (primary key and customer index), and the customer filter is a
-- prefix scan of the key.
-- Instances still running the previous version keep inserting while this
-- runs: lock them out until the copy and the swap commit.
LOCK TABLE audit_event_customers IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE audit_event_customers_v2 (
    customer_id     BIGINT  NOT NULL,
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, instance, seq)
);
INSERT INTO audit_event_customers_v2 (customer_id, instance, seq)
    SELECT customer_id, instance, seq FROM audit_event_customers;
DROP TABLE audit_event_customers;
ALTER TABLE audit_event_customers_v2 RENAME TO audit_event_customers;
ALTER INDEX audit_event_customers_v2_pkey RENAME TO audit_event_customers_pkey;
