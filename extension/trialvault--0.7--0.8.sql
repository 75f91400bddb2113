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
-- in (or was logged off, or was refused on a protected table), or the role
-- an account change changed.  account_changes and the
-- auditors' audit_trail read it.
CREATE FUNCTION trialvault._event_subject(event text, actor name, detail text) RETURNS name
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT CASE
		WHEN event IN ('login', 'login_failed', 'login_fallback', 'role_locked',
					   'session_idle_logoff', 'protected_table_refused') THEN actor
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
					 coalesce(' (database ' || nullif(e.detail::jsonb ->> 'database', '') || ')', '')
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
					  'role_locked', 'role_unlocked', 'password_refused', 'password_accepted_hashed',
					  'setting_changed');
COMMENT ON VIEW trialvault.account_changes IS
	'Every change to an account, from the audit trail: roles created, altered (which attributes; for a password only that it changed), given settings, dropped, renamed, role memberships granted and revoked, in any database, and refused; study roles, monitor authorizations, signing keys, data and server keys, lockouts and unlocks, and refused passwords. session_user_name and current_user_name: who did it; target_role: to whom. For administrators.';
REVOKE ALL ON trialvault.account_changes FROM PUBLIC;
GRANT SELECT ON trialvault.account_changes TO trialvault_admin;

-- Password history and aging (extension/auth.c, extension/accounts.c).
-- Salted PBKDF2-HMAC-SHA256 hashes of the passwords set through CREATE/ALTER
-- ROLE: never the text, never PostgreSQL's verifier.  Written by the log
-- writer when the role change commits; read by nobody but the extension.
CREATE TABLE trialvault.password_history (
	entry_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	roleid oid NOT NULL,
	role_name name NOT NULL,
	set_at timestamptz NOT NULL,
	iterations integer NOT NULL CHECK (iterations >= 10000),
	salt bytea NOT NULL CHECK (length(salt) = 16),
	hash bytea NOT NULL CHECK (length(hash) = 32)
);
COMMENT ON TABLE trialvault.password_history IS
	'Salted PBKDF2-HMAC-SHA256 hashes of the passwords set for each role (insert-only, chained), by role oid: a new password must differ from the last trialvault.password_history. Never the password, never the verifier PostgreSQL stores. Readable by nobody but the extension.';
SELECT trialvault.protect('trialvault.password_history');
SELECT pg_catalog.pg_extension_config_dump('trialvault.password_history', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.password_history_entry_id_seq', '');
REVOKE ALL ON trialvault.password_history FROM PUBLIC;

CREATE VIEW trialvault.password_expiry AS
	SELECT r.rolname AS role_name, r.rolvaliduntil AS valid_until,
		   r.rolvaliduntil < now() AS expired
	FROM pg_catalog.pg_roles r
	WHERE r.rolcanlogin AND r.rolvaliduntil < now() + interval '14 days';
COMMENT ON VIEW trialvault.password_expiry IS
	'Login roles whose password expires within 14 days, or has expired (VALID UNTIL; trialvault.password_max_age sets it when a password is set). For administrators.';
REVOKE ALL ON trialvault.password_expiry FROM PUBLIC;
GRANT SELECT ON trialvault.password_expiry TO trialvault_admin;

-- The audit events of a report: a period, and a study's (its events, and
-- the security events of its members) or all.
CREATE FUNCTION trialvault._report_events(period_from timestamptz, period_to timestamptz,
	study text, members name[]) RETURNS SETOF trialvault.audit_events
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT e.* FROM trialvault.audit_events e
	WHERE e.occurred_at >= $1 AND e.occurred_at < $2
	  AND ($3 IS NULL OR e.study = $3
		   OR (e.study IS NULL AND trialvault._event_subject(e.event, e.actor, e.detail) = ANY ($4)))
$$;
COMMENT ON FUNCTION trialvault._report_events(timestamptz, timestamptz, text, name[]) IS
	'Internal: the audit events audit_report covers.';
REVOKE ALL ON FUNCTION trialvault._report_events(timestamptz, timestamptz, text, name[]) FROM PUBLIC;

-- The auditors' printable report of a period (docs/auditor-guide.md).
CREATE FUNCTION trialvault._audit_report(requester name, period_from timestamptz,
	period_to timestamptz, study text) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	r record;
	out text[] := '{}';
	n bigint;
	members name[];
	tables regclass[] := ARRAY['trialvault.audit_events', 'trialvault.decryption_log'];
BEGIN
	IF period_from IS NULL OR period_to IS NULL THEN
		RAISE EXCEPTION 'arguments of trialvault.audit_report must not be NULL'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Give the period: audit_report(from, to[, study]).';
	END IF;
	IF period_to < period_from THEN
		RAISE EXCEPTION 'the period of an audit report ends before it begins'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('From %s to %s.', period_from, period_to);
	END IF;
	IF study IS NULL THEN
		PERFORM trialvault._require_admin(requester, 'report on the whole cluster');
	ELSE
		PERFORM trialvault._require_study(study);
		IF NOT pg_has_role(requester, 'trialvault_admin', 'MEMBER')
		   AND NOT EXISTS (SELECT 1 FROM trialvault.current_memberships m
						   WHERE m.member = requester AND m.study = _audit_report.study
							 AND m.study_role = 'auditor') THEN
			RAISE EXCEPTION 'permission denied to report on study %', study
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = format('Role %s is neither an auditor of study %s nor a member of trialvault_admin.', requester, study),
					  HINT = 'A trialvault_admin grants the auditor role with trialvault.grant_role().';
		END IF;
		members := ARRAY(SELECT DISTINCT m.member FROM trialvault.memberships m
						 WHERE m.study = _audit_report.study);
		tables := tables || ARRAY['trialvault.documents', 'trialvault.memberships',
								  'trialvault.monitor_authorizations', 'trialvault.signatures']::regclass[];
	END IF;

	out := out || 'trialvault audit report'::text
		|| format('Period:     %s to %s', period_from, period_to)
		|| format('Scope:      %s', coalesce('study ' || study || ' (its events, and the security events of its '
											 || cardinality(members) || ' members)', 'the whole cluster'))
		|| format('Made:       %s by %s, database %s, trialvault %s', now(), requester, current_database(),
				  (SELECT extversion FROM pg_extension WHERE extname = 'trialvault'))
		|| ''::text;

	out := out || '1. Events by kind'::text;
	FOR r IN SELECT event, count(*) AS n FROM trialvault._report_events(period_from, period_to, _audit_report.study, members) GROUP BY event ORDER BY event LOOP
		out := out || format('   %-34s %8s', r.event, r.n);
	END LOOP;
	SELECT count(*) INTO n FROM trialvault._report_events(period_from, period_to, _audit_report.study, members);
	out := out || format('   %-34s %8s', 'total', n) || ''::text;

	out := out || '2. Failed logins and lockouts'::text;
	n := 0;
	FOR r IN SELECT actor,
					count(*) FILTER (WHERE event = 'login_failed') AS failed,
					count(*) FILTER (WHERE event = 'login_failed' AND detail::jsonb ->> 'reason' LIKE 'locked out until %') AS refused_locked,
					count(*) FILTER (WHERE event = 'role_locked') AS lockouts,
					max(occurred_at) FILTER (WHERE event = 'login_failed') AS last
			 FROM trialvault._report_events(period_from, period_to, _audit_report.study, members)
			 WHERE event IN ('login_failed', 'role_locked')
			 GROUP BY actor ORDER BY failed DESC, actor LOOP
		out := out || format('   %-30s %5s failed (%s while locked out), %s lockout(s), last %s',
							 r.actor, r.failed, r.refused_locked, r.lockouts, r.last);
		n := n + 1;
	END LOOP;
	IF n = 0 THEN
		out := out || '   none'::text;
	END IF;
	SELECT count(*) INTO n FROM trialvault._report_events(period_from, period_to, _audit_report.study, members) WHERE event = 'login';
	out := out || format('   successful logins: %s; let in unrecorded (fallbacks): %s; idle logoffs: %s',
						 n, (SELECT count(*) FROM trialvault._report_events(period_from, period_to, _audit_report.study, members) WHERE event = 'login_fallback'),
						 (SELECT count(*) FROM trialvault._report_events(period_from, period_to, _audit_report.study, members) WHERE event = 'session_idle_logoff'))
		|| ''::text;

	out := out || '3. Decryptions per document'::text;
	n := 0;
	FOR r IN SELECT l.doc_id, count(*) FILTER (WHERE l.granted) AS granted,
					count(*) FILTER (WHERE NOT l.granted) AS refused,
					count(*) FILTER (WHERE l.emergency) AS emergency,
					string_agg(DISTINCT l.requester::text, ', ') AS readers
			 FROM trialvault.decryption_log l
			 WHERE l.requested_at >= period_from AND l.requested_at < period_to
			   AND (_audit_report.study IS NULL OR l.study = _audit_report.study)
			 GROUP BY l.doc_id ORDER BY l.doc_id LOOP
		out := out || format('   document %-10s %5s granted, %s refused, %s emergency; by %s',
							 coalesce(r.doc_id::text, '(none)'), r.granted, r.refused, r.emergency, r.readers);
		n := n + 1;
	END LOOP;
	IF n = 0 THEN
		out := out || '   none'::text;
	END IF;
	out := out || ''::text;

	out := out || '4. Account changes'::text;
	n := 0;
	FOR r IN SELECT c.at, c.session_user_name, c.current_user_name, c.target_role, c.kind, c.detail
			 FROM trialvault.account_changes c
			 WHERE c.event_id IN (SELECT e.event_id FROM trialvault._report_events(period_from, period_to, _audit_report.study, members) e)
			 ORDER BY c.event_id LOOP
		out := out || format('   %s  %s%s  %s  %s  %s', r.at, r.session_user_name,
							 CASE WHEN r.current_user_name <> r.session_user_name
								  THEN ' as ' || r.current_user_name ELSE '' END,
							 r.kind, coalesce(r.target_role::text, '-'), coalesce(r.detail, ''));
		n := n + 1;
	END LOOP;
	IF n = 0 THEN
		out := out || '   none'::text;
	END IF;
	out := out || ''::text;

	out := out || '5. Verification of every chain involved'::text;
	FOR r IN SELECT t, v.* FROM unnest(tables) t, trialvault.verify(t) v LOOP
		out := out || format('   %-36s %s: %s rows, %s head(s), head digest %s%s',
							 r.t, CASE WHEN r.ok THEN 'verifies' ELSE 'DOES NOT VERIFY' END,
							 r.rows_checked, r.heads, encode(r.head_digest, 'hex'),
							 CASE WHEN r.ok THEN '' ELSE format(' (first bad: %s; guard: %s)', r.first_bad, r.guard) END);
	END LOOP;
	RETURN array_to_string(out, E'\n') || E'\n';
END
$$;
COMMENT ON FUNCTION trialvault._audit_report(name, timestamptz, timestamptz, text) IS
	'Internal: audit_report for the requester.';
REVOKE ALL ON FUNCTION trialvault._audit_report(name, timestamptz, timestamptz, text) FROM PUBLIC;

CREATE FUNCTION trialvault.audit_report(period_from timestamptz, period_to timestamptz,
	study text DEFAULT NULL) RETURNS text
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.audit_report(timestamptz, timestamptz, text) IS
	'A printable report of a period [from, to): audit events by kind with totals, failed logins and lockouts per role, decryptions per document, account changes, and the verification of every chain involved. With a study: that study''s events and the security events of its members, for its auditors; without: the whole cluster, for administrators.';


-- Last: seal what this version's objects are.
SELECT trialvault._seal_catalog();
