-- trialvault 0.7 -> 0.8: the security audit trail (connection attempts).
\echo Use "ALTER EXTENSION trialvault UPDATE TO '0.8'" to load this file. \quit

-- =====================================================================
-- 8. The security audit trail: connection attempts (extension/login.c)
-- =====================================================================

-- Connection attempts are audit events (login, login_failed,
-- login_fallback) with no study; their detail is a JSON object.
CREATE INDEX audit_events_event_time ON trialvault.audit_events (event, occurred_at);

CREATE FUNCTION trialvault._log_kept_pending() RETURNS bigint
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_log_kept_pending';
COMMENT ON FUNCTION trialvault._log_kept_pending() IS
	'Internal: how many records kept in shared memory while the log writer was away (logins let in or refused then) it has not put on record yet.';
REVOKE ALL ON FUNCTION trialvault._log_kept_pending() FROM PUBLIC;

CREATE VIEW trialvault.login_attempts AS
	SELECT e.occurred_at AS at, e.actor AS role_name,
		   d.detail ->> 'database' AS database, e.client_addr,
		   (d.detail ->> 'client_port')::integer AS client_port,
		   d.detail ->> 'method' AS auth_method,
		   e.event <> 'login_failed' AS succeeded,
		   d.detail ->> 'reason' AS reason,
		   e.event = 'login_fallback' AS fallback,
		   e.application_name, e.backend_pid, e.event_id
	FROM trialvault.audit_events e
	CROSS JOIN LATERAL (SELECT e.detail::jsonb) AS d(detail)
	WHERE e.event IN ('login', 'login_failed', 'login_fallback');
COMMENT ON VIEW trialvault.login_attempts IS
	'Every connection attempt to any database of the cluster, from the audit trail: time, role name as given, database, client address and port (NULL over a unix socket), authentication method, whether it was let in, and why not. fallback: a superuser let in while the log writer could not record the login (put on record when it was back). For administrators.';

CREATE VIEW trialvault.login_fallbacks AS
	SELECT (SELECT count(*) FROM trialvault.audit_events
			WHERE event = 'login_fallback') AS recorded,
		   trialvault._log_kept_pending() AS pending,
		   (SELECT max(occurred_at) FROM trialvault.audit_events
			WHERE event = 'login_fallback') AS last_at;
COMMENT ON VIEW trialvault.login_fallbacks IS
	'Superusers let in while their login could not be put on record (log writer down, queue full, timeout): how many are in the audit trail, how many are kept in shared memory until the log writer is back, and the last one. Each also has a server log line starting "trialvault login fallback:". For administrators.';

REVOKE ALL ON trialvault.login_attempts, trialvault.login_fallbacks FROM PUBLIC;
GRANT SELECT ON trialvault.login_attempts, trialvault.login_fallbacks TO trialvault_admin;

-- Lockout (extension/lockout.c): the counters live in shared memory and
-- are rebuilt from these events at server start.
CREATE INDEX audit_events_event_actor ON trialvault.audit_events (event, actor, event_id);

CREATE FUNCTION trialvault._lockout_reset(role name) RETURNS boolean
	LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'tv_lockout_reset';
COMMENT ON FUNCTION trialvault._lockout_reset(name) IS
	'Internal: ends the lockout and the failed-login count of a role in shared memory; true when it had either.';
REVOKE ALL ON FUNCTION trialvault._lockout_reset(name) FROM PUBLIC;

CREATE FUNCTION trialvault._lockout_state(OUT role_name name, OUT failures integer,
	OUT locked_until timestamptz, OUT loaded boolean) RETURNS SETOF record
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_lockout_state';
COMMENT ON FUNCTION trialvault._lockout_state() IS
	'Internal: every role with failed logins or a lockout now, from shared memory, and whether that state has been rebuilt from the audit trail since the server started.';
REVOKE ALL ON FUNCTION trialvault._lockout_state() FROM PUBLIC;

CREATE VIEW trialvault.lockouts AS
	SELECT role_name, failures, locked_until
	FROM trialvault._lockout_state();
COMMENT ON VIEW trialvault.lockouts IS
	'Roles with consecutive failed logins since their last login, and those locked out now (locked_until in the future), cluster-wide. For administrators; trialvault.unlock_role() ends a lockout.';
REVOKE ALL ON trialvault.lockouts FROM PUBLIC;
GRANT SELECT ON trialvault.lockouts TO trialvault_admin;

CREATE FUNCTION trialvault._unlock_role(requester name, role name) RETURNS boolean
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_args('unlock_role', role::text);
	PERFORM trialvault._require_admin(requester, 'unlock a role');
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = _unlock_role.role) THEN
		RAISE EXCEPTION 'role "%" does not exist', role
			USING ERRCODE = 'undefined_object';
	END IF;
	-- On record before it takes effect, and whatever the caller's
	-- transaction does: the unlock itself cannot be rolled back.
	PERFORM trialvault._audit_durable('role_unlocked', requester, NULL, NULL, NULL,
									  json_build_object('role', role)::text);
	RETURN trialvault._lockout_reset(role);
END
$$;
COMMENT ON FUNCTION trialvault._unlock_role(name, name) IS
	'Internal: unlock_role for the requester.';
REVOKE ALL ON FUNCTION trialvault._unlock_role(name, name) FROM PUBLIC;

CREATE FUNCTION trialvault.unlock_role(role name) RETURNS boolean
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.unlock_role(name) IS
	'Ends a role''s lockout and its count of failed logins at once (trialvault_admin); the audit event role_unlocked is committed first, even if the caller rolls back. True when the role had failed logins or a lockout.';

-- Last: seal what this version's objects are.
SELECT trialvault._seal_catalog();
