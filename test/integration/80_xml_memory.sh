#!/usr/bin/env bash
# libxml2 objects are freed on every error path: a backend that keeps
# hitting errors in the XML functions (inside exception blocks) must not
# grow.  Each case runs 3000 failing calls twice in one session; after the
# first round has warmed caches up, the second may grow the backend's RSS
# by at most 2 MB (a leak of 1 KB a call would be 3 MB).
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

tv_cluster_start mem >/dev/null
tv_psql mem >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
SELECT trialvault.register_metadata_schema('S', 'm',
	'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="m" type="xs:int"/></xs:schema>');
SQL

rss_growth() {
	local stmt=$1 out
	out=$(tv_psql mem -At <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv P :pid
DO \$\$ DECLARE t text; BEGIN FOR i IN 1..3000 LOOP BEGIN $stmt; EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END \$\$;
\! awk '/VmRSS/ {print \$2}' /proc/\$P/status
DO \$\$ DECLARE t text; BEGIN FOR i IN 1..3000 LOOP BEGIN $stmt; EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END \$\$;
\! awk '/VmRSS/ {print \$2}' /proc/\$P/status
SQL
)
	echo $(($(echo "$out" | tail -n 1) - $(echo "$out" | head -n 1)))
}

while IFS='|' read -r name stmt; do
	g=$(rss_growth "$stmt")
	check "$name: backend grows ${g} kB over 3000 failing calls (at most 2048)" [ "$g" -le 2048 ]
done <<'CASES'
meta_text with an invalid XPath|t := trialvault.meta_text('<m/>', '///')
meta_text with a namespace map and an unknown prefix|t := trialvault.meta_text('<m/>', '/q:m', ARRAY[ARRAY['p', 'urn:p']])
meta_int of a non-integer|t := trialvault.meta_int('<m>x</m>', '/m')
validate_metadata of a DOCTYPE document|t := trialvault.validate_metadata('S', 'm', '<!DOCTYPE m [<!ENTITY e "1">]><m>&e;</m>')
metadata_errors of a non-document|SELECT count(*) INTO t FROM trialvault.metadata_errors('S', 'm', 'text only')
register_metadata_schema of a bad XSD|t := trialvault.register_metadata_schema('S', 'bad', '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="m" type="xs:nosuch"/></xs:schema>')
metadata_c14n of a DOCTYPE document|t := trialvault.metadata_c14n('<!DOCTYPE m [<!ENTITY e "1">]><m>&e;</m>')
screen_metadata of a DOCTYPE document|SELECT count(*) INTO t FROM trialvault.screen_metadata('S', '<!DOCTYPE m [<!ENTITY e "1">]><m>&e;</m>')
inspect_metadata of a valid document (no error: the streaming path)|SELECT i.checked_schema INTO t FROM trialvault.inspect_metadata('S', '<m>1</m>', 'm') i
inspect_metadata of a document with a PI (no error: the tree path)|SELECT i.checked_schema INTO t FROM trialvault.inspect_metadata('S', '<?pi x?><m>1</m>', 'm') i
inspect_metadata of a DOCTYPE document|SELECT i.checked_schema INTO t FROM trialvault.inspect_metadata('S', '<!DOCTYPE m [<!ENTITY e "1">]><m>&e;</m>', 'm') i
inspect_metadata of a malformed namespace|SELECT i.checked_schema INTO t FROM trialvault.inspect_metadata('S', '<p:m>1</p:m>', 'm') i
inspect_metadata of an invalid document|SELECT i.checked_schema INTO t FROM trialvault.inspect_metadata('S', '<m>x</m>', 'm') i
inspect_metadata of PHI|SELECT i.checked_schema INTO t FROM trialvault.inspect_metadata('S', '<m PatientID="1">1</m>', 'm') i
CASES

# Screening walks a document in linear time: 16 times the siblings must
# cost far less than 64 times the time (a quadratic walk costs ~256 times).
# Relative, measured in one session, so machine speed does not matter.
ratio=$(tv_psql mem -At 2>&1 <<'SQL'
SET client_min_messages = notice;
DO $$
DECLARE
	t0 timestamptz;
	small float8;
	big float8;
	n bigint;
BEGIN
	-- warm up
	SELECT count(*) INTO n FROM trialvault._screen_nodes(('<m>' || repeat('<v/>', 10000) || '</m>')::xml, ARRAY['r'], ARRAY['element'], ARRAY['nomatch']);
	t0 := clock_timestamp();
	SELECT count(*) INTO n FROM trialvault._screen_nodes(('<m>' || repeat('<v/>', 10000) || '</m>')::xml, ARRAY['r'], ARRAY['element'], ARRAY['nomatch']);
	small := extract(epoch FROM clock_timestamp() - t0);
	t0 := clock_timestamp();
	SELECT count(*) INTO n FROM trialvault._screen_nodes(('<m>' || repeat('<v/>', 160000) || '</m>')::xml, ARRAY['r'], ARRAY['element'], ARRAY['nomatch']);
	big := extract(epoch FROM clock_timestamp() - t0);
	RAISE NOTICE 'RATIO %', round((big / greatest(small, 0.0001))::numeric, 1);
END $$;
SQL
)
ratio=$(echo "$ratio" | sed -n 's/.*RATIO \([0-9.]*\).*/\1/p')
check "node walk is linear: 16x the siblings took ${ratio}x the time (must be < 64)" \
	awk -v r="$ratio" 'BEGIN { exit !(r != "" && r < 64) }'

# A long screening can be cancelled.  The document is built first, without
# the timeout, so that it is the screening's own walk (one regex per rule
# and text node) that the timeout interrupts.
out=$(tv_psql mem -v VERBOSITY=verbose -v ON_ERROR_STOP=0 2>&1 <<'SQL' || true
SET trialvault.max_metadata_size = '64MB';
CREATE TEMP TABLE big AS SELECT ('<m>' || repeat('<v>123-45-6789</v>', 400000) || '</m>')::xml AS d;
SET statement_timeout = '300ms';
SELECT count(*) FROM trialvault.screen_metadata('S', (SELECT d FROM big));
SELECT count(*) FROM trialvault._screen_nodes((SELECT d FROM big),
	array_fill('r'::text, ARRAY[50]), array_fill('pattern'::text, ARRAY[50]),
	array_fill('[0-9]{3}-[0-9]{2}-[0-9]{4}'::text, ARRAY[50]));
SQL
)
is "$(grep -c 'ERROR:  57014' <<<"$out")" 2 "screen_metadata and its node walk honour statement_timeout (57014)"

done_testing
