-- trialvault 0.1 -> 0.2: XML metadata (validation, PHI screening, canonical form, extraction).
\echo Use "ALTER EXTENSION trialvault UPDATE TO '0.2'" to load this file. \quit

-- C functions over libxml2 (extension/xmlmeta.c).
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

CREATE FUNCTION trialvault._xml_nodes(doc xml,
	OUT kind text, OUT name text, OUT path text, OUT value text)
	RETURNS SETOF record
	LANGUAGE C IMMUTABLE STRICT
	AS 'MODULE_PATHNAME', 'tv_xml_nodes';
COMMENT ON FUNCTION trialvault._xml_nodes(xml) IS
	'Internal: every element, attribute and non-blank text node of a document, for PHI screening.';
REVOKE ALL ON FUNCTION trialvault._check_xsd(xml) FROM PUBLIC;
REVOKE ALL ON FUNCTION trialvault._validate(xml, xml, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION trialvault._xml_nodes(xml) FROM PUBLIC;

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

CREATE FUNCTION trialvault.screen_metadata(study text, doc xml)
	RETURNS TABLE (rule_name text, kind text, path text)
	LANGUAGE plpgsql STABLE
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM trialvault._require_args('screen_metadata', study, doc::text);
	RETURN QUERY
	SELECT DISTINCT r.rule_name, r.kind, n.path
	FROM trialvault.phi_rules_for(screen_metadata.study) r
	JOIN trialvault._xml_nodes(screen_metadata.doc) n ON
		CASE r.kind
			WHEN 'element' THEN n.kind = 'element' AND lower(n.name) = lower(r.expr)
			WHEN 'attribute' THEN n.kind = 'attribute' AND lower(n.name) = lower(r.expr)
			WHEN 'name' THEN n.kind IN ('element', 'attribute') AND lower(n.name) = lower(r.expr)
			WHEN 'pattern' THEN n.kind IN ('text', 'attribute') AND n.value ~ r.expr
			ELSE false
		END
	UNION
	SELECT r.rule_name, r.kind, NULL
	FROM trialvault.phi_rules_for(screen_metadata.study) r
	-- CASE, not AND: the regexes of pattern rules are no XPath and must never reach xpath_exists.
	WHERE CASE WHEN r.kind = 'xpath' THEN xpath_exists(r.expr, screen_metadata.doc) ELSE false END
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

-- What document loading calls: validate, then screen; refuse with a clear error.
CREATE FUNCTION trialvault.check_metadata(study text, doc xml, schema_name text DEFAULT NULL)
	RETURNS integer
	LANGUAGE plpgsql STABLE
	SECURITY DEFINER
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
			WHERE d.study = check_metadata.study ORDER BY d.tv_seq DESC LIMIT 1;
	END IF;
	IF sname IS NOT NULL THEN
		SELECT * INTO s FROM trialvault._current_schema(study, sname);
		checked_version := s.version;
		-- The error goes to the server log: libxml2 quotes offending values
		-- ('...' is not a valid value, The value '...'), so mask them.
		SELECT count(*), string_agg(format('line %s: %s', v.line,
				regexp_replace(regexp_replace(v.message,
					'''[^'']*''( is not| has a length| does not)', '(value not shown)\1', 'g'),
					'The value ''[^'']*''', 'The value (not shown)', 'g')), E'\n')
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
COMMENT ON FUNCTION trialvault.check_metadata(text, xml, text) IS
	'Checks metadata as document loading does: screens it for PHI (22000 naming the rule, never the value), then validates it against the named schema or the study''s default (2200M with the first errors, values masked). Returns the schema version checked against, or NULL when no schema applies.';

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
