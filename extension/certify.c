/*-------------------------------------------------------------------------
 *
 * certify.c
 *		Certification: members' signing keys, the certification statement
 *		they sign, the server's own signing key and countersignature,
 *		verify_document() and certificates.
 *
 * Private keys of members never reach the server: a member registers a PEM
 * public key (ECDSA P-256 or P-384, Ed25519, RSA of 2048 bits or more) and
 * signs, outside the database, the statement built here byte for byte.  The
 * server's key is read once by the postmaster from
 * trialvault.signing_key_command (as the master key is, crypto.c) and
 * inherited by every backend; only its public half is ever written down.
 *
 * A key's fingerprint is the hex SHA-256 of its DER SubjectPublicKeyInfo,
 * what `openssl pkey -pubin -outform DER | sha256sum` prints.
 *
 * The certification statement, version 1, is UTF-8 text, one field a line,
 * each line ending in a single "\n", in this order and nothing else:
 *
 *	trialvault-certification-statement-v1
 *	content-sha256: <64 hex digits>
 *	metadata-sha256: <64 hex digits: SHA-256 of metadata_c14n()>
 *	study: <study code>
 *	site: <site code>
 *	doc-type: <document type>
 *	signer: <role name>
 *	signer-key-sha256: <64 hex digits>
 *	meaning: <certified_copy | review | approval | responsibility>
 *	signed-at: <YYYY-MM-DDTHH:MM:SS.ffffffZ, UTC, always six digits>
 *	nonce: <32 to 128 lower-case hex digits>
 *
 * Study and site codes and document types cannot hold a line break (their
 * CHECK constraints), and a role name that holds a control character is
 * refused, so no field can forge another.  docs/certification.md documents
 * the same layout for application writers and inspectors.
 *
 * A signature is checked before anything is stored (key, time, nonce),
 * countersigned at once, and kept in trialvault.signatures without the
 * statement's bytes: the v1 layout rebuilds them exactly from the row and
 * the document's fingerprints (tv_signature_statement), which keeps the
 * WAL of a certified load small.  verify_document() and the certificates
 * work from the same rebuilt statement.  Decoded keys and OpenSSL contexts
 * are kept per backend: OpenSSL 3's decoders and algorithm fetches cost
 * more than the ECDSA arithmetic (bench/README.md, certify_bench).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <stdio.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xml.h"

#include "trialvault.h"
#include "xmlmeta.h"

#define TV_PEM_MAX			16384	/* longest PEM key accepted */
#define TV_NONCE_MIN		16
#define TV_NONCE_MAX		64

static const char *const tv_meanings[] = {
	"certified_copy", "review", "approval", "responsibility"
};

/* The server's key, read by the postmaster; NULL when there is none. */
char	   *tv_signing_key_command = NULL;
static EVP_PKEY *server_key = NULL;
static EVP_PKEY_CTX *server_sctx = NULL;	/* per backend, made from server_key */
static char server_problem[256];
static TvKeyFacts server_facts;

/* ---------------------------------------------------------------------
 * Keys
 * ---------------------------------------------------------------------
 */

/* A bytea holding a copy of len bytes. */
bytea *
tv_bytea(const void *data, size_t len)
{
	bytea	   *out = palloc(VARHDRSZ + len);

	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), data, len);
	return out;
}

void
tv_hex(const uint8 *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t		i;

	for (i = 0; i < len; i++)
	{
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0xf];
	}
	out[2 * len] = '\0';
}

/* The SHA-256 of len bytes, into out. */
static void
tv_sha256_of(const void *data, size_t len, uint8 *out)
{
	EVP_MD_CTX *md = tv_sha_begin(TV_SHA_SMALL);

	tv_sha_update(md, data, len);
	tv_sha_end(md, out);
}

/*
 * Whether a key is of a kind we accept; if so, its algorithm's name into
 * facts, else a reason into problem.
 */
static bool
tv_key_kind(EVP_PKEY *pkey, TvKeyFacts *facts, char *problem, size_t problem_len)
{
	char		group[64];
	size_t		glen = 0;

	switch (EVP_PKEY_get_base_id(pkey))
	{
		case EVP_PKEY_EC:
			if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
												group, sizeof(group), &glen))
				group[0] = '\0';
			if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
				strlcpy(facts->algorithm, "ecdsa-p256", sizeof(facts->algorithm));
			else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
				strlcpy(facts->algorithm, "ecdsa-p384", sizeof(facts->algorithm));
			else
			{
				snprintf(problem, problem_len, "elliptic curve \"%s\" is not accepted",
						 group[0] ? group : "(unnamed)");
				return false;
			}
			return true;
		case EVP_PKEY_ED25519:
			strlcpy(facts->algorithm, "ed25519", sizeof(facts->algorithm));
			return true;
		case EVP_PKEY_RSA:
			if (EVP_PKEY_get_bits(pkey) < 2048)
			{
				snprintf(problem, problem_len, "RSA key of %d bits is too short (2048 bits at least)",
						 EVP_PKEY_get_bits(pkey));
				return false;
			}
			if (EVP_PKEY_get_bits(pkey) > 16384)
			{
				snprintf(problem, problem_len, "RSA key of %d bits is too long (16384 bits at most)",
						 EVP_PKEY_get_bits(pkey));
				return false;
			}
			snprintf(facts->algorithm, sizeof(facts->algorithm), "rsa-%d", EVP_PKEY_get_bits(pkey));
			return true;
		default:
			snprintf(problem, problem_len, "keys of type %s are not accepted",
					 OBJ_nid2sn(EVP_PKEY_get_base_id(pkey)));
			return false;
	}
}

/* A key's fingerprint, the hex SHA-256 of its DER SubjectPublicKeyInfo, into hex. */
static bool
tv_key_fingerprint(EVP_PKEY *pkey, char *hex)
{
	unsigned char *der = NULL;
	int			derlen = i2d_PUBKEY(pkey, &der);
	uint8		hash[TV_HASH_LEN];

	if (derlen <= 0)
		return false;
	tv_sha256_of(der, derlen, hash);
	OPENSSL_free(der);
	tv_hex(hash, TV_HASH_LEN, hex);
	return true;
}

/*
 * The fingerprint and the PEM of a key's public half, into facts (the PEM
 * palloc'd).  False if OpenSSL cannot encode it.
 */
static bool
tv_key_public_facts(EVP_PKEY *pkey, TvKeyFacts *facts)
{
	BIO		   *bio;
	char	   *pem;
	long		pemlen;

	if (!tv_key_fingerprint(pkey, facts->fingerprint))
		return false;

	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || !PEM_write_bio_PUBKEY(bio, pkey))
	{
		BIO_free(bio);
		return false;
	}
	pemlen = BIO_get_mem_data(bio, &pem);
	facts->public_pem = pnstrdup(pem, pemlen);
	BIO_free(bio);
	return true;
}

/* Whether a PEM text holds a private key of any kind (PKCS#8, PKCS#1, SEC1, OpenSSH). */
static bool
tv_looks_private(const char *s)
{
	return strstr(s, "PRIVATE KEY") != NULL;
}

/*
 * Parse a member's PEM public key.  Refuses (22023) anything that is not
 * exactly one public key of an accepted kind; a private key given by
 * mistake is refused without the statement being written to the server
 * log, and the caller is told to treat it as compromised.
 */
EVP_PKEY *
tv_parse_public_key(text *pem_t, TvKeyFacts *facts)
{
	char	   *pem;
	size_t		len = VARSIZE_ANY_EXHDR(pem_t);
	BIO		   *bio;
	EVP_PKEY   *pkey;
	char		problem[256];
	char		rest[64];
	int			n;

	memset(facts, 0, sizeof(*facts));
	if (len > TV_PEM_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("public key is too long (%zu bytes, at most %d)", len, TV_PEM_MAX),
				 errhidestmt(true)));
	pem = text_to_cstring(pem_t);
	if (tv_looks_private(pem))
	{
		explicit_bzero(pem, len);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a private key was given where a public key is expected"),
				 errdetail("Nothing of it was stored, and this message does not repeat it; but it has left its owner's hands."),
				 errhint("Treat that private key as compromised: make a new key pair and register only its public half (openssl pkey -in KEY -pubout)."),
				 errhidestmt(true)));
	}
	if (len == 0 || strspn(pem, " \t\r\n") == len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("public key is empty"),
				 errhint("Give a PEM public key (-----BEGIN PUBLIC KEY-----), as openssl pkey -pubout prints it.")));

	bio = BIO_new_mem_buf(pem, (int) len);
	if (bio == NULL)
		elog(ERROR, "out of memory in OpenSSL");
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	n = pkey ? BIO_read(bio, rest, sizeof(rest)) : 0;
	BIO_free(bio);
	if (pkey == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("not a PEM public key"),
				 errhint("Give a PEM public key (-----BEGIN PUBLIC KEY-----), as openssl pkey -pubout prints it; certificates and PKCS#1 \"RSA PUBLIC KEY\" blocks are not accepted.")));
	while (n > 0)
	{
		int			i;

		for (i = 0; i < n; i++)
			if (!isspace((unsigned char) rest[i]))
			{
				EVP_PKEY_free(pkey);
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("more than one PEM public key was given"),
						 errhint("Register one key at a time; text after -----END PUBLIC KEY----- must be blank.")));
			}
		n = 0;
	}
	if (!tv_key_kind(pkey, facts, problem, sizeof(problem)))
	{
		EVP_PKEY_free(pkey);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("signing key refused: %s", problem),
				 errhint("Accepted: ECDSA on P-256 or P-384, Ed25519, RSA of 2048 bits or more.")));
	}
	if (!tv_key_public_facts(pkey, facts))
	{
		EVP_PKEY_free(pkey);
		elog(ERROR, "OpenSSL could not encode a public key it had read");
	}
	return pkey;
}

PG_FUNCTION_INFO_V1(tv_signing_key_info);

/*
 * trialvault._signing_key_info(public_key text, OUT fingerprint text,
 *		OUT algorithm text, OUT public_key text): what register_signing_key
 *		stores of a key: its fingerprint, its kind and its PEM as OpenSSL
 *		writes it.
 */
Datum
tv_signing_key_info(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	TvKeyFacts	facts;
	EVP_PKEY   *pkey;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("public key must not be NULL")));
	pkey = tv_parse_public_key(PG_GETARG_TEXT_PP(0), &facts);
	EVP_PKEY_free(pkey);
	values[0] = CStringGetTextDatum(facts.fingerprint);
	values[1] = CStringGetTextDatum(facts.algorithm);
	values[2] = CStringGetTextDatum(facts.public_pem);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ---------------------------------------------------------------------
 * The server's key
 * ---------------------------------------------------------------------
 */

static int
tv_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

static void
tv_server_key_wipe(int code, Datum arg)
{
	if (server_sctx)
		EVP_PKEY_CTX_free(server_sctx);
	server_sctx = NULL;
	if (server_key)
		EVP_PKEY_free(server_key);
	server_key = NULL;
}

/*
 * Run trialvault.signing_key_command and keep the private key it printed.
 * Runs in the postmaster, as tv_load_master_key does; nothing the command
 * printed is logged, and the buffer is wiped.
 */
static void
tv_load_server_key(void)
{
	char	   *buf;
	size_t		n;
	int			rc;
	FILE	   *f;
	BIO		   *bio;
	EVP_PKEY   *pkey;

	server_problem[0] = '\0';
	if (tv_signing_key_command == NULL || tv_signing_key_command[0] == '\0')
	{
		strlcpy(server_problem, "trialvault.signing_key_command is not set", sizeof(server_problem));
		return;
	}
	fflush(NULL);
	f = popen(tv_signing_key_command, "r");
	if (f == NULL)
	{
		snprintf(server_problem, sizeof(server_problem),
				 "could not run trialvault.signing_key_command: %s", strerror(errno));
		return;
	}
	buf = palloc0(TV_PEM_MAX + 1);
	n = fread(buf, 1, TV_PEM_MAX, f);
	rc = pclose(f);
	if (rc != 0)
		snprintf(server_problem, sizeof(server_problem),
				 "trialvault.signing_key_command failed: %s", wait_result_to_str(rc));
	else if (n == 0 || n >= TV_PEM_MAX)
		snprintf(server_problem, sizeof(server_problem),
				 "trialvault.signing_key_command printed %s", n == 0 ? "nothing" : "too much");
	else if ((bio = BIO_new_mem_buf(buf, (int) n)) == NULL)
		strlcpy(server_problem, "out of memory in OpenSSL", sizeof(server_problem));
	else
	{
		pkey = PEM_read_bio_PrivateKey(bio, NULL, tv_no_passphrase, NULL);
		BIO_free(bio);
		if (pkey == NULL)
			strlcpy(server_problem,
					"trialvault.signing_key_command did not print an unencrypted PEM private key",
					sizeof(server_problem));
		else if (!tv_key_kind(pkey, &server_facts, server_problem, sizeof(server_problem)) ||
				 !tv_key_public_facts(pkey, &server_facts))
		{
			if (server_problem[0] == '\0')
				strlcpy(server_problem, "OpenSSL could not encode the server key's public half",
						sizeof(server_problem));
			EVP_PKEY_free(pkey);
		}
		else
		{
			/* Kept in TopMemoryContext, like everything the postmaster keeps. */
			server_facts.public_pem = MemoryContextStrdup(TopMemoryContext,
														  server_facts.public_pem);
			server_key = pkey;
		}
	}
	explicit_bzero(buf, TV_PEM_MAX + 1);
	pfree(buf);
}

/*
 * tv_certify_init: the setting, and the server's key, in the postmaster.
 */
void
tv_certify_init(void)
{
	DefineCustomStringVariable("trialvault.signing_key_command",
							   "Command that prints the server's PEM private signing key; run once at server start.",
							   "The key countersigns certifications and signs table digests. Only its public half is stored. Use an elliptic-curve key (P-256).",
							   &tv_signing_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.signature_window",
							"How far a signature's signed_at may be from the server's clock.",
							"A certified load or signature whose time of signing is further from now, either way, is refused.",
							&tv_signature_window,
							300, 1, 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	tv_load_server_key();
	if (server_key)
		ereport(LOG,
				(errmsg("trialvault: server signing key loaded (%s, fingerprint %s)",
						server_facts.algorithm, server_facts.fingerprint)));
	else if (tv_signing_key_command && tv_signing_key_command[0])
		ereport(WARNING,
				(errmsg("trialvault: no server signing key: %s", server_problem),
				 errdetail("Certification is refused until the server is restarted with a working trialvault.signing_key_command; nothing else is affected.")));
	on_proc_exit(tv_server_key_wipe, (Datum) 0);
}

/*
 * The server's key for signing, or an error (55000) saying why there is
 * none; its facts into *facts when asked.
 */
EVP_PKEY *
tv_require_server_key(const TvKeyFacts **facts)
{
	if (server_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this server has no signing key: %s",
						server_problem[0] ? server_problem : "the library was not preloaded"),
				 errdetail("Certification needs the server's countersignature; nothing was stored."),
				 errhint("Set trialvault.signing_key_command in postgresql.conf to a command that prints a PEM private key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256), and restart the server.")));
	if (facts)
		*facts = &server_facts;
	return server_key;
}

/* Does sig sign msg with this server's current key? */
bool
tv_server_signed(bytea *msg, bytea *sig)
{
	return server_key != NULL &&
		tv_signed_by(server_facts.public_pem, server_facts.fingerprint, msg, sig);
}

/* Does this server have a signing key (for signing what is optional)? */
bool
tv_have_server_key(void)
{
	return server_key != NULL;
}

PG_FUNCTION_INFO_V1(tv_server_signing_key);

/*
 * trialvault.server_signing_key(OUT loaded boolean, OUT fingerprint text,
 *		OUT algorithm text, OUT public_key text, OUT problem text)
 */
Datum
tv_server_signing_key(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = BoolGetDatum(server_key != NULL);
	if (server_key)
	{
		values[1] = CStringGetTextDatum(server_facts.fingerprint);
		values[2] = CStringGetTextDatum(server_facts.algorithm);
		values[3] = CStringGetTextDatum(server_facts.public_pem);
		nulls[4] = true;
	}
	else
	{
		nulls[1] = nulls[2] = nulls[3] = true;
		values[4] = CStringGetTextDatum(server_problem[0] ? server_problem
										: "the library was not preloaded");
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ---------------------------------------------------------------------
 * The certification statement
 * ---------------------------------------------------------------------
 */

/* The meaning, checked (22023 for anything else). */
const char *
tv_check_meaning(text *meaning_t)
{
	char	   *m = text_to_cstring(meaning_t);
	int			i;

	for (i = 0; i < (int) lengthof(tv_meanings); i++)
		if (strcmp(m, tv_meanings[i]) == 0)
			return tv_meanings[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown signature meaning \"%s\"",
					pnstrdup(m, pg_mbcharcliplen(m, strlen(m), 100))),
			 errhint("Meanings: certified_copy, review, approval, responsibility.")));
	return NULL;				/* keep the compiler quiet */
}

/* A nonce of the accepted length, checked (22023 otherwise). */
void
tv_check_nonce(bytea *nonce)
{
	size_t		len = VARSIZE_ANY_EXHDR(nonce);

	if (len < TV_NONCE_MIN || len > TV_NONCE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nonce of %zu bytes: it must have %d to %d", len, TV_NONCE_MIN, TV_NONCE_MAX),
				 errhint("Use fresh random bytes for every signature, for example gen_random_bytes(16) or openssl rand -hex 16.")));
}

/* signed_at as the statement writes it (UTC, microseconds); 22008 if it cannot. */
char *
tv_format_utc(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(t) ||
		timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0 ||
		tm.tm_year < 1 || tm.tm_year > 9999)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("signing time is out of range"),
				 errhint("Give the time of signing, between the years 1 and 9999.")));
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* Refuse a role name that would break the statement's lines. */
static void
tv_check_signer_name(const char *who)
{
	const unsigned char *p;

	for (p = (const unsigned char *) who; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("role name \"%s\" cannot sign: it holds a control character", who),
					 errhint("Signatures are made by roles whose names are printable.")));
}

/* The statement's bytes, for the fields given (all checked already). */
bytea *
tv_statement(const TvStatement *s)
{
	StringInfoData buf;
	char		hex[2 * TV_NONCE_MAX + 1];
	char		content[2 * TV_HASH_LEN + 1];
	char		meta[2 * TV_HASH_LEN + 1];
	bytea	   *out;

	tv_check_signer_name(s->signer);
	tv_hex(s->content_sha256, TV_HASH_LEN, content);
	tv_hex(s->metadata_sha256, TV_HASH_LEN, meta);
	tv_hex(s->nonce, s->nonce_len, hex);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "trialvault-certification-statement-v1\n");
	appendStringInfo(&buf, "content-sha256: %s\n", content);
	appendStringInfo(&buf, "metadata-sha256: %s\n", meta);
	appendStringInfo(&buf, "study: %s\n", s->study);
	appendStringInfo(&buf, "site: %s\n", s->site);
	appendStringInfo(&buf, "doc-type: %s\n", s->doc_type);
	appendStringInfo(&buf, "signer: %s\n", s->signer);
	appendStringInfo(&buf, "signer-key-sha256: %s\n", s->signer_fingerprint);
	appendStringInfo(&buf, "meaning: %s\n", s->meaning);
	appendStringInfo(&buf, "signed-at: %s\n", tv_format_utc(s->signed_at));
	appendStringInfo(&buf, "nonce: %s\n", hex);

	out = tv_bytea(buf.data, buf.len);
	pfree(buf.data);
	return out;
}

static SPIPlanPtr active_key_plan = NULL;

/*
 * The active keys of the last few signers, valid while neither
 * signing_keys nor signing_key_revocations has changed (their generation
 * numbers, as rules.c caches standings).
 */
typedef struct ActiveKey
{
	NameData	member;
	char		fingerprint[2 * TV_HASH_LEN + 1];
	uint64		gens[2];
} ActiveKey;

#define TV_ACTIVE_CACHE 8
static ActiveKey active_cache[TV_ACTIVE_CACHE];
static int	active_next = 0;

/*
 * The fingerprint of a member's active signing key; when the member has
 * none, NULL if missing_ok, else an error (55000).  Called as the owner,
 * inside SPI.
 */
char *
tv_active_key_fingerprint(const char *member, bool missing_ok)
{
	static const char *const tables[2] = {"signing_keys", "signing_key_revocations"};
	Oid			types[1] = {NAMEOID};
	Datum		values[1];
	NameData	name;
	bool		isnull;
	Datum		d;
	uint64		gens[2];
	bool		cacheable;
	int			i;

	/* Read before the query's snapshot is taken (see tv_chain_generation). */
	cacheable = tv_tables_generation(tables, 2, gens);
	for (i = 0; cacheable && i < TV_ACTIVE_CACHE; i++)
		if (active_cache[i].fingerprint[0] &&
			strcmp(NameStr(active_cache[i].member), member) == 0 &&
			active_cache[i].gens[0] == gens[0] && active_cache[i].gens[1] == gens[1])
			return pstrdup(active_cache[i].fingerprint);

	values[0] = tv_name_datum(&name, member);
	d = tv_spi_value(tv_kept_plan(&active_key_plan,
								  "SELECT (SELECT k.fingerprint FROM trialvault.signing_keys k "
								  "WHERE k.member = $1 AND NOT EXISTS "
								  "(SELECT FROM trialvault.signing_key_revocations r "
								  " WHERE r.fingerprint = k.fingerprint) "
								  "ORDER BY k.key_id DESC LIMIT 1)",
								  1, types),
					 values, NULL, false, TEXTOID, &isnull);
	if (isnull && missing_ok)
		return NULL;
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role %s has no active signing key", member),
				 errhint("Register the public half of your key pair with trialvault.register_signing_key().")));
	if (cacheable)
	{
		ActiveKey  *slot = &active_cache[active_next];

		active_next = (active_next + 1) % TV_ACTIVE_CACHE;
		namestrcpy(&slot->member, member);
		strlcpy(slot->fingerprint, TextDatumGetCString(d), sizeof(slot->fingerprint));
		slot->gens[0] = gens[0];
		slot->gens[1] = gens[1];
	}
	return TextDatumGetCString(d);
}

static void
tv_require_args(FunctionCallInfo fcinfo, const char *func)
{
	int			i;

	for (i = 0; i < PG_NARGS(); i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("arguments of trialvault.%s must not be NULL", func)));
}

static SPIPlanPtr cs_study_plan = NULL;
static SPIPlanPtr cs_site_plan = NULL;

PG_FUNCTION_INFO_V1(tv_certification_statement);

/*
 * trialvault.certification_statement(study, site, doc_type, content,
 *		metadata, meaning, signed_at, nonce) RETURNS bytea: the statement the
 *		calling member signs to load a document as certified.
 */
Datum
tv_certification_statement(PG_FUNCTION_ARGS)
{
	TvStatement s;
	TvAsOwner	as;
	bytea	   *content;
	bytea	   *nonce;
	char	   *requester = GetUserNameFromId(GetUserId(), false);
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		where[2];
	bool		isnull;
	EVP_MD_CTX *md;
	bytea	   *out;

	tv_require_args(fcinfo, "certification_statement");
	where[0] = PG_GETARG_DATUM(0);
	where[1] = PG_GETARG_DATUM(1);
	memset(&s, 0, sizeof(s));
	s.study = text_to_cstring(PG_GETARG_TEXT_PP(0));
	s.site = text_to_cstring(PG_GETARG_TEXT_PP(1));
	s.doc_type = tv_check_doc_type(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	content = PG_GETARG_BYTEA_PP(3);
	s.meaning = tv_check_meaning(PG_GETARG_TEXT_PP(5));
	s.signed_at = PG_GETARG_TIMESTAMPTZ(6);
	nonce = PG_GETARG_BYTEA_PP(7);
	tv_check_nonce(nonce);
	s.nonce = (uint8 *) VARDATA_ANY(nonce);
	s.nonce_len = VARSIZE_ANY_EXHDR(nonce);
	if (VARSIZE_ANY_EXHDR(content) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("document content is empty")));
	s.signer = requester;

	tv_owner_spi_begin(&as);
	(void) tv_spi_value(tv_kept_plan(&cs_study_plan, "SELECT trialvault._require_study($1)",
									 1, types),
						where, NULL, true, INT4OID, &isnull);
	(void) tv_spi_value(tv_kept_plan(&cs_site_plan, "SELECT trialvault._require_site($1, $2)",
									 2, types),
						where, NULL, true, VOIDOID, &isnull);
	s.signer_fingerprint = tv_active_key_fingerprint(requester, false);
	tv_owner_spi_end(&as);

	md = tv_sha_begin(TV_SHA_CONTENT);
	tv_sha_update(md, VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
	tv_sha_end(md, s.content_sha256);
	tv_c14n_sha256(PG_GETARG_XML_P(4), s.metadata_sha256);

	out = tv_statement(&s);
	PG_RETURN_BYTEA_P(out);
}

/* ---------------------------------------------------------------------
 * Signatures: checking a member's, countersigning, keeping both
 * ---------------------------------------------------------------------
 */

/* Refusal SQLSTATEs of certification (class TV, documented in docs/certification.md). */
#define ERRCODE_TV_SIGNATURE_INVALID	MAKE_SQLSTATE('T','V','0','0','1')
#define ERRCODE_TV_SIGNATURE_STALE		MAKE_SQLSTATE('T','V','0','0','2')
#define ERRCODE_TV_NONCE_REUSED			MAKE_SQLSTATE('T','V','0','0','3')
#define ERRCODE_TV_SIGNATURE_REQUIRED	MAKE_SQLSTATE('T','V','0','0','4')

#define TV_SIGNATURE_MAX	4096

int			tv_signature_window = 300;

/*
 * Public keys by fingerprint, kept per backend.  OpenSSL 3 decodes a PEM
 * key and sets up an operation through its provider machinery, which costs
 * several times the ECDSA verification itself; a registered key never
 * changes (its fingerprint names it), so each backend keeps the few it
 * uses, decoded, with their verification context.
 */
typedef struct CachedKey
{
	char		fingerprint[2 * TV_HASH_LEN + 1];
	EVP_PKEY   *pkey;
	EVP_PKEY_CTX *vctx;			/* verification over a SHA-256 digest */
} CachedKey;

#define TV_KEY_CACHE 16
static CachedKey key_cache[TV_KEY_CACHE];
static int	key_cache_next = 0;
static EVP_MD *sha256_md = NULL;

static const EVP_MD *
tv_sha256_md(void)
{
	if (sha256_md == NULL && (sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		elog(ERROR, "OpenSSL offers no SHA-256");
	return sha256_md;
}

static CachedKey *
tv_cached_key(const char *fingerprint)
{
	int			i;

	for (i = 0; i < TV_KEY_CACHE; i++)
		if (key_cache[i].pkey && strcmp(key_cache[i].fingerprint, fingerprint) == 0)
			return &key_cache[i];
	return NULL;
}

/* The key a stored PEM holds, kept, if it has that fingerprint; else NULL. */
static CachedKey *
tv_cache_key(const char *fingerprint, const char *pem)
{
	BIO		   *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY   *pkey;
	char		hex[2 * TV_HASH_LEN + 1];
	CachedKey  *slot;

	if (bio == NULL)
		elog(ERROR, "out of memory in OpenSSL");
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (pkey == NULL)
		return NULL;
	if (!tv_key_fingerprint(pkey, hex) || strcmp(hex, fingerprint) != 0)
	{
		EVP_PKEY_free(pkey);
		return NULL;
	}
	slot = &key_cache[key_cache_next];
	key_cache_next = (key_cache_next + 1) % TV_KEY_CACHE;
	if (slot->vctx)
		EVP_PKEY_CTX_free(slot->vctx);
	if (slot->pkey)
		EVP_PKEY_free(slot->pkey);
	strlcpy(slot->fingerprint, hex, sizeof(slot->fingerprint));
	slot->pkey = pkey;
	slot->vctx = NULL;
	return slot;
}

/*
 * Whether sig is the key's signature of msg: ECDSA (DER) and RSA over
 * SHA-256 (PKCS#1 v1.5, else PSS with any salt length), Ed25519 over msg
 * itself: what openssl dgst -sha256 -sign and openssl pkeyutl -sign -rawin
 * make.
 */
static bool
tv_key_verifies(CachedKey *k, const uint8 *msg, size_t len, const uint8 *sig, size_t siglen)
{
	int			id = EVP_PKEY_get_base_id(k->pkey);
	bool		ok = false;

	if (siglen == 0 || siglen > TV_SIGNATURE_MAX)
		return false;
	if (id == EVP_PKEY_ED25519)
	{
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();

		if (ctx == NULL)
			elog(ERROR, "out of memory in OpenSSL");
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
			EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1;
		EVP_MD_CTX_free(ctx);
	}
	else
	{
		uint8		digest[TV_HASH_LEN];

		tv_sha256_of(msg, len, digest);
		if (k->vctx == NULL)
		{
			k->vctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
			if (k->vctx == NULL || EVP_PKEY_verify_init(k->vctx) != 1 ||
				EVP_PKEY_CTX_set_signature_md(k->vctx, tv_sha256_md()) != 1)
			{
				EVP_PKEY_CTX_free(k->vctx);
				k->vctx = NULL;
				ERR_clear_error();
				return false;
			}
		}
		ok = EVP_PKEY_verify(k->vctx, sig, siglen, digest, TV_HASH_LEN) == 1;
		if (!ok && id == EVP_PKEY_RSA)
		{
			EVP_PKEY_CTX *pss = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);

			ok = pss != NULL && EVP_PKEY_verify_init(pss) == 1 &&
				EVP_PKEY_CTX_set_rsa_padding(pss, RSA_PKCS1_PSS_PADDING) == 1 &&
				EVP_PKEY_CTX_set_rsa_pss_saltlen(pss, RSA_PSS_SALTLEN_AUTO) == 1 &&
				EVP_PKEY_CTX_set_signature_md(pss, tv_sha256_md()) == 1 &&
				EVP_PKEY_verify(pss, sig, siglen, digest, TV_HASH_LEN) == 1;
			EVP_PKEY_CTX_free(pss);
		}
	}
	ERR_clear_error();
	return ok;
}

/* The server's signature of msg (ECDSA DER or RSA PKCS#1 v1.5 over SHA-256, or Ed25519). */
bytea *
tv_server_sign(const uint8 *msg, size_t len)
{
	const TvKeyFacts *facts;
	EVP_PKEY   *key = tv_require_server_key(&facts);
	size_t		siglen = 0;
	bytea	   *out = NULL;
	bool		ok;

	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519)
	{
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();

		if (ctx == NULL)
			elog(ERROR, "out of memory in OpenSSL");
		ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
			EVP_DigestSign(ctx, NULL, &siglen, msg, len) == 1;
		if (ok)
		{
			out = palloc(VARHDRSZ + siglen);
			ok = EVP_DigestSign(ctx, (uint8 *) VARDATA(out), &siglen, msg, len) == 1;
		}
		EVP_MD_CTX_free(ctx);
	}
	else
	{
		uint8		digest[TV_HASH_LEN];

		tv_sha256_of(msg, len, digest);
		/* One signing context per backend, prepared once. */
		if (server_sctx == NULL)
		{
			server_sctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
			if (server_sctx != NULL &&
				(EVP_PKEY_sign_init(server_sctx) != 1 ||
				 EVP_PKEY_CTX_set_signature_md(server_sctx, tv_sha256_md()) != 1))
			{
				EVP_PKEY_CTX_free(server_sctx);
				server_sctx = NULL;
			}
		}
		ok = server_sctx != NULL &&
			EVP_PKEY_sign(server_sctx, NULL, &siglen, digest, TV_HASH_LEN) == 1;
		if (ok)
		{
			out = palloc(VARHDRSZ + siglen);
			ok = EVP_PKEY_sign(server_sctx, (uint8 *) VARDATA(out), &siglen, digest, TV_HASH_LEN) == 1;
		}
	}
	ERR_clear_error();
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("the server could not countersign"),
				 errdetail("OpenSSL refused to sign with the server's key; nothing was stored.")));
	SET_VARSIZE(out, VARHDRSZ + siglen);
	return out;
}

static void
tv_sha_hex(const void *data, size_t len, char *out)
{
	uint8		hash[TV_HASH_LEN];

	tv_sha256_of(data, len, hash);
	tv_hex(hash, TV_HASH_LEN, out);
}

/*
 * The bytes the server signs, version 1: four fields a line, as the
 * statement is written:
 *
 *	trialvault-countersignature-v1
 *	statement-sha256: <hex SHA-256 of the statement's bytes>
 *	signature-sha256: <hex SHA-256 of the member's signature>
 *	countersigned-at: <YYYY-MM-DDTHH:MM:SS.ffffffZ>
 *	server-key-sha256: <fingerprint of the server's key>
 */
bytea *
tv_countersignature_input(const bytea *statement, const bytea *signature,
						  TimestampTz at, const char *server_fingerprint)
{
	char		sh[2 * TV_HASH_LEN + 1];
	char		gh[2 * TV_HASH_LEN + 1];
	char	   *text;
	size_t		len;
	bytea	   *out;

	tv_sha_hex(VARDATA_ANY(statement), VARSIZE_ANY_EXHDR(statement), sh);
	tv_sha_hex(VARDATA_ANY(signature), VARSIZE_ANY_EXHDR(signature), gh);
	text = psprintf("trialvault-countersignature-v1\n"
					"statement-sha256: %s\n"
					"signature-sha256: %s\n"
					"countersigned-at: %s\n"
					"server-key-sha256: %s\n",
					sh, gh, tv_format_utc(at), server_fingerprint);
	len = strlen(text);
	out = tv_bytea(text, len);
	pfree(text);
	return out;
}

/*
 * Put a refused certification on record through the log writer (it
 * survives the rollback of the refused call), then refuse.
 */
static void
tv_refuse_signature(const TvStatement *s, int64 doc_id, int sqlstate,
					const char *message, const char *hint)
{
	tv_record_refusal("signature_refused", s->signer, s->study, s->site, doc_id,
					  psprintf("%s (%s)", message, s->meaning));
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", message),
			 errdetail("The attempt is recorded in the audit trail; nothing was stored."),
			 hint ? errhint("%s", hint) : 0));
}

static SPIPlanPtr key_pem_plan = NULL;

/*
 * Whether a signature with this nonce exists, through the unique index on
 * trialvault.signatures (nonce) under a new snapshot: what a query would
 * answer, without planning one (this runs in every certified load).
 */
static bool
tv_nonce_used(const uint8 *nonce, size_t len)
{
	Oid			nsp = get_namespace_oid("trialvault", false);
	Relation	rel;
	Oid			index;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	index = get_relname_relid("signatures_nonce_key", nsp);
	if (!OidIsValid(index))
		elog(ERROR, "index trialvault.signatures_nonce_key is missing");
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(get_relname_relid("signatures", nsp), AccessShareLock);
	/* systable_beginscan wants the table's attribute number */
	ScanKeyInit(&key, get_attnum(RelationGetRelid(rel), "nonce"), BTEqualStrategyNumber, F_BYTEAEQ,
				PointerGetDatum(tv_bytea(nonce, len)));
	scan = systable_beginscan(rel, index, true, GetActiveSnapshot(), 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, NoLock);
	PopActiveSnapshot();
	return found;
}

/*
 * Check a member's signature of the statement s, before anything is
 * stored: the caller's active key, the time of signing within
 * trialvault.signature_window of the server's clock, the signature, a
 * nonce never used before.  Fills s->signer_fingerprint; returns the
 * statement's bytes.  Called as the owner, inside SPI.
 */
bytea *
tv_check_signature(TvStatement *s, int64 doc_id, bytea *signature)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;
	CachedKey  *key;
	bytea	   *statement;
	TimestampTz now = GetCurrentTimestamp();
	long		secs;
	int			usecs;
	bool		ok;

	(void) tv_require_server_key(NULL);
	s->signer_fingerprint = tv_active_key_fingerprint(s->signer, true);
	if (s->signer_fingerprint == NULL)
		tv_refuse_signature(s, doc_id, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
							psprintf("role %s has no active signing key", s->signer),
							"Register the public half of your key pair with trialvault.register_signing_key().");

	TimestampDifference(Min(now, s->signed_at), Max(now, s->signed_at), &secs, &usecs);
	if (secs >= tv_signature_window)
		tv_refuse_signature(s, doc_id, ERRCODE_TV_SIGNATURE_STALE,
							psprintf("signing time %s is more than %d s %s the server's clock (trialvault.signature_window)",
									 tv_format_utc(s->signed_at), tv_signature_window,
									 s->signed_at < now ? "behind" : "ahead of"),
							"Sign just before the call, with a fresh nonce; check the client's clock.");

	statement = tv_statement(s);
	key = tv_cached_key(s->signer_fingerprint);
	if (key == NULL)
	{
		values[0] = CStringGetTextDatum(s->signer_fingerprint);
		d = tv_spi_value(tv_kept_plan(&key_pem_plan,
									  "SELECT k.public_key FROM trialvault.signing_keys k WHERE k.fingerprint = $1",
									  1, types),
						 values, NULL, true, TEXTOID, &isnull);
		key = tv_cache_key(s->signer_fingerprint, TextDatumGetCString(d));
	}
	ok = key != NULL &&
		tv_key_verifies(key, (uint8 *) VARDATA_ANY(statement), VARSIZE_ANY_EXHDR(statement),
						(uint8 *) VARDATA_ANY(signature), VARSIZE_ANY_EXHDR(signature));
	if (!ok)
		tv_refuse_signature(s, doc_id, ERRCODE_TV_SIGNATURE_INVALID,
							psprintf("the signature does not verify against the active key %s of role %s",
									 s->signer_fingerprint, s->signer),
							"Sign the exact bytes trialvault.certification_statement() returns (SHA-256; ECDSA, Ed25519 or RSA) with the private half of that key.");

	/*
	 * Replays: one nonce, one signature, ever.  Two concurrent ones queue on
	 * the lock; the probe, under a snapshot taken after it, sees what the
	 * first committed.
	 */
	{
		LOCKTAG		tag;

		/* pg_advisory_xact_lock(hash of the nonce, 'TV') */
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
							 hash_bytes(s->nonce, (int) s->nonce_len), 0x5456, 2);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		if (tv_nonce_used(s->nonce, s->nonce_len))
			tv_refuse_signature(s, doc_id, ERRCODE_TV_NONCE_REUSED,
								"this nonce was used before: the signature is a replay",
								"Every signature needs fresh random bytes as its nonce.");
	}
	return statement;
}

static SPIPlanPtr server_key_known_plan = NULL;
static bool server_key_noted = false;
static TransactionId server_key_added_by = InvalidTransactionId;
static SPIPlanPtr server_key_insert_plan = NULL;
static SPIPlanPtr signature_insert_plan = NULL;

/*
 * The server's key in trialvault.server_keys, added (an event) the first
 * time it countersigns.  Called as the owner, inside SPI.
 */
void
tv_note_server_key(const TvKeyFacts *facts, const char *requester)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, NAMEOID};
	Datum		values[4];
	NameData	name;
	bool		isnull;

	/* Once seen in a transaction other than the one that added it, for good. */
	if (server_key_noted)
		return;
	values[0] = CStringGetTextDatum(facts->fingerprint);
	values[1] = CStringGetTextDatum(facts->algorithm);
	values[2] = CStringGetTextDatum(facts->public_pem);
	values[3] = tv_name_datum(&name, requester);
	if (DatumGetBool(tv_spi_value(tv_kept_plan(&server_key_known_plan,
											   "SELECT EXISTS (SELECT FROM trialvault.server_keys k WHERE k.fingerprint = $1)",
											   1, types),
								  values, NULL, true, BOOLOID, &isnull)))
	{
		server_key_noted = !TransactionIdIsValid(server_key_added_by) ||
			!TransactionIdIsCurrentTransactionId(server_key_added_by);
		return;
	}
	(void) tv_spi_value(tv_kept_plan(&server_key_insert_plan,
									 "SELECT trialvault._note_server_key($1, $2, $3, $4)",
									 4, types),
						values, NULL, false, VOIDOID, &isnull);
	server_key_added_by = GetTopTransactionId();
}

/*
 * Countersign a checked signature and keep both in trialvault.signatures.
 * Returns the countersignature.  Called as the owner, inside SPI.
 */
bytea *
tv_keep_signature(const TvStatement *s, int64 doc_id, bytea *statement, bytea *signature)
{
	const TvKeyFacts *facts;
	TimestampTz at = GetCurrentTimestamp();
	bytea	   *input;
	bytea	   *counter;
	static const Oid types[12] = {
		INT8OID, TEXTOID, TEXTOID, NAMEOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
		BYTEAOID, BYTEAOID, TEXTOID, TIMESTAMPTZOID, BYTEAOID
	};
	Datum		values[12];
	NameData	name;
	bytea	   *nonce;

	(void) tv_require_server_key(&facts);
	tv_note_server_key(facts, s->signer);
	input = tv_countersignature_input(statement, signature, at, facts->fingerprint);
	counter = tv_server_sign((uint8 *) VARDATA(input), VARSIZE(input) - VARHDRSZ);

	nonce = tv_bytea(s->nonce, s->nonce_len);
	values[0] = Int64GetDatum(doc_id);
	values[1] = CStringGetTextDatum(s->study);
	values[2] = CStringGetTextDatum(s->site);
	values[3] = tv_name_datum(&name, s->signer);
	values[4] = CStringGetTextDatum(s->signer_fingerprint);
	values[5] = CStringGetTextDatum(s->meaning);
	values[6] = TimestampTzGetDatum(s->signed_at);
	values[7] = PointerGetDatum(nonce);
	values[8] = PointerGetDatum(signature);
	values[9] = CStringGetTextDatum(facts->fingerprint);
	values[10] = TimestampTzGetDatum(at);
	values[11] = PointerGetDatum(counter);
	/* Not the statement: it is rebuilt exactly from this row and the document's. */
	if (SPI_execute_plan(tv_kept_plan(&signature_insert_plan,
									  "INSERT INTO trialvault.signatures (doc_id, study, site, signer, "
									  "signer_key, meaning, signed_at, nonce, signature, "
									  "server_key, countersigned_at, countersignature) "
									  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
									  12, (Oid *) types),
						 values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into trialvault.signatures");
	return counter;
}

static SPIPlanPtr policy_plan = NULL;

/*
 * Refuse an unsigned load into a study that requires signatures (as every
 * study created since 0.7 does, until an administrator says otherwise).
 * Called as the owner, inside SPI.
 */
void
tv_require_unsigned_allowed(const char *study, const char *site, const char *requester)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(study);
	d = tv_spi_value(tv_kept_plan(&policy_plan,
								  "SELECT (SELECT p.required FROM trialvault.signature_policies p "
								  "WHERE p.study = $1 ORDER BY p.event_id DESC LIMIT 1)",
								  1, types),
					 values, NULL, true, BOOLOID, &isnull);
	if (isnull || DatumGetBool(d))
	{
		tv_record_refusal("signature_refused", requester, study, site, 0,
						  "unsigned load into a study that requires signatures");
		ereport(ERROR,
				(errcode(ERRCODE_TV_SIGNATURE_REQUIRED),
				 errmsg("study %s requires signed loads", study),
				 errdetail("The attempt is recorded in the audit trail; nothing was stored."),
				 errhint("Pass signed_at, nonce and signature (see trialvault.certification_statement()); a trialvault_admin may allow unsigned loads with trialvault.require_signatures(study, false).")));
	}
}

/*
 * Countersign and keep a checked signature and, given an event name, put it
 * in the audit trail of the same transaction.  Returns the countersignature.
 */
bytea *
tv_sign_recorded(const TvStatement *s, int64 doc_id, bytea *statement, bytea *signature,
				 const char *event)
{
	bytea	   *counter = tv_keep_signature(s, doc_id, statement, signature);

	if (event)
		tv_audit_event(event, s->signer, s->study, s->site, doc_id,
					   psprintf("%s, signed with key %s, countersigned",
								s->meaning, s->signer_fingerprint));
	return counter;
}

/*
 * Whether the requester may act on a document (sign, verify, export what
 * is known of it): they may open it (open_document's rules), or, with
 * allow_auditor, they audit its study; in either case with the document's
 * study open in their session.  *reason says why, or why not.  Called as
 * the owner, inside SPI.
 */
static bool
tv_entitled(const char *study, const TvDocFacts *facts, const char *requester,
			bool allow_auditor, const char **reason)
{
	const char *open = tv_session_study_raw();

	*reason = tv_open_reason_now(study, facts, requester);
	if (!tv_reason_grants(*reason) &&
		!(allow_auditor && strcmp(*reason, "auditor_no_phi") == 0))
		return false;
	if (open == NULL || strcmp(open, study) != 0)
	{
		*reason = "study_not_open";
		return false;
	}
	return true;
}

static SPIPlanPtr doc_plan = NULL;

/*
 * The statement's fields of a stored document, for a later signature by
 * the caller: refused (42501) unless the caller may open the document, in
 * the study their session has open.  With record, a refusal is put on
 * record first.  Called as the owner, inside SPI.
 */
static void
tv_document_fields(int64 doc_id, TvStatement *s, bool record, bool allow_auditor,
				   const char *purpose)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	TvDocFacts	facts;
	bool		isnull;
	const char *reason;
	bytea	   *h;

	values[0] = Int64GetDatum(doc_id);
	if (SPI_execute_plan(tv_kept_plan(&doc_plan,
									  "SELECT d.study, d.site, d.doc_type, d.contains_phi, d.loaded_by::text, "
									  "d.content_sha256, d.metadata_sha256 "
									  "FROM trialvault.documents d WHERE d.doc_id = $1",
									  1, types),
						 values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trialvault.documents");
	if (SPI_processed == 0)
	{
		if (record)
			tv_record_refusal("signature_refused", s->signer, NULL, NULL, doc_id,
							  "no such document");
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("document %lld does not exist", (long long) doc_id)));
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	s->study = SPI_getvalue(tup, desc, 1);
	s->site = SPI_getvalue(tup, desc, 2);
	s->doc_type = tv_check_doc_type(SPI_getvalue(tup, desc, 3));
	facts.site = s->site;
	facts.doc_type = s->doc_type;
	facts.contains_phi = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	facts.loaded_by = SPI_getvalue(tup, desc, 5);
	h = DatumGetByteaPP(SPI_getbinval(tup, desc, 6, &isnull));
	memcpy(s->content_sha256, VARDATA_ANY(h), TV_HASH_LEN);
	h = DatumGetByteaPP(SPI_getbinval(tup, desc, 7, &isnull));
	memcpy(s->metadata_sha256, VARDATA_ANY(h), TV_HASH_LEN);

	if (!tv_entitled(s->study, &facts, s->signer, allow_auditor, &reason))
	{
		if (record)
			tv_record_refusal("signature_refused", s->signer, s->study, s->site, doc_id,
							  psprintf("may not open the document (%s)", reason));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s document %lld", purpose, (long long) doc_id),
				 errdetail("Role %s may not open it (%s)%s.", s->signer, reason,
						   record ? "; the attempt is recorded in the audit trail" : ""),
				 strcmp(reason, "study_not_open") == 0 ?
				 errhint("Open the document's study first: trialvault.open_study('%s').", s->study) : 0));
	}
}

/* The arguments of statement_for_document and sign_document, checked. */
static void
tv_later_signature_args(FunctionCallInfo fcinfo, const char *func, TvStatement *s, int64 *doc_id)
{
	bytea	   *nonce;

	tv_require_args(fcinfo, func);
	memset(s, 0, sizeof(*s));
	*doc_id = PG_GETARG_INT64(0);
	s->meaning = tv_check_meaning(PG_GETARG_TEXT_PP(1));
	s->signed_at = PG_GETARG_TIMESTAMPTZ(2);
	(void) tv_format_utc(s->signed_at);
	nonce = PG_GETARG_BYTEA_PP(3);
	tv_check_nonce(nonce);
	s->nonce = (uint8 *) VARDATA_ANY(nonce);
	s->nonce_len = VARSIZE_ANY_EXHDR(nonce);
	s->signer = GetUserNameFromId(GetUserId(), false);
}

PG_FUNCTION_INFO_V1(tv_statement_for_document);

/*
 * trialvault.statement_for_document(doc_id, meaning, signed_at, nonce)
 *		RETURNS bytea: the statement the caller signs for a later signature
 *		(review, approval, ...) of a stored document they may open.
 */
Datum
tv_statement_for_document(PG_FUNCTION_ARGS)
{
	TvStatement s;
	int64		doc_id;
	TvAsOwner	as;
	bytea	   *out;

	tv_later_signature_args(fcinfo, "statement_for_document", &s, &doc_id);
	tv_owner_spi_begin(&as);
	tv_document_fields(doc_id, &s, false, false, "sign");
	s.signer_fingerprint = tv_active_key_fingerprint(s.signer, false);
	out = tv_statement(&s);
	tv_owner_spi_end(&as);
	PG_RETURN_BYTEA_P(out);
}

PG_FUNCTION_INFO_V1(tv_sign_document);

/*
 * trialvault.sign_document(doc_id, meaning, signed_at, nonce, signature)
 *		RETURNS bytea: a later signature of a stored document by a member
 *		who may open it, checked, countersigned and kept; returns the
 *		server's countersignature.
 */
Datum
tv_sign_document(PG_FUNCTION_ARGS)
{
	TvStatement s;
	int64		doc_id;
	TvAsOwner	as;
	bytea	   *signature;
	bytea	   *statement;
	bytea	   *counter;

	tv_require_schema();
	tv_later_signature_args(fcinfo, "sign_document", &s, &doc_id);
	signature = PG_GETARG_BYTEA_PP(4);
	tv_owner_spi_begin(&as);
	tv_document_fields(doc_id, &s, true, false, "sign");
	statement = tv_check_signature(&s, doc_id, signature);
	counter = tv_sign_recorded(&s, doc_id, statement, signature, "document_signed");
	tv_owner_spi_end(&as);
	PG_RETURN_BYTEA_P(counter);
}
/* ---------------------------------------------------------------------
 * Verifying a document's signatures
 * ---------------------------------------------------------------------
 */

/* Whether sig is the signature of msg by the key pem holds, which has that fingerprint. */
bool
tv_signed_by(const char *pem, const char *fingerprint, bytea *msg, bytea *sig)
{
	CachedKey  *key = tv_cached_key(fingerprint);

	if (key == NULL)
		key = tv_cache_key(fingerprint, pem);
	return key != NULL &&
		tv_key_verifies(key, (uint8 *) VARDATA_ANY(msg), VARSIZE_ANY_EXHDR(msg),
						(uint8 *) VARDATA_ANY(sig), VARSIZE_ANY_EXHDR(sig));
}

static SPIPlanPtr verify_doc_plan = NULL;
static SPIPlanPtr verify_sigs_plan = NULL;

#define VD_NCOLS 10

PG_FUNCTION_INFO_V1(tv_verify_document);

/*
 * trialvault.verify_document(doc_id) RETURNS TABLE (signature_id, signer,
 *		printed_name, meaning, signed_at, countersigned_at, user_signature_ok,
 *		countersignature_ok, key_revoked_at, content_matches)
 *
 * For a member who may open the document, or an auditor of its study, in
 * the study their session has open.  The stored content is decrypted here
 * and hashed, never returned; the check is put on record in the decryption
 * log (reason "verification") before any row is returned, as an opening
 * is, and a refusal too.
 *
 * The statement each signature signed is rebuilt from its row and the
 * document's fingerprints (tv_statement; the v1 format makes this exact):
 *
 *	user_signature_ok	the member's signature of that statement verifies,
 *						with the key it names, registered to the signer
 *	countersignature_ok	the server's countersignature verifies, with the
 *						server key kept in trialvault.server_keys
 *	content_matches		the document's content (decrypted here) and
 *						metadata, hashed now, are the fingerprints the
 *						statement carries
 */
Datum
tv_verify_document(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TvLogRecord rec;
	TvAsOwner	as;
	int64		doc_id;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	const char *reason = "no_such_document";
	const char *problem = NULL;
	bool		allowed = false;
	TvStatement base;
	uint8		actual_content[TV_HASH_LEN];
	uint8		actual_meta[TV_HASH_LEN];
	bool		content_readable = false;
	uint64		i;
	int			errcode_refusal = ERRCODE_INSUFFICIENT_PRIVILEGE;

	InitMaterializedSRF(fcinfo, 0);
	tv_require_schema();
	tv_log_require_writer();
	tv_log_coming();

	memset(&rec, 0, sizeof(rec));
	rec.kind = TV_LOG_DECRYPTION;
	tv_log_context(&rec);
	rec.has_doc = !PG_ARGISNULL(0);
	doc_id = rec.has_doc ? PG_GETARG_INT64(0) : 0;
	rec.doc_id = doc_id;
	if (!rec.has_doc)
	{
		strlcpy(rec.reason, "invalid_request", sizeof(rec.reason));
		tv_log_submit(&rec);
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("document id must not be NULL"),
				 errdetail("The attempt is recorded in the decryption log.")));
	}

	memset(&base, 0, sizeof(base));
	tv_owner_spi_begin(&as);
	values[0] = Int64GetDatum(doc_id);
	if (SPI_execute_plan(tv_kept_plan(&verify_doc_plan,
									  "SELECT d.study, d.site, d.doc_type, d.contains_phi, d.loaded_by::text, "
									  "s.study_id, d.content, d.content_enc, d.content_sha256, "
									  "d.metadata_sha256, d.metadata "
									  "FROM trialvault.documents d JOIN trialvault.studies s ON s.code = d.study "
									  "WHERE d.doc_id = $1",
									  1, types),
						 values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trialvault.documents");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		TvDocFacts	facts;
		bytea	   *content = NULL;
		int32		study_id;

		base.study = SPI_getvalue(tup, desc, 1);
		base.site = SPI_getvalue(tup, desc, 2);
		base.doc_type = tv_check_doc_type(SPI_getvalue(tup, desc, 3));
		facts.site = base.site;
		facts.doc_type = base.doc_type;
		facts.contains_phi = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		facts.loaded_by = SPI_getvalue(tup, desc, 5);
		study_id = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		memcpy(base.content_sha256, VARDATA_ANY(DatumGetByteaPP(SPI_getbinval(tup, desc, 9, &isnull))),
			   TV_HASH_LEN);
		memcpy(base.metadata_sha256, VARDATA_ANY(DatumGetByteaPP(SPI_getbinval(tup, desc, 10, &isnull))),
			   TV_HASH_LEN);

		/* Decided first: nothing is decrypted or hashed for a refusal. */
		allowed = tv_entitled(base.study, &facts, rec.requester, true, &reason);
		if (allowed)
		{
			Datum		v = SPI_getbinval(tup, desc, facts.contains_phi ? 8 : 7, &isnull);

			tv_c14n_sha256(DatumGetXmlP(SPI_getbinval(tup, desc, 11, &isnull)), actual_meta);
			if (isnull)
				;				/* no stored content: content_matches is false */
			else if (facts.contains_phi)
			{
				const char *r = NULL;

				content = tv_decrypt_field(study_id, base.study, doc_id, "content",
										   DatumGetByteaPP(v), &r, &problem);
				/* A ciphertext that does not decrypt is a finding; no key is a refusal. */
				if (content == NULL && strcmp(r, "key_unavailable") == 0)
				{
					allowed = false;
					reason = r;
					errcode_refusal = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
				}
			}
			else
				content = DatumGetByteaPP(v);
		}
		if (content != NULL)
		{
			EVP_MD_CTX *md = tv_sha_begin(TV_SHA_CONTENT);

			tv_sha_update(md, VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
			tv_sha_end(md, actual_content);
			content_readable = true;
			if (facts.contains_phi)
				explicit_bzero(VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
		}
	}
	else
		errcode_refusal = ERRCODE_UNDEFINED_OBJECT;

	rec.granted = allowed;
	strlcpy(rec.reason, allowed ? "verification" : reason, sizeof(rec.reason));
	strlcpy(rec.study, base.study ? base.study : "", sizeof(rec.study));
	strlcpy(rec.site, base.site ? base.site : "", sizeof(rec.site));
	if (!allowed)
	{
		tv_owner_spi_end(&as);
		tv_log_submit(&rec);
		ereport(ERROR,
				(errcode(errcode_refusal),
				 errcode_refusal == ERRCODE_UNDEFINED_OBJECT ?
				 errmsg("document %lld does not exist", (long long) doc_id) :
				 errmsg("permission denied to verify document %lld", (long long) doc_id),
				 errdetail("%s (%s). The attempt is recorded in the decryption log.",
						   problem ? problem : "Only members who may open it and auditors of its study may verify it",
						   reason),
				 strcmp(reason, "study_not_open") == 0 ?
				 errhint("Open the document's study first: trialvault.open_study('%s').", base.study) : 0));
	}

	if (SPI_execute_plan(tv_kept_plan(&verify_sigs_plan,
									  "SELECT g.signature_id, g.signer, "
									  " (SELECT p.printed_name FROM trialvault.printed_names p "
									  "  WHERE p.member = g.signer ORDER BY p.event_id DESC LIMIT 1), "
									  " g.meaning, g.signed_at, g.countersigned_at, g.signer_key, k.public_key, "
									  " r.revoked_at, g.server_key, sk.public_key, g.nonce, "
									  " g.signature, g.countersignature, k.member "
									  "FROM trialvault.signatures g "
									  "LEFT JOIN trialvault.signing_keys k ON k.fingerprint = g.signer_key "
									  "LEFT JOIN trialvault.signing_key_revocations r ON r.fingerprint = g.signer_key "
									  "LEFT JOIN trialvault.server_keys sk ON sk.fingerprint = g.server_key "
									  "WHERE g.doc_id = $1 ORDER BY g.signature_id",
									  1, types),
						 values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read trialvault.signatures");

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		out[VD_NCOLS];
		bool		nulls[VD_NCOLS];
		TvStatement s = base;
		char	   *signer_key = SPI_getvalue(tup, desc, 7);
		char	   *signer_pem = SPI_getvalue(tup, desc, 8);
		char	   *server_key_fp = SPI_getvalue(tup, desc, 10);
		char	   *server_pem = SPI_getvalue(tup, desc, 11);
		char	   *key_member = SPI_getvalue(tup, desc, 15);
		bytea	   *nonce = DatumGetByteaPP(SPI_getbinval(tup, desc, 12, &isnull));
		bytea	   *signature = DatumGetByteaPP(SPI_getbinval(tup, desc, 13, &isnull));
		bytea	   *counter = DatumGetByteaPP(SPI_getbinval(tup, desc, 14, &isnull));
		bytea	   *statement;
		TimestampTz countersigned_at;
		int			c;

		/* signature_id .. countersigned_at; the tuplestore copies them */
		for (c = 0; c < 6; c++)
			out[c] = SPI_getbinval(tup, desc, c + 1, &nulls[c]);
		countersigned_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		s.signer = SPI_getvalue(tup, desc, 2);
		s.meaning = SPI_getvalue(tup, desc, 4);
		s.signed_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
		s.signer_fingerprint = signer_key;
		s.nonce = (uint8 *) VARDATA_ANY(nonce);
		s.nonce_len = VARSIZE_ANY_EXHDR(nonce);
		statement = tv_statement(&s);

		/* user_signature_ok */
		out[6] = BoolGetDatum(signer_pem != NULL && key_member != NULL &&
							  strcmp(key_member, s.signer) == 0 &&
							  tv_signed_by(signer_pem, signer_key, statement, signature));
		nulls[6] = false;
		/* countersignature_ok */
		out[7] = BoolGetDatum(server_pem != NULL &&
							  tv_signed_by(server_pem, server_key_fp,
										   tv_countersignature_input(statement, signature,
																	 countersigned_at, server_key_fp),
										   counter));
		nulls[7] = false;
		/* key_revoked_at: column 9 of the query */
		out[8] = SPI_getbinval(tup, desc, 9, &nulls[8]);
		/* content_matches */
		out[9] = BoolGetDatum(content_readable &&
							  memcmp(actual_content, base.content_sha256, TV_HASH_LEN) == 0 &&
							  memcmp(actual_meta, base.metadata_sha256, TV_HASH_LEN) == 0);
		nulls[9] = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	tv_owner_spi_end(&as);

	/* On record before anything is returned. */
	tv_log_submit(&rec);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(tv_document_access);

/*
 * trialvault._document_access(doc_id, requester, purpose): refuses (42704,
 * 42501) unless the requester may open the document, in the study their
 * session has open.  Internal, for the SQL functions that export what is
 * known of a document's signatures; they run as the owner and pass the
 * real caller.
 */
Datum
tv_document_access(PG_FUNCTION_ARGS)
{
	TvStatement s;
	TvAsOwner	as;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("document id must not be NULL")));
	memset(&s, 0, sizeof(s));
	s.signer = pstrdup(NameStr(*PG_GETARG_NAME(1)));
	tv_owner_spi_begin(&as);
	tv_document_fields(PG_GETARG_INT64(0), &s, false, false,
					   text_to_cstring(PG_GETARG_TEXT_PP(2)));
	tv_owner_spi_end(&as);
	PG_RETURN_VOID();
}

static SPIPlanPtr statement_plan = NULL;

PG_FUNCTION_INFO_V1(tv_signature_statement);

/*
 * trialvault._signature_statement(doc_id, signature_id) RETURNS bytea: the
 * exact bytes of the statement a kept signature signed, rebuilt from the
 * signature row and the document's fingerprints.  Internal (certificates,
 * tests); NULL when there is no such signature.
 */
Datum
tv_signature_statement(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];
	TvStatement s;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bytea	   *h;
	bytea	   *out;

	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(tv_kept_plan(&statement_plan,
									  "SELECT d.content_sha256, d.metadata_sha256, d.study, d.site, d.doc_type, "
									  "g.signer::text, g.signer_key, g.meaning, g.signed_at, g.nonce "
									  "FROM trialvault.signatures g JOIN trialvault.documents d ON d.doc_id = g.doc_id "
									  "WHERE g.doc_id = $1 AND g.signature_id = $2",
									  2, types),
						 values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trialvault.signatures");
	if (SPI_processed == 0)
	{
		SPI_finish();
		PG_RETURN_NULL();
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(&s, 0, sizeof(s));
	h = DatumGetByteaPP(SPI_getbinval(tup, desc, 1, &isnull));
	memcpy(s.content_sha256, VARDATA_ANY(h), TV_HASH_LEN);
	h = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
	memcpy(s.metadata_sha256, VARDATA_ANY(h), TV_HASH_LEN);
	s.study = SPI_getvalue(tup, desc, 3);
	s.site = SPI_getvalue(tup, desc, 4);
	s.doc_type = SPI_getvalue(tup, desc, 5);
	s.signer = SPI_getvalue(tup, desc, 6);
	s.signer_fingerprint = SPI_getvalue(tup, desc, 7);
	s.meaning = SPI_getvalue(tup, desc, 8);
	s.signed_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
	h = DatumGetByteaPP(SPI_getbinval(tup, desc, 10, &isnull));
	s.nonce = (uint8 *) VARDATA_ANY(h);
	s.nonce_len = VARSIZE_ANY_EXHDR(h);
	/* Built in SPI's memory; handed to the caller's. */
	out = (bytea *) DatumGetPointer(SPI_datumTransfer(PointerGetDatum(tv_statement(&s)), false, -1));
	SPI_finish();
	PG_RETURN_BYTEA_P(out);
}
