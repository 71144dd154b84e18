-- migrate:up

-- The sandbox provider's outgoing webhook events: its own storage (Stripe's, in production), so no tenant RLS,
-- like the rest of the sandbox schema. A provider call writes its state change and the events it causes in one
-- transaction; the sandbox network (`paysaga sandbox-network`) delivers them. An event is therefore never lost
-- because a process died after the change, and never sent for a change that was rolled back.
CREATE TABLE sandbox.events (
  event_id      text PRIMARY KEY,                       -- evt_sbx_…, what the receiver de-duplicates on
  seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- creation order: deliveries start in this order
  tenant_id     uuid NOT NULL,                          -- for tracing only; never a filter
  type          text NOT NULL,
  payload       jsonb NOT NULL,                         -- the whole event envelope, as it is posted
  created_at    timestamptz NOT NULL DEFAULT now(),
  -- When the next delivery attempt is due. While an attempt is in flight this is its lease: a network runner
  -- that dies mid-post leaves the row to be retried when the lease runs out.
  deliver_after timestamptz NOT NULL DEFAULT now(),
  attempts      integer NOT NULL DEFAULT 0,
  state         text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'dropped', 'rejected', 'exhausted')),
  delivered_at  timestamptz,
  last_error    text
);
CREATE INDEX sandbox_events_due ON sandbox.events (deliver_after) WHERE state = 'pending';
GRANT SELECT, INSERT, UPDATE ON sandbox.events TO paysaga_app;

-- What the network settles over time, found by the time it became due (updated_at + the settle delay).
CREATE INDEX sandbox_intents_processing ON sandbox.payment_intents (updated_at) WHERE status = 'processing';
CREATE INDEX sandbox_refunds_pending ON sandbox.refunds (updated_at) WHERE status = 'pending';
CREATE INDEX sandbox_disputes_deciding ON sandbox.disputes (updated_at)
  WHERE status = 'under_review' AND pending_outcome IS NOT NULL;

-- migrate:down
DROP INDEX sandbox.sandbox_disputes_deciding;
DROP INDEX sandbox.sandbox_refunds_pending;
DROP INDEX sandbox.sandbox_intents_processing;
DROP TABLE sandbox.events;
