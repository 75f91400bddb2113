-- trialvault 0.4 -> 0.5: metadata checked in one pass.
\echo Use "ALTER EXTENSION trialvault UPDATE TO '0.5'" to load this file. \quit

-- ---------------------------------------------------------------------
-- inspect_metadata: screen, validate and hash from one parse
-- ---------------------------------------------------------------------

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

CREATE OR REPLACE FUNCTION trialvault.check_metadata(study text, doc xml, schema_name text DEFAULT NULL)
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

-- Document loading checks and hashes the metadata in that one pass.
CREATE OR REPLACE FUNCTION trialvault._load_document(requester name, study text, site text,
	doc_type text, contains_phi boolean, metadata xml, content bytea, schema_name text)
	RETURNS bigint
	LANGUAGE plpgsql AS $$
DECLARE
	sid integer;
	id bigint;
	ver integer;
	sname text;
	mhash bytea;
	state text;
	msg text;
BEGIN
	IF study IS NULL OR site IS NULL OR doc_type IS NULL OR contains_phi IS NULL
	   OR metadata IS NULL OR content IS NULL THEN
		RAISE EXCEPTION 'arguments of trialvault.load_document must not be NULL (only schema_name may be)'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	sid := trialvault._require_study(study);
	PERFORM trialvault._require_site(study, site);
	IF doc_type NOT IN ('source', 'protocol', 'blank_crf', 'sae', 'eform', 'other') THEN
		RAISE EXCEPTION 'unknown document type "%"', left(doc_type, 100)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Document types: source, protocol, blank_crf, sae, eform, other.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM trialvault._current_roles(study, requester) c
				   WHERE c.site = _load_document.site
					 AND c.study_role IN ('site_staff', 'investigator')) THEN
		RAISE EXCEPTION 'permission denied to load documents for site % of study %', site, study
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s is neither site staff nor investigator of that site.', requester),
				  HINT = 'A trialvault_admin grants study roles with trialvault.grant_role().';
	END IF;
	IF length(content) = 0 THEN
		RAISE EXCEPTION 'document content is empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;

	BEGIN
		SELECT i.checked_schema, i.checked_version, i.metadata_sha256 INTO sname, ver, mhash
			FROM trialvault.inspect_metadata(study, metadata, schema_name) i;
	EXCEPTION WHEN data_exception THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		IF state = '22000' THEN
			-- A PHI refusal: on record even though this transaction fails.
			-- If that cannot be done, the load is refused all the same.
			BEGIN
				PERFORM trialvault._audit_durable('metadata_phi_refused', requester, study, site, NULL, msg);
			EXCEPTION WHEN OTHERS THEN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = PG_EXCEPTION_DETAIL;
				RAISE WARNING 'the refusal below could not be put on record: %', msg
					USING DETAIL = state;
			END;
		END IF;
		RAISE;
	END;

	id := nextval(pg_get_serial_sequence('trialvault.documents', 'doc_id'));
	INSERT INTO trialvault.documents (doc_id, study, site, doc_type, contains_phi,
		metadata, metadata_schema, metadata_schema_version, metadata_sha256,
		content, content_enc, content_length, content_sha256, loaded_by)
	VALUES (id, study, site, doc_type, contains_phi,
		metadata, sname, ver, mhash,
		CASE WHEN contains_phi THEN NULL ELSE content END,
		CASE WHEN contains_phi THEN trialvault._encrypt(sid, study, id, 'content', content) END,
		length(content), sha256(content), requester);
	PERFORM trialvault._audit('document_loaded', requester, study, site, id, doc_type);
	RETURN id;
END
$$;

-- ---------------------------------------------------------------------
-- The log writer waits briefly for announced records before a commit
-- ---------------------------------------------------------------------

-- log_writer_status() gains a column; OUT columns cannot be added in place.
DROP FUNCTION trialvault.log_writer_status();
CREATE FUNCTION trialvault.log_writer_status(
	OUT pid integer,
	OUT database text,
	OUT queued bigint,
	OUT written bigint,
	OUT failed bigint,
	OUT batches bigint,
	OUT queue_size integer,
	OUT announced integer)
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_log_writer_status';
COMMENT ON FUNCTION trialvault.log_writer_status() IS
	'The log writer: its pid (NULL when not running), database, records waiting, records written and failed, commits (batches) since server start, the queue''s size, and the backends deciding a decryption right now (whose records the writer briefly waits for before a commit).';
