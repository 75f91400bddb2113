#!/usr/bin/env bash
# bench/xml_bench.sh: the XML metadata path (validate + screen + canonical
# SHA-256 of a typical ~2 KB metadata document) against PostgreSQL's own
# parse of the same text, in the same run.
#
# The document (visit, page, form, dates, document kind, site, twelve item
# elements with attributes, two namespaces; ~2 KB) is stored once as text
# in bench_doc(d text) and once as xml in bench_xml(x xml), and an XSD it is
# valid against is registered as BENCH/meta.  An xml value is kept as its
# text, so reading x parses nothing.  Every timed run is one statement over
# generate_series(1, N), so each row is parsed again (nothing can be
# constant-folded):
#
#   A  parse    SELECT count(xmlparse(document d))
#               FROM bench_doc, generate_series(1, N) g
#   B  trialvault  trialvault.inspect_metadata('BENCH', x, 'meta') per row:
#               parse, PHI screening, validation and the SHA-256 of the
#               exclusive C14N, from one parse of its own; every row must
#               come back checked against version 1 with the expected hash.
#
# B reads the xml column because that is how the metadata arrives: as an
# xml value that the client's input already made (load_document's
# argument).  How much the text -> xml cast adds is shown separately.
#
# N is calibrated per side so that one run lasts about BENCH_SECONDS.  After
# an untimed calibration run of each, A and B run alternately, one run each
# per round, each run in its own psql session timed by psql's \timing.  The
# report gives docs/s medians, the ratio B/A of the medians and a paired
# ratio (median over rounds of B/A within the same round).  Target:
# B/A >= 0.5.  Then, for information only, one more run of each function
# alone (and of the parts of them that cost the most), so the report shows
# where the time goes.  PASS or FAIL is printed; the script exits 0 unless
# something went wrong (a wrong result counts as something going wrong).
#
# Usage (as root, from anywhere):
#   bash bench/xml_bench.sh            full run (about 2 minutes)
#   bash bench/xml_bench.sh --quick    about 30 seconds
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_SECONDS=4 [1]    target length of each timed run, per side
#   BENCH_ROUNDS=7 [3]     rounds; each round runs A once and B once
#   BENCH_INFO=1           0 skips the per-function information runs
#   BENCH_TARGET=0.5       minimum B/A ratio
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_SECONDS BENCH_ROUNDS BENCH_INFO BENCH_TARGET -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_SECONDS:=1}" "${BENCH_ROUNDS:=3}"
fi
: "${BENCH_SECONDS:=4}" "${BENCH_ROUNDS:=7}" "${BENCH_INFO:=1}" "${BENCH_TARGET:=0.5}"

if ! [[ $BENCH_SECONDS =~ ^[0-9]+([.][0-9]+)?$ ]] || at_least 0 "$BENCH_SECONDS"; then
	echo "xml_bench.sh: BENCH_SECONDS must be a positive number, not '$BENCH_SECONDS'" >&2
	exit 2
fi
if ! [[ $BENCH_ROUNDS =~ ^[0-9]+$ ]] || [ "$BENCH_ROUNDS" -lt 1 ]; then
	echo "xml_bench.sh: BENCH_ROUNDS must be a positive integer, not '$BENCH_ROUNDS'" >&2
	exit 2
fi
if [ "$BENCH_INFO" != 0 ] && [ "$BENCH_INFO" != 1 ]; then
	echo "xml_bench.sh: BENCH_INFO must be 0 or 1, not '$BENCH_INFO'" >&2
	exit 2
fi

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

# One backend does all the work; no parallel plans, no JIT (the per-row
# costs of either side would otherwise decide whether a run is JIT-compiled).
CONF=(
	"shared_buffers = 128MB"
	"max_parallel_workers_per_gather = 0"
	"jit = off"
)

# The metadata document: what a site's upload carries about one scanned page.
read -r -d '' DOC <<'XML' || true
<?xml version="1.0" encoding="UTF-8"?>
<tv:metadata xmlns:tv="urn:trialvault:metadata:1" xmlns:cdisc="http://www.cdisc.org/ns/odm/v1.3" schemaVersion="1.2">
  <tv:study oid="ST-2031-ONC" protocol="ONC-2031-07"/>
  <tv:site id="S-114" country="DE">Universitaetsklinikum Musterstadt, Onkologie</tv:site>
  <tv:subject key="114-0087" arm="B"/>
  <tv:visit number="3" oid="V03">Cycle 2 Day 1</tv:visit>
  <tv:page>12</tv:page>
  <tv:form oid="F.AE" version="4">CRF-07 Adverse Events</tv:form>
  <tv:document kind="source" format="application/pdf" pages="3">
    <tv:title>Adverse event log, scanned source</tv:title>
    <tv:collected>2026-03-14</tv:collected>
    <tv:received>2026-03-16</tv:received>
    <tv:language>de</tv:language>
  </tv:document>
  <tv:items>
    <tv:item seq="1" cdisc:ItemOID="IT.AETERM" unit="">Nausea</tv:item>
    <tv:item seq="2" cdisc:ItemOID="IT.AESTDTC" unit="">2026-03-02</tv:item>
    <tv:item seq="3" cdisc:ItemOID="IT.AESEV" unit="">MODERATE</tv:item>
    <tv:item seq="4" cdisc:ItemOID="IT.AEREL" unit="">POSSIBLY RELATED</tv:item>
    <tv:item seq="5" cdisc:ItemOID="IT.AEOUT" unit="">RECOVERED/RESOLVED</tv:item>
    <tv:item seq="6" cdisc:ItemOID="IT.TEMP" unit="Cel">37.9</tv:item>
    <tv:item seq="7" cdisc:ItemOID="IT.WEIGHT" unit="kg">71.4</tv:item>
    <tv:item seq="8" cdisc:ItemOID="IT.DOSE" unit="mg/m2">75</tv:item>
    <tv:item seq="9" cdisc:ItemOID="IT.AESER" unit="">N</tv:item>
    <tv:item seq="10" cdisc:ItemOID="IT.AEACN" unit="">DOSE REDUCED</tv:item>
    <tv:item seq="11" cdisc:ItemOID="IT.HR" unit="/min">88</tv:item>
    <tv:item seq="12" cdisc:ItemOID="IT.SYSBP" unit="mm[Hg]">132</tv:item>
  </tv:items>
  <tv:capture operator="cra-0412" device="scan-03" dpi="300" checksum="sha256:9f2c4e1b7a0d3c58e6f1a2b4c7d9e0f13a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"/>
  <tv:review status="pending" by="monitor-17" due="2026-04-01"/>
  <tv:note>Original kept at site; page 2 partially illegible, see query Q-5531.</tv:note>
</tv:metadata>
XML

# The XSD the document is valid against (targetNamespace, typed attributes,
# enumerations, xs:date, a pattern, a wildcard for the CDISC attributes).
read -r -d '' XSD <<'XML' || true
<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:tv="urn:trialvault:metadata:1"
           targetNamespace="urn:trialvault:metadata:1"
           elementFormDefault="qualified">
  <xs:simpleType name="oid">
    <xs:restriction base="xs:string"><xs:pattern value="[A-Z][A-Z0-9.\-]*"/></xs:restriction>
  </xs:simpleType>
  <xs:complexType name="empty">
    <xs:anyAttribute processContents="skip"/>
  </xs:complexType>
  <xs:element name="metadata">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="study">
          <xs:complexType>
            <xs:attribute name="oid" type="tv:oid" use="required"/>
            <xs:attribute name="protocol" type="xs:string"/>
          </xs:complexType>
        </xs:element>
        <xs:element name="site">
          <xs:complexType>
            <xs:simpleContent>
              <xs:extension base="xs:string">
                <xs:attribute name="id" type="xs:string" use="required"/>
                <xs:attribute name="country">
                  <xs:simpleType><xs:restriction base="xs:string"><xs:length value="2"/></xs:restriction></xs:simpleType>
                </xs:attribute>
              </xs:extension>
            </xs:simpleContent>
          </xs:complexType>
        </xs:element>
        <xs:element name="subject">
          <xs:complexType>
            <xs:attribute name="key" type="xs:string" use="required"/>
            <xs:attribute name="arm" type="xs:string"/>
          </xs:complexType>
        </xs:element>
        <xs:element name="visit">
          <xs:complexType>
            <xs:simpleContent>
              <xs:extension base="xs:string">
                <xs:attribute name="number" type="xs:positiveInteger" use="required"/>
                <xs:attribute name="oid" type="tv:oid"/>
              </xs:extension>
            </xs:simpleContent>
          </xs:complexType>
        </xs:element>
        <xs:element name="page" type="xs:positiveInteger"/>
        <xs:element name="form">
          <xs:complexType>
            <xs:simpleContent>
              <xs:extension base="xs:string">
                <xs:attribute name="oid" type="tv:oid" use="required"/>
                <xs:attribute name="version" type="xs:positiveInteger"/>
              </xs:extension>
            </xs:simpleContent>
          </xs:complexType>
        </xs:element>
        <xs:element name="document">
          <xs:complexType>
            <xs:sequence>
              <xs:element name="title" type="xs:string"/>
              <xs:element name="collected" type="xs:date"/>
              <xs:element name="received" type="xs:date"/>
              <xs:element name="language" type="xs:language"/>
            </xs:sequence>
            <xs:attribute name="kind" use="required">
              <xs:simpleType>
                <xs:restriction base="xs:string">
                  <xs:enumeration value="source"/>
                  <xs:enumeration value="consent"/>
                  <xs:enumeration value="lab-report"/>
                  <xs:enumeration value="imaging"/>
                  <xs:enumeration value="correspondence"/>
                </xs:restriction>
              </xs:simpleType>
            </xs:attribute>
            <xs:attribute name="format" type="xs:string"/>
            <xs:attribute name="pages" type="xs:positiveInteger"/>
          </xs:complexType>
        </xs:element>
        <xs:element name="items">
          <xs:complexType>
            <xs:sequence>
              <xs:element name="item" minOccurs="0" maxOccurs="unbounded">
                <xs:complexType>
                  <xs:simpleContent>
                    <xs:extension base="xs:string">
                      <xs:attribute name="seq" type="xs:positiveInteger" use="required"/>
                      <xs:attribute name="unit" type="xs:string"/>
                      <xs:anyAttribute namespace="http://www.cdisc.org/ns/odm/v1.3" processContents="skip"/>
                    </xs:extension>
                  </xs:simpleContent>
                </xs:complexType>
              </xs:element>
            </xs:sequence>
          </xs:complexType>
        </xs:element>
        <xs:element name="capture" type="tv:empty"/>
        <xs:element name="review">
          <xs:complexType>
            <xs:attribute name="status" type="xs:string" use="required"/>
            <xs:attribute name="by" type="xs:string"/>
            <xs:attribute name="due" type="xs:date"/>
          </xs:complexType>
        </xs:element>
        <xs:element name="note" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:attribute name="schemaVersion" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
XML

echo "# trialvault XML metadata benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_INFO=$BENCH_INFO BENCH_TARGET=$BENCH_TARGET"
echo "# server:     fresh cluster, unix socket, one backend per run, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "# libxml2:    $(xml2-config --version 2>/dev/null || dpkg-query -W -f='${Version}' libxml2 2>/dev/null || echo unknown)"
echo "# document:   $(printf '%s' "$DOC" | wc -c) bytes, 2 namespaces, 12 <tv:item> elements; XSD $(printf '%s' "$XSD" | wc -c) bytes (registered as BENCH/meta)"
echo "# A parse:    SELECT count(xmlparse(document d)) FROM bench_doc, generate_series(1, N) g"
echo "# B trialvault: SELECT count(*) FILTER (WHERE <checked against version 1 with the expected hash>)"
echo "#             FROM bench_xml, generate_series(1, N) g, LATERAL trialvault.inspect_metadata('BENCH', x, 'meta')"
echo "#             (x is the same document in an xml column; reading it parses nothing)"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"



echo "== setup: extension, schema BENCH/meta, bench_doc"
sql -v doc="$DOC" -v xsd="$XSD" >/dev/null <<-'SQL'
	CREATE EXTENSION trialvault CASCADE;
	SELECT trialvault.register_metadata_schema('BENCH', 'meta', :'xsd');
	CREATE TABLE bench_doc (d text NOT NULL);
	INSERT INTO bench_doc VALUES (:'doc');
	CREATE TABLE bench_xml (x xml NOT NULL);
	INSERT INTO bench_xml SELECT d::xml FROM bench_doc;
SQL

# Sanity: the document is valid and clean, validation and screening really
# look at it (a broken copy is invalid, one with a PHI element is flagged),
# and the numbers the timed runs check against.
read -r VALID NERR NSCREEN BAD_VALID PHI_HITS HASH NNODES NBYTES AGREE < <(sql -At -F ' ' <<-'SQL'
	SELECT trialvault.validate_metadata('BENCH', 'meta', d::xml),
		(SELECT count(*) FROM trialvault.metadata_errors('BENCH', 'meta', d::xml)),
		(SELECT count(*) FROM trialvault.screen_metadata('BENCH', d::xml)),
		trialvault.validate_metadata('BENCH', 'meta',
			replace(d, '<tv:page>12</tv:page>', '<tv:page>twelve</tv:page>')::xml),
		(SELECT count(*) FROM trialvault.screen_metadata('BENCH',
			replace(d, '<tv:page>12</tv:page>',
				'<tv:page>12</tv:page><tv:PatientName>Jane Doe</tv:PatientName>')::xml)),
		trialvault.metadata_sha256(d::xml),
		array_length(xpath('//* | //@* | //text()[normalize-space()]', d::xml), 1),
		octet_length(d),
		(SELECT i.metadata_sha256 = trialvault.metadata_sha256(d::xml) AND i.checked_version = 1
		 FROM trialvault.inspect_metadata('BENCH', d::xml, 'meta') i)
	FROM bench_doc
SQL
)
echo "   document: $NBYTES bytes, $NNODES nodes (elements, attributes, text) for screening"
echo "   valid: $VALID ($NERR errors), screening rows: $NSCREEN, metadata_sha256: $HASH"
echo "   controls: page 'twelve' valid=$BAD_VALID; with a <tv:PatientName> element: $PHI_HITS screening row(s)"
if [ "$VALID" != t ] || [ "$NERR" != 0 ]; then
	die "the benchmark document does not validate against its XSD"
fi
[ "$NSCREEN" = 0 ] || die "the benchmark document is not clean: $NSCREEN screening rows"
[ "$BAD_VALID" = f ] || die "validate_metadata accepted a document with <tv:page>twelve</tv:page>"
[ "$PHI_HITS" -ge 1 ] || die "screen_metadata did not flag a <tv:PatientName> element"
[[ $HASH =~ ^\\x[0-9a-f]{64}$ ]] || die "metadata_sha256 returned '$HASH'"
[ "$AGREE" = t ] || die "inspect_metadata does not agree with metadata_sha256 and the schema version"
# inspect_metadata must refuse what the separate functions flag.
sql -At >/dev/null 2>&1 <<-'SQL' && die "inspect_metadata accepted <tv:page>twelve</tv:page>"
	SELECT trialvault.inspect_metadata('BENCH', replace(d, '<tv:page>12</tv:page>', '<tv:page>twelve</tv:page>')::xml, 'meta') FROM bench_doc
SQL
sql -At >/dev/null 2>&1 <<-'SQL' && die "inspect_metadata accepted a <tv:PatientName> element"
	SELECT trialvault.inspect_metadata('BENCH', replace(d, '<tv:page>12</tv:page>',
		'<tv:page>12</tv:page><tv:PatientName>Jane Doe</tv:PatientName>')::xml, 'meta') FROM bench_doc
SQL

ROWS_FROM="FROM bench_doc, generate_series(1, %N%) g, LATERAL (SELECT d::xml AS x, g OFFSET 0) p"

# query KIND: the statement of one timed run, with %N% for the row count;
# its result must be the row count (every row counted as correct).
query() {
	case $1 in
	parse) echo "SELECT count(xmlparse(document d)) FROM bench_doc, generate_series(1, %N%) g" ;;
	trialvault) echo "SELECT count(*) FILTER (WHERE i.checked_version = 1 AND i.metadata_sha256 = '$HASH'::bytea)
	FROM bench_xml, generate_series(1, %N%) g, LATERAL (SELECT x, g OFFSET 0) p,
		LATERAL trialvault.inspect_metadata('BENCH', p.x, 'meta') i" ;;
	from_text) echo "SELECT count(*) FILTER (WHERE i.checked_version = 1 AND i.metadata_sha256 = '$HASH'::bytea)
	$ROWS_FROM, LATERAL trialvault.inspect_metadata('BENCH', p.x, 'meta') i" ;;
	separate) echo "SELECT count(*) FILTER (WHERE v AND s = 0 AND h = '$HASH'::bytea) FROM (
	SELECT trialvault.validate_metadata('BENCH', 'meta', x) AS v,
		(SELECT count(*) FROM trialvault.screen_metadata('BENCH', x)) AS s,
		trialvault.metadata_sha256(x) AS h
	$ROWS_FROM) q" ;;
	cast) echo "SELECT count(x) $ROWS_FROM" ;;
	validate) echo "SELECT count(*) FILTER (WHERE trialvault.validate_metadata('BENCH', 'meta', x)) $ROWS_FROM" ;;
	screen) echo "SELECT count(*) FILTER (WHERE (SELECT count(*) FROM trialvault.screen_metadata('BENCH', x)) = 0) $ROWS_FROM" ;;
	sha256) echo "SELECT count(*) FILTER (WHERE trialvault.metadata_sha256(x) = '$HASH'::bytea) $ROWS_FROM" ;;
	check_xsd) echo "SELECT count(trialvault._check_xsd(s.xsd)) FROM (SELECT xsd FROM trialvault.metadata_schemas
	WHERE study = 'BENCH' AND name = 'meta') s, generate_series(1, %N%) g" ;;
	walk) echo "SELECT count(*) FILTER (WHERE (SELECT count(*) FROM trialvault._screen_nodes(x,
	ARRAY['r'], ARRAY['element'], ARRAY['no such element'])) = 0) $ROWS_FROM" ;;
	*) die "no query for $1" ;;
	esac
}

# timed KIND N: one run of KIND over N rows in its own psql session; sets
# MS (elapsed milliseconds as psql's \timing saw them) and RATE (docs/s).
timed() {
	local kind=$1 n=$2 q out got
	q=$(query "$kind")
	q=${q//%N%/$n}
	out=$(printf '\\timing on\n%s;\n' "$q" | sql -At)
	MS=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)
	got=$(grep -v '^Time: ' <<<"$out" || true)
	[ -n "$MS" ] || die "no timing for $kind: $out"
	[ "$got" = "$n" ] || die "$kind over $n rows returned '$got' (expected $n: every row correct)"
	RATE=$(awk -v n="$n" -v ms="$MS" 'BEGIN { printf "%.1f\n", n / (ms / 1000) }')
}

# calibrate KIND N0: one untimed run of N0 rows; sets N_<KIND> so that a run
# lasts about BENCH_SECONDS.
declare -A NROWS
calibrate() {
	local kind=$1 n0=$2
	timed "$kind" "$n0"
	NROWS[$kind]=$(awk -v r="$RATE" -v s="$BENCH_SECONDS" -v n0="$n0" 'BEGIN {
		n = int(r * s + 0.5); if (n < 50) n = 50; print n }')
	printf '   %-10s %8d rows in %8.1f ms (%9.1f docs/s) -> N = %d\n' "$kind" "$n0" "$MS" "$RATE" "${NROWS[$kind]}"
}

echo "== calibration (untimed; also the warm-up)"
calibrate parse 5000
calibrate trialvault 2000

echo "== $BENCH_ROUNDS rounds, alternating (A parse, B trialvault)"
A=()
B=()
P=()
for ((r = 1; r <= BENCH_ROUNDS; r++)); do
	timed parse "${NROWS[parse]}"
	A+=("$RATE")
	a=$RATE
	am=$MS
	timed trialvault "${NROWS[trialvault]}"
	B+=("$RATE")
	P+=("$(ratio "$RATE" "$a")")
	printf '   round %d/%d:  A parse %10.1f docs/s (%7.1f ms)   B trialvault %9.1f docs/s (%7.1f ms)   B/A %s\n' \
		"$r" "$BENCH_ROUNDS" "$a" "$am" "$RATE" "$MS" "${P[-1]}"
done

ma=$(median "${A[@]}")
mb=$(median "${B[@]}")
rt=$(ratio "$mb" "$ma")
paired=$(median "${P[@]}")
if at_least "$rt" "$BENCH_TARGET"; then verdict=PASS; else verdict=FAIL; fi

if [ "$BENCH_INFO" = 1 ]; then
	echo "== information: each function alone, one run each (not part of the verdict)"
	declare -A IRATE
	for kind in cast from_text separate validate screen sha256 check_xsd walk; do
		case $kind in
		cast) n0=5000 ;;
		from_text) n0=2000 ;;
		validate | check_xsd | sha256) n0=500 ;;
		*) n0=200 ;;
		esac
		calibrate "$kind" "$n0" >/dev/null
		timed "$kind" "${NROWS[$kind]}"
		IRATE[$kind]=$RATE
		printf '   %-10s %8d rows in %8.1f ms (%9.1f docs/s)\n' "$kind" "${NROWS[$kind]}" "$MS" "$RATE"
	done
fi

echo
echo "== results: median of $BENCH_ROUNDS rounds, ${NBYTES}-byte document"
printf '%-14s %12s %12s\n' side "docs/s" "us/doc"
printf '%-14s %12.1f %12.1f\n' "A parse" "$ma" "$(awk -v r="$ma" 'BEGIN { print 1e6 / r }')"
printf '%-14s %12.1f %12.1f\n' "B trialvault" "$mb" "$(awk -v r="$mb" 'BEGIN { print 1e6 / r }')"
echo "ratio B/A: $rt (paired $paired)  $verdict (target >= $BENCH_TARGET; every row valid, clean, expected hash)"

if [ "$BENCH_INFO" = 1 ]; then
	echo
	echo "== where the time goes (one run each; each figure includes the d::xml parse of its row;"
	echo "   'ours' = us/doc minus the d::xml figure; share = ours / B's us/doc)"
	printf '%-62s %10s %9s %9s %7s\n' function "docs/s" "us/doc" "ours us" share
	cast_us=$(awk -v r="${IRATE[cast]}" 'BEGIN { print 1e6 / r }')
	info_line() {
		local kind=$1 label=$2
		awk -v r="${IRATE[$kind]}" -v c="$cast_us" -v b="$mb" -v l="$label" -v k="$kind" 'BEGIN {
			us = 1e6 / r
			if (k == "cast") printf "%-62s %10.1f %9.1f %9s %7s\n", l, r, us, "-", "-"
			else if (k == "check_xsd") printf "%-62s %10.1f %9.1f %9.1f %6.0f%%\n", l, r, us, us, 100 * us / (1e6 / b)
			else printf "%-62s %10.1f %9.1f %9.1f %6.0f%%\n", l, r, us, us - c, 100 * (us - c) / (1e6 / b)
		}'
	}
	info_line cast "d::xml alone (PostgreSQL parse, content mode)"
	info_line from_text "d::xml, then inspect_metadata (B starting from text)"
	info_line separate "0.4's way: validate + screen + sha256, three parses"
	echo "   the separate SQL functions:"
	info_line validate "validate_metadata('BENCH', 'meta', x)"
	info_line screen "screen_metadata('BENCH', x) (count of rows)"
	info_line sha256 "metadata_sha256(x)"
	echo "   parts of the above:"
	info_line check_xsd "  _check_xsd(xsd): compiling the XSD (no d::xml; validate does it)"
	info_line walk "  _screen_nodes(x) with one name rule: libxml2's parse and walk"
fi

note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0
