DROP TRIGGER policy_state_notify ON policy_state;
DROP FUNCTION router_policy_notify();
