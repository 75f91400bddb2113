-- trialvault: the whole current schema, arranged by component.
--
-- This is the one place to read what the current version contains.  The
-- build copies it to trialvault--<version>.sql, the script a fresh CREATE
-- EXTENSION runs.  A database on an older version reaches the same state
-- through the frozen upgrade scripts trialvault--<a>--<b>.sql;
-- test/integration/60_upgrade.sh compares the two roads object by object.
--
--   1. Preamble: the preload check, schema privileges, group roles
--   2. Chain and guards
--   3. Metadata
--   4. Studies, roles and keys
--   5. Documents and decryption
--   6. Session and views
--   7. Certification
\echo Use "CREATE EXTENSION trialvault" to load this file. \quit

-- =====================================================================
-- 1. Preamble
-- =====================================================================

-- Refuse to install unless the library was preloaded: without the hooks
-- loaded at server start, some backends would run without the guards.
CREATE FUNCTION trialvault._require_preload() RETURNS void
	LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'tv_require_preload_sql';
SELECT trialvault._require_preload();
REVOKE ALL ON FUNCTION trialvault._require_preload() FROM PUBLIC;
COMMENT ON FUNCTION trialvault._require_preload() IS
	'Internal: fails unless trialvault is in shared_preload_libraries.';

-- The schema may have been there before (pg_restore creates it): it must
-- be a superuser's and hold nothing yet.  Whoever owns a schema may drop
-- what is in it, and whatever was put there first could shadow a function.
DO $$
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_namespace n
			JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
			WHERE n.nspname = 'trialvault') THEN
		RAISE EXCEPTION 'schema trialvault is owned by a role that is not a superuser'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Drop the schema, or give it to a superuser, before CREATE EXTENSION trialvault.';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
			   WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
				 AND d.refobjid = 'trialvault'::pg_catalog.regnamespace
				 AND d.classid <> 'pg_catalog.pg_extension'::pg_catalog.regclass
				 AND d.objid <> 'trialvault._require_preload()'::pg_catalog.regprocedure) THEN
		RAISE EXCEPTION 'schema trialvault already holds objects'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'trialvault is installed into an empty schema of that name.';
	END IF;
END
$$;

REVOKE ALL ON SCHEMA trialvault FROM PUBLIC;
GRANT USAGE ON SCHEMA trialvault TO PUBLIC;

-- Group roles the extension relies on.  Roles belong to the cluster, not to
-- the extension, so they are created only if missing and outlive it.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'trialvault_admin') THEN
		CREATE ROLE trialvault_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'trialvault_emergency') THEN
		CREATE ROLE trialvault_emergency NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'trialvault_user') THEN
		CREATE ROLE trialvault_user NOLOGIN;
	END IF;
END
$$;
COMMENT ON ROLE trialvault_admin IS
	'trialvault: members create studies and sites, grant and revoke study roles, and rotate data keys.';
COMMENT ON ROLE trialvault_user IS
	'trialvault: every study member is put in this role; it may read the secured views (my_documents, my_sites, my_roles, my_decryption_log, audit_trail) and nothing else.';
COMMENT ON ROLE trialvault_emergency IS
	'trialvault: members may open any document with trialvault.emergency_open(), giving a reason; each use is logged as an emergency.';


-- =====================================================================
-- 2. Chain and guards
-- =====================================================================

-- Only protect() attaches the guard to a table (it runs that DDL as the
-- extension's owner): a guarded table takes a slot of shared memory.
CREATE FUNCTION trialvault.guard() RETURNS trigger
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_guard';
REVOKE ALL ON FUNCTION trialvault.guard() FROM PUBLIC;
COMMENT ON FUNCTION trialvault.guard() IS
	'Trigger function of the guard triggers of protected tables: refuses UPDATE, DELETE and TRUNCATE; chains each inserted row. Attached only by protect().';

-- protect() and verify() run with a fixed search_path so that nothing planted
-- earlier on the caller's path (types, operators) is used inside them.
CREATE FUNCTION trialvault.protect(tbl regclass) RETURNS void
	LANGUAGE C
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_protect';
REVOKE ALL ON FUNCTION trialvault.protect(regclass) FROM PUBLIC;
COMMENT ON FUNCTION trialvault.protect(regclass) IS
	'Makes a table insert-only and hash-chained (chains the rows already present). Only the table owner may call it; calling it again does nothing.';

CREATE FUNCTION trialvault.verify(tbl regclass,
	OUT ok boolean,
	OUT rows_checked bigint,
	OUT first_bad text,
	OUT bad_rows bigint,
	OUT heads bigint,
	OUT head_digest bytea,
	OUT guard text)
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_verify';
COMMENT ON FUNCTION trialvault.verify(regclass) IS
	'Recomputes the hash chain of a protected table: ok, rows checked, the first row that does not fit and why, how many do not, the open ends of the chain and their digest, and the state of the guard triggers.';

CREATE FUNCTION trialvault.verify(tbl regclass, since text,
	OUT ok boolean,
	OUT rows_checked bigint,
	OUT first_bad text,
	OUT bad_rows bigint,
	OUT heads bigint,
	OUT head_digest bytea,
	OUT guard text,
	OUT rows_not_rehashed bigint,
	OUT scope text)
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_verify_since';
COMMENT ON FUNCTION trialvault.verify(regclass, text) IS
	'Verifies only the rows added since a signed digest (trialvault.signed_digest(), version 2): each rehashed and its links checked down to the rows the digest covered, whose heads must be there unchanged. rows_checked counts the new rows; the rows_not_rehashed rows the digest covered were not rehashed, as scope says: a full verify(tbl) does that. heads and head_digest are those of the whole chain now.';

CREATE VIEW trialvault.protected_tables AS
	SELECT c.oid::regclass AS table_name,
		n.nspname AS schema_name,
		c.relname AS relation_name,
		bool_and(t.tgenabled = 'A') AS guards_enabled,
		count(*) AS guard_triggers
	FROM pg_catalog.pg_trigger t
	JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
	JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE t.tgfoid = 'trialvault.guard()'::regprocedure
	GROUP BY c.oid, n.nspname, c.relname;
COMMENT ON VIEW trialvault.protected_tables IS
	'Tables protected by trialvault (those carrying its guard triggers), and whether every guard trigger is enabled ALWAYS.';
GRANT SELECT ON trialvault.protected_tables TO PUBLIC;

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

-- =====================================================================
-- 3. Metadata
-- =====================================================================

--
-- Privileges: registering schemas, rules, defaults and namespaces is for the
-- DBA (EXECUTE revoked from PUBLIC).  Validating, screening and checking are
-- for everyone: those wrappers are SECURITY DEFINER with a fixed search_path,
-- read only the registries (which hold no PHI), and return no stored value
-- but the caller's own document's errors and match locations.

CREATE FUNCTION trialvault.metadata_c14n(doc xml) RETURNS bytea
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_metadata_c14n';
COMMENT ON FUNCTION trialvault.metadata_c14n(xml) IS
	'Canonical form of metadata: W3C Exclusive XML Canonicalization 1.0 without comments.';

CREATE FUNCTION trialvault.metadata_sha256(doc xml) RETURNS bytea
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_metadata_sha256';
COMMENT ON FUNCTION trialvault.metadata_sha256(xml) IS
	'SHA-256 of trialvault.metadata_c14n(doc): the same for documents that differ only in formatting.';

CREATE FUNCTION trialvault.meta_text(doc xml, xpath text) RETURNS text
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_meta_text';
CREATE FUNCTION trialvault.meta_text(doc xml, xpath text, nsmap text[]) RETURNS text
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_meta_text';
CREATE FUNCTION trialvault.meta_int(doc xml, xpath text) RETURNS bigint
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_meta_int';
CREATE FUNCTION trialvault.meta_int(doc xml, xpath text, nsmap text[]) RETURNS bigint
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_meta_int';
CREATE FUNCTION trialvault.meta_date(doc xml, xpath text) RETURNS date
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_meta_date';
CREATE FUNCTION trialvault.meta_date(doc xml, xpath text, nsmap text[]) RETURNS date
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'tv_meta_date';
COMMENT ON FUNCTION trialvault.meta_text(xml, text) IS
	'String value of the first node an XPath selects in the metadata, or NULL. Usable in expression indexes.';
COMMENT ON FUNCTION trialvault.meta_text(xml, text, text[]) IS
	'meta_text with a namespace map given as {{prefix, uri}, ...}.';
COMMENT ON FUNCTION trialvault.meta_int(xml, text) IS
	'First XPath match as bigint, NULL if none; an error if it is not an integer.';
COMMENT ON FUNCTION trialvault.meta_int(xml, text, text[]) IS
	'meta_int with a namespace map given as {{prefix, uri}, ...}.';
COMMENT ON FUNCTION trialvault.meta_date(xml, text) IS
	'First XPath match as date (YYYY-MM-DD only, independent of DateStyle), NULL if none.';
COMMENT ON FUNCTION trialvault.meta_date(xml, text, text[]) IS
	'meta_date with a namespace map given as {{prefix, uri}, ...}.';

CREATE FUNCTION trialvault._check_xsd(xsd xml) RETURNS void
	LANGUAGE C STRICT
	AS 'MODULE_PATHNAME', 'tv_check_xsd';
COMMENT ON FUNCTION trialvault._check_xsd(xml) IS
	'Internal: compiles an XSD with libxml2 and raises its first error.';

CREATE FUNCTION trialvault._validate(xsd xml, doc xml, max_errors integer,
	OUT line integer, OUT col integer, OUT message text)
	RETURNS SETOF record
	LANGUAGE C STRICT
	AS 'MODULE_PATHNAME', 'tv_validate_xml';
COMMENT ON FUNCTION trialvault._validate(xml, xml, integer) IS
	'Internal: validates a document against an XSD, one row per error.';

REVOKE ALL ON FUNCTION trialvault._check_xsd(xml) FROM PUBLIC;
REVOKE ALL ON FUNCTION trialvault._validate(xml, xml, integer) FROM PUBLIC;

-- Registered schemas: insert-only and chained; a new registration under the
-- same name is a new version.

CREATE TABLE trialvault.metadata_schemas (
	study text NOT NULL CHECK (study ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
	name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
	version integer NOT NULL CHECK (version > 0),
	xsd xml NOT NULL,
	xsd_sha256 bytea NOT NULL,
	registered_by name NOT NULL DEFAULT session_user,
	registered_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (study, name, version)
);
COMMENT ON TABLE trialvault.metadata_schemas IS
	'XSDs registered per study for metadata validation; insert-only and hash-chained. A re-registration is a new version.';
SELECT trialvault.protect('trialvault.metadata_schemas');
SELECT pg_catalog.pg_extension_config_dump('trialvault.metadata_schemas', '');

-- PHI screening.  The built-in default rules are code, versioned with the
-- extension; a study's own rules are data in an insert-only, chained table.
-- A study switches a default (or an earlier rule of its own) off with a
-- later row of the same rule_name, kind and expr and enabled = false.

CREATE FUNCTION trialvault.default_phi_rules()
	RETURNS TABLE (rule_name text, kind text, expr text)
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$
	VALUES
		('patient-name', 'name', 'PatientName'),
		('patient-name', 'name', 'PatientsName'),
		('patient-birth-date', 'name', 'PatientBirthDate'),
		('patient-birth-date', 'name', 'PatientsBirthDate'),
		('patient-birth-date', 'name', 'BirthDate'),
		('patient-birth-date', 'name', 'DateOfBirth'),
		('patient-birth-date', 'name', 'DOB'),
		('patient-id', 'name', 'PatientID'),
		('patient-address', 'name', 'PatientAddress'),
		('patient-address', 'name', 'PatientsAddress'),
		('ssn', 'name', 'SSN'),
		('ssn', 'name', 'SocialSecurityNumber'),
		('mrn', 'name', 'MRN'),
		('mrn', 'name', 'MedicalRecordNumber'),
		('phone', 'name', 'Phone'),
		('phone', 'name', 'PhoneNumber'),
		('phone', 'name', 'PatientTelephoneNumbers'),
		('email', 'name', 'Email'),
		('email', 'name', 'EmailAddress'),
		('ssn-value', 'pattern', '(^|[^0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}([^0-9]|$)'),
		('email-value', 'pattern', '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}')
$$;
COMMENT ON FUNCTION trialvault.default_phi_rules() IS
	'The built-in PHI screening rules that apply to every study (names matched case-insensitively, as elements or attributes; value patterns as POSIX regexes).';

CREATE TABLE trialvault.phi_rules (
	rule_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	study text NOT NULL CHECK (study ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
	rule_name text NOT NULL CHECK (rule_name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
	kind text NOT NULL CHECK (kind IN ('element', 'attribute', 'name', 'xpath', 'pattern')),
	expr text NOT NULL CHECK (expr <> '' AND length(expr) <= 1000),
	enabled boolean NOT NULL DEFAULT true,
	created_by name NOT NULL DEFAULT session_user,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trialvault.phi_rules IS
	'A study''s own PHI screening rules, insert-only and hash-chained. kind: element/attribute/name (a name, case-insensitive; name = either), xpath (an XPath that must select nothing), pattern (a POSIX regex no text or attribute value may match).';
SELECT trialvault.protect('trialvault.phi_rules');
SELECT pg_catalog.pg_extension_config_dump('trialvault.phi_rules', '');
-- The identity sequence too, or rule_id would restart at 1 after a restore.
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('trialvault.phi_rules', 'rule_id'), '');

-- The rules in force for a study: the defaults and its own, the latest row
-- of each (rule_name, kind, expr) deciding whether it is enabled.
CREATE FUNCTION trialvault.phi_rules_for(study text)
	RETURNS TABLE (rule_name text, kind text, expr text)
	LANGUAGE sql STABLE
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT r.rule_name, r.kind, r.expr
	FROM (SELECT DISTINCT ON (a.rule_name, a.kind, a.expr) a.rule_name, a.kind, a.expr, a.enabled
		  FROM (SELECT d.rule_name, d.kind, d.expr, true AS enabled, 0::bigint AS ord
				FROM trialvault.default_phi_rules() d
				UNION ALL
				SELECT p.rule_name, p.kind, p.expr, p.enabled, p.tv_seq
				FROM trialvault.phi_rules p
				WHERE p.study = $1) a
		  ORDER BY a.rule_name, a.kind, a.expr, a.ord DESC) r
	WHERE r.enabled
$$;
COMMENT ON FUNCTION trialvault.phi_rules_for(text) IS
	'The PHI screening rules in force for a study: the built-in defaults and the study''s own, the latest row of each deciding.';

CREATE FUNCTION trialvault.add_phi_rule(study text, rule_name text, kind text, expr text,
	enabled boolean DEFAULT true)
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	id bigint;
BEGIN
	PERFORM trialvault._require_args('add_phi_rule', study, rule_name, kind, expr, enabled::text);
	IF kind = 'pattern' THEN
		BEGIN
			PERFORM '' ~ expr;
		EXCEPTION WHEN invalid_regular_expression THEN
			RAISE EXCEPTION 'PHI rule % has an invalid regular expression', rule_name
				USING ERRCODE = 'invalid_regular_expression', DETAIL = SQLERRM;
		END;
	ELSIF kind = 'xpath' THEN
		BEGIN
			PERFORM xpath_exists(expr, '<x/>'::xml);
		EXCEPTION WHEN OTHERS THEN
			RAISE EXCEPTION 'PHI rule % has an invalid XPath expression', rule_name
				USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
		END;
	END IF;
	INSERT INTO trialvault.phi_rules (study, rule_name, kind, expr, enabled)
		VALUES (add_phi_rule.study, add_phi_rule.rule_name, add_phi_rule.kind,
				add_phi_rule.expr, add_phi_rule.enabled)
		RETURNING rule_id INTO id;
	RETURN id;
END
$$;
COMMENT ON FUNCTION trialvault.add_phi_rule(text, text, text, text, boolean) IS
	'Adds a PHI screening rule for a study (kind element, attribute, name, xpath or pattern); enabled = false switches a rule of that name, kind and expression off for the study.';
REVOKE ALL ON FUNCTION trialvault.add_phi_rule(text, text, text, text, boolean) FROM PUBLIC;

-- Raise 22004 when any argument is NULL: a NULL verdict would read as "no problem".
CREATE FUNCTION trialvault._require_args(func text, VARIADIC args text[]) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF array_position(args, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'arguments of trialvault.% must not be NULL', func
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
END
$$;
COMMENT ON FUNCTION trialvault._require_args(text, text[]) IS
	'Internal: raises null_value_not_allowed naming the function when an argument is NULL.';

CREATE FUNCTION trialvault._screen_nodes(doc xml, rule_names text[], kinds text[],
	exprs text[])
	RETURNS TABLE (rule_name text, kind text, path text)
	LANGUAGE C STABLE
	AS 'MODULE_PATHNAME', 'tv_screen_nodes';
REVOKE ALL ON FUNCTION trialvault._screen_nodes(xml, text[], text[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION trialvault._screen_nodes(xml, text[], text[], text[]) IS
	'Internal: the element, attribute, name and pattern rules (given as parallel arrays) that match the metadata, with where.';

CREATE FUNCTION trialvault.screen_metadata(study text, doc xml)
	RETURNS TABLE (rule_name text, kind text, path text)
	LANGUAGE plpgsql STABLE
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	names text[];
	kinds text[];
	exprs text[];
BEGIN
	PERFORM trialvault._require_args('screen_metadata', study, doc::text);
	SELECT coalesce(array_agg(r.rule_name), '{}'), coalesce(array_agg(r.kind), '{}'),
		   coalesce(array_agg(r.expr), '{}')
		INTO names, kinds, exprs
		FROM trialvault.phi_rules_for(screen_metadata.study) r;
	RETURN QUERY
	SELECT DISTINCT s.rule_name, s.kind, s.path
	FROM trialvault._screen_nodes(screen_metadata.doc, names, kinds, exprs) s
	UNION
	SELECT u.n, u.k, NULL
	FROM unnest(names, kinds, exprs) AS u(n, k, e)
	-- CASE, not AND: the regexes of pattern rules are no XPath and must never reach xpath_exists.
	WHERE CASE WHEN u.k = 'xpath' THEN xpath_exists(u.e, screen_metadata.doc) ELSE false END
	ORDER BY 1, 3;
END
$$;
COMMENT ON FUNCTION trialvault.screen_metadata(text, xml) IS
	'PHI screening: the rules in force for the study that the metadata matches, with where (never the value). No rows means clean.';

CREATE FUNCTION trialvault.register_metadata_schema(study text, name text, xsd xml)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v integer;
BEGIN
	PERFORM trialvault._require_args('register_metadata_schema', study, name, xsd::text);
	PERFORM trialvault._check_xsd(xsd);
	-- Versions of one name are numbered in order; serialize registrations of it.
	PERFORM pg_advisory_xact_lock(hashtext('trialvault.metadata_schemas'), hashtext(study || '/' || name));
	SELECT coalesce(max(s.version), 0) + 1 INTO v
		FROM trialvault.metadata_schemas s
		WHERE s.study = register_metadata_schema.study AND s.name = register_metadata_schema.name;
	INSERT INTO trialvault.metadata_schemas (study, name, version, xsd, xsd_sha256)
		VALUES (register_metadata_schema.study, register_metadata_schema.name, v, xsd,
				trialvault.metadata_sha256(xsd));
	RETURN v;
END
$$;
COMMENT ON FUNCTION trialvault.register_metadata_schema(text, text, xml) IS
	'Registers an XSD for a study under a name and returns its version (1, 2, ...); a malformed XSD is refused with libxml2''s message.';
REVOKE ALL ON FUNCTION trialvault.register_metadata_schema(text, text, xml) FROM PUBLIC;

-- The newest version of a schema, or an error naming what is missing.
CREATE FUNCTION trialvault._current_schema(study text, name text, OUT version integer, OUT xsd xml)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	SELECT s.version, s.xsd INTO version, xsd
		FROM trialvault.metadata_schemas s
		WHERE s.study = _current_schema.study AND s.name = _current_schema.name
		ORDER BY s.version DESC LIMIT 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no metadata schema "%" is registered for study "%"', name, study
			USING ERRCODE = 'undefined_object',
				  HINT = 'Register one with trialvault.register_metadata_schema().';
	END IF;
END
$$;
COMMENT ON FUNCTION trialvault._current_schema(text, text) IS
	'Internal: the newest registered version of a metadata schema.';

CREATE FUNCTION trialvault.metadata_errors(study text, name text, doc xml)
	RETURNS TABLE (line integer, col integer, message text)
	LANGUAGE plpgsql STABLE
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM trialvault._require_args('metadata_errors', study, name, doc::text);
	RETURN QUERY
	SELECT v.line, v.col, v.message
	FROM trialvault._current_schema(metadata_errors.study, metadata_errors.name) s,
		 trialvault._validate(s.xsd, metadata_errors.doc, 100) v;
END
$$;
COMMENT ON FUNCTION trialvault.metadata_errors(text, text, xml) IS
	'Validation errors (line, column, libxml2 message) of metadata against the newest version of a registered schema; no rows when valid.';

CREATE FUNCTION trialvault.validate_metadata(study text, name text, doc xml)
	RETURNS boolean
	LANGUAGE plpgsql STABLE
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM trialvault._require_args('validate_metadata', study, name, doc::text);
	RETURN NOT EXISTS (SELECT 1 FROM trialvault.metadata_errors(study, name, doc));
END
$$;
COMMENT ON FUNCTION trialvault.validate_metadata(text, text, xml) IS
	'True when the metadata is valid against the newest version of the registered schema.';

-- Per-study default schema: insert-only, the latest row of a study wins.
CREATE TABLE trialvault.metadata_defaults (
	study text NOT NULL CHECK (study ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
	name text NOT NULL,
	set_by name NOT NULL DEFAULT session_user,
	set_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trialvault.metadata_defaults IS
	'Default metadata schema of each study (the latest row of a study wins); insert-only and hash-chained.';
SELECT trialvault.protect('trialvault.metadata_defaults');
SELECT pg_catalog.pg_extension_config_dump('trialvault.metadata_defaults', '');

CREATE FUNCTION trialvault.set_default_metadata_schema(study text, name text) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM trialvault._require_args('set_default_metadata_schema', study, name);
	PERFORM trialvault._current_schema(study, name);
	INSERT INTO trialvault.metadata_defaults (study, name)
		VALUES (set_default_metadata_schema.study, set_default_metadata_schema.name);
END
$$;
COMMENT ON FUNCTION trialvault.set_default_metadata_schema(text, text) IS
	'Makes a registered schema the default that trialvault.check_metadata() validates a study''s metadata against.';
REVOKE ALL ON FUNCTION trialvault.set_default_metadata_schema(text, text) FROM PUBLIC;

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
CREATE FUNCTION trialvault._check_metadata_report(study text, doc xml, schema_name text)
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
COMMENT ON FUNCTION trialvault._check_metadata_report(text, xml, text) IS
	'Internal: the full metadata check in SQL; raises the PHI (22000) or validation (2200M) error for what inspect_metadata() found.';
REVOKE ALL ON FUNCTION trialvault._check_metadata_report(text, xml, text) FROM PUBLIC;

CREATE FUNCTION trialvault.inspect_metadata(study text, doc xml, schema_name text DEFAULT NULL,
	OUT checked_schema text, OUT checked_version integer, OUT metadata_sha256 bytea)
	RETURNS record
	LANGUAGE C STABLE
	AS 'MODULE_PATHNAME', 'tv_inspect_metadata';
COMMENT ON FUNCTION trialvault.inspect_metadata(text, xml, text) IS
	'Checks metadata as document loading does, from one parse: PHI screening (22000 naming the rule, never the value), then validation against the named schema or the study''s default (2200M), then the SHA-256 of its exclusive C14N. Returns the schema and version checked against (NULL when none applies) and that hash.';

CREATE FUNCTION trialvault.check_metadata(study text, doc xml, schema_name text DEFAULT NULL)
	RETURNS integer
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM trialvault._require_args('check_metadata', study, doc::text);
	RETURN (SELECT i.checked_version FROM trialvault.inspect_metadata(study, doc, schema_name) i);
END
$$;
COMMENT ON FUNCTION trialvault.check_metadata(text, xml, text) IS
	'Checks metadata as document loading does: screens it for PHI (22000 naming the rule, never the value), then validates it against the named schema or the study''s default (2200M with the first errors, values masked). Returns the schema version checked against, or NULL when no schema applies. See inspect_metadata() for the hash as well.';


-- Namespace prefixes per study, for XPath in meta_text/meta_int/meta_date:
-- pass trialvault.study_nsmap(study) as the nsmap argument.
CREATE TABLE trialvault.metadata_namespaces (
	study text NOT NULL CHECK (study ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
	prefix text NOT NULL CHECK (prefix ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$'),
	uri text NOT NULL CHECK (uri <> '' AND length(uri) <= 1000),
	registered_by name NOT NULL DEFAULT session_user,
	registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trialvault.metadata_namespaces IS
	'XPath namespace prefixes registered per study (the latest row of a prefix wins); insert-only and hash-chained.';
SELECT trialvault.protect('trialvault.metadata_namespaces');
SELECT pg_catalog.pg_extension_config_dump('trialvault.metadata_namespaces', '');

CREATE FUNCTION trialvault.register_metadata_namespace(study text, prefix text, uri text) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM trialvault._require_args('register_metadata_namespace', study, prefix, uri);
	INSERT INTO trialvault.metadata_namespaces (study, prefix, uri)
		VALUES (register_metadata_namespace.study, register_metadata_namespace.prefix,
				register_metadata_namespace.uri);
END
$$;
COMMENT ON FUNCTION trialvault.register_metadata_namespace(text, text, text) IS
	'Registers (or re-points) an XPath namespace prefix for a study''s metadata.';
REVOKE ALL ON FUNCTION trialvault.register_metadata_namespace(text, text, text) FROM PUBLIC;

CREATE FUNCTION trialvault.study_nsmap(study text) RETURNS text[]
	LANGUAGE sql STABLE STRICT
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT coalesce(array_agg(ARRAY[n.prefix, n.uri] ORDER BY n.prefix), '{}'::text[])
	FROM (SELECT DISTINCT ON (m.prefix) m.prefix, m.uri
		  FROM trialvault.metadata_namespaces m
		  WHERE m.study = $1
		  ORDER BY m.prefix, m.tv_seq DESC) n
$$;
COMMENT ON FUNCTION trialvault.study_nsmap(text) IS
	'The namespace map {{prefix, uri}, ...} registered for a study, to pass to meta_text/meta_int/meta_date.';

-- =====================================================================
-- 4. Studies, roles and keys
-- =====================================================================

-- Every table of this section and the next is insert-only and chained,
-- dumped by pg_dump with its rows (and its identity sequence), and granted
-- to nobody: users reach them only through the functions and views below.

CREATE TABLE trialvault.studies (
	study_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	code text NOT NULL UNIQUE
		CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	title text NOT NULL CHECK (title <> '' AND length(title) <= 1000),
	created_by name NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trialvault.studies IS
	'Clinical studies (insert-only). Created by trialvault.create_study().';
SELECT trialvault.protect('trialvault.studies');
SELECT pg_catalog.pg_extension_config_dump('trialvault.studies', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.studies_study_id_seq', '');
REVOKE ALL ON trialvault.studies FROM PUBLIC;

CREATE TABLE trialvault.sites (
	study text NOT NULL REFERENCES trialvault.studies (code),
	site text NOT NULL CHECK (site ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	name text NOT NULL CHECK (name <> '' AND length(name) <= 1000),
	created_by name NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (study, site)
);
COMMENT ON TABLE trialvault.sites IS
	'Sites of each study (insert-only). Created by trialvault.add_site().';
SELECT trialvault.protect('trialvault.sites');
SELECT pg_catalog.pg_extension_config_dump('trialvault.sites', '');
REVOKE ALL ON trialvault.sites FROM PUBLIC;

CREATE TABLE trialvault.memberships (
	event_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	study text NOT NULL REFERENCES trialvault.studies (code),
	site text,
	member name NOT NULL,
	study_role text NOT NULL
		CHECK (study_role IN ('investigator', 'site_staff', 'monitor', 'safety', 'sponsor', 'auditor')),
	granted boolean NOT NULL,
	changed_by name NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	FOREIGN KEY (study, site) REFERENCES trialvault.sites (study, site),
	CHECK ((site IS NULL) = (study_role IN ('monitor', 'safety', 'sponsor', 'auditor')))
);
CREATE INDEX memberships_lookup ON trialvault.memberships (study, member, event_id);
COMMENT ON TABLE trialvault.memberships IS
	'Grant and revoke events of study roles (insert-only). The current state of (study, site, member, role) is its newest event; see trialvault.current_memberships.';
SELECT trialvault.protect('trialvault.memberships');
SELECT pg_catalog.pg_extension_config_dump('trialvault.memberships', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.memberships_event_id_seq', '');
REVOKE ALL ON trialvault.memberships FROM PUBLIC;

CREATE TABLE trialvault.monitor_authorizations (
	event_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	study text NOT NULL,
	site text NOT NULL,
	monitor name NOT NULL,
	valid_until timestamptz,
	granted boolean NOT NULL,
	changed_by name NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	FOREIGN KEY (study, site) REFERENCES trialvault.sites (study, site),
	CHECK (granted = (valid_until IS NOT NULL))
);
CREATE INDEX monitor_authorizations_lookup
	ON trialvault.monitor_authorizations (study, site, monitor, event_id);
COMMENT ON TABLE trialvault.monitor_authorizations IS
	'Monitor authorizations and their revocations, per site (insert-only). The newest event for (study, site, monitor) counts, and only until valid_until.';
SELECT trialvault.protect('trialvault.monitor_authorizations');
SELECT pg_catalog.pg_extension_config_dump('trialvault.monitor_authorizations', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.monitor_authorizations_event_id_seq', '');
REVOKE ALL ON trialvault.monitor_authorizations FROM PUBLIC;

CREATE TABLE trialvault.study_keys (
	study_id integer NOT NULL REFERENCES trialvault.studies (study_id),
	study text NOT NULL,
	version integer NOT NULL CHECK (version > 0),
	master_key_id text NOT NULL,
	wrapped bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (study_id, version, master_key_id)
);
COMMENT ON TABLE trialvault.study_keys IS
	'Per-study data keys, only ever wrapped (AES-256-GCM) under the master key whose id is given (insert-only). A master key rotation adds rows for the new key id.';
SELECT trialvault.protect('trialvault.study_keys');
SELECT pg_catalog.pg_extension_config_dump('trialvault.study_keys', '');
REVOKE ALL ON trialvault.study_keys FROM PUBLIC;

-- The audit trail of every change above and below; the log writer also
-- writes refusals that must outlive their transaction into it.
CREATE TABLE trialvault.audit_events (
	event_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	event text NOT NULL,
	actor name NOT NULL,
	session_user_name name NOT NULL,
	occurred_at timestamptz NOT NULL DEFAULT now(),
	study text,
	site text,
	doc_id bigint,
	detail text,
	client_addr inet,
	application_name text,
	backend_pid integer NOT NULL DEFAULT pg_backend_pid(),
	logged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_study_time ON trialvault.audit_events (study, occurred_at);
COMMENT ON TABLE trialvault.audit_events IS
	'Audit trail (insert-only, chained): study, site, role, authorization, key and document events, and refusals that must outlive their transaction (written by the log writer).';
SELECT trialvault.protect('trialvault.audit_events');
SELECT pg_catalog.pg_extension_config_dump('trialvault.audit_events', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.audit_events_event_id_seq', '');
REVOKE ALL ON trialvault.audit_events FROM PUBLIC;

CREATE FUNCTION trialvault._encrypt(study_id integer, study text, doc_id bigint,
	field text, plaintext bytea) RETURNS bytea
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_encrypt_sql';
COMMENT ON FUNCTION trialvault._encrypt(integer, text, bigint, text, bytea) IS
	'Internal: AES-256-GCM encryption of one field under the study''s newest data key, bound to study, document id and field name.';

CREATE FUNCTION trialvault._ciphertext_ok(study_id integer, study text, doc_id bigint,
	field text, ciphertext bytea) RETURNS boolean
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_ciphertext_ok';
COMMENT ON FUNCTION trialvault._ciphertext_ok(integer, text, bigint, text, bytea) IS
	'Internal: whether a stored ciphertext decrypts and authenticates for that study, document and field (the plaintext is wiped, never returned).';

CREATE FUNCTION trialvault._new_study_key(study_id integer, study text) RETURNS integer
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_new_study_key';
COMMENT ON FUNCTION trialvault._new_study_key(integer, text) IS
	'Internal: adds a random data key, wrapped under the master key, as the study''s next version.';

CREATE FUNCTION trialvault._rewrap_keys() RETURNS integer
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_rewrap_keys';
COMMENT ON FUNCTION trialvault._rewrap_keys() IS
	'Internal: wraps every data key found under the previous master key again under the current one.';

CREATE FUNCTION trialvault._audit(event text, actor name, study text, site text,
	doc_id bigint, detail text) RETURNS void
	LANGUAGE sql AS $$
	INSERT INTO trialvault.audit_events
		(event, actor, session_user_name, study, site, doc_id, detail, client_addr, application_name)
	VALUES ($1, $2, session_user, $3, $4, $5, $6, inet_client_addr(),
			current_setting('application_name'))
$$;
COMMENT ON FUNCTION trialvault._audit(text, name, text, text, bigint, text) IS
	'Internal: records an audit event in the caller''s transaction (it commits or rolls back with the change it describes).';

CREATE FUNCTION trialvault._audit_durable(event text, actor name, study text,
	site text, doc_id bigint, detail text) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_audit_durable';
COMMENT ON FUNCTION trialvault._audit_durable(text, name, text, text, bigint, text) IS
	'Internal: records an audit event through the log writer, so that it survives the caller''s rollback.';

CREATE FUNCTION trialvault._require_admin(requester name, what text) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	IF NOT pg_has_role(requester, 'trialvault_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to %', what
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s is not a member of trialvault_admin.', requester),
				  HINT = 'Studies, sites, study roles and keys are managed by members of role trialvault_admin.';
	END IF;
END
$$;
COMMENT ON FUNCTION trialvault._require_admin(name, text) IS
	'Internal: refuses (42501) unless the requester is a member of trialvault_admin (or a superuser).';

CREATE FUNCTION trialvault._require_study(code text) RETURNS integer
	LANGUAGE plpgsql AS $$
DECLARE
	id integer;
BEGIN
	SELECT s.study_id INTO id FROM trialvault.studies s WHERE s.code = _require_study.code;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'study "%" does not exist', left(code, 100)
			USING ERRCODE = 'undefined_object',
				  HINT = 'trialvault.create_study() creates studies.';
	END IF;
	RETURN id;
END
$$;
COMMENT ON FUNCTION trialvault._require_study(text) IS
	'Internal: the study''s id, or 42704 when there is no such study.';

CREATE FUNCTION trialvault._require_site(study text, site text) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_study(study);
	IF NOT EXISTS (SELECT 1 FROM trialvault.sites s
				   WHERE s.study = _require_site.study AND s.site = _require_site.site) THEN
		RAISE EXCEPTION 'site "%" of study "%" does not exist', left(site, 100), left(study, 100)
			USING ERRCODE = 'undefined_object',
				  HINT = 'trialvault.add_site() adds sites.';
	END IF;
END
$$;
COMMENT ON FUNCTION trialvault._require_site(text, text) IS
	'Internal: 42704 unless the study has that site.';

CREATE FUNCTION trialvault._current_roles(study text, member name)
	RETURNS TABLE (site text, study_role text)
	LANGUAGE sql STABLE AS $$
	-- A grant no later event of the same (site, role) has overridden.  An
	-- anti-join rather than DISTINCT ON: it runs on every decryption and
	-- every view query, and needs no sort.
	SELECT m.site, m.study_role
	FROM trialvault.memberships m
	WHERE m.study = $1 AND m.member = $2 AND m.granted
	  AND NOT EXISTS (SELECT 1 FROM trialvault.memberships l
					  WHERE l.study = m.study AND l.member = m.member
						AND l.study_role = m.study_role
						AND l.site IS NOT DISTINCT FROM m.site
						AND l.event_id > m.event_id)
$$;
COMMENT ON FUNCTION trialvault._current_roles(text, name) IS
	'Internal: the roles a member holds now in a study (site NULL for study-wide roles).';

CREATE FUNCTION trialvault._monitor_state(study text, site text, monitor name,
	since timestamptz DEFAULT '-infinity') RETURNS text
	LANGUAGE sql AS $$
	SELECT CASE WHEN a.event_id IS NULL OR a.changed_at < $4 THEN 'none'
				WHEN NOT a.granted THEN 'revoked'
				WHEN a.valid_until <= clock_timestamp() THEN 'expired'
				ELSE 'valid' END
	FROM (SELECT 1) one
	LEFT JOIN LATERAL (SELECT m.event_id, m.granted, m.valid_until, m.changed_at
					   FROM trialvault.monitor_authorizations m
					   WHERE m.study = $1 AND m.site = $2 AND m.monitor = $3
					   ORDER BY m.event_id DESC LIMIT 1) a ON true
$$;
COMMENT ON FUNCTION trialvault._monitor_state(text, text, name, timestamptz) IS
	'Internal: a monitor''s authorization for a site right now: valid, expired, revoked or none. Authorizations given before "since" (the monitor''s current role grant) count as none: revoking the monitor role ends them for good.';

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

-- ---------------------------------------------------------------------
-- Management.  The public functions are C entry points (tv_call_as_owner)
-- that call the function of the same name with a leading underscore.
-- ---------------------------------------------------------------------

CREATE FUNCTION trialvault._create_study(requester name, code text, title text) RETURNS integer
	LANGUAGE plpgsql AS $$
DECLARE
	id integer;
BEGIN
	PERFORM trialvault._require_args('create_study', code, title);
	PERFORM trialvault._require_admin(requester, 'create a study');
	IF code !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid study code "%"', left(code, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A study code is 1 to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF title = '' OR length(title) > 1000 THEN
		RAISE EXCEPTION 'a study title must have 1 to 1000 characters'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM trialvault.studies s WHERE s.code = _create_study.code) THEN
		RAISE EXCEPTION 'study "%" already exists', code USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO trialvault.studies (code, title, created_by)
		VALUES (code, title, requester) RETURNING study_id INTO id;
	PERFORM trialvault._new_study_key(id, code);
	INSERT INTO trialvault.signature_policies (study, required, set_by) VALUES (code, true, requester);
	PERFORM trialvault._audit('study_created', requester, code, NULL, NULL, title);
	PERFORM trialvault._audit('data_key_created', requester, code, NULL, NULL, 'version 1');
	RETURN id;
END
$$;

CREATE FUNCTION trialvault._add_site(requester name, study text, site text, name text) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_args('add_site', study, site, name);
	PERFORM trialvault._require_admin(requester, 'add a site');
	PERFORM trialvault._require_study(study);
	IF site !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid site code "%"', left(site, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A site code is 1 to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF name = '' OR length(name) > 1000 THEN
		RAISE EXCEPTION 'a site name must have 1 to 1000 characters'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM trialvault.sites s WHERE s.study = _add_site.study AND s.site = _add_site.site) THEN
		RAISE EXCEPTION 'site "%" of study "%" already exists', site, study
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO trialvault.sites (study, site, name, created_by)
		VALUES (study, site, name, requester);
	PERFORM trialvault._audit('site_added', requester, study, site, NULL, name);
END
$$;

-- Checks shared by grant_role and revoke_role.
CREATE FUNCTION trialvault._check_role_args(requester name, what text, member name,
	study text, site text, study_role text) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_args(what, member, study, study_role);
	PERFORM trialvault._require_admin(requester, what);
	PERFORM trialvault._require_study(study);
	IF study_role NOT IN ('investigator', 'site_staff', 'monitor', 'safety', 'sponsor', 'auditor') THEN
		RAISE EXCEPTION 'unknown study role "%"', left(study_role, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Study roles: investigator, site_staff (per site); monitor, safety, sponsor, auditor (study-wide, site NULL).';
	END IF;
	IF study_role IN ('investigator', 'site_staff') THEN
		IF site IS NULL THEN
			RAISE EXCEPTION 'study role % needs a site', study_role
				USING ERRCODE = 'null_value_not_allowed',
					  HINT = 'Investigators and site staff belong to one site.';
		END IF;
		PERFORM trialvault._require_site(study, site);
	ELSIF site IS NOT NULL THEN
		RAISE EXCEPTION 'study role % is study-wide: site must be NULL', study_role
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Monitors get sites through trialvault.authorize_monitor().';
	END IF;
END
$$;

CREATE FUNCTION trialvault._grant_role(requester name, member name, study text,
	site text, study_role text) RETURNS void
	LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	PERFORM trialvault._check_role_args(requester, 'grant_role', member, study, site, study_role);
	SELECT rolcanlogin INTO r FROM pg_catalog.pg_roles WHERE rolname = member;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'role "%" does not exist', member USING ERRCODE = 'undefined_object';
	ELSIF NOT r.rolcanlogin THEN
		RAISE EXCEPTION 'role "%" cannot log in', member
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Study roles are granted to login roles, one per person.';
	END IF;
	IF NOT pg_has_role(member, 'trialvault_user', 'MEMBER') THEN
		EXECUTE format('GRANT trialvault_user TO %I', member);
	END IF;
	IF EXISTS (SELECT 1 FROM trialvault._current_roles(study, member) c
			   WHERE c.study_role = _grant_role.study_role
				 AND c.site IS NOT DISTINCT FROM _grant_role.site) THEN
		RETURN;
	END IF;
	INSERT INTO trialvault.memberships (study, site, member, study_role, granted, changed_by)
		VALUES (study, site, member, study_role, true, requester);
	PERFORM trialvault._audit('role_granted', requester, study, site, NULL,
							  format('%s to %s', study_role, member));
END
$$;

CREATE FUNCTION trialvault._revoke_role(requester name, member name, study text,
	site text, study_role text) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._check_role_args(requester, 'revoke_role', member, study, site, study_role);
	IF NOT EXISTS (SELECT 1 FROM trialvault._current_roles(study, member) c
				   WHERE c.study_role = _revoke_role.study_role
					 AND c.site IS NOT DISTINCT FROM _revoke_role.site) THEN
		RAISE NOTICE '% does not hold study role % in study % (site %); nothing to revoke',
			member, study_role, study, coalesce(site, 'none');
		RETURN;
	END IF;
	INSERT INTO trialvault.memberships (study, site, member, study_role, granted, changed_by)
		VALUES (study, site, member, study_role, false, requester);
	PERFORM trialvault._audit('role_revoked', requester, study, site, NULL,
							  format('%s from %s', study_role, member));
END
$$;

CREATE FUNCTION trialvault._require_investigator(requester name, what text, study text, site text)
	RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_site(study, site);
	IF NOT EXISTS (SELECT 1 FROM trialvault._current_roles(study, requester) c
				   WHERE c.study_role = 'investigator' AND c.site = _require_investigator.site) THEN
		RAISE EXCEPTION 'permission denied to %', what
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s is not an investigator of site %s in study %s.', requester, site, study),
				  HINT = 'Only an investigator of the site authorizes its monitors.';
	END IF;
END
$$;

CREATE FUNCTION trialvault._authorize_monitor(requester name, monitor name, study text,
	site text, valid_until timestamptz) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_args('authorize_monitor', monitor, study, site, valid_until::text);
	PERFORM trialvault._require_investigator(requester, 'authorize a monitor', study, site);
	IF NOT EXISTS (SELECT 1 FROM trialvault._current_roles(study, monitor) c
				   WHERE c.study_role = 'monitor') THEN
		RAISE EXCEPTION '% does not hold the monitor role in study %', monitor, study
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A trialvault_admin grants it first: trialvault.grant_role(member, study, NULL, ''monitor'').';
	END IF;
	IF valid_until <= clock_timestamp() THEN
		RAISE EXCEPTION 'valid_until must lie in the future'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO trialvault.monitor_authorizations (study, site, monitor, valid_until, granted, changed_by)
		VALUES (study, site, monitor, valid_until, true, requester);
	PERFORM trialvault._audit('monitor_authorized', requester, study, site, NULL,
							  format('%s until %s', monitor, valid_until));
END
$$;

CREATE FUNCTION trialvault._revoke_monitor(requester name, monitor name, study text, site text)
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

CREATE FUNCTION trialvault._rotate_study_key(requester name, study text) RETURNS integer
	LANGUAGE plpgsql AS $$
DECLARE
	v integer;
BEGIN
	PERFORM trialvault._require_args('rotate_study_key', study);
	PERFORM trialvault._require_admin(requester, 'rotate a study key');
	v := trialvault._new_study_key(trialvault._require_study(study), study);
	PERFORM trialvault._audit('data_key_rotated', requester, study, NULL, NULL, format('version %s', v));
	RETURN v;
END
$$;

CREATE FUNCTION trialvault._rewrap_data_keys(requester name) RETURNS integer
	LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = requester) THEN
		RAISE EXCEPTION 'permission denied to re-wrap data keys'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Master key rotation is done by a superuser.';
	END IF;
	n := trialvault._rewrap_keys();
	PERFORM trialvault._audit('master_key_rewrap', requester, NULL, NULL, NULL,
							  format('%s data key(s) re-wrapped', n));
	RETURN n;
END
$$;

-- =====================================================================
-- 5. Documents and decryption
-- =====================================================================

CREATE TABLE trialvault.documents (
	doc_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	study text NOT NULL,
	site text NOT NULL,
	doc_type text NOT NULL
		CHECK (doc_type IN ('source', 'protocol', 'blank_crf', 'sae', 'eform', 'other')),
	contains_phi boolean NOT NULL,
	metadata xml NOT NULL,
	metadata_schema text,
	metadata_schema_version integer,
	metadata_sha256 bytea NOT NULL,
	content bytea,
	content_enc bytea,
	content_length bigint NOT NULL,
	content_sha256 bytea NOT NULL,
	loaded_by name NOT NULL,
	loaded_at timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (study, site) REFERENCES trialvault.sites (study, site),
	CHECK (CASE WHEN contains_phi THEN content IS NULL AND content_enc IS NOT NULL
		   ELSE content IS NOT NULL AND content_enc IS NULL END)
);
CREATE INDEX documents_site_time ON trialvault.documents (study, site, loaded_at);
COMMENT ON TABLE trialvault.documents IS
	'Source documents (insert-only, chained). Content with PHI is kept only as AES-256-GCM ciphertext in content_enc; content_sha256 is the fingerprint of the plaintext. Certification columns of later versions are added as nullable columns, which leaves the hashes of existing rows unchanged.';
SELECT trialvault.protect('trialvault.documents');
SELECT pg_catalog.pg_extension_config_dump('trialvault.documents', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.documents_doc_id_seq', '');
REVOKE ALL ON trialvault.documents FROM PUBLIC;

CREATE TABLE trialvault.decryption_log (
	log_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	doc_id bigint,
	study text,
	site text,
	requester name NOT NULL,
	session_user_name name NOT NULL,
	requested_at timestamptz NOT NULL,
	granted boolean NOT NULL,
	reason text NOT NULL,
	emergency boolean NOT NULL DEFAULT false,
	emergency_reason text,
	client_addr inet,
	application_name text,
	backend_pid integer NOT NULL,
	logged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decryption_log_site_time ON trialvault.decryption_log (study, site, requested_at);
CREATE INDEX decryption_log_doc ON trialvault.decryption_log (doc_id);
COMMENT ON TABLE trialvault.decryption_log IS
	'One row per call of open_document or emergency_open, granted or refused, committed by the log writer before the call returns (insert-only, chained).';
SELECT trialvault.protect('trialvault.decryption_log');
SELECT pg_catalog.pg_extension_config_dump('trialvault.decryption_log', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.decryption_log_log_id_seq', '');
REVOKE ALL ON trialvault.decryption_log FROM PUBLIC;





-- What open_document and emergency_open decide is decided in C, by the
-- rules of extension/rules.c; SQL gives them data: the roles held now
-- (_current_roles), a monitor's authorization now (_monitor_now) and
-- whether an emergency reason is one (_emergency_reason_ok).

DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
			 WHERE p.pronamespace = 'trialvault'::regnamespace
			   AND p.proname IN ('_encrypt', '_ciphertext_ok', '_new_study_key', '_rewrap_keys', '_audit_durable',
								 '_audit', '_require_admin', '_require_study', '_require_site',
								 '_current_roles', '_monitor_state', '_monitor_now', '_emergency_reason_ok',
								 '_create_study', '_add_site',
								 '_check_role_args', '_grant_role', '_revoke_role',
								 '_require_investigator', '_authorize_monitor', '_revoke_monitor',
								 '_rotate_study_key', '_rewrap_data_keys')
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
		IF obj_description(f, 'pg_proc') IS NULL THEN
			EXECUTE format('COMMENT ON FUNCTION %s IS %L', f,
						   'Internal: body of the public function of the same name without the underscore; runs as the extension owner with the real caller as first argument.');
		END IF;
	END LOOP;
END
$$;

-- ---------------------------------------------------------------------
-- Public functions
-- ---------------------------------------------------------------------

CREATE FUNCTION trialvault.create_study(code text, title text) RETURNS integer
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.create_study(text, text) IS
	'Creates a study and its first data key; returns the study id. Members of trialvault_admin only.';

CREATE FUNCTION trialvault.add_site(study text, site text, name text) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.add_site(text, text, text) IS
	'Adds a site to a study. Members of trialvault_admin only.';

CREATE FUNCTION trialvault.grant_role(member name, study text, site text, study_role text)
	RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.grant_role(name, text, text, text) IS
	'Grants a login role a study role: investigator or site_staff at a site; monitor, safety, sponsor or auditor study-wide (site NULL). Members of trialvault_admin only.';

CREATE FUNCTION trialvault.revoke_role(member name, study text, site text, study_role text)
	RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.revoke_role(name, text, text, text) IS
	'Revokes a study role (a new event; the grant stays on record). Takes effect at once. Members of trialvault_admin only.';

CREATE FUNCTION trialvault.authorize_monitor(monitor name, study text, site text,
	valid_until timestamptz) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.authorize_monitor(name, text, text, timestamptz) IS
	'Authorizes a monitor of the study to open the PHI documents of a site until the given time. Only an investigator of that site may call it.';

CREATE FUNCTION trialvault.revoke_monitor(monitor name, study text, site text) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.revoke_monitor(name, text, text) IS
	'Ends a monitor''s authorization for a site at once. Only an investigator of that site may call it.';

CREATE FUNCTION trialvault.rotate_study_key(study text) RETURNS integer
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.rotate_study_key(text) IS
	'Adds a new data key version for a study: new documents use it, older ones stay readable. Returns the version. Members of trialvault_admin only.';

CREATE FUNCTION trialvault.rewrap_data_keys() RETURNS integer
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.rewrap_data_keys() IS
	'Master key rotation: wraps every data key under the current master key (read from trialvault.previous_master_key_command); no document is touched. Superusers only; see docs/dba-guide.md.';

CREATE FUNCTION trialvault.load_document(study text, site text, doc_type text,
	contains_phi boolean, metadata xml, content bytea, schema_name text DEFAULT NULL,
	signed_at timestamptz DEFAULT NULL, nonce bytea DEFAULT NULL, signature bytea DEFAULT NULL,
	meaning text DEFAULT 'certified_copy')
	RETURNS bigint
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_load_document';
COMMENT ON FUNCTION trialvault.load_document(text, text, text, boolean, xml, bytea, text, timestamptz, bytea, bytea, text) IS
	'Loads a document for a site: the caller must be site staff or investigator there. Metadata is screened for PHI and validated (check_metadata); content with PHI is stored AES-256-GCM encrypted. With signed_at, nonce and signature (the caller''s signature of certification_statement()), the load is certified: checked before anything is stored, countersigned by the server. Returns the document id.';

CREATE FUNCTION trialvault.open_document(doc_id bigint) RETURNS bytea
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_open_document';
COMMENT ON FUNCTION trialvault.open_document(bigint) IS
	'Returns a document''s content if the caller may see it (loader, site staff and investigator of its site, an authorized monitor, safety for sae documents, any member for documents without PHI). Every call, granted or refused, is committed to trialvault.decryption_log before it returns; if that cannot be done, nothing is returned.';

CREATE FUNCTION trialvault.emergency_open(doc_id bigint, reason text) RETURNS bytea
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_emergency_open';
COMMENT ON FUNCTION trialvault.emergency_open(bigint, text) IS
	'Break-glass access for members of trialvault_emergency, with a reason of at least three words; logged as an emergency before the content is returned.';

CREATE FUNCTION trialvault.key_status(
	OUT master_key_loaded boolean,
	OUT master_key_id text,
	OUT problem text,
	OUT previous_key_loaded boolean,
	OUT previous_key_id text)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_key_status';
COMMENT ON FUNCTION trialvault.key_status() IS
	'Whether this server holds a master key (and a previous one during rotation), by key id; never the keys.';

-- ---------------------------------------------------------------------
-- The log writer waits briefly for announced records before a commit
-- ---------------------------------------------------------------------

CREATE FUNCTION trialvault.log_writer_status(
	OUT pid integer,
	OUT database text,
	OUT queued bigint,
	OUT written bigint,
	OUT failed bigint,
	OUT batches bigint,
	OUT queue_size integer,
	OUT announced integer)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_log_writer_status_0_6';
COMMENT ON FUNCTION trialvault.log_writer_status() IS
	'The log writer: its pid (NULL when not running), database, records waiting, records written and failed, commits (batches) since server start, the queue''s size, and the backends deciding a decryption right now (whose records the writer briefly waits for before a commit).';

CREATE VIEW trialvault.current_memberships AS
	SELECT e.study, e.site, e.member, e.study_role, e.changed_by AS granted_by,
		   e.changed_at AS granted_at
	FROM (SELECT DISTINCT ON (m.study, m.site, m.member, m.study_role) m.*
		  FROM trialvault.memberships m
		  ORDER BY m.study, m.site, m.member, m.study_role, m.event_id DESC) e
	WHERE e.granted;
REVOKE ALL ON trialvault.current_memberships FROM PUBLIC;
COMMENT ON VIEW trialvault.current_memberships IS
	'Study roles held now: the newest grant/revoke event of each (study, site, member, role), when it is a grant.';


-- =====================================================================
-- 6. Session and views
-- =====================================================================

-- ---------------------------------------------------------------------
-- The session's open study
-- ---------------------------------------------------------------------

CREATE FUNCTION trialvault._open_study(requester name, code text) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_args('open_study', code);
	PERFORM trialvault._require_study(code);
	IF NOT EXISTS (SELECT 1 FROM trialvault._current_roles(code, requester)) THEN
		RAISE EXCEPTION 'permission denied to open study "%"', code
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s holds no role in study %s.', requester, code),
				  HINT = 'A trialvault_admin grants study roles with trialvault.grant_role().';
	END IF;
	PERFORM trialvault._audit('study_opened', requester, code, NULL, NULL, NULL);
END
$$;

CREATE FUNCTION trialvault.open_study(code text) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_open_study';
COMMENT ON FUNCTION trialvault.open_study(text) IS
	'Makes a study the session''s one open study (closing any other); the caller must hold a role in it. The secured views and open_document work only in the open study.';

CREATE FUNCTION trialvault.close_study() RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_close_study';
COMMENT ON FUNCTION trialvault.close_study() IS
	'Closes the session''s open study: the secured views are empty again.';

CREATE FUNCTION trialvault.current_study() RETURNS text
	LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'tv_current_study';
COMMENT ON FUNCTION trialvault.current_study() IS
	'The session''s open study, or NULL when none is open or the current user no longer holds a role in it. Kept in the backend, not in a setting: SET and set_config() cannot change it.';

REVOKE ALL ON FUNCTION trialvault._open_study(name, text) FROM PUBLIC;
COMMENT ON FUNCTION trialvault._open_study(name, text) IS
	'Internal: body of open_study(); checks the membership and records the event.';

-- What the views filter by.  Written in the views as scalar subqueries, so
-- that they run once per query whatever plan is chosen (as plain calls in a
-- filter they would run once per row).
CREATE FUNCTION trialvault._session_study() RETURNS text
	LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'tv_session_study';
REVOKE ALL ON FUNCTION trialvault._session_study() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault._session_study() TO trialvault_user;
COMMENT ON FUNCTION trialvault._session_study() IS
	'Internal: the study open_study() opened, without the membership check; the views pair it with _session_scope(), which is empty for non-members.';

CREATE FUNCTION trialvault._session_scope(what text) RETURNS text[]
	LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'tv_session_scope';
REVOKE ALL ON FUNCTION trialvault._session_scope(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault._session_scope(text) TO trialvault_user;
COMMENT ON FUNCTION trialvault._session_scope(text) IS
	'What the secured views filter by, for the current user in the session''s open study (empty when none is open or they hold no role there): documents (sites whose documents they may list), log_sites (sites whose decryption log they may read), roles (the roles they hold), monitor_sites (sites they are authorized to monitor now). Only ever about the caller, so it cannot be pointed at someone else.';

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

-- ---------------------------------------------------------------------
-- Secured views.  Owned by the extension's owner (so they read the base
-- tables users cannot), security_barrier (so a user's own WHERE clause runs
-- only on rows the view already let through), and never showing content.
-- ---------------------------------------------------------------------

-- The fingerprint of a PHI document's plaintext is shown only to those who
-- may open the document (by the rules open_document follows, _may_open):
-- anyone else could confirm a guess at its content by hashing it.
CREATE VIEW trialvault.my_documents WITH (security_barrier) AS
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

CREATE VIEW trialvault.my_sites WITH (security_barrier) AS
	SELECT s.study, s.site, s.name, x.my_roles, x.may_load, x.may_open
	FROM trialvault.sites s
	JOIN trialvault._session_sites() x ON x.site = s.site
	WHERE s.study = (SELECT trialvault._session_study());
COMMENT ON VIEW trialvault.my_sites IS
	'Sites of the open study whose documents the current user may list, with their roles there, whether they may load documents, and what they may open.';

CREATE VIEW trialvault.my_roles WITH (security_barrier) AS
	SELECT trialvault.current_study() AS study, r.site, r.study_role
	FROM trialvault._session_roles() r;
COMMENT ON VIEW trialvault.my_roles IS
	'The current user''s roles in the open study (site NULL for study-wide roles).';

CREATE VIEW trialvault.my_decryption_log WITH (security_barrier) AS
	SELECT l.log_id, l.doc_id, l.study, l.site, l.requester, l.session_user_name,
		   l.requested_at, l.granted, l.reason, l.emergency, l.emergency_reason,
		   l.client_addr, l.application_name, l.backend_pid, l.logged_at
	FROM trialvault.decryption_log l,
		 (SELECT trialvault._session_scope('log_sites') AS log_sites,
				 trialvault._session_scope('roles') AS roles) x
	WHERE l.study = (SELECT trialvault._session_study())
	  AND (l.site = ANY (x.log_sites)
		   OR (l.requester = current_user AND 'monitor' = ANY (x.roles)));
COMMENT ON VIEW trialvault.my_decryption_log IS
	'The decryption log of the open study as the current user may read it: investigators the rows of their sites, monitors their own, auditors all.';

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
		WHEN event LIKE 'second\_factor\_%' OR event LIKE 'invitation\_%'
			THEN (detail::jsonb ->> 'member')::name
	END
$$;
COMMENT ON FUNCTION trialvault._event_subject(text, name, text) IS
	'Internal: the role an audit event is about (who tried to log in, the role an account change changed, the member a study role, key or second-factor event concerns); NULL for other events.';
REVOKE ALL ON FUNCTION trialvault._event_subject(text, name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault._event_subject(text, name, text) TO trialvault_user, trialvault_admin;

CREATE VIEW trialvault.audit_trail WITH (security_barrier) AS
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

DO $$
DECLARE
	v text;
BEGIN
	FOREACH v IN ARRAY ARRAY['my_documents', 'my_sites', 'my_roles', 'my_decryption_log', 'audit_trail']
	LOOP
		EXECUTE format('REVOKE ALL ON trialvault.%I FROM PUBLIC', v);
		EXECUTE format('GRANT SELECT ON trialvault.%I TO trialvault_user', v);
	END LOOP;
END
$$;

-- ---------------------------------------------------------------------
-- Secured views of a DBA's own protected tables
-- ---------------------------------------------------------------------

CREATE FUNCTION trialvault._create_secured_view(requester name, view_name text,
	source regclass, study_column name, site_column name, hidden_columns name[])
	RETURNS void
	LANGUAGE plpgsql AS $$
DECLARE
	parts text[];
	nsp name;
	vname name;
	existing oid;
	cols text;
	bad name;
	col name;
BEGIN
	PERFORM trialvault._require_args('create_secured_view', view_name, source::text,
									 study_column, site_column);
	IF NOT pg_has_role(requester, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = source), 'USAGE') THEN
		RAISE EXCEPTION 'permission denied to create a secured view of %', source
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Only the owner of the table may publish it through a secured view.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM trialvault.protected_tables p WHERE p.table_name = source) THEN
		RAISE EXCEPTION 'table % is not protected', source
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Secured views are for protected tables: SELECT trialvault.protect(...) first.';
	END IF;
	FOREACH col IN ARRAY ARRAY[study_column, site_column] || coalesce(hidden_columns, '{}') LOOP
		IF col IS NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
						   WHERE a.attrelid = source AND a.attname = col
							 AND a.attnum > 0 AND NOT a.attisdropped) THEN
			RAISE EXCEPTION 'column "%" of % does not exist', col, source
				USING ERRCODE = 'undefined_column';
		END IF;
	END LOOP;
	IF study_column = ANY (coalesce(hidden_columns, '{}')) OR site_column = ANY (coalesce(hidden_columns, '{}')) THEN
		RAISE EXCEPTION 'the study and site columns cannot be hidden'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	parts := parse_ident(view_name);
	IF array_length(parts, 1) = 1 THEN
		nsp := (SELECT n.nspname FROM pg_catalog.pg_class c
				JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source);
		vname := parts[1];
	ELSIF array_length(parts, 1) = 2 THEN
		nsp := parts[1];
		vname := parts[2];
	ELSE
		RAISE EXCEPTION 'invalid view name "%"', left(view_name, 200)
			USING ERRCODE = 'invalid_name';
	END IF;
	IF nsp = 'trialvault' THEN
		RAISE EXCEPTION 'secured views of user tables cannot go into schema trialvault'
			USING ERRCODE = 'invalid_schema_name';
	END IF;
	-- The view is created by the extension's owner, so check the caller's
	-- own rights: CREATE on the schema ...
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = nsp) THEN
		RAISE EXCEPTION 'schema "%" does not exist', nsp USING ERRCODE = 'invalid_schema_name';
	END IF;
	IF NOT has_schema_privilege(requester, nsp, 'CREATE') THEN
		RAISE EXCEPTION 'permission denied to create a view in schema %', nsp
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s has no CREATE privilege on schema %s.', requester, nsp);
	END IF;
	SELECT c.oid INTO existing FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = nsp AND c.relname = vname;
	IF existing IS NOT NULL THEN
		IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = existing) <> 'v'
		   OR pg_catalog.pg_get_viewdef(existing) NOT LIKE '%trialvault._session_scope(%' THEN
			RAISE EXCEPTION 'relation %.% exists and is not a secured view', nsp, vname
				USING ERRCODE = 'duplicate_table',
					  HINT = 'Choose another name; only views made by create_secured_view() are replaced.';
		END IF;
		-- ... and, to replace a secured view, ownership of the table it shows.
		IF EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r
				   JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
					AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
				   JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
				   WHERE r.ev_class = existing AND t.oid <> existing
					 AND t.relkind IN ('r', 'p')
					 AND NOT pg_has_role(requester, t.relowner, 'USAGE')) THEN
			RAISE EXCEPTION 'permission denied to replace secured view %.%', nsp, vname
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'It shows a table the caller does not own.';
		END IF;
		EXECUTE format('DROP VIEW %I.%I', nsp, vname);
	END IF;
	SELECT string_agg(format('t.%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped
		  AND NOT (a.attname = ANY (coalesce(hidden_columns, '{}')));
	EXECUTE format('CREATE VIEW %I.%I WITH (security_barrier) AS SELECT %s FROM %s t '
				   'WHERE t.%I = (SELECT trialvault._session_study()) '
				   'AND t.%I = ANY ((SELECT trialvault._session_scope(''documents''))::text[])',
				   nsp, vname, cols, source, study_column, site_column);
	EXECUTE format('REVOKE ALL ON %I.%I FROM PUBLIC', nsp, vname);
	EXECUTE format('GRANT SELECT ON %I.%I TO trialvault_user', nsp, vname);
	EXECUTE format('COMMENT ON VIEW %I.%I IS %L', nsp, vname,
				   format('Secured view of %s (trialvault.create_secured_view): rows of the open study the current user may see%s.',
						  source, CASE WHEN hidden_columns IS NULL OR hidden_columns = '{}' THEN ''
									   ELSE ', without ' || array_to_string(hidden_columns, ', ') END));
	IF NOT has_schema_privilege('trialvault_user', nsp, 'USAGE') THEN
		RAISE NOTICE 'members cannot reach %.% yet: trialvault_user has no USAGE on schema %', nsp, vname, nsp
			USING HINT = format('GRANT USAGE ON SCHEMA %I TO trialvault_user;', nsp);
	END IF;
	PERFORM trialvault._audit('secured_view_created', requester, NULL, NULL, NULL,
							  format('%I.%I of %s', nsp, vname, source));
END
$$;
REVOKE ALL ON FUNCTION trialvault._create_secured_view(name, text, regclass, name, name, name[]) FROM PUBLIC;
COMMENT ON FUNCTION trialvault._create_secured_view(name, text, regclass, name, name, name[]) IS
	'Internal: body of create_secured_view(); runs as the extension owner, who then owns the view.';

CREATE FUNCTION trialvault.create_secured_view(view_name text, source regclass,
	study_column name, site_column name, hidden_columns name[] DEFAULT '{}')
	RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.create_secured_view(text, regclass, name, name, name[]) IS
	'Creates (or recreates, after the table gained columns) a security_barrier view of a protected table with the entitlements of my_documents, without the hidden columns, owned by the extension owner and granted to trialvault_user. Only the table''s owner may call it.';

-- =====================================================================
-- 7. Certification: members' signing keys and printed names, the
--    certification statement, the server's key (extension/certify.c)
-- =====================================================================

-- Private keys never reach the server: members register the public half
-- of their key pair, and sign the certification statement outside it.
CREATE TABLE trialvault.signing_keys (
	key_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	member name NOT NULL,
	fingerprint text NOT NULL UNIQUE CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
	algorithm text NOT NULL,
	public_key text NOT NULL,
	registered_by name NOT NULL,
	registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX signing_keys_member ON trialvault.signing_keys (member, key_id);
COMMENT ON TABLE trialvault.signing_keys IS
	'Public keys members sign with (insert-only, chained), by fingerprint: hex SHA-256 of the DER SubjectPublicKeyInfo. A member''s active key is the newest one not revoked; a key is registered once.';
SELECT trialvault.protect('trialvault.signing_keys');
SELECT pg_catalog.pg_extension_config_dump('trialvault.signing_keys', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.signing_keys_key_id_seq', '');
REVOKE ALL ON trialvault.signing_keys FROM PUBLIC;

CREATE TABLE trialvault.signing_key_revocations (
	fingerprint text PRIMARY KEY REFERENCES trialvault.signing_keys (fingerprint),
	member name NOT NULL,
	reason text NOT NULL CHECK (reason <> '' AND length(reason) <= 1000),
	revoked_by name NOT NULL,
	revoked_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE trialvault.signing_key_revocations IS
	'The end of each signing key (insert-only, chained): revoked, or superseded by a newer key of the same member. Signatures made before stay verifiable and are shown with this time.';
SELECT trialvault.protect('trialvault.signing_key_revocations');
SELECT pg_catalog.pg_extension_config_dump('trialvault.signing_key_revocations', '');
REVOKE ALL ON trialvault.signing_key_revocations FROM PUBLIC;

CREATE TABLE trialvault.printed_names (
	event_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	member name NOT NULL,
	printed_name text NOT NULL
		CHECK (btrim(printed_name) <> '' AND length(printed_name) <= 200
			   AND printed_name !~ '[[:cntrl:]]'),
	set_by name NOT NULL,
	set_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX printed_names_member ON trialvault.printed_names (member, event_id);
COMMENT ON TABLE trialvault.printed_names IS
	'The printed name every signature manifestation of a member shows (21 CFR 11.50), as set over time (insert-only, chained); the newest counts.';
SELECT trialvault.protect('trialvault.printed_names');
SELECT pg_catalog.pg_extension_config_dump('trialvault.printed_names', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.printed_names_event_id_seq', '');
REVOKE ALL ON trialvault.printed_names FROM PUBLIC;

CREATE FUNCTION trialvault._signing_key_info(public_key text,
	OUT fingerprint text, OUT algorithm text, OUT pem text)
	LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'tv_signing_key_info';
COMMENT ON FUNCTION trialvault._signing_key_info(text) IS
	'Internal: the fingerprint, kind and PEM (as OpenSSL writes it) of a public signing key; refuses anything else (a private key given by mistake without the statement reaching the server log).';

-- A refusal that must outlive its transaction, without hiding the refusal
-- itself if the log writer cannot take it.
CREATE FUNCTION trialvault._audit_refusal(event text, actor name, study text, site text,
	doc_id bigint, detail text) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._audit_durable(event, actor, study, site, doc_id, left(detail, 500));
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'the refusal below could not be put on record: %', SQLERRM;
END
$$;
COMMENT ON FUNCTION trialvault._audit_refusal(text, name, text, text, bigint, text) IS
	'Internal: records a refusal through the log writer (it survives the rollback of the refused call); a WARNING if it cannot.';

CREATE FUNCTION trialvault._require_login_role(member name) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = member AND r.rolcanlogin) THEN
		RAISE EXCEPTION 'role "%" does not exist or cannot log in', left(member::text, 100)
			USING ERRCODE = 'undefined_object',
				  HINT = 'Signing keys and printed names belong to login roles.';
	END IF;
END
$$;
COMMENT ON FUNCTION trialvault._require_login_role(name) IS
	'Internal: 42704 unless the role exists and may log in.';

CREATE FUNCTION trialvault._register_signing_key_for(requester name, member name, public_key text)
	RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	k record;
	old text;
BEGIN
	BEGIN
		PERFORM trialvault._require_args('register_signing_key', member::text, public_key);
		IF requester <> member THEN
			PERFORM trialvault._require_admin(requester, 'register a signing key for another role');
		END IF;
		PERFORM trialvault._require_login_role(member);
		SELECT * INTO k FROM trialvault._signing_key_info(public_key);
		-- One registration at a time per member: each ends the one before.
		PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('trialvault.signing_keys'),
												 pg_catalog.hashtext(member));
		IF EXISTS (SELECT 1 FROM trialvault.signing_keys s WHERE s.fingerprint = k.fingerprint) THEN
			RAISE EXCEPTION 'signing key % is already registered', k.fingerprint
				USING ERRCODE = 'duplicate_object',
					  HINT = 'A key is registered once, and a revoked key never comes back: make a new key pair.';
		END IF;
	EXCEPTION WHEN OTHERS THEN
		PERFORM trialvault._audit_refusal('signing_key_refused', requester, NULL, NULL, NULL,
										  format('for role %s: %s', member, SQLERRM));
		RAISE;
	END;
	SELECT s.fingerprint INTO old FROM trialvault.signing_keys s
	WHERE s.member = _register_signing_key_for.member
	  AND NOT EXISTS (SELECT 1 FROM trialvault.signing_key_revocations r WHERE r.fingerprint = s.fingerprint)
	ORDER BY s.key_id DESC LIMIT 1;
	INSERT INTO trialvault.signing_keys (member, fingerprint, algorithm, public_key, registered_by)
		VALUES (member, k.fingerprint, k.algorithm, k.pem, requester);
	IF old IS NOT NULL THEN
		INSERT INTO trialvault.signing_key_revocations (fingerprint, member, reason, revoked_by)
			VALUES (old, member, 'superseded by key ' || k.fingerprint, requester);
	END IF;
	PERFORM trialvault._audit('signing_key_registered', requester, NULL, NULL, NULL,
							  format('role %s, key %s (%s)%s', member, k.fingerprint, k.algorithm,
									 CASE WHEN old IS NOT NULL THEN ', superseding key ' || old ELSE '' END));
	RETURN k.fingerprint;
END
$$;

CREATE FUNCTION trialvault._register_signing_key(requester name, public_key text) RETURNS text
	LANGUAGE sql AS $$
	SELECT trialvault._register_signing_key_for(requester, requester, public_key)
$$;

CREATE FUNCTION trialvault._revoke_signing_key(requester name, member name, reason text)
	RETURNS void
	LANGUAGE plpgsql AS $$
DECLARE
	fp text;
BEGIN
	BEGIN
		PERFORM trialvault._require_args('revoke_signing_key', member::text, reason);
		IF requester <> member THEN
			PERFORM trialvault._require_admin(requester, 'revoke another role''s signing key');
		END IF;
		IF btrim(reason) = '' OR length(reason) > 1000 THEN
			RAISE EXCEPTION 'a revocation reason must have 1 to 1000 characters'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('trialvault.signing_keys'),
												 pg_catalog.hashtext(member));
		SELECT s.fingerprint INTO fp FROM trialvault.signing_keys s
		WHERE s.member = _revoke_signing_key.member
		  AND NOT EXISTS (SELECT 1 FROM trialvault.signing_key_revocations r WHERE r.fingerprint = s.fingerprint)
		ORDER BY s.key_id DESC LIMIT 1;
		IF fp IS NULL THEN
			RAISE EXCEPTION 'role % has no active signing key', member
				USING ERRCODE = 'object_not_in_prerequisite_state';
		END IF;
	EXCEPTION WHEN OTHERS THEN
		PERFORM trialvault._audit_refusal('signing_key_refused', requester, NULL, NULL, NULL,
										  format('revocation for role %s: %s', member, SQLERRM));
		RAISE;
	END;
	INSERT INTO trialvault.signing_key_revocations (fingerprint, member, reason, revoked_by)
		VALUES (fp, member, reason, requester);
	PERFORM trialvault._audit('signing_key_revoked', requester, NULL, NULL, NULL,
							  format('role %s, key %s: %s', member, fp, reason));
END
$$;

CREATE FUNCTION trialvault._set_printed_name(requester name, member name, printed_name text)
	RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM trialvault._require_args('set_printed_name', member::text, printed_name);
		PERFORM trialvault._require_admin(requester, 'set a printed name');
		PERFORM trialvault._require_login_role(member);
		IF btrim(printed_name) = '' OR length(printed_name) > 200 OR printed_name ~ '[[:cntrl:]]' THEN
			RAISE EXCEPTION 'a printed name must have 1 to 200 printable characters'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	EXCEPTION WHEN OTHERS THEN
		PERFORM trialvault._audit_refusal('printed_name_refused', requester, NULL, NULL, NULL,
										  format('for role %s: %s', member, SQLERRM));
		RAISE;
	END;
	INSERT INTO trialvault.printed_names (member, printed_name, set_by)
		VALUES (member, printed_name, requester);
	PERFORM trialvault._audit('printed_name_set', requester, NULL, NULL, NULL,
							  format('role %s: %s', member, printed_name));
END
$$;

CREATE FUNCTION trialvault.register_signing_key(public_key text) RETURNS text
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.register_signing_key(text) IS
	'Registers the PEM public key (ECDSA P-256 or P-384, Ed25519, RSA of 2048 bits or more) the calling login role signs with, ending its previous key; returns the key''s fingerprint (hex SHA-256 of the DER SubjectPublicKeyInfo). Never pass a private key.';

CREATE FUNCTION trialvault.register_signing_key_for(member name, public_key text) RETURNS text
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.register_signing_key_for(name, text) IS
	'register_signing_key() for another login role, by a member of trialvault_admin (recorded as registered by them).';

CREATE FUNCTION trialvault.revoke_signing_key(member name, reason text) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.revoke_signing_key(name, text) IS
	'Ends a member''s active signing key, with a reason (the member themself, or a member of trialvault_admin). Signatures made before stay verifiable, shown with the revocation time.';

CREATE FUNCTION trialvault.set_printed_name(member name, printed_name text) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.set_printed_name(name, text) IS
	'Sets the name every signature manifestation of a member shows (21 CFR 11.50). Members of trialvault_admin only.';

CREATE FUNCTION trialvault.certification_statement(study text, site text, doc_type text,
	content bytea, metadata xml, meaning text, signed_at timestamptz, nonce bytea)
	RETURNS bytea
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_certification_statement';
COMMENT ON FUNCTION trialvault.certification_statement(text, text, text, bytea, xml, text, timestamptz, bytea) IS
	'The exact bytes the calling member signs to load a document as certified (format trialvault-certification-statement-v1, docs/certification.md), with their role name and active key fingerprint; lets an application check it builds the same bytes.';

CREATE FUNCTION trialvault.server_signing_key(
	OUT loaded boolean,
	OUT fingerprint text,
	OUT algorithm text,
	OUT public_key text,
	OUT problem text)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_server_signing_key';
COMMENT ON FUNCTION trialvault.server_signing_key() IS
	'Whether this server holds a signing key (trialvault.signing_key_command), with its fingerprint, kind and public half; never the private key.';

CREATE VIEW trialvault.signer_keys AS
	SELECT k.member, n.printed_name, k.fingerprint, k.algorithm, k.public_key,
		   k.registered_by, k.registered_at,
		   r.revoked_at, r.revoked_by, r.reason AS revocation_reason,
		   r.fingerprint IS NULL AS active
	FROM trialvault.signing_keys k
	LEFT JOIN trialvault.signing_key_revocations r ON r.fingerprint = k.fingerprint
	LEFT JOIN LATERAL (SELECT p.printed_name FROM trialvault.printed_names p
					   WHERE p.member = k.member ORDER BY p.event_id DESC LIMIT 1) n ON true;
COMMENT ON VIEW trialvault.signer_keys IS
	'Every registered signing key with its member''s printed name, when it was registered and by whom, and when it ended and why. Public keys are not secret.';
REVOKE ALL ON trialvault.signer_keys FROM PUBLIC;
GRANT SELECT ON trialvault.signer_keys TO trialvault_user, trialvault_admin;

-- ---------------------------------------------------------------------
-- Signatures: checked, countersigned by the server, kept
-- ---------------------------------------------------------------------

-- The server's keys, as they first countersigned: a new key is an event,
-- and what the old one countersigned stays verifiable.
CREATE TABLE trialvault.server_keys (
	fingerprint text PRIMARY KEY CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
	algorithm text NOT NULL,
	public_key text NOT NULL,
	first_used_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	first_used_by name NOT NULL
);
COMMENT ON TABLE trialvault.server_keys IS
	'Public halves of the server''s signing keys (trialvault.signing_key_command), each added when it first countersigns (insert-only, chained). The private keys are never stored.';
SELECT trialvault.protect('trialvault.server_keys');
SELECT pg_catalog.pg_extension_config_dump('trialvault.server_keys', '');
REVOKE ALL ON trialvault.server_keys FROM PUBLIC;

-- No foreign keys: the code that inserts checks what a row refers to, and
-- nothing it refers to can go away (every table here is insert-only); a
-- foreign key check would lock the signer's key row, and the server key's,
-- in every certified load.
CREATE TABLE trialvault.signatures (
	signature_id bigint GENERATED BY DEFAULT AS IDENTITY,
	doc_id bigint NOT NULL,
	study text NOT NULL,
	site text NOT NULL,
	signer name NOT NULL,
	signer_key text NOT NULL,
	meaning text NOT NULL
		CHECK (meaning IN ('certified_copy', 'review', 'approval', 'responsibility')),
	signed_at timestamptz NOT NULL,
	nonce bytea NOT NULL UNIQUE CHECK (length(nonce) BETWEEN 16 AND 64),
	signature bytea NOT NULL,
	server_key text NOT NULL,
	countersigned_at timestamptz NOT NULL,
	countersignature bytea NOT NULL,
	-- A document's signatures are read together (verify_document, certificates).
	PRIMARY KEY (doc_id, signature_id)
);
COMMENT ON TABLE trialvault.signatures IS
	'Every accepted signature of a document (insert-only, chained): the member''s signature of the certification statement, the server''s countersignature with its time, and what the statement is rebuilt from exactly, with the document''s fingerprints (trialvault._signature_statement(); formats in docs/certification.md).';
SELECT trialvault.protect('trialvault.signatures');
SELECT pg_catalog.pg_extension_config_dump('trialvault.signatures', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.signatures_signature_id_seq', '');
REVOKE ALL ON trialvault.signatures FROM PUBLIC;

-- Whether a study takes unsigned loads: studies created since 0.7 do not,
-- until an administrator says so; older studies kept loading as before.
CREATE TABLE trialvault.signature_policies (
	event_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	study text NOT NULL REFERENCES trialvault.studies (code),
	required boolean NOT NULL,
	set_by name NOT NULL,
	set_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX signature_policies_study ON trialvault.signature_policies (study, event_id);
COMMENT ON TABLE trialvault.signature_policies IS
	'Whether each study requires signed (certified) loads, as set over time (insert-only, chained); the newest row counts, and a study without one requires them.';
SELECT trialvault.protect('trialvault.signature_policies');
SELECT pg_catalog.pg_extension_config_dump('trialvault.signature_policies', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.signature_policies_event_id_seq', '');
REVOKE ALL ON trialvault.signature_policies FROM PUBLIC;

CREATE FUNCTION trialvault._note_server_key(fingerprint text, algorithm text, public_key text,
	first_used_by name) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- Two first countersignatures at once: the second waits, then finds the row.
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('trialvault.server_keys'));
	IF NOT EXISTS (SELECT 1 FROM trialvault.server_keys k WHERE k.fingerprint = _note_server_key.fingerprint) THEN
		INSERT INTO trialvault.server_keys (fingerprint, algorithm, public_key, first_used_by)
			VALUES (fingerprint, algorithm, public_key, first_used_by);
		PERFORM trialvault._audit('server_key_new', first_used_by, NULL, NULL, NULL,
								  format('server signing key %s (%s) countersigns from now on', fingerprint, algorithm));
	END IF;
END
$$;
COMMENT ON FUNCTION trialvault._note_server_key(text, text, text, name) IS
	'Internal: records the server''s signing key when it first countersigns (an audit event).';

CREATE FUNCTION trialvault._require_signatures(requester name, study text, required boolean)
	RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM trialvault._require_args('require_signatures', study, required::text);
		PERFORM trialvault._require_admin(requester, 'set whether a study requires signatures');
		PERFORM trialvault._require_study(study);
	EXCEPTION WHEN OTHERS THEN
		PERFORM trialvault._audit_refusal('signature_policy_refused', requester, left(study, 63), NULL, NULL, SQLERRM);
		RAISE;
	END;
	INSERT INTO trialvault.signature_policies (study, required, set_by)
		VALUES (study, required, requester);
	PERFORM trialvault._audit('signature_policy_set', requester, study, NULL, NULL,
							  CASE WHEN required THEN 'signed loads required' ELSE 'unsigned loads allowed' END);
END
$$;

DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
			 WHERE p.pronamespace = 'trialvault'::regnamespace
			   AND p.proname IN ('_signing_key_info', '_audit_refusal', '_require_login_role',
								 '_register_signing_key_for', '_register_signing_key',
								 '_revoke_signing_key', '_set_printed_name',
								 '_note_server_key', '_require_signatures')
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
		IF obj_description(f, 'pg_proc') IS NULL THEN
			EXECUTE format('COMMENT ON FUNCTION %s IS %L', f,
						   'Internal: body of the public function of the same name without the underscore; runs as the extension owner with the real caller as first argument.');
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION trialvault.require_signatures(study text, required boolean) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.require_signatures(text, boolean) IS
	'Whether loads into a study must be signed (certified). Studies created since 0.7 require them; studies that existed before keep loading unsigned until this says otherwise. Members of trialvault_admin only; recorded.';

CREATE FUNCTION trialvault.statement_for_document(doc_id bigint, meaning text,
	signed_at timestamptz, nonce bytea) RETURNS bytea
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_statement_for_document';
COMMENT ON FUNCTION trialvault.statement_for_document(bigint, text, timestamptz, bytea) IS
	'The exact bytes the calling member signs for a later signature (review, approval, responsibility) of a stored document they may open, in the study their session has open.';

CREATE FUNCTION trialvault.sign_document(doc_id bigint, meaning text, signed_at timestamptz,
	nonce bytea, signature bytea) RETURNS bytea
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_sign_document';
COMMENT ON FUNCTION trialvault.sign_document(bigint, text, timestamptz, bytea, bytea) IS
	'Adds the calling member''s signature of statement_for_document() to a document they may open: checked against their active key, its time and nonce; countersigned by the server and kept. Returns the countersignature.';

-- ---------------------------------------------------------------------
-- Verification, certificates
-- ---------------------------------------------------------------------

CREATE FUNCTION trialvault._utc(t timestamptz) RETURNS text
	LANGUAGE sql IMMUTABLE STRICT
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;
COMMENT ON FUNCTION trialvault._utc(timestamptz) IS
	'Internal: a time as certification statements write it (UTC, six fraction digits, Z).';

CREATE FUNCTION trialvault._document_access(doc_id bigint, requester name, purpose text)
	RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_document_access';
COMMENT ON FUNCTION trialvault._document_access(bigint, name, text) IS
	'Internal: refuses (42704, 42501) unless the requester may open the document, in the study their session has open.';

CREATE FUNCTION trialvault._signature_statement(doc_id bigint, signature_id bigint) RETURNS bytea
	LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'tv_signature_statement';
COMMENT ON FUNCTION trialvault._signature_statement(bigint, bigint) IS
	'Internal: the exact bytes of the statement a kept signature signed, rebuilt from the signature row and the document''s fingerprints (the v1 format makes this exact).';

CREATE FUNCTION trialvault._export_certificate(requester name, doc_id bigint) RETURNS xml
	LANGUAGE plpgsql AS $$
DECLARE
	cert xml;
	d record;
	n integer;
BEGIN
	PERFORM trialvault._require_args('export_certificate', doc_id::text);
	PERFORM trialvault._document_access(doc_id, requester, 'export the certificate of');
	SELECT * INTO d FROM trialvault.documents x WHERE x.doc_id = _export_certificate.doc_id;
	SELECT count(*) INTO n FROM trialvault.signatures g WHERE g.doc_id = d.doc_id;
	IF n = 0 THEN
		RAISE EXCEPTION 'document % has no signature', doc_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Certificates are for certified documents: load with a signature, or add one with trialvault.sign_document().';
	END IF;
	SELECT xmlelement(name "trialvault-certificate",
			xmlattributes('urn:trialvault:certificate:1' AS xmlns, 1 AS version,
						  trialvault._utc(clock_timestamp()) AS "exported-at"),
			xmlelement(name document,
				xmlattributes(d.doc_id AS id, d.study AS study, d.site AS site, d.doc_type AS "doc-type",
							  encode(d.content_sha256, 'hex') AS "content-sha256",
							  encode(d.metadata_sha256, 'hex') AS "metadata-sha256",
							  d.loaded_by AS "loaded-by", trialvault._utc(d.loaded_at) AS "loaded-at")),
			xmlagg(xmlelement(name signature, xmlattributes(g.signature_id AS id),
				xmlelement(name manifestation,
					xmlattributes(coalesce(p.printed_name, g.signer::text) AS "printed-name",
								  g.signer AS signer, g.meaning AS meaning,
								  trialvault._utc(g.signed_at) AS "signed-at",
								  to_char(g.signed_at, 'YYYY-MM-DD HH24:MI:SS.US TZH:TZM') AS "signed-at-local")),
				xmlelement(name statement, encode(trialvault._signature_statement(g.doc_id, g.signature_id), 'base64')),
				xmlelement(name "signature-value", encode(g.signature, 'base64')),
				xmlelement(name "signer-key",
					xmlattributes(k.fingerprint AS fingerprint, k.algorithm AS algorithm,
								  trialvault._utc(k.registered_at) AS "registered-at",
								  trialvault._utc(r.revoked_at) AS "revoked-at"),
					k.public_key),
				xmlelement(name countersignature,
					xmlattributes(trialvault._utc(g.countersigned_at) AS "countersigned-at",
								  g.server_key AS "server-key"),
					encode(g.countersignature, 'base64')),
				xmlelement(name "server-key",
					xmlattributes(sk.fingerprint AS fingerprint, sk.algorithm AS algorithm),
					sk.public_key))
				ORDER BY g.signature_id))
		INTO cert
		FROM trialvault.signatures g
		JOIN trialvault.signing_keys k ON k.fingerprint = g.signer_key
		LEFT JOIN trialvault.signing_key_revocations r ON r.fingerprint = g.signer_key
		JOIN trialvault.server_keys sk ON sk.fingerprint = g.server_key
		LEFT JOIN LATERAL (SELECT pn.printed_name FROM trialvault.printed_names pn
						   WHERE pn.member = g.signer ORDER BY pn.event_id DESC LIMIT 1) p ON true
		WHERE g.doc_id = d.doc_id;
	PERFORM trialvault._audit('certificate_exported', requester, d.study, d.site, d.doc_id,
							  format('%s signature(s)', n));
	RETURN cert;
END
$$;

CREATE FUNCTION trialvault._certificate_text(requester name, doc_id bigint) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	d record;
	g record;
	out text;
BEGIN
	PERFORM trialvault._require_args('certificate_text', doc_id::text);
	PERFORM trialvault._document_access(doc_id, requester, 'print the certificate of');
	SELECT * INTO d FROM trialvault.documents x WHERE x.doc_id = _certificate_text.doc_id;
	out := format(E'CERTIFIED COPY\n'
				  'trialvault certificate of document %s\n\n'
				  'Study:             %s\n'
				  'Site:              %s\n'
				  'Document type:     %s\n'
				  'Loaded by:         %s, %s\n'
				  'Content SHA-256:   %s\n'
				  'Metadata SHA-256:  %s\n',
				  d.doc_id, d.study, d.site, d.doc_type, d.loaded_by,
				  to_char(d.loaded_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
				  encode(d.content_sha256, 'hex'), encode(d.metadata_sha256, 'hex'));
	FOR g IN
		SELECT s.*, k.algorithm, r.revoked_at, r.reason AS revocation_reason,
			   coalesce(p.printed_name, s.signer::text) AS printed_name
		FROM trialvault.signatures s
		JOIN trialvault.signing_keys k ON k.fingerprint = s.signer_key
		LEFT JOIN trialvault.signing_key_revocations r ON r.fingerprint = s.signer_key
		LEFT JOIN LATERAL (SELECT pn.printed_name FROM trialvault.printed_names pn
						   WHERE pn.member = s.signer ORDER BY pn.event_id DESC LIMIT 1) p ON true
		WHERE s.doc_id = d.doc_id ORDER BY s.signature_id
	LOOP
		out := out || format(E'\nSignature %s\n'
							 '  Signed by:       %s (%s)\n'
							 '  Meaning:         %s\n'
							 '  Signed at:       %s\n'
							 '  Signer key:      %s %s%s\n'
							 '  Countersigned:   %s, server key %s\n',
							 g.signature_id, g.printed_name, g.signer,
							 replace(g.meaning, '_', ' '),
							 to_char(g.signed_at, 'YYYY-MM-DD HH24:MI:SS.US TZ'),
							 g.algorithm, g.signer_key,
							 CASE WHEN g.revoked_at IS NOT NULL
								  THEN format(E'\n                   ended %s: %s',
											  to_char(g.revoked_at, 'YYYY-MM-DD HH24:MI:SS TZ'), g.revocation_reason)
								  ELSE '' END,
							 to_char(g.countersigned_at, 'YYYY-MM-DD HH24:MI:SS.US TZ'), g.server_key);
	END LOOP;
	IF NOT FOUND THEN
		out := out || E'\nNo signature: this document is not a certified copy.\n';
	END IF;
	RETURN out || E'\nCheck it offline: trialvault.export_certificate() and scripts/trialvault-verify-certificate.\n';
END
$$;

DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
			 WHERE p.pronamespace = 'trialvault'::regnamespace
			   AND p.proname IN ('_utc', '_document_access', '_signature_statement', '_export_certificate', '_certificate_text')
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
		IF obj_description(f, 'pg_proc') IS NULL THEN
			EXECUTE format('COMMENT ON FUNCTION %s IS %L', f,
						   'Internal: body of the public function of the same name without the underscore; runs as the extension owner with the real caller as first argument.');
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION trialvault.verify_document(doc_id bigint,
	OUT signature_id bigint, OUT signer name, OUT printed_name text, OUT meaning text,
	OUT signed_at timestamptz, OUT countersigned_at timestamptz,
	OUT user_signature_ok boolean, OUT countersignature_ok boolean,
	OUT key_revoked_at timestamptz, OUT content_matches boolean)
	RETURNS SETOF record
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_verify_document';
COMMENT ON FUNCTION trialvault.verify_document(bigint) IS
	'Checks every signature of a document: the member''s signature and the server''s countersignature with the kept public keys, and the statement against the document''s content (decrypted and hashed inside the server, never returned) and metadata now. For members who may open the document and auditors of its study, in the open study; recorded in the decryption log (reason verification) before it returns.';

CREATE FUNCTION trialvault.export_certificate(doc_id bigint) RETURNS xml
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.export_certificate(bigint) IS
	'A self-contained certificate of a certified document (format urn:trialvault:certificate:1, docs/certification.md): each signature''s statement bytes, signature, countersignature, both public keys with fingerprints, and the manifestation. scripts/trialvault-verify-certificate checks it with openssl and xmllint alone. For members who may open the document.';

CREATE FUNCTION trialvault.certificate_text(doc_id bigint) RETURNS text
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.certificate_text(bigint) IS
	'A printable rendering of a document''s certificate for the paper file: the document''s fingerprints and, per signature, printed name, meaning, date and time with zone, keys and countersignature. For members who may open the document.';

-- ---------------------------------------------------------------------
-- Signed digests of protected tables (extension/digest.c)
-- ---------------------------------------------------------------------

CREATE FUNCTION trialvault.signed_digest(tbl regclass) RETURNS text
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_signed_digest';
COMMENT ON FUNCTION trialvault.signed_digest(regclass) IS
	'The chain state of a protected table that verifies (rows, heads, head digest) with the time, signed by the server''s key, as a self-contained text to keep outside the database (format in docs/certification.md; openssl checks the signature). verify_digest() later proves the table only grew since. An audit event.';

CREATE FUNCTION trialvault.verify_digest(tbl regclass, digest text,
	OUT extends boolean, OUT detail text)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_verify_digest';
COMMENT ON FUNCTION trialvault.verify_digest(regclass, text) IS
	'Whether a table now extends the chain a signed digest covered: the digest is signed by one of the server''s keys, the table verifies, and every row the digest covered is present and unchanged. Catches a consistent rewrite of the newest rows, which verify() alone cannot.';

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

-- =====================================================================
-- 9. Encrypted backups (worker/shipper.c, docs/backups.md)
-- =====================================================================

CREATE FUNCTION trialvault._backup_status(OUT table_name regclass,
	OUT shipped_rows bigint,
	OUT lag_rows bigint,
	OUT lag_seconds double precision,
	OUT last_success timestamptz,
	OUT last_error text,
	OUT batches bigint,
	OUT bytes bigint)
	RETURNS SETOF record
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_backup_status';
COMMENT ON FUNCTION trialvault._backup_status() IS
	'Internal: the rows of backup_status, from the shippers'' shared memory and a count of the rows not shipped yet.';
REVOKE ALL ON FUNCTION trialvault._backup_status() FROM PUBLIC;
-- (functions in a view run with the privileges of whoever reads it)
GRANT EXECUTE ON FUNCTION trialvault._backup_status() TO trialvault_admin;

CREATE VIEW trialvault.backup_status AS
	SELECT * FROM trialvault._backup_status();
COMMENT ON VIEW trialvault.backup_status IS
	'One row per protected table of this database: rows shipped to the remote repository since the shipper started, rows not shipped yet, for how long the table has not been fully shipped (seconds), the last batch shipped, the newest error (the table''s or the shipper''s), batches and bytes shipped since the shipper started.';
REVOKE ALL ON trialvault.backup_status FROM PUBLIC;
GRANT SELECT ON trialvault.backup_status TO trialvault_admin;

CREATE FUNCTION trialvault.verify_against_remote(OUT table_name text,
	OUT ok boolean,
	OUT detail text)
	RETURNS SETOF record
	LANGUAGE C VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_verify_against_remote';
COMMENT ON FUNCTION trialvault.verify_against_remote() IS
	'One row per protected table of this database (and per table shipped from it that is no longer one): whether the local chain still holds what was shipped to the backup repository. The newest batch''s signed heads must still be there with the same tv_hash and the chain must verify; a shipped row rewritten, even consistently, is named.';
REVOKE ALL ON FUNCTION trialvault.verify_against_remote() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.verify_against_remote() TO trialvault_admin;

CREATE FUNCTION trialvault.full_backup(OUT backup_id bigint, OUT completed boolean)
	RETURNS record
	LANGUAGE C VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_full_backup';
COMMENT ON FUNCTION trialvault.full_backup() IS
	'Asks this database''s backup shipper for a full backup and waits for it: every protected row shipped so far, encrypted to the backup key in chunks with a manifest, confirmed by the repository, then the purge of what it covers. Returns the backup id and whether it completed (false, with the reason in backup_status, when the repository cannot be reached).';
REVOKE ALL ON FUNCTION trialvault.full_backup() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.full_backup() TO trialvault_admin;

-- What pg_cron runs: a full backup that did not complete fails the job, so
-- that cron.job_run_details says so.
CREATE FUNCTION trialvault.scheduled_full_backup() RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	r record;
	why text;
BEGIN
	SELECT * INTO r FROM trialvault.full_backup();
	IF NOT r.completed THEN
		SELECT string_agg(DISTINCT s.last_error, '; ') INTO why
			FROM trialvault.backup_status s WHERE s.last_error IS NOT NULL;
		RAISE EXCEPTION 'the scheduled full backup did not complete'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = coalesce(why, 'no reason was recorded'),
				  HINT = 'trialvault.backup_status shows where shipping stands.';
	END IF;
	RETURN r.backup_id;
END
$$;
COMMENT ON FUNCTION trialvault.scheduled_full_backup() IS
	'full_backup() for pg_cron (schedule_backups): returns the backup id, or fails with the reason when the backup did not complete.';
REVOKE ALL ON FUNCTION trialvault.scheduled_full_backup() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.scheduled_full_backup() TO trialvault_admin;

CREATE FUNCTION trialvault.schedule_backups(cron text DEFAULT '0 2 * * *') RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	job bigint;
BEGIN
	IF cron IS NULL OR cron = '' THEN
		RAISE EXCEPTION 'schedule_backups needs a cron schedule'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''0 2 * * *'', every day at 02:00 (the server''s time zone of pg_cron: GMT by default).';
	END IF;
	IF to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'undefined_function',
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and CREATE EXTENSION pg_cron.';
	END IF;
	-- One job per database: scheduling again replaces the schedule.
	EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4)'
		INTO job
		USING 'trialvault full backup ' || current_database(), cron,
			  'SELECT trialvault.scheduled_full_backup()', current_database();
	RETURN job;
END
$$;
COMMENT ON FUNCTION trialvault.schedule_backups(text) IS
	'Registers the daily (or the given cron schedule''s) full backup of this database with pg_cron, as the calling administrator; pg_cron must be installed in this database. Returns the pg_cron job id; calling it again changes the schedule.';
REVOKE ALL ON FUNCTION trialvault.schedule_backups(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.schedule_backups(text) TO trialvault_admin;

-- =====================================================================
-- 10. The second factor: one-time codes (extension/factor.c,
--     docs/second-factor.md)
-- =====================================================================

-- A member's TOTP secrets (RFC 6238), only ever wrapped under the master
-- key, bound to the factor id and the member.  What became of each (its
-- confirmation, every step-up attempt, a lock, a reset) is in the audit
-- trail: events second_factor_*, their detail a JSON object with the
-- member and the factor id.  The newest row of a member is their factor.
CREATE TABLE trialvault.second_factors (
	factor_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	member name NOT NULL,
	secret bytea NOT NULL,
	master_key_id text NOT NULL,
	enrolled_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX second_factors_member ON trialvault.second_factors (member, factor_id);
COMMENT ON TABLE trialvault.second_factors IS
	'Members'' one-time-code secrets (insert-only), wrapped (AES-256-GCM) under the master key whose id is given; the newest row of a member is their second factor. Its history is in the audit trail (events second_factor_*).';
SELECT trialvault.protect('trialvault.second_factors');
SELECT pg_catalog.pg_extension_config_dump('trialvault.second_factors', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.second_factors_factor_id_seq', '');
REVOKE ALL ON trialvault.second_factors FROM PUBLIC;

-- The events of one factor, in order, found without reading the whole trail.
CREATE INDEX audit_events_second_factor ON trialvault.audit_events
	(((detail::jsonb ->> 'factor_id')::bigint), event_id)
	WHERE event LIKE 'second\_factor\_%';

CREATE FUNCTION trialvault.enroll_second_factor() RETURNS text
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_enroll_second_factor';
COMMENT ON FUNCTION trialvault.enroll_second_factor() IS
	'Creates a one-time-code secret for the calling member and returns it once, as an otpauth://totp/ URI for an authenticator app; the secret is kept only wrapped under the master key. Active after confirm_second_factor().';
REVOKE ALL ON FUNCTION trialvault.enroll_second_factor() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.enroll_second_factor() TO trialvault_user, trialvault_admin;

CREATE FUNCTION trialvault.confirm_second_factor(code text) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_confirm_second_factor';
COMMENT ON FUNCTION trialvault.confirm_second_factor(text) IS
	'Activates the calling member''s pending second factor with a current code from the authenticator app. Every attempt is recorded.';
REVOKE ALL ON FUNCTION trialvault.confirm_second_factor(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.confirm_second_factor(text) TO trialvault_user, trialvault_admin;

CREATE FUNCTION trialvault.step_up(code text) RETURNS timestamptz
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_step_up';
COMMENT ON FUNCTION trialvault.step_up(text) IS
	'Checks a one-time code of the calling member''s second factor; a valid code (each accepted once) marks this session, for this role, as stepped up for trialvault.step_up_duration. Returns when that ends. Every attempt is recorded; trialvault.step_up_max_failures wrong codes in a row lock the factor until an administrator resets it.';
REVOKE ALL ON FUNCTION trialvault.step_up(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.step_up(text) TO trialvault_user, trialvault_admin;

CREATE FUNCTION trialvault.reset_second_factor(member name) RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_reset_second_factor';
COMMENT ON FUNCTION trialvault.reset_second_factor(name) IS
	'Ends a member''s second factor (lost, or locked after wrong codes); the member enrols again. Members of trialvault_admin only; recorded.';
REVOKE ALL ON FUNCTION trialvault.reset_second_factor(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.reset_second_factor(name) TO trialvault_admin;

CREATE FUNCTION trialvault.second_factor_status(OUT enrolled boolean, OUT confirmed boolean,
	OUT locked boolean, OUT failures integer, OUT stepped_up_until timestamptz)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_second_factor_status';
COMMENT ON FUNCTION trialvault.second_factor_status() IS
	'The calling member''s second factor: enrolled, confirmed, locked, wrong codes in a row, and until when this session is stepped up for the current role (NULL: it is not).';
REVOKE ALL ON FUNCTION trialvault.second_factor_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.second_factor_status() TO trialvault_user, trialvault_admin;

-- Which study roles need a step-up before open_document shows them PHI:
-- monitors always (no row needed), others where an administrator said so.
CREATE TABLE trialvault.second_factor_requirements (
	event_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	study text NOT NULL REFERENCES trialvault.studies (code),
	study_role text NOT NULL CHECK (study_role IN ('investigator', 'site_staff', 'safety', 'monitor')),
	changed_by name NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE trialvault.second_factor_requirements IS
	'Study roles that must step up (trialvault.step_up) before open_document shows them PHI, besides monitors, who always must (insert-only). Added by trialvault.require_second_factor().';
SELECT trialvault.protect('trialvault.second_factor_requirements');
SELECT pg_catalog.pg_extension_config_dump('trialvault.second_factor_requirements', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.second_factor_requirements_event_id_seq', '');
REVOKE ALL ON trialvault.second_factor_requirements FROM PUBLIC;

CREATE FUNCTION trialvault._require_second_factor(requester name, study text, study_role text)
	RETURNS boolean
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault._require_args('require_second_factor', study, study_role);
	PERFORM trialvault._require_admin(requester, 'require a second factor');
	PERFORM trialvault._require_study(study);
	IF study_role IN ('sponsor', 'auditor') THEN
		RAISE EXCEPTION 'a % never sees PHI, so needs no second factor to see it', study_role
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A step-up can be required of investigator, site_staff and safety; monitors always need one.';
	END IF;
	IF study_role NOT IN ('investigator', 'site_staff', 'safety', 'monitor') THEN
		RAISE EXCEPTION 'unknown study role "%"', left(study_role, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A step-up can be required of investigator, site_staff and safety; monitors always need one.';
	END IF;
	IF study_role = 'monitor' OR EXISTS (SELECT 1 FROM trialvault.second_factor_requirements r
				WHERE r.study = _require_second_factor.study
				  AND r.study_role = _require_second_factor.study_role) THEN
		RETURN false;
	END IF;
	INSERT INTO trialvault.second_factor_requirements (study, study_role, changed_by)
		VALUES (study, study_role, requester);
	PERFORM trialvault._audit('step_up_required', requester, study, NULL, NULL, study_role);
	RETURN true;
END
$$;
COMMENT ON FUNCTION trialvault._require_second_factor(name, text, text) IS
	'Internal: body of require_second_factor; runs as the extension owner with the real caller as first argument.';
REVOKE ALL ON FUNCTION trialvault._require_second_factor(name, text, text) FROM PUBLIC;

CREATE FUNCTION trialvault.require_second_factor(study text, study_role text) RETURNS boolean
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_call_as_owner';
COMMENT ON FUNCTION trialvault.require_second_factor(text, text) IS
	'From now on, members of the study who open a PHI document through this study role (investigator, site_staff or safety) must have stepped up first (trialvault.step_up); monitors always must. Returns false when it was required already. Members of trialvault_admin only; recorded.';
REVOKE ALL ON FUNCTION trialvault.require_second_factor(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.require_second_factor(text, text) TO trialvault_admin;

-- Invitations: a study role granted only once the member enters two codes,
-- one sent by e-mail and one by SMS (21 CFR 11.300).  Only salted SHA-256
-- hashes of the codes are kept.  What became of each invitation (made,
-- refused attempts, voided after too many, accepted) is in the audit trail,
-- events invitation_*, their detail a JSON object with the
-- member and the invitation id.
CREATE TABLE trialvault.invitations (
	invitation_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	member name NOT NULL,
	study text NOT NULL REFERENCES trialvault.studies (code),
	site text,
	study_role text NOT NULL
		CHECK (study_role IN ('investigator', 'site_staff', 'monitor', 'safety', 'sponsor', 'auditor')),
	salt bytea NOT NULL CHECK (length(salt) = 16),
	email_code_sha256 bytea NOT NULL CHECK (length(email_code_sha256) = 32),
	sms_code_sha256 bytea NOT NULL CHECK (length(sms_code_sha256) = 32),
	expires_at timestamptz NOT NULL,
	invited_by name NOT NULL,
	invited_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX invitations_member ON trialvault.invitations (member, invitation_id);
COMMENT ON TABLE trialvault.invitations IS
	'Invitations to a study role (insert-only): the role is granted when the member enters both activation codes (trialvault.activate_account) before expires_at. Only salted hashes of the codes are kept; the member''s newest invitation is the one that counts.';
SELECT trialvault.protect('trialvault.invitations');
SELECT pg_catalog.pg_extension_config_dump('trialvault.invitations', '');
SELECT pg_catalog.pg_extension_config_dump('trialvault.invitations_invitation_id_seq', '');
REVOKE ALL ON trialvault.invitations FROM PUBLIC;

CREATE INDEX audit_events_invitation ON trialvault.audit_events
	(((detail::jsonb ->> 'invitation_id')::bigint), event_id)
	WHERE event LIKE 'invitation\_%';

CREATE FUNCTION trialvault.invite_member(member name, study text, site text, study_role text)
	RETURNS TABLE (email_code text, sms_code text)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_invite_member';
COMMENT ON FUNCTION trialvault.invite_member(name, text, text, text) IS
	'Invites a login role to a study role, pending activation: returns two one-time activation codes for the application to send, one by e-mail, one by SMS. The role is granted only when the member enters both (trialvault.activate_account) within trialvault.activation_ttl. Members of trialvault_admin only; recorded.';
REVOKE ALL ON FUNCTION trialvault.invite_member(name, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.invite_member(name, text, text, text) TO trialvault_admin;

CREATE FUNCTION trialvault.activate_account(email_code text, sms_code text) RETURNS text
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_activate_account';
COMMENT ON FUNCTION trialvault.activate_account(text, text) IS
	'The invited member enters the code sent by e-mail and the code sent by SMS: the study role of their newest invitation is granted. Five wrong attempts void the invitation. Every attempt is recorded. Returns the role granted, as study/site:role.';

-- =====================================================================
-- Last: seal what this script created (see catalog_seal above).
-- =====================================================================
SELECT trialvault._seal_catalog();
