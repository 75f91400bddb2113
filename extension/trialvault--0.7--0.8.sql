-- trialvault 0.7 -> 0.8: the security audit trail (connection attempts, lockout,
-- account changes).
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
-- (functions in a view run with the privileges of whoever reads it)
GRANT EXECUTE ON FUNCTION trialvault._log_kept_pending() TO trialvault_admin;

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
GRANT EXECUTE ON FUNCTION trialvault._lockout_state() TO trialvault_admin;

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

-- The role a security event (no study) is about: the one who tried to log
-- in, or the role an account change changed.  account_changes and the
-- auditors' audit_trail read it.
CREATE FUNCTION trialvault._event_subject(event text, actor name, detail text) RETURNS name
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT CASE
		WHEN event IN ('login', 'login_failed', 'login_fallback', 'role_locked') THEN actor
		WHEN event IN ('role_created', 'role_altered', 'role_setting_changed', 'role_dropped',
					   'membership_granted', 'membership_revoked', 'role_renamed',
					   'account_change_refused', 'account_change_fallback')
			THEN (detail::jsonb ->> 'target')::name
		WHEN event = 'role_unlocked' THEN (detail::jsonb ->> 'role')::name
		WHEN event = 'role_granted' THEN substring(detail FROM ' to (.*)$')::name
		WHEN event = 'role_revoked' THEN substring(detail FROM ' from (.*)$')::name
		WHEN event = 'monitor_authorized' THEN substring(detail FROM '^(.*) until ')::name
		WHEN event = 'monitor_revoked' THEN detail::name
		WHEN event IN ('signing_key_registered', 'signing_key_revoked', 'signing_key_refused')
			THEN substring(detail FROM '^role ([^,:]*)[,:]')::name
		WHEN event IN ('printed_name_set', 'printed_name_refused', 'password_refused',
					   'password_accepted_hashed')
			THEN substring(detail FROM '^role ([^:]*):')::name
	END
$$;
COMMENT ON FUNCTION trialvault._event_subject(text, name, text) IS
	'Internal: the role an audit event is about (who tried to log in, the role an account change changed, the member a study role or key event concerns); NULL for other events.';
REVOKE ALL ON FUNCTION trialvault._event_subject(text, name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault._event_subject(text, name, text) TO trialvault_user, trialvault_admin;

CREATE OR REPLACE VIEW trialvault.audit_trail WITH (security_barrier) AS
	SELECT e.event_id, e.occurred_at, e.event, e.actor, e.session_user_name,
		   e.study, e.site, e.doc_id, e.detail, e.client_addr, e.application_name,
		   e.backend_pid, e.logged_at
	FROM trialvault.audit_events e
	WHERE 'auditor' = ANY ((SELECT trialvault._session_scope('roles'))::text[])
	  AND (e.study = (SELECT trialvault._session_study())
		   OR (e.study IS NULL
			   AND trialvault._event_subject(e.event, e.actor, e.detail) IN
				   (SELECT m.member FROM trialvault.memberships m
					WHERE m.study = (SELECT trialvault._session_study()))));
COMMENT ON VIEW trialvault.audit_trail IS
	'The audit trail of the open study, for its auditors: study, site, role, authorization, key, document and refusal events, and the security events (logins, lockouts, account changes, keys) of everyone who has been a member of the study.';


-- Account changes (extension/accounts.c): CREATE/ALTER/DROP ROLE, role
-- membership and renames, from any database, and the extension's own
-- study role, authorization, key and lockout events.
CREATE VIEW trialvault.account_changes AS
	SELECT e.occurred_at AS at, e.session_user_name, e.actor AS current_user_name,
		   trialvault._event_subject(e.event, e.actor, e.detail) AS target_role,
		   e.event AS kind,
		   CASE WHEN e.study IS NULL AND e.detail LIKE '{%}' AND e.event NOT IN ('role_locked', 'role_unlocked')
				THEN (e.detail::jsonb ->> 'changes') ||
					 coalesce(' (database ' || (e.detail::jsonb ->> 'database') || ')', '')
				WHEN e.event = 'role_locked' THEN e.detail::jsonb ->> 'reason'
				WHEN e.event = 'role_unlocked' THEN NULL
				ELSE e.detail END AS detail,
		   e.study, e.site, e.event_id
	FROM trialvault.audit_events e
	WHERE e.event IN ('role_created', 'role_altered', 'role_setting_changed', 'role_dropped',
					  'membership_granted', 'membership_revoked', 'role_renamed',
					  'account_change_refused', 'account_change_fallback',
					  'role_granted', 'role_revoked', 'monitor_authorized', 'monitor_revoked',
					  'signing_key_registered', 'signing_key_revoked', 'printed_name_set',
					  'data_key_created', 'data_key_rotated', 'master_key_rewrap', 'server_key_new',
					  'role_locked', 'role_unlocked', 'password_refused', 'password_accepted_hashed');
COMMENT ON VIEW trialvault.account_changes IS
	'Every change to an account, from the audit trail: roles created, altered (which attributes; for a password only that it changed), given settings, dropped, renamed, role memberships granted and revoked, in any database, and refused; study roles, monitor authorizations, signing keys, data and server keys, lockouts and unlocks, and refused passwords. session_user_name and current_user_name: who did it; target_role: to whom. For administrators.';
REVOKE ALL ON trialvault.account_changes FROM PUBLIC;
GRANT SELECT ON trialvault.account_changes TO trialvault_admin;


-- Last: seal what this version's objects are.
SELECT trialvault._seal_catalog();
