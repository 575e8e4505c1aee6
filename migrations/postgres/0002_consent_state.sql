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

CREATE FUNCTION consent_state_follow() RETURNS trigger AS $$
BEGIN
    INSERT INTO consent_state (customer_id, purpose, granted, occurred_at, event_id)
    VALUES (NEW.customer_id, NEW.purpose, NEW.granted, NEW.occurred_at, NEW.id)
    ON CONFLICT (customer_id, purpose) DO UPDATE
       SET granted = EXCLUDED.granted, occurred_at = EXCLUDED.occurred_at, event_id = EXCLUDED.event_id
     WHERE EXCLUDED.occurred_at > consent_state.occurred_at
        OR (EXCLUDED.occurred_at = consent_state.occurred_at AND EXCLUDED.event_id > consent_state.event_id);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_state_follow AFTER INSERT ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_state_follow();

-- The ledger is append-only: nothing may rewrite an event.
CREATE FUNCTION consent_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_events_append_only BEFORE UPDATE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
