-- migrate:up

-- Signing secrets of the HMAC webhook rails (POST /api/v1/billing/webhook/{provider}).
-- tenant_id NULL: the rail's provider-wide secret; otherwise a secret that only verifies events naming that
-- tenant. A secret is active from created_at until retired_at (NULL: open-ended; a future retired_at schedules
-- the end of a rotation). At most two secrets are active per (provider, tenant) scope: the current one and, while
-- senders switch over, the previous one.
--
-- Rotation, as the owner:
--   INSERT INTO paysaga.webhook_secrets (provider, tenant_id, secret) VALUES ('generic', NULL, '<new>');
--   -- … once the sender signs with <new>:
--   UPDATE paysaga.webhook_secrets SET retired_at = now() WHERE provider = 'generic' AND tenant_id IS NULL
--      AND secret = '<old>';
CREATE TABLE paysaga.webhook_secrets (
  secret_id  bigserial PRIMARY KEY,
  provider   text NOT NULL CHECK (provider ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
  tenant_id  uuid REFERENCES paysaga.tenants,
  secret     text NOT NULL CHECK (length(secret) >= 16),
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,
  CHECK (retired_at IS NULL OR retired_at >= created_at),
  UNIQUE NULLS NOT DISTINCT (provider, tenant_id, secret)
);

-- "Two active secrets per (provider, tenant)": a count under a per-scope lock (a partial unique index cannot
-- count to two, nor see a retired_at in the future). The lock serialises concurrent inserts into one scope.
CREATE FUNCTION paysaga.guard_webhook_secrets() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  active bigint;
BEGIN
  IF NEW.retired_at IS NOT NULL AND NEW.retired_at <= now() THEN
    RETURN NEW;  -- retiring (or recording an already retired secret) never breaks the limit
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('paysaga.webhook_secrets:' || NEW.provider || ':'
                                                 || coalesce(NEW.tenant_id::text, '*'), 0));
  SELECT count(*) INTO active FROM paysaga.webhook_secrets s
   WHERE s.provider = NEW.provider AND s.tenant_id IS NOT DISTINCT FROM NEW.tenant_id
     AND s.secret_id <> NEW.secret_id
     AND (s.retired_at IS NULL OR s.retired_at > now());
  IF active >= 2 THEN
    RAISE EXCEPTION 'webhook secrets: % (tenant %) already has two active secrets; retire one first',
      NEW.provider, coalesce(NEW.tenant_id::text, 'provider-wide') USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER webhook_secrets_two_active BEFORE INSERT OR UPDATE ON paysaga.webhook_secrets
  FOR EACH ROW EXECUTE FUNCTION paysaga.guard_webhook_secrets();

-- Row-level security, enabled and forced like every tenant table. paysaga_app has no privilege on the table at
-- all: it reads secrets only through webhook_secrets_for below.
SELECT paysaga.make_tenant_table('paysaga.webhook_secrets');

-- A webhook is verified before its tenant is known (the tenant is named by the payload being verified), so the
-- secrets are read as the owner through one narrow function, as paysaga.authenticate reads api keys: the
-- active secrets of one rail, provider-wide plus those of the tenant the payload names (p_tenant NULL: only
-- provider-wide).
CREATE FUNCTION paysaga.webhook_secrets_for(p_provider text, p_tenant uuid)
  RETURNS TABLE (secret text, tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT s.secret, s.tenant_id FROM paysaga.webhook_secrets s
     WHERE s.provider = p_provider
       AND (s.tenant_id IS NULL OR s.tenant_id = p_tenant)
       AND s.created_at <= now()
       AND (s.retired_at IS NULL OR s.retired_at > now())
$$;
ALTER FUNCTION paysaga.webhook_secrets_for(text, uuid) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.webhook_secrets_for(text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.webhook_secrets_for(text, uuid) TO paysaga_app;

-- migrate:down
DROP FUNCTION paysaga.webhook_secrets_for(text, uuid);
DROP TABLE paysaga.webhook_secrets;
DROP FUNCTION paysaga.guard_webhook_secrets();
