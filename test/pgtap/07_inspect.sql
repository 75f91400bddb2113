-- inspect_metadata(): the one-pass check document loading uses.  Its
-- streaming path must compute exactly what the tree path (metadata_sha256,
-- screen_metadata, validate_metadata) computes, so most tests here are
-- differential: many generated documents, both ways, no difference allowed.
BEGIN;
SELECT plan(33);

SELECT setseed(0.4242);

-- A random well-formed (mostly) document: namespaces declared, redeclared
-- and undeclared at random, namespaced and plain attributes, text with
-- references, CDATA, comments and processing instructions.
CREATE FUNCTION pg_temp.rnd(VARIADIC choices text[]) RETURNS text LANGUAGE sql AS
	$$ SELECT choices[1 + floor(random() * array_length(choices, 1))::int] $$;

CREATE FUNCTION pg_temp.element(depth int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	name text := pg_temp.rnd('m', 'v', 'a:v', 'b:w', 'p:x', 'item', 'Z', 'a:item');
	decls text := '';
	attrs text := '';
	body text := '';
	used text[] := '{}';
	a text;
	i int;
BEGIN
	IF random() < 0.3 THEN
		decls := decls || pg_temp.rnd(' xmlns="urn:d1"', ' xmlns=""', ' xmlns="urn:d2"');
	END IF;
	IF random() < 0.3 THEN
		decls := decls || pg_temp.rnd(' xmlns:a="urn:a"', ' xmlns:a="urn:a2"', ' xmlns:b="urn:a"',
									  ' xmlns:p="urn:p"', ' xmlns:p="urn:b"');
	END IF;
	FOR i IN 1 .. floor(random() * 4)::int LOOP
		a := pg_temp.rnd('id="1"', 'a:id="2"', 'b:key="3"', 'x="a&amp;b"',
						 'y="&#9;t&#10;n&#13;r end"', 'z="&quot;q&lt;&gt;"', $a$w='single "q"'$a$,
						 'xml:lang="de"', 'p:id="4"', 'k="été"', 'e=""', 'sp="  two  spaces "');
		IF split_part(a, '=', 1) <> ALL (used) THEN
			used := used || split_part(a, '=', 1);
			attrs := attrs || ' ' || a;
		END IF;
	END LOOP;
	FOR i IN 1 .. floor(random() * 5)::int LOOP
		IF depth < 3 AND random() < 0.4 THEN
			body := body || pg_temp.element(depth + 1);
		ELSE
			body := body || pg_temp.rnd('t', ' ', E'\n  ', 'a&amp;b', '&lt;x&gt;', 'é', '&#13;',
										'<![CDATA[x<y&z]]>', '<!--c-->', '<?pi some data?>',
										'"quoted"', E'\t', '&#x1F600;', ']]&gt;');
		END IF;
	END LOOP;
	IF body = '' AND random() < 0.5 THEN
		RETURN '<' || name || decls || attrs || '/>';
	END IF;
	RETURN '<' || name || decls || attrs || '>' || body || '</' || name || '>';
END
$$;

CREATE FUNCTION pg_temp.document() RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.rnd('', '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>', '<!--lead-->')
		|| '<r xmlns:a="urn:a" xmlns:b="urn:b" xmlns:p="urn:p">' || pg_temp.element(1) || pg_temp.element(1) || '</r>'
		|| pg_temp.rnd('', E'\n', '<!--tail-->')
$$;

-- The hash or the SQLSTATE, each way.
CREATE FUNCTION pg_temp.stream_hash(study text, doc text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN (SELECT encode(i.metadata_sha256, 'hex') FROM trialvault.inspect_metadata(study, doc::xml) i);
EXCEPTION WHEN OTHERS THEN
	RETURN 'error ' || SQLSTATE;
END
$$;
CREATE FUNCTION pg_temp.tree_hash(doc text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN encode(trialvault.metadata_sha256(doc::xml), 'hex');
EXCEPTION WHEN OTHERS THEN
	RETURN 'error ' || SQLSTATE;
END
$$;

-- Turn the default screening off for the canonical-form study, so that
-- only the canonical form decides.
SELECT trialvault.add_phi_rule('DIFF', r.rule_name, r.kind, r.expr, false)
FROM trialvault.default_phi_rules() r;

CREATE TEMP TABLE docs AS
	SELECT g AS n, pg_temp.document() AS doc FROM generate_series(1, 600) g;
CREATE TEMP TABLE results AS
	SELECT n, doc, pg_temp.stream_hash('DIFF', doc) AS stream, pg_temp.tree_hash(doc) AS tree FROM docs;

SELECT is((SELECT count(*) FROM results WHERE stream IS DISTINCT FROM tree), 0::bigint,
	'600 random documents: inspect_metadata hashes exactly as metadata_sha256 (or fails alike)');
SELECT cmp_ok((SELECT count(*) FROM results WHERE stream NOT LIKE 'error%'), '>=', 400::bigint,
	'most of them are well-formed');
SELECT cmp_ok((SELECT count(*) FROM results WHERE doc LIKE '%xmlns=""%' AND stream NOT LIKE 'error%'), '>=', 30::bigint,
	'many undeclare the default namespace');
SELECT cmp_ok((SELECT count(*) FROM results WHERE doc ~ 'xmlns:a="urn:a2"' AND stream NOT LIKE 'error%'), '>=', 30::bigint,
	'many rebind a prefix to another URI');
SELECT cmp_ok((SELECT count(*) FROM results WHERE doc LIKE '%CDATA%' AND doc NOT LIKE '%<?pi%' AND stream NOT LIKE 'error%'),
	'>=', 30::bigint, 'many have CDATA and no processing instruction (the stream renders them)');
SELECT cmp_ok((SELECT count(*) FROM results WHERE doc LIKE '%<?pi%' AND stream NOT LIKE 'error%'), '>=', 30::bigint,
	'many have processing instructions (the tree renders them)');
SELECT is((SELECT array_agg(pg_temp.stream_hash('DIFF', d) || ' / ' || pg_temp.tree_hash(d) ORDER BY n)
		FROM unnest(ARRAY['<m xmlns="urn:q&quot;uote"/>', '<m xmlns:a="urn:a" xmlns:b="urn:a" a:x="1" b:x="2"/>',
						  '<m><u:v/></m>', '<!DOCTYPE m [<!ENTITY e "x">]><m>&e;</m>']) WITH ORDINALITY u(d, n)),
	array_fill('error 2200M / error 2200M'::text, ARRAY[4]),
	'both ways refuse a URI with a quote, a duplicate expanded attribute name, an undeclared prefix, a DOCTYPE');

-- Documents chosen by hand for the corners.
CREATE TEMP TABLE corners (doc text);
INSERT INTO corners VALUES
	('<m/>'), ('<m a="1" b="2"/>'), ($$<m b='2' a="1"/>$$),
	('<p:m xmlns:p="urn:x"><p:v xmlns:p="urn:x">1</p:v></p:m>'),
	('<p:m xmlns:p="urn:x"><p:v xmlns:p="urn:y">1</p:v></p:m>'),
	('<m xmlns="urn:d"><v xmlns=""><w xmlns="urn:d"/></v></m>'),
	('<m xmlns=""><v/></m>'),
	('<m xmlns:a="urn:a" xmlns:b="urn:a" a:x="1" b:y="2"/>'),
	('<m xmlns:a="urn:b" xmlns:b="urn:a" a:x="1" b:x="2" x="0"/>'),
	('<m xml:lang="en" xml:space="preserve"><v xml:lang="de"/></m>'),
	(E'<m a="&#9;&#10;&#13; x"><v>&#13;\r\n</v></m>'),
	('<m><![CDATA[]]></m>'), ('<m><![CDATA[a]]><![CDATA[b]]>c</m>'),
	('<m>&lt;&gt;&amp;&quot;&apos;</m>'),
	(E'<?xml version="1.0" encoding="ISO-8859-1"?><m>caf\u00e9</m>'),
	($$<m xmlns:a="urn:a'b" a:v="1"/>$$),
	('<?pi before?><m/><?pi after?>'), ('<m><?pi inside?></m>'),
	('<a:m xmlns:a="urn:a"><b:v xmlns:b="urn:a"/></a:m>'),
	('<m><v xmlns:p="urn:p" p:a="1"><w p:b="2"/></v></m>');
UPDATE corners SET doc = replace(doc, '<w p:b="2"/>', '<w xmlns:p="urn:p" p:b="2"/>');
SELECT is((SELECT count(*) FROM corners WHERE pg_temp.stream_hash('DIFF', doc) IS DISTINCT FROM pg_temp.tree_hash(doc)),
	0::bigint, 'hand-picked corners (undeclared defaults, shared URIs, xml:*, references, CDATA, quotes in URIs, PIs, encodings): no difference');
SELECT is((SELECT count(*) FROM corners WHERE pg_temp.stream_hash('DIFF', doc) LIKE 'error%'), 0::bigint,
	'and every corner is accepted');

-- Screening: inspect_metadata refuses exactly what screen_metadata finds.
SELECT trialvault.add_phi_rule('SCR', 'anchored', 'pattern', '^secret$');
SELECT trialvault.add_phi_rule('SCR', 'lookahead', 'pattern', 'foo(?=bar)');
SELECT trialvault.add_phi_rule('SCR', 'backref', 'pattern', '(zz)\1');
SELECT trialvault.add_phi_rule('SCR', 'ending', 'pattern', 'tail\Z');
SELECT trialvault.add_phi_rule('SCR', 'ward', 'element', 'Ward');
SELECT trialvault.add_phi_rule('SCR', 'bed', 'attribute', 'Bed');
SELECT trialvault.add_phi_rule('SCR', 'umlaut', 'name', 'Größe');

CREATE FUNCTION pg_temp.refused(study text, doc text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM trialvault.inspect_metadata(study, doc::xml);
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

CREATE FUNCTION pg_temp.screen_doc() RETURNS text LANGUAGE sql AS $$
	SELECT '<m>' || string_agg(pg_temp.rnd(
		'<v>123-45-6789</v>', '<v>x 123-45-6789</v>', '<v>1234-45-6789</v>', E'<v>line\n123-45-6789</v>',
		'<v>123-45<!--c-->-6789</v>', '<v><![CDATA[123-45]]>-6789</v>', '<v a="jane@example.org"/>',
		'<v>jane@example</v>', '<v>secret</v>', '<v> secret</v>', E'<v>x\nsecret</v>', '<v>secret<!---->x</v>',
		'<v>foobar</v>', '<v>foo bar</v>', E'<v>foo\nbar</v>', '<v>zzzz</v>', '<v>zz zz</v>',
		'<v>the tail</v>', E'<v>tail\nmore</v>', '<v>tail<w/></v>',
		'<Ward/>', '<v ward="1"/>', '<v Bed="2"/>', '<BED/>', '<größe/>', '<GRÖSSE/>', '<v GRÖßE="1"/>',
		'<patientname/>', '<v PatientID="x"/>', '<v>clean</v>', '<w>2026-01-01</w>', '<x:v xmlns:x="urn:x" x:DOB="1"/>'),
		'') || '</m>'
	FROM generate_series(1, 1 + floor(random() * 3)::int)
$$;

CREATE TEMP TABLE screened AS
	SELECT g AS n, pg_temp.screen_doc() AS doc FROM generate_series(1, 400) g;
ALTER TABLE screened ADD COLUMN inspect text, ADD COLUMN rules bigint;
UPDATE screened SET inspect = pg_temp.refused('SCR', doc),
	rules = (SELECT count(*) FROM trialvault.screen_metadata('SCR', doc::xml));

SELECT is((SELECT count(*) FROM screened WHERE (inspect = '22000') IS DISTINCT FROM (rules > 0)), 0::bigint,
	'400 random documents: inspect_metadata refuses (22000) exactly those screen_metadata flags');
SELECT is((SELECT count(*) FROM screened WHERE inspect NOT IN ('22000', 'accepted')), 0::bigint,
	'and refuses nothing for another reason');
SELECT cmp_ok((SELECT count(*) FROM screened WHERE inspect = 'accepted'), '>=', 40::bigint, 'some are clean');
SELECT cmp_ok((SELECT count(*) FROM screened WHERE inspect = '22000'), '>=', 40::bigint, 'some are not');

-- Single cases, both ways.
SELECT is(pg_temp.refused('SCR', '<m><v>123-45<!--c-->-6789</v></m>'), 'accepted',
	'a comment splits a text node: no SSN across it (as the tree sees it)');
SELECT is(pg_temp.refused('SCR', E'<m><v>x\nsecret</v></m>'), 'accepted', '^secret$ does not match a line inside a value');
SELECT is(pg_temp.refused('SCR', '<m><v a="secret"/></m>'), '22000', '^secret$ matches a whole attribute value');
SELECT is(pg_temp.refused('SCR', E'<m><v>foo\nbar</v></m>'), 'accepted', 'a lookahead rule sees the value alone');
SELECT is(pg_temp.refused('SCR', '<m><v>foobar</v></m>'), '22000', 'a lookahead rule matches');
SELECT is(pg_temp.refused('SCR', '<m><v>the tail</v><w>x</w></m>'), '22000', E'\\Z matches at the end of a value, not only of the document');
SELECT is(pg_temp.refused('SCR', '<m><GRÖSSE/></m>'), 'accepted', 'a non-ASCII name rule compares as lower() does (ß is not ss)');
SELECT is(pg_temp.refused('SCR', '<m><größe/></m>'), '22000', 'a non-ASCII name rule matches case-insensitively');

-- The cache of rules follows new rules at once, in this transaction too.
SELECT is(pg_temp.refused('SCR', '<m><v>quux</v></m>'), 'accepted', 'quux is clean');
SELECT trialvault.add_phi_rule('SCR', 'quux', 'pattern', 'qu+x');
SELECT is(pg_temp.refused('SCR', '<m><v>quux</v></m>'), '22000', 'a rule added in this transaction applies to the next call');
SELECT trialvault.add_phi_rule('SCR', 'quux', 'pattern', 'qu+x', false);
SELECT is(pg_temp.refused('SCR', '<m><v>quux</v></m>'), 'accepted', 'and switching it off does too');

-- Validation, and a schema with default attributes: the stream must not
-- hash attributes the document does not have.
SELECT trialvault.register_metadata_schema('VAL', 'm', $$<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="m"><xs:complexType><xs:sequence><xs:element name="v" type="xs:int" maxOccurs="3"/></xs:sequence>
    <xs:attribute name="kind" type="xs:string" default="plain"/></xs:complexType></xs:element></xs:schema>$$);
SELECT is((SELECT i.metadata_sha256 FROM trialvault.inspect_metadata('VAL', '<m><v>1</v></m>', 'm') i),
	trialvault.metadata_sha256('<m><v>1</v></m>'), 'a default attribute of the schema does not enter the hash');
SELECT is((SELECT i.checked_schema || ' ' || i.checked_version FROM trialvault.inspect_metadata('VAL', '<m><v>1</v></m>', 'm') i),
	'm 1', 'the schema and version checked against are returned');
SELECT throws_like($$SELECT trialvault.inspect_metadata('VAL', '<m><v>one</v></m>', 'm')$$,
	'metadata is not valid against schema "m" version 1 of study "VAL"', 'an invalid document is refused with the report''s message');

-- A study with an XPath rule takes the tree path, with the same results.
SELECT trialvault.add_phi_rule('XP', 'secret-attr', 'xpath', '//v[@secret]');
SELECT is(pg_temp.refused('XP', '<m><v/></m>'), 'accepted', 'tree path: a document the XPath rule does not select passes');
SELECT is(pg_temp.refused('XP', '<m><v secret="1"/></m>'), '22000', 'tree path: one it selects is refused');
SELECT is(pg_temp.refused('XP', '<m><v>123-45-6789</v></m>'), '22000', 'tree path: the default rules apply too');
SELECT is((SELECT count(*) FROM results r WHERE r.stream NOT LIKE 'error%'
		   AND CASE WHEN EXISTS (SELECT 1 FROM trialvault.screen_metadata('XP', r.doc::xml)) THEN false
					ELSE (SELECT encode(i.metadata_sha256, 'hex') FROM trialvault.inspect_metadata('XP', r.doc::xml) i) <> r.tree END),
	0::bigint, 'tree path: the same hashes for the generated documents');

-- Rights: anyone may check metadata (the rules are read as the extension
-- owner); nobody but the extension calls the report.
SELECT ok(NOT has_function_privilege('public', 'trialvault._check_metadata_report(text, xml, text)', 'EXECUTE'),
	'PUBLIC cannot run the internal report');
CREATE ROLE tv_inspect_nobody;
SET ROLE tv_inspect_nobody;
SELECT is(pg_temp.refused('SCR', '<m><v>123-45-6789</v></m>'), '22000',
	'a role without rights gets the verdict (and no table access is needed)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
