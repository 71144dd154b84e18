-- migrate:up

-- API keys get a name (what the key is for: "shop front", "back office") and the time they were last used. A
-- tenant may hold several keys with different roles, and revoke any of them; a revoked key is refused at once
-- (authentication reads the row on every request).
ALTER TABLE paysaga.api_keys ADD COLUMN name text, ADD COLUMN last_used_at timestamptz;

-- Authentication, as before, plus the key's last use. The write is skipped while the recorded use is under a
-- minute old, so a busy key costs one UPDATE a minute, not one per request.
CREATE OR REPLACE FUNCTION paysaga.authenticate(p_key_hash bytea)
  RETURNS TABLE (tenant_id uuid, key_id text, roles text[])
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
BEGIN
  RETURN QUERY
    UPDATE paysaga.api_keys k SET last_used_at = now()
     WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
       AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
    RETURNING k.tenant_id, k.key_id, k.roles;
  IF NOT FOUND THEN
    RETURN QUERY SELECT k.tenant_id, k.key_id, k.roles FROM paysaga.api_keys k
                  WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL;
  END IF;
END $$;
ALTER FUNCTION paysaga.authenticate(bytea) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION paysaga.authenticate(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paysaga.authenticate(bytea) TO paysaga_app;

-- migrate:down
CREATE OR REPLACE FUNCTION paysaga.authenticate(p_key_hash bytea)
  RETURNS TABLE (tenant_id uuid, key_id text, roles text[])
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = paysaga, pg_temp AS $$
    SELECT k.tenant_id, k.key_id, k.roles FROM paysaga.api_keys k
     WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
$$;
ALTER TABLE paysaga.api_keys DROP COLUMN last_used_at, DROP COLUMN name;
