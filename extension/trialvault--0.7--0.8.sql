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

-- Last: seal what this version's objects are.
SELECT trialvault._seal_catalog();
