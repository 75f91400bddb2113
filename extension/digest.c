/*-------------------------------------------------------------------------
 *
 * digest.c
 *		Signed digests of protected tables: signed_digest() and
 *		verify_digest().
 *
 * verify() can only say that a chain is consistent: a superuser who
 * rewrites the newest rows and recomputes their hashes leaves a chain that
 * verifies.  A digest taken before, signed by the server and kept outside
 * it, catches that: it names the chain's heads as they were, and every row
 * they reach must still be there, unchanged, in the current chain.
 *
 * The digest, version 2, is text, one field a line, each line ending in
 * "\n"; the server signs every byte up to and including the
 * server-key-sha256 line (SHA-256; ECDSA DER for an EC key), and the
 * signature and the server's public key follow, so that `openssl` checks it
 * without the database:
 *
 *	trialvault-signed-digest-v2
 *	table: <schema.table>
 *	database: <database name>
 *	rows: <rows in the chain>
 *	heads: <number of heads>
 *	head-digest: <64 hex digits, as verify() reports it>
 *	head: <tv_seq> <tv_hash, 64 hex digits>		(one line per head, by tv_seq)
 *	floor: <tv_seq>
 *	taken-at: <YYYY-MM-DDTHH:MM:SS.ffffffZ>
 *	server-key-sha256: <fingerprint of the server's key>
 *	signature: <base64 of the signature, one line>
 *	-----BEGIN PUBLIC KEY-----
 *	<the server's public key>
 *	-----END PUBLIC KEY-----
 *
 * floor (version 2) is a tv_seq below which every row the table will ever
 * show was already in the chain the digest covers (tv_chain_floor(), taken
 * before the snapshot the digest was computed under): so the rows added
 * since are all at or above it, which is what verify(since => digest)
 * reads.  Version 1, without it, is still accepted by verify_digest().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "trialvault.h"

#define TV_DIGEST_MAX	(16 * 1024 * 1024)

static char *
tv_qualified_name(Oid relid)
{
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));
	char	   *rel = get_rel_name(relid);

	if (nsp == NULL || rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	return quote_qualified_identifier(nsp, rel);
}

static bool
tv_has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static char *
tv_base64(const uint8 *data, int len)
{
	char	   *out = palloc(pg_b64_enc_len(len) + 1);
	int			n = pg_b64_encode((const char *) data, len, out, pg_b64_enc_len(len));

	if (n < 0)
		elog(ERROR, "could not encode base64");
	out[n] = '\0';
	return out;
}

PG_FUNCTION_INFO_V1(tv_signed_digest);

/*
 * trialvault.signed_digest(tbl regclass) RETURNS text: the table's chain
 * state now, signed by the server (format above).  Refused for a table
 * that does not verify: a digest vouches for an intact chain.
 */
Datum
tv_signed_digest(PG_FUNCTION_ARGS)
{
	Oid			relid;
	TvVerdict	v;
	StringInfoData buf;
	char		hex[2 * TV_HASH_LEN + 1];
	const TvKeyFacts *facts;
	bytea	   *sig;
	int64		i;
	char	   *table;
	char	   *database;
	char	   *requester = GetUserNameFromId(GetUserId(), false);
	TvAsOwner	as;
	int64		floor;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table to digest must not be NULL")));
	relid = PG_GETARG_OID(0);
	(void) tv_require_server_key(&facts);

	/*
	 * The floor is read before the snapshot is taken: every row below it
	 * that commits is then either seen by the snapshot or was in flight, and
	 * so at or above the floor.  A new snapshot, even in a transaction with
	 * an older one: the digest is of the table as it is now.
	 */
	floor = tv_chain_floor(relid);
	PushActiveSnapshot(GetLatestSnapshot());
	tv_verify_table(relid, &v);
	PopActiveSnapshot();
	floor = Min(floor, v.max_seq + 1);
	table = tv_qualified_name(relid);
	database = get_database_name(MyDatabaseId);
	/* One field a line: a name holding a line break could forge fields. */
	if (tv_has_control(table) || tv_has_control(database))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("no digest is signed for a table or database whose name holds a control character"),
				 errhint("Rename it (ALTER TABLE ... RENAME) to sign digests of it.")));
	if (!v.ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table %s does not verify, so no digest of it is signed", table),
				 errdetail("%s", v.first_bad ? v.first_bad : psprintf("table guard: %s", v.guard)),
				 errhint("trialvault.verify('%s') names the problem.", table)));

	initStringInfo(&buf);
	appendStringInfoString(&buf, "trialvault-signed-digest-v2\n");
	appendStringInfo(&buf, "table: %s\n", table);
	appendStringInfo(&buf, "database: %s\n", database);
	appendStringInfo(&buf, "rows: %lld\n", (long long) v.nrows);
	appendStringInfo(&buf, "heads: %lld\n", (long long) v.nheads);
	tv_hex(v.head_digest, TV_HASH_LEN, hex);
	appendStringInfo(&buf, "head-digest: %s\n", hex);
	for (i = 0; i < v.nheads; i++)
	{
		tv_hex(v.heads[i].hash, TV_HASH_LEN, hex);
		appendStringInfo(&buf, "head: %lld %s\n", (long long) v.heads[i].seq, hex);
	}
	appendStringInfo(&buf, "floor: %lld\n", (long long) floor);
	appendStringInfo(&buf, "taken-at: %s\n", tv_format_utc(GetCurrentTimestamp()));
	appendStringInfo(&buf, "server-key-sha256: %s\n", facts->fingerprint);

	sig = tv_server_sign((uint8 *) buf.data, buf.len);
	appendStringInfo(&buf, "signature: %s\n",
					 tv_base64((uint8 *) VARDATA(sig), VARSIZE(sig) - VARHDRSZ));
	appendStringInfoString(&buf, facts->public_pem);

	/* The key on record, and the digest an event of the audit trail. */
	tv_owner_spi_begin(&as);
	tv_note_server_key(facts, requester);
	tv_hex(v.head_digest, TV_HASH_LEN, hex);
	tv_audit_event("digest_signed", requester, NULL, NULL, 0,
				   psprintf("%s: %lld rows, head digest %s", table, (long long) v.nrows, hex));
	tv_owner_spi_end(&as);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

static void
malformed(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed signed digest: %s", why),
			 errhint("Pass the whole text trialvault.signed_digest() returned, unchanged.")));
}

/* The value of the next line if it starts with "name: ", else malformed. */
static char *
next_field(char **cursor, const char *name)
{
	char	   *line = *cursor;
	char	   *nl = strchr(line, '\n');
	size_t		nlen = strlen(name);

	if (nl == NULL)
		malformed(psprintf("line \"%s\" is missing or unterminated", name));
	*nl = '\0';
	*cursor = nl + 1;
	if (strncmp(line, name, nlen) != 0 || line[nlen] != ':' || line[nlen + 1] != ' ')
		malformed(psprintf("expected line \"%s\"", name));
	return line + nlen + 2;
}

static int64
parse_count(const char *s, const char *what)
{
	char	   *end;
	long long	n;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || n < 0)
		malformed(psprintf("%s is not a count", what));
	return (int64) n;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;					/* lower case only, as the digest writes it */
}

static bool
parse_hash(const char *s, uint8 *out)
{
	int			i;

	if (strlen(s) != 2 * TV_HASH_LEN)
		return false;
	for (i = 0; i < TV_HASH_LEN; i++)
	{
		int			hi = hex_digit(s[2 * i]);
		int			lo = hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8) (hi << 4 | lo);
	}
	return true;
}

/* Parse a signed digest (version 1 or 2); 22023 when it is malformed. */
void
tv_digest_parse(text *t, TvDigest *d)
{
	size_t		len = VARSIZE_ANY_EXHDR(t);
	char	   *all;
	char	   *cur;
	char	   *v;
	int64		i;
	int			siglen;

	if (len > TV_DIGEST_MAX)
		malformed("it is longer than 16 MB");
	all = text_to_cstring(t);
	if (strlen(all) != len)
		malformed("it holds a zero byte");
	cur = all;
	memset(d, 0, sizeof(*d));
	{
		char	   *nl = strchr(cur, '\n');

		if (nl != NULL && strncmp(cur, "trialvault-signed-digest-v1\n", nl - cur + 1) == 0)
			d->version = 1;
		else if (nl != NULL && strncmp(cur, "trialvault-signed-digest-v2\n", nl - cur + 1) == 0)
			d->version = 2;
		else
			malformed("it does not start with the line trialvault-signed-digest-v2 (or -v1)");
		cur = nl + 1;
	}
	d->table = next_field(&cur, "table");
	(void) next_field(&cur, "database");
	d->rows = parse_count(next_field(&cur, "rows"), "rows");
	d->nheads = parse_count(next_field(&cur, "heads"), "heads");
	if (d->nheads > (int64) (len / 64))
		malformed("more heads than lines");
	(void) next_field(&cur, "head-digest");
	d->heads = palloc(Max(d->nheads, 1) * sizeof(TvHead));
	for (i = 0; i < d->nheads; i++)
	{
		char	   *sp;

		v = next_field(&cur, "head");
		sp = strchr(v, ' ');
		if (sp == NULL)
			malformed("a head line is not \"head: <tv_seq> <tv_hash>\"");
		*sp = '\0';
		d->heads[i].seq = parse_count(v, "a head's tv_seq");
		if (!parse_hash(sp + 1, d->heads[i].hash))
			malformed("a head's tv_hash is not 64 hexadecimal digits");
	}
	if (d->version >= 2)
	{
		d->floor = parse_count(next_field(&cur, "floor"), "floor");
		d->has_floor = true;
	}
	d->taken_at = next_field(&cur, "taken-at");
	d->fingerprint = next_field(&cur, "server-key-sha256");
	d->signed_part = tv_bytea(VARDATA_ANY(t), cur - all);
	v = next_field(&cur, "signature");
	siglen = pg_b64_dec_len(strlen(v));
	d->signature = palloc(VARHDRSZ + siglen);
	siglen = pg_b64_decode(v, strlen(v), VARDATA(d->signature), siglen);
	if (siglen <= 0)
		malformed("the signature is not base64");
	SET_VARSIZE(d->signature, VARHDRSZ + siglen);
}

static SPIPlanPtr server_key_plan = NULL;

PG_FUNCTION_INFO_V1(tv_verify_digest);

/*
 * trialvault.verify_digest(tbl regclass, digest text)
 *		RETURNS TABLE (extends boolean, detail text)
 *
 * Whether the table now extends the chain the digest covered: the digest
 * is signed by a server key this repository knows, the table verifies, and
 * every row the digest's heads reached is present and unchanged.
 */
Datum
tv_verify_digest(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	TvDigest	d;
	Oid			relid;
	char	   *detail = NULL;
	TvVerdict	v;
	AclResult	aclresult;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("arguments of trialvault.verify_digest must not be NULL")));
	relid = PG_GETARG_OID(0);
	(void) tv_qualified_name(relid);	/* 42P01 for a table dropped meanwhile */
	/* As verify(): only for those who may read the table, whatever the digest. */
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
	tv_digest_parse(PG_GETARG_TEXT_PP(1), &d);
	detail = tv_digest_trust_problem(relid, &d);
	if (detail == NULL)
	{
		int64		covered;

		tv_verify_table(relid, &v);
		if (!v.ok)
			detail = psprintf("the table does not verify now: %s",
							  v.first_bad ? v.first_bad : v.guard);
		else if ((covered = tv_verdict_covered(&v, d.heads, d.nheads, &detail)) < 0)
			;					/* detail says which head */
		else if (covered != d.rows)
			detail = psprintf("the digest covered %lld rows, but its heads now reach %lld (rows were removed or inserted before them)",
							  (long long) d.rows, (long long) covered);
		else
		{
			values[0] = BoolGetDatum(true);
			values[1] = CStringGetTextDatum(psprintf("every one of the %lld rows the digest covered is present and unchanged; %lld rows were added since",
													 (long long) d.rows, (long long) (v.nrows - d.rows)));
			PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
		}
	}
	values[0] = BoolGetDatum(false);
	values[1] = CStringGetTextDatum(detail);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * Why a parsed digest cannot be trusted for relid: it is of another table,
 * or not signed by one of this repository's server keys, or its signature
 * does not verify; NULL when it can.
 */
char *
tv_digest_trust_problem(Oid relid, const TvDigest *d)
{
	char	   *table = tv_qualified_name(relid);
	TvAsOwner	as;
	char	   *pem = NULL;

	/* The signing key, among those this repository's server has used. */
	tv_owner_spi_begin(&as);
	{
		Oid			types[1] = {TEXTOID};
		Datum		kv[1];
		bool		isnull;
		Datum		r;

		kv[0] = CStringGetTextDatum(d->fingerprint);
		r = tv_spi_value(tv_kept_plan(&server_key_plan,
									  "SELECT (SELECT k.public_key FROM trialvault.server_keys k WHERE k.fingerprint = $1)",
									  1, types),
						 kv, NULL, true, TEXTOID, &isnull);
		if (!isnull)
			pem = TextDatumGetCString(r);
	}
	tv_owner_spi_end(&as);

	if (strcmp(d->table, table) != 0)
		return psprintf("the digest is of table %s, not %s", d->table, table);
	if (pem == NULL)
		return psprintf("the digest is signed by key %s, which is not one of this repository's server keys",
						d->fingerprint);
	if (!tv_signed_by(pem, d->fingerprint, d->signed_part, d->signature))
		return pstrdup("the digest's signature does not verify: it was altered after it was signed");
	return NULL;
}
