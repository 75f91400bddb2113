-- trialvault 0.5 -> 0.6: guards that deny by default; the extension describes
-- its own objects.
\echo Use "ALTER EXTENSION trialvault UPDATE TO '0.6'" to load this file. \quit

-- The extension's own objects, described one by one (see extension/catalog.c).
CREATE FUNCTION trialvault.catalog_state(OUT object text, OUT definition text)
	RETURNS SETOF record
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_catalog_state';
COMMENT ON FUNCTION trialvault.catalog_state() IS
	'Every object of the extension described as text (definitions, columns, constraints, indexes, triggers, owners, privileges, comments), one row per object. verify() compares it with what the installed version''s script created.';

-- What the installed version's script created, object by object: verify()
-- compares the catalogs with it, so that an edit made behind the guards'
-- back is at least seen (extension/catalog.c).  Rows come only from
-- _seal_catalog(), the last statement of every script.
CREATE TABLE trialvault.catalog_seal (
	version text NOT NULL,
	object text NOT NULL,
	fingerprint bytea NOT NULL,
	sealed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (version, object)
);
COMMENT ON TABLE trialvault.catalog_seal IS
	'SHA-256 of the description of every object of the extension (trialvault.catalog_state()) as each version''s script left it; verify() reports any difference. Insert-only, hash-chained, written only by the extension''s scripts.';
SELECT trialvault.protect('trialvault.catalog_seal');
REVOKE ALL ON trialvault.catalog_seal FROM PUBLIC;

CREATE FUNCTION trialvault._seal_insert_guard() RETURNS trigger
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_seal_insert_guard';
REVOKE ALL ON FUNCTION trialvault._seal_insert_guard() FROM PUBLIC;
COMMENT ON FUNCTION trialvault._seal_insert_guard() IS
	'Internal: trigger that lets only the extension''s own scripts add rows to trialvault.catalog_seal.';
CREATE TRIGGER a_seal_only_by_scripts BEFORE INSERT ON trialvault.catalog_seal
	FOR EACH ROW EXECUTE FUNCTION trialvault._seal_insert_guard();
ALTER TABLE trialvault.catalog_seal ENABLE ALWAYS TRIGGER a_seal_only_by_scripts;

CREATE FUNCTION trialvault._seal_catalog() RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_seal_catalog';
REVOKE ALL ON FUNCTION trialvault._seal_catalog() FROM PUBLIC;
COMMENT ON FUNCTION trialvault._seal_catalog() IS
	'Internal: records the fingerprints of the extension''s objects under the version being installed; called last by every script.';

-- Only protect() attaches the guard to a table (it runs that DDL as the
-- extension's owner): a guarded table takes a slot of shared memory.
REVOKE ALL ON FUNCTION trialvault.guard() FROM PUBLIC;
COMMENT ON FUNCTION trialvault.guard() IS
	'Trigger function of the guard triggers of protected tables: refuses UPDATE, DELETE and TRUNCATE; chains each inserted row. Attached only by protect().';

-- ---------------------------------------------------------------------
-- my_documents shows the fingerprint of a PHI document's plaintext only to
-- those who may open it
-- ---------------------------------------------------------------------

-- What the current user may see in a study, by kind:
--   documents     sites whose documents they may list
--   monitor_sites sites they are authorized to monitor now
--   log_sites     sites whose decryption log they may read (investigators; auditors: all)
--   phi_sites     sites whose PHI documents they may open: their own sites as
--                 site staff or investigator, and those they monitor now
--   roles         the study roles they hold
--   role_entries  'site:role' for each role held ('*' for study-wide roles)
CREATE OR REPLACE FUNCTION trialvault._scope(requester name, study text, what text) RETURNS text[]
	LANGUAGE plpgsql AS $$
DECLARE
	roles text[];
	mon_since timestamptz;
BEGIN
	SELECT coalesce(array_agg(coalesce(c.site, '*') || ':' || c.study_role), '{}')
		INTO roles FROM trialvault._current_roles(study, requester) c;
	IF roles = '{}' THEN
		RETURN '{}';
	END IF;
	CASE what
	WHEN 'roles' THEN
		RETURN ARRAY(SELECT DISTINCT split_part(r, ':', 2) FROM unnest(roles) r ORDER BY 1);
	WHEN 'role_entries' THEN
		RETURN roles;
	WHEN 'documents' THEN
		IF roles && ARRAY['*:safety', '*:sponsor', '*:auditor'] THEN
			RETURN ARRAY(SELECT s.site FROM trialvault.sites s WHERE s.study = _scope.study);
		END IF;
		-- Sites of the caller's own site roles, plus those a monitor is
		-- authorized for (a statement of its own, so that the common case
		-- keeps a generic plan).
		RETURN ARRAY(SELECT split_part(r, ':', 1) FROM unnest(roles) r
					 WHERE split_part(r, ':', 2) IN ('site_staff', 'investigator'))
			|| CASE WHEN '*:monitor' = ANY (roles)
					THEN trialvault._scope(requester, study, 'monitor_sites')
					ELSE '{}'::text[] END;
	WHEN 'monitor_sites' THEN
		IF NOT '*:monitor' = ANY (roles) THEN
			RETURN '{}';
		END IF;
		SELECT max(m.changed_at) INTO mon_since FROM trialvault.memberships m
			WHERE m.study = _scope.study AND m.member = requester
			  AND m.study_role = 'monitor' AND m.granted;
		RETURN ARRAY(SELECT s.site FROM trialvault.sites s
					 WHERE s.study = _scope.study
					   AND trialvault._monitor_state(_scope.study, s.site, requester, mon_since) = 'valid');
	WHEN 'phi_sites' THEN
		RETURN ARRAY(SELECT split_part(r, ':', 1) FROM unnest(roles) r
					 WHERE split_part(r, ':', 2) IN ('site_staff', 'investigator'))
			|| CASE WHEN '*:monitor' = ANY (roles)
					THEN trialvault._scope(requester, study, 'monitor_sites')
					ELSE '{}'::text[] END;
	WHEN 'log_sites' THEN
		IF '*:auditor' = ANY (roles) THEN
			RETURN ARRAY(SELECT s.site FROM trialvault.sites s WHERE s.study = _scope.study);
		END IF;
		RETURN ARRAY(SELECT split_part(r, ':', 1) FROM unnest(roles) r
					 WHERE split_part(r, ':', 2) = 'investigator');
	ELSE
		RAISE EXCEPTION 'unknown scope "%"', left(what, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Scopes: documents, monitor_sites, phi_sites, log_sites, roles, role_entries.';
	END CASE;
END
$$;
COMMENT ON FUNCTION trialvault._scope(name, text, text) IS
	'Internal: what a member may see in a study (documents, monitor_sites, phi_sites, log_sites, roles, role_entries); empty for non-members.';

-- The fingerprint of a PHI document's plaintext is shown only to those who
-- may open the document (the rules of _open_grant: loader, site staff and
-- investigators of its site, monitors authorized for it now, safety for an
-- SAE): anyone else could confirm a guess at its content by hashing it.
CREATE OR REPLACE VIEW trialvault.my_documents WITH (security_barrier) AS
	SELECT d.doc_id, d.study, d.site, d.doc_type, d.contains_phi, d.metadata,
		   d.metadata_schema, d.metadata_schema_version, d.metadata_sha256,
		   d.loaded_by, d.loaded_at, d.content_length,
		   CASE WHEN NOT d.contains_phi OR d.loaded_by = CURRENT_USER
					 OR d.site = ANY ((SELECT trialvault._session_scope('phi_sites'))::text[])
					 OR (d.doc_type = 'sae' AND 'safety' = ANY ((SELECT trialvault._session_scope('roles'))::text[]))
				THEN d.content_sha256 END AS content_sha256
	FROM trialvault.documents d
	WHERE d.study = (SELECT trialvault._session_study())
	  AND d.site = ANY ((SELECT trialvault._session_scope('documents'))::text[]);
COMMENT ON VIEW trialvault.my_documents IS
	'Documents of the open study the current user may see (site staff and investigators: their sites; monitors: sites they are authorized for now; safety, sponsor, auditor: all sites). Metadata and fingerprints only, never content; the fingerprint of a PHI document only for those who may open it.';


-- ---------------------------------------------------------------------
-- Validation messages: values masked whatever they contain
-- ---------------------------------------------------------------------

-- libxml2's validation messages quote the offending value ('...' is not a
-- valid value ..., The value '...' ...); the error goes to the server log,
-- so the value is masked.  Deny by default: after "Element 'name'(,
-- attribute 'name'): " (names cannot contain a quote) a message is kept
-- only in a shape known to quote nothing but names, or with its value
-- masked where the shape is known; otherwise the rest is not shown.  The
-- value is taken greedily (up to the last occurrence of the fixed text that
-- follows it), so a value that contains a quote or that fixed text is still
-- masked whole.
CREATE FUNCTION trialvault._mask_validation_message(msg text) RETURNS text
	LANGUAGE sql IMMUTABLE STRICT
	SET search_path = pg_catalog, pg_temp
	AS $f$
	SELECT p.prefix || CASE
		WHEN strpos(r.rest, '''') = 0 THEN r.rest
		WHEN r.rest ~ '^The attribute ''[^'']*'' is (required but missing|not allowed)\.$'
			OR r.rest ~ '^Character content other than whitespace is not allowed because the content type is ''[a-z-]+''\.$'
			THEN r.rest
		WHEN r.rest ~ '^''.*'' is not a valid value of the [a-z ]*type'
			THEN regexp_replace(r.rest, '^''.*''( is not a valid value of the [a-z ]*type.*)$', '(value not shown)\1')
		WHEN r.rest ~ '^(\[facet ''[A-Za-z]+''\] )?The value ''.*'' (is|has|does) '
			THEN regexp_replace(r.rest, '^((\[facet ''[A-Za-z]+''\] )?The value )''.*''( (is|has|does) .*)$', '\1(not shown)\3')
		ELSE '(the rest of the message is not shown: it may quote a value)' END
	FROM (SELECT coalesce(substring(msg from '^(Element ''[^'']*''(, attribute ''[^'']*'')?: )'), '') AS prefix) p,
		 LATERAL (SELECT substr(msg, length(p.prefix) + 1) AS rest) r
$f$;
REVOKE ALL ON FUNCTION trialvault._mask_validation_message(text) FROM PUBLIC;
COMMENT ON FUNCTION trialvault._mask_validation_message(text) IS
	'Internal: a libxml2 validation message with the value it quotes masked (or the rest of the message withheld when its shape is unknown), for errors that reach the server log.';

-- The check as 0.2 wrote it, kept to report what the fast path finds: it
-- raises the errors users see (the rule and where, masked validation
-- messages).  inspect_metadata() calls it as the extension owner.
CREATE OR REPLACE FUNCTION trialvault._check_metadata_report(study text, doc xml, schema_name text)
	RETURNS integer
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	sname text := schema_name;
	s record;
	checked_version integer;
	errs text;
	nerr integer;
	phi record;
BEGIN
	PERFORM trialvault._require_args('check_metadata', study, doc::text);
	-- Screen first: PHI must be refused by rule before any message could quote it.
	SELECT * INTO phi FROM trialvault.screen_metadata(study, doc) LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'metadata matches PHI screening rule "%"', phi.rule_name
			USING ERRCODE = 'data_exception',
				  DETAIL = format('Rule %s (%s) matched at %s. The value is not shown.',
								  phi.rule_name, phi.kind, coalesce(phi.path, 'the document')),
				  HINT = 'Metadata must not carry PHI; keep identifying data in the encrypted document. trialvault.screen_metadata() lists every match.';
	END IF;
	IF sname IS NULL THEN
		SELECT d.name INTO sname FROM trialvault.metadata_defaults d
			WHERE d.study = _check_metadata_report.study ORDER BY d.tv_seq DESC LIMIT 1;
	END IF;
	IF sname IS NOT NULL THEN
		SELECT * INTO s FROM trialvault._current_schema(study, sname);
		checked_version := s.version;
		-- The error goes to the server log: mask the values libxml2 quotes.
		SELECT count(*), string_agg(format('line %s: %s', v.line,
				trialvault._mask_validation_message(v.message)), E'\n')
			FILTER (WHERE v.n <= 3)
			INTO nerr, errs
			FROM (SELECT e.*, row_number() OVER () AS n
				  FROM trialvault._validate(s.xsd, doc, 100) e) v;
		IF nerr > 0 THEN
			RAISE EXCEPTION 'metadata is not valid against schema "%" version % of study "%"',
				sname, s.version, study
				USING ERRCODE = 'invalid_xml_document',
					  DETAIL = format(E'%s error(s), the first:\n%s', nerr, errs),
					  HINT = 'trialvault.metadata_errors() lists them all, with values.';
		END IF;
	END IF;
	RETURN checked_version;
END
$$;

-- Only tests called it.
DROP FUNCTION trialvault._xml_nodes(xml);

-- The access rules of open_document in one place, in C (extension/rules.c):
-- the SQL decision it used to fall back to goes, with the helpers it
-- shared with _revoke_monitor folded into _monitor_now.
DROP FUNCTION trialvault._open_decision(bigint, name, boolean, text);
DROP FUNCTION trialvault._open_grant(bigint, name);
CREATE FUNCTION trialvault._monitor_now(study text, site text, monitor name) RETURNS text
	LANGUAGE sql STABLE AS $$
	SELECT trialvault._monitor_state($1, $2, $3,
		(SELECT max(m.changed_at) FROM trialvault.memberships m
		 WHERE m.study = $1 AND m.member = $3 AND m.study_role = 'monitor' AND m.granted))
$$;
COMMENT ON FUNCTION trialvault._monitor_now(text, text, name) IS
	'Internal: a monitor''s authorization for a site right now, counting only authorizations given since the monitor role was last granted: valid, expired, revoked or none.';

CREATE FUNCTION trialvault._emergency_reason_ok(reason text) RETURNS boolean
	LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(array_length(regexp_split_to_array(btrim(coalesce($1, '')), '\s+'), 1), 0) >= 3
		   AND length(btrim(coalesce($1, ''))) >= 12
$$;
COMMENT ON FUNCTION trialvault._emergency_reason_ok(text) IS
	'Internal: whether an emergency_open reason is one: at least three words and twelve characters.';
REVOKE ALL ON FUNCTION trialvault._monitor_now(text, text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION trialvault._emergency_reason_ok(text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION trialvault._revoke_monitor(requester name, monitor name, study text, site text)
	RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_args('revoke_monitor', monitor, study, site);
	PERFORM trialvault._require_investigator(requester, 'revoke a monitor', study, site);
	IF trialvault._monitor_now(study, site, monitor) <> 'valid' THEN
		RAISE NOTICE '% holds no valid monitor authorization for site % of study %; nothing to revoke',
			monitor, site, study;
		RETURN;
	END IF;
	INSERT INTO trialvault.monitor_authorizations (study, site, monitor, valid_until, granted, changed_by)
		VALUES (study, site, monitor, NULL, false, requester);
	PERFORM trialvault._audit('monitor_revoked', requester, study, site, NULL, monitor::text);
END
$$;


-- The views ask the same rules as open_document (rules.c), instead of
-- restating them in SQL over 'site:role' strings that _scope() built.
CREATE FUNCTION trialvault._may_open(site text, doc_type text, contains_phi boolean, loaded_by name)
	RETURNS boolean
	LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'tv_may_open';
REVOKE ALL ON FUNCTION trialvault._may_open(text, text, boolean, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault._may_open(text, text, boolean, name) TO trialvault_user;
COMMENT ON FUNCTION trialvault._may_open(text, text, boolean, name) IS
	'Whether the current user may open a document with these facts in the session''s open study, by the rules open_document follows (emergencies aside). Only ever about the caller.';

CREATE FUNCTION trialvault._session_roles(OUT site text, OUT study_role text)
	RETURNS SETOF record
	LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'tv_session_roles';
REVOKE ALL ON FUNCTION trialvault._session_roles() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault._session_roles() TO trialvault_user;
COMMENT ON FUNCTION trialvault._session_roles() IS
	'The current user''s roles in the session''s open study (site NULL for study-wide roles). Only ever about the caller.';

CREATE FUNCTION trialvault._session_sites(OUT site text, OUT my_roles text[],
	OUT may_load boolean, OUT may_open text)
	RETURNS SETOF record
	LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'tv_session_sites';
REVOKE ALL ON FUNCTION trialvault._session_sites() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault._session_sites() TO trialvault_user;
COMMENT ON FUNCTION trialvault._session_sites() IS
	'For each site of the session''s open study whose documents the current user may list: their roles there (or study-wide), whether they may load documents there, and what they may open there. Only ever about the caller.';

COMMENT ON FUNCTION trialvault._session_scope(text) IS
	'What the secured views filter by, for the current user in the session''s open study (empty when none is open or they hold no role there): documents (sites whose documents they may list), log_sites (sites whose decryption log they may read), roles (the roles they hold), monitor_sites (sites they are authorized to monitor now). Only ever about the caller, so it cannot be pointed at someone else.';

CREATE OR REPLACE VIEW trialvault.my_documents WITH (security_barrier) AS
	SELECT d.doc_id, d.study, d.site, d.doc_type, d.contains_phi, d.metadata,
		   d.metadata_schema, d.metadata_schema_version, d.metadata_sha256,
		   d.loaded_by, d.loaded_at, d.content_length,
		   CASE WHEN trialvault._may_open(d.site, d.doc_type, d.contains_phi, d.loaded_by)
				THEN d.content_sha256 END AS content_sha256
	FROM trialvault.documents d
	WHERE d.study = (SELECT trialvault._session_study())
	  AND d.site = ANY ((SELECT trialvault._session_scope('documents'))::text[]);
COMMENT ON VIEW trialvault.my_documents IS
	'Documents of the open study the current user may see (site staff and investigators: their sites; monitors: sites they are authorized for now; safety, sponsor, auditor: all sites). Metadata and fingerprints only, never content; the fingerprint of a PHI document only for those who may open it.';

CREATE OR REPLACE VIEW trialvault.my_sites WITH (security_barrier) AS
	SELECT s.study, s.site, s.name, x.my_roles, x.may_load, x.may_open
	FROM trialvault.sites s
	JOIN trialvault._session_sites() x ON x.site = s.site
	WHERE s.study = (SELECT trialvault._session_study());
COMMENT ON VIEW trialvault.my_sites IS
	'Sites of the open study whose documents the current user may list, with their roles there, whether they may load documents, and what they may open.';

CREATE OR REPLACE VIEW trialvault.my_roles WITH (security_barrier) AS
	SELECT trialvault.current_study() AS study, r.site, r.study_role
	FROM trialvault._session_roles() r;
COMMENT ON VIEW trialvault.my_roles IS
	'The current user''s roles in the open study (site NULL for study-wide roles).';

DROP FUNCTION trialvault._scope(name, text, text);

-- load_document in one direction (extension/load.c): C decides, inspects
-- and encrypts, and SQL only checks that the study and site exist, inserts
-- and records; the plpgsql body that called back into C for each step goes.
CREATE OR REPLACE FUNCTION trialvault.load_document(study text, site text, doc_type text,
	contains_phi boolean, metadata xml, content bytea, schema_name text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_load_document';
DROP FUNCTION trialvault._load_document(name, text, text, text, boolean, xml, bytea, text);

-- log_writer_status() gets a C symbol of its own version (the 0.3 to 0.5
-- scripts share one that goes by the declared columns).
CREATE OR REPLACE FUNCTION trialvault.log_writer_status(
	OUT pid integer,
	OUT database text,
	OUT queued bigint,
	OUT written bigint,
	OUT failed bigint,
	OUT batches bigint,
	OUT queue_size integer,
	OUT announced integer)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_log_writer_status_0_6';

-- =====================================================================
-- Last: seal what this script created (see catalog_seal above).
-- =====================================================================
SELECT trialvault._seal_catalog();
