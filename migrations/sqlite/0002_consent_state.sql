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
