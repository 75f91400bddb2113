-- Canonical form of metadata: what must hash the same, and what must not.
BEGIN;
SELECT plan(22);

CREATE FUNCTION pg_temp.same(a text, b text) RETURNS boolean LANGUAGE sql AS
	$$ SELECT trialvault.metadata_sha256(a::xml) = trialvault.metadata_sha256(b::xml) $$;

-- Equivalence classes: each pair must hash equal.
SELECT ok(pg_temp.same('<m a="1" b="2"/>', '<m b="2" a="1"/>'), 'attribute order');
SELECT ok(pg_temp.same('<m a="1"/>', $$<m a='1'/>$$), 'quote style');
SELECT ok(pg_temp.same('<m   a="1"    b="2"  />', '<m a="1" b="2"/>'), 'whitespace inside tags');
SELECT ok(pg_temp.same('<m/>', '<m></m>'), 'empty-element tag vs start/end tags');
SELECT ok(pg_temp.same('<?xml version="1.0" encoding="UTF-8"?><m/>', '<m/>'), 'XML declaration');
SELECT ok(pg_temp.same('<m><!-- reviewed --><v>1</v></m>', '<m><v>1</v></m>'), 'comments');
SELECT ok(pg_temp.same('<m xmlns:unused="urn:u"><v>1</v></m>', '<m><v>1</v></m>'), 'unused namespace declaration');
SELECT ok(pg_temp.same('<p:m xmlns:p="urn:x"><p:v xmlns:p="urn:x">1</p:v></p:m>', '<p:m xmlns:p="urn:x"><p:v>1</p:v></p:m>'),
	'redundant namespace redeclaration');
SELECT ok(pg_temp.same('<m xmlns:a="urn:a" xmlns:b="urn:b"><a:v/><b:w/></m>', '<m><a:v xmlns:a="urn:a"/><b:w xmlns:b="urn:b"/></m>'),
	'where a namespace is declared');
SELECT ok(pg_temp.same('<m><v>a&amp;b</v></m>', '<m><v><![CDATA[a&b]]></v></m>'), 'CDATA vs escaped text');
SELECT ok(pg_temp.same('<m v="&#x41;"/>', '<m v="A"/>'), 'character references');
SELECT ok(pg_temp.same('<m><v>été</v></m>', '<m><v>&#233;t&#xE9;</v></m>'), 'Unicode as characters or references');

-- What must not hash equal.
SELECT ok(NOT pg_temp.same('<m a="1"/>', '<m a="2"/>'), 'attribute value');
SELECT ok(NOT pg_temp.same('<m><v>1</v></m>', '<m><v>1 </v></m>'), 'whitespace inside text content');
SELECT ok(NOT pg_temp.same('<note><b>foo</b> <i>bar</i></note>', '<note><b>foo</b><i>bar</i></note>'),
	'whitespace between elements is text (standard C14N)');
SELECT ok(pg_temp.same(E'<m>\n  <v>1</v>\n</m>', E'<m>\n  <v   >1</v\n>\n</m>'), 'whitespace inside end and start tags');
SELECT ok(NOT pg_temp.same('<m><v>1</v><w>2</w></m>', '<m><w>2</w><v>1</v></m>'), 'element order');
SELECT ok(NOT pg_temp.same('<p:m xmlns:p="urn:x"/>', '<p:m xmlns:p="urn:y"/>'), 'namespace URI');
SELECT ok(NOT pg_temp.same('<p:m xmlns:p="urn:x"/>', '<q:m xmlns:q="urn:x"/>'), 'namespace prefix (exclusive C14N keeps prefixes)');
SELECT ok(NOT pg_temp.same('<m><V>1</V></m>', '<m><v>1</v></m>'), 'element name case');

-- The canonical bytes themselves, for one document.
SELECT is(convert_from(trialvault.metadata_c14n($$<?xml version="1.0"?><m  b='2' a="1"><!-- c --><x:k xmlns:x="urn:k" xmlns:y="urn:y">t</x:k>
  <z/></m>$$), 'UTF8'),
	E'<m a="1" b="2"><x:k xmlns:x="urn:k">t</x:k>\n  <z></z></m>', 'canonical bytes of a sample document');
SELECT is(trialvault.metadata_sha256('<m/>'), sha256(convert_to('<m></m>', 'UTF8')), 'metadata_sha256 is sha256 of metadata_c14n');

SELECT * FROM finish();
ROLLBACK;
