-- Every policy version bump is announced on the `router_policy` notification channel, so other
-- control-plane replicas on this database push the change to their data planes at once
-- (delivered when the bumping transaction commits; nothing is sent for one that rolls back).
CREATE FUNCTION router_policy_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('router_policy', NEW.version::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER policy_state_notify AFTER UPDATE OF version ON policy_state
    FOR EACH ROW EXECUTE FUNCTION router_policy_notify();
