-- The audit writer inserts a whole batch with one statement. The derived
-- customer index is filled by the database from each event's `customers`
-- column (the value the chain hash covers), so the two cannot disagree.
--
-- The index table is rebuilt WITHOUT ROWID and keyed by customer first:
-- one B-tree per event instead of three (rowid table, primary key, customer
-- index), and the customer filter is a prefix scan of the key.
CREATE TABLE audit_event_customers_v2 (
    customer_id     BIGINT  NOT NULL,
    instance        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, instance, seq)
) WITHOUT ROWID;
INSERT INTO audit_event_customers_v2 (customer_id, instance, seq)
    SELECT customer_id, instance, seq FROM audit_event_customers;
DROP TABLE audit_event_customers;
ALTER TABLE audit_event_customers_v2 RENAME TO audit_event_customers;

CREATE TRIGGER audit_event_customers_follow AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_event_customers (customer_id, instance, seq)
    SELECT DISTINCT c.value, NEW.instance, NEW.seq FROM json_each(NEW.customers) AS c;
END;
