-- XML metadata: schemas, validation, PHI screening, extraction, safety.
\i sql/include/try.sql

SELECT extversion FROM pg_extension WHERE extname = 'trialvault';

-- Registering schemas: versions, and libxml2's message for a malformed one.
SELECT trialvault.register_metadata_schema('ONCO-7', 'visit', $x$
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="meta">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="visit" type="xs:positiveInteger"/>
        <xs:element name="form" type="xs:string"/>
        <xs:element name="taken" type="xs:date" minOccurs="0"/>
      </xs:sequence>
      <xs:attribute name="kind" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
</xs:schema>$x$);
SELECT trialvault.register_metadata_schema('ONCO-7', 'visit', $x$
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="meta">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="visit" type="xs:positiveInteger"/>
        <xs:element name="form" type="xs:string"/>
        <xs:element name="taken" type="xs:date" minOccurs="0"/>
        <xs:element name="page" type="xs:int" minOccurs="0"/>
      </xs:sequence>
      <xs:attribute name="kind" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
</xs:schema>$x$);
SELECT study, name, version, length(xsd_sha256) FROM trialvault.metadata_schemas ORDER BY version;

SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''bad'', ''<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="m" type="xs:nosuch"/></xs:schema>'')'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''bad'', ''<notaschema/>'')'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''bad'', ''<xs:schema'')'),
	('SELECT trialvault.register_metadata_schema(NULL, ''x'', ''<a/>'')'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', NULL, ''<a/>'')'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''x'', NULL)'),
	('SELECT trialvault.register_metadata_schema('''', ''x'', ''<a/>'')'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', repeat(''n'', 100), ''<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>'')'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''x'', 42)'),
	('UPDATE trialvault.metadata_schemas SET version = 9'),
	('DELETE FROM trialvault.metadata_schemas')
) AS t(stmt);

-- Validation against the newest version, with line and message for each error.
SELECT trialvault.validate_metadata('ONCO-7', 'visit', '<meta kind="source"><visit>3</visit><form>CRF-07</form><page>2</page></meta>');
SELECT trialvault.validate_metadata('ONCO-7', 'visit', '<meta kind="source"><visit>0</visit><form>CRF-07</form></meta>');
SELECT * FROM trialvault.metadata_errors('ONCO-7', 'visit', '<meta>
<visit>zero</visit>
<taken>2026-13-45</taken>
</meta>');
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.validate_metadata(''ONCO-7'', ''nope'', ''<meta/>'')'),
	('SELECT trialvault.validate_metadata(''OTHER'', ''visit'', ''<meta/>'')'),
	('SELECT trialvault.validate_metadata(NULL, ''visit'', ''<meta/>'')'),
	('SELECT trialvault.validate_metadata(''ONCO-7'', ''visit'', NULL)'),
	('SELECT * FROM trialvault.metadata_errors(''ONCO-7'', NULL, ''<meta/>'')'),
	('SELECT trialvault.validate_metadata(''ONCO-7'', ''visit'', ''<meta>'')'),
	('SELECT trialvault.validate_metadata(''ONCO-7'', ''visit'', ''just text'')')
) AS t(stmt);

-- PHI screening: the built-in rules, case-insensitively, and DICOM-style names.
SELECT * FROM trialvault.screen_metadata('ONCO-7', '<meta kind="source"><visit>3</visit><form>CRF-07</form></meta>');
SELECT * FROM trialvault.screen_metadata('ONCO-7', $x$<meta>
  <patientname>Jane Roe</patientname>
  <Subject PatientID="12345" dob="1970-01-01"/>
  <PatientsBirthDate>19700101</PatientsBirthDate>
  <note>call 555-12-3456 or jane@example.org</note>
</meta>$x$);
-- Study rules: an XPath, a value pattern, and switching a default off for one study.
SELECT trialvault.add_phi_rule('ONCO-7', 'initials-attr', 'xpath', '//*[@initials]') > 0 AS added;
SELECT trialvault.add_phi_rule('ONCO-7', 'nhs-number', 'pattern', '[0-9]{3} [0-9]{3} [0-9]{4}') > 0 AS added;
SELECT trialvault.add_phi_rule('ONCO-7', 'email', 'name', 'Email', false) > 0 AS added;
SELECT * FROM trialvault.screen_metadata('ONCO-7', '<meta><s initials="JR"/><Email>x</Email><n>943 476 5919</n></meta>');
SELECT * FROM trialvault.screen_metadata('OTHER', '<meta><s initials="JR"/><Email>x</Email><n>943 476 5919</n></meta>');
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.add_phi_rule(''ONCO-7'', ''bad-re'', ''pattern'', ''(unclosed'')'),
	('SELECT trialvault.add_phi_rule(''ONCO-7'', ''bad-xp'', ''xpath'', ''//['')'),
	('SELECT trialvault.add_phi_rule(''ONCO-7'', ''bad-kind'', ''regex'', ''x'')'),
	('SELECT trialvault.add_phi_rule(''ONCO-7'', ''empty'', ''name'', '''')'),
	('SELECT trialvault.add_phi_rule(NULL, ''x'', ''name'', ''x'')'),
	('SELECT * FROM trialvault.screen_metadata(NULL, ''<a/>'')'),
	('SELECT * FROM trialvault.screen_metadata(''ONCO-7'', NULL)')
) AS t(stmt);

-- Extraction: first match or NULL, typed, with namespaces, usable in an index.
SELECT trialvault.meta_text('<meta><visit>3</visit><visit>4</visit></meta>', '/meta/visit') AS first,
	trialvault.meta_text('<meta/>', '/meta/visit') AS none,
	trialvault.meta_int('<meta><visit> 12 </visit></meta>', '/meta/visit') AS int,
	trialvault.meta_date('<meta><taken>2026-02-28</taken></meta>', '//taken') AS date,
	trialvault.meta_text('<meta kind="sae"/>', '/meta/@kind') AS attr,
	trialvault.meta_text('<meta><a>x</a><a>y</a></meta>', 'count(/meta/a)') AS expr,
	trialvault.meta_text('<o:meta xmlns:o="urn:odm"><o:visit>5</o:visit></o:meta>', '/x:meta/x:visit',
		ARRAY[ARRAY['x', 'urn:odm']]) AS ns,
	trialvault.meta_text(NULL, '/a') AS null_in;
SELECT trialvault.meta_text('<m><v>Grüße – 日本語</v></m>', '/m/v') AS unicode;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.meta_int(''<m><v>3.5</v></m>'', ''/m/v'')'),
	('SELECT trialvault.meta_int(''<m><v>99999999999999999999</v></m>'', ''/m/v'')'),
	('SELECT trialvault.meta_date(''<m><d>01/02/2026</d></m>'', ''/m/d'')'),
	('SELECT trialvault.meta_date(''<m><d>2026-02-30</d></m>'', ''/m/d'')'),
	('SELECT trialvault.meta_text(''<m/>'', '''')'),
	('SELECT trialvault.meta_text(''<m/>'', ''///'')'),
	('SELECT trialvault.meta_text(''<m/>'', ''/x:m'')'),
	('SELECT trialvault.meta_text(''<m/>'', ''/m'', ARRAY[''x''])'),
	('SELECT trialvault.meta_text(''<m/>'', ''/m'', ARRAY[ARRAY[''x'', NULL]])')
) AS t(stmt);

CREATE TABLE doc_meta (id int, meta xml);
INSERT INTO doc_meta SELECT i, ('<meta kind="source"><visit>' || (i % 10) || '</visit><form>F' || i || '</form></meta>')::xml
	FROM generate_series(1, 2000) i;
CREATE INDEX doc_meta_visit ON doc_meta (trialvault.meta_int(meta, '/meta/visit'));
ANALYZE doc_meta;
EXPLAIN (COSTS OFF) SELECT id FROM doc_meta WHERE trialvault.meta_int(meta, '/meta/visit') = 7;
SELECT count(*) FROM doc_meta WHERE trialvault.meta_int(meta, '/meta/visit') = 7;

-- Hostile documents: no DTDs, no external entities, no entity bombs, a size limit.
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.metadata_c14n(''<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>'')'),
	('SELECT trialvault.meta_text(''<!DOCTYPE m [<!ENTITY e "x">]><m>&e;</m>'', ''/m'')'),
	('SELECT trialvault.metadata_c14n(''<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]><l>&h;</l>''::text::xml)'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''dtd'', ''<!DOCTYPE xs:schema SYSTEM "http://example.com/x.dtd"><xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>'')'),
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''net'', ''<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:include schemaLocation="file:///etc/passwd"/></xs:schema>'')')
) AS t(stmt);
SET trialvault.max_metadata_size = '4kB';
SELECT pg_temp.try('SELECT trialvault.metadata_sha256((''<m>'' || repeat(''x'', 5000) || ''</m>'')::xml)');
RESET trialvault.max_metadata_size;
SELECT length(trialvault.metadata_sha256(('<m>' || repeat('x', 5000) || '</m>')::xml));

-- Who may register: not PUBLIC.
CREATE ROLE regress_tv_xml LOGIN;
SET ROLE regress_tv_xml;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.register_metadata_schema(''ONCO-7'', ''x'', ''<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>'')'),
	('SELECT trialvault.add_phi_rule(''ONCO-7'', ''x'', ''name'', ''x'')'),
	('INSERT INTO trialvault.phi_rules (rule_name, kind, expr) VALUES (''x'', ''name'', ''x'')'),
	('SELECT length(trialvault.metadata_sha256(''<a/>''))'),
	('SELECT trialvault.validate_metadata(''ONCO-7'', ''visit'', ''<meta kind="k"><visit>1</visit><form>f</form></meta>'')'),
	('SELECT count(*) FROM trialvault.metadata_errors(''ONCO-7'', ''visit'', ''<meta/>'')'),
	('SELECT count(*) FROM trialvault.screen_metadata(''ONCO-7'', ''<meta><DOB>x</DOB></meta>'')'),
	('SELECT trialvault.check_metadata(''ONCO-7'', ''<meta kind="k"><visit>1</visit><form>f</form></meta>'', ''visit'')'),
	('SELECT count(*) FROM trialvault.phi_rules_for(''ONCO-7'')'),
	('SELECT * FROM trialvault.metadata_schemas')
) AS t(stmt);
RESET ROLE;

-- The registries are protected tables and verify.
SELECT ok, rows_checked > 0 AS has_rows FROM trialvault.verify('trialvault.metadata_schemas');
SELECT ok, rows_checked FROM trialvault.verify('trialvault.phi_rules');
SELECT count(*) AS default_rules FROM trialvault.default_phi_rules();

-- check_metadata: what document loading will call.
SELECT trialvault.check_metadata('ONCO-7', '<meta kind="source"><visit>3</visit><form>F</form></meta>', 'visit') AS version;
SELECT trialvault.check_metadata('ONCO-7', '<meta kind="source"><visit>3</visit><form>F</form></meta>') AS no_default_yet;
SELECT trialvault.set_default_metadata_schema('ONCO-7', 'visit');
SELECT trialvault.check_metadata('ONCO-7', '<meta kind="source"><visit>3</visit><form>F</form></meta>') AS with_default;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT trialvault.check_metadata('ONCO-7', '<meta><visit>0</visit><extra/></meta>');
-- Values quoted by libxml2 never reach the error (or the server log).
SELECT trialvault.check_metadata('ONCO-7', '<meta kind="k"><visit>John Smith</visit><form>f</form></meta>');
SELECT trialvault.check_metadata('ONCO-7', '<meta kind="source"><visit>3</visit><form>Patient J. Roe, jroe@example.org</form></meta>');
SELECT trialvault.check_metadata('OTHER', '<meta><PatientName>Roe</PatientName></meta>') AS screened_only;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.check_metadata(NULL, ''<a/>'')'),
	('SELECT trialvault.check_metadata(''ONCO-7'', NULL)'),
	('SELECT trialvault.check_metadata(''ONCO-7'', ''<a/>'', ''nope'')'),
	('SELECT trialvault.set_default_metadata_schema(''ONCO-7'', ''nope'')'),
	('SELECT trialvault.set_default_metadata_schema(NULL, ''visit'')')
) AS t(stmt);
SELECT ok, rows_checked FROM trialvault.verify('trialvault.metadata_defaults');

-- Namespace prefixes registered per study.
SELECT trialvault.register_metadata_namespace('ONCO-7', 'odm', 'urn:cdisc:odm:1.3');
SELECT trialvault.register_metadata_namespace('ONCO-7', 'x', 'urn:old');
SELECT trialvault.register_metadata_namespace('ONCO-7', 'x', 'urn:new');
SELECT trialvault.study_nsmap('ONCO-7'), trialvault.study_nsmap('NONE');
SELECT trialvault.meta_text('<o:meta xmlns:o="urn:cdisc:odm:1.3" xmlns:n="urn:new"><o:v>odm</o:v><n:v>new</n:v></o:meta>',
	'concat(/odm:meta/odm:v, "+", /odm:meta/x:v)', trialvault.study_nsmap('ONCO-7')) AS both;
SELECT trialvault.meta_text('<o:meta xmlns:o="urn:cdisc:odm:1.3" xmlns:n="urn:new"><n:v>new</n:v></o:meta>',
	'/odm:meta/x:v', trialvault.study_nsmap('ONCO-7')) AS latest_prefix_wins;
SELECT pg_temp.try('SELECT trialvault.register_metadata_namespace(''ONCO-7'', ''1bad'', ''urn:x'')');
SELECT pg_temp.try('SELECT trialvault.register_metadata_namespace(''ONCO-7'', ''p'', NULL)');

-- inspect_metadata: the one-pass check loading uses, with bad input.
SELECT checked_schema, checked_version, metadata_sha256 = trialvault.metadata_sha256(
		'<meta kind="source"><visit>3</visit><form>F</form></meta>') AS same_hash
FROM trialvault.inspect_metadata('ONCO-7', '<meta kind="source"><visit>3</visit><form>F</form></meta>');
SELECT checked_schema IS NULL AS no_schema, metadata_sha256 = trialvault.metadata_sha256('<m/>') AS same_hash
FROM trialvault.inspect_metadata('NO-SUCH-STUDY', '<m/>');
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.inspect_metadata(NULL, ''<a/>'')'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', NULL)'),
	('SELECT trialvault.inspect_metadata('''', ''<a/>'', '''')'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', ''<a/>'', ''nope'')'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', ''<a/>'', repeat(''n'', 65))'),
	('SELECT trialvault.inspect_metadata(repeat(''S'', 65), ''<a/>'')'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', ''not xml'')'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', 42)'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', ''<a>'')'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', ''<a/><b/>''::xml)'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', ''<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>'')'),
	('SELECT trialvault.inspect_metadata(''ONCO-7'', ''<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;</l>'')'),
	('SELECT trialvault.inspect_metadata(''OTHER'', ''<meta><PatientName>Roe</PatientName></meta>'')'),
	('SELECT trialvault.inspect_metadata(''OTHER'', ''<meta><x>call 555-12-3456 now</x></meta>'')')
) AS t(stmt);
SET trialvault.max_metadata_size = '4kB';
SELECT pg_temp.try('SELECT trialvault.inspect_metadata(''ONCO-7'', (''<m>'' || repeat(''x'', 5000) || ''</m>'')::xml)');
RESET trialvault.max_metadata_size;

-- A value with an apostrophe is masked in validation errors too (they reach
-- the server log); on 0.5 "Jane Roe's scan" came through.
\set VERBOSITY default
SELECT trialvault.check_metadata('ONCO-7', '<meta kind="k"><visit>Jane Roe''s scan</visit><form>f</form></meta>');
SELECT trialvault.check_metadata('ONCO-7', '<meta kind="k"><visit>x'' is not a valid value of the atomic type ''xs:string</visit><form>f</form></meta>');
SELECT m, trialvault._mask_validation_message(m) FROM (VALUES
	('Element ''f'': [facet ''pattern''] The value ''O''Brien'' is not accepted by the pattern ''[0-9]+''.'),
	('Element ''f'', attribute ''a'': [facet ''maxLength''] The value ''Roe''s'' has a length of ''5''; this exceeds the allowed maximum length of ''3''.'),
	('Element ''k'': Duplicate key-sequence [''Jane Roe''] in unique identity-constraint ''u''.'),
	('Element ''meta'': The attribute ''kind'' is required but missing.'),
	('Element ''extra'': This element is not expected. Expected is ( form ).')
) v(m);
\set VERBOSITY terse

-- A relative namespace URI is refused wherever metadata is hashed, with the
-- same error (on 0.5 loading hashed it, metadata_sha256 then refused it).
SET client_min_messages = error;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.inspect_metadata(''OTHER'', ''<meta xmlns="u1"><visit>1</visit></meta>'')'),
	('SELECT trialvault.inspect_metadata(''OTHER'', ''<m xmlns="urn:ok"><x xmlns:p="rel/path"/></m>'')'),
	('SELECT trialvault.metadata_sha256(''<m xmlns="u1"/>'')'),
	('SELECT trialvault.metadata_c14n(''<m xmlns:p="../x"><p:y/></m>'')'),
	('SELECT length(trialvault.metadata_sha256(''<m xmlns="urn:ok" xmlns:p="https://example.org/p"><p:y/></m>''))')
) AS t(stmt);
RESET client_min_messages;

-- XPath work is bounded: trialvault.xpath_max_steps (statement_timeout and
-- cancels cannot interrupt an evaluation; test/integration/82 times them).
SELECT pg_temp.try($$SELECT trialvault.meta_text(xmlelement(name r, (SELECT xmlagg(xmlelement(name a, 'x')) FROM generate_series(1, 400))), 'count(//a[count(//a[count(//a) > 0]) > 0])')$$);
SELECT trialvault.meta_text(xmlelement(name r, (SELECT xmlagg(xmlelement(name a, 'x')) FROM generate_series(1, 50))), 'count(//a[count(//a[count(//a) > 0]) > 0])') AS under_the_budget;
SET trialvault.xpath_max_steps = 1000;
SELECT pg_temp.try($$SELECT trialvault.meta_text(xmlelement(name r, (SELECT xmlagg(xmlelement(name a, 'x')) FROM generate_series(1, 50))), 'count(//a[count(//a) > 0])')$$);
SELECT trialvault.meta_int('<m><v>7</v></m>', '/m/v') AS simple_paths_fit;
RESET trialvault.xpath_max_steps;
CREATE ROLE regress_xml_user;
SET ROLE regress_xml_user;
SELECT pg_temp.try('SET trialvault.xpath_max_steps = 1000000000');
RESET ROLE;
