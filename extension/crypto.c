/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		Field encryption under per-study data keys, and the master key that
 *		wraps them.
 *
 * The master key never enters the database: the postmaster runs
 * trialvault.master_key_command once at start (pgsodium's getkey model) and
 * every backend inherits the 32 bytes through fork().  Data keys are random
 * 256-bit keys, one per study and version, stored in trialvault.study_keys
 * only wrapped (AES-256-GCM under the master key, bound to the study, version
 * and master key id).  Unwrapped data keys live in a small per-backend cache;
 * every process that used a key wipes the cache and its copy of the master
 * key when it exits (tv_crypto_wipe).
 *
 * Field ciphertext format, version 1 (all integers big-endian):
 *
 *	offset	size	content
 *	0		2		magic "TV"
 *	2		1		format version (1)
 *	3		4		study id
 *	7		4		data key version
 *	11		12		IV (random per value)
 *	23		16		GCM tag
 *	39		n		ciphertext (same length as the plaintext)
 *
 * The associated data is the 11-byte header followed by the study code, the
 * document id (8 bytes) and the field name, each prefixed by its length as a
 * 4-byte integer: a ciphertext copied to another study, document or field,
 * or given another key version, fails authentication.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "trialvault.h"

#define TV_KEY_LEN		32
#define TV_IV_LEN		12
#define TV_TAG_LEN		16
#define TV_HDR_LEN		11
#define TV_ENC_OVERHEAD (TV_HDR_LEN + TV_IV_LEN + TV_TAG_LEN)
#define TV_FORMAT_V1	1
#define TV_KEYID_LEN	16		/* hex characters of a master key id */
#define TV_KEY_CACHE	64

char	   *tv_master_key_command = NULL;
char	   *tv_previous_master_key_command = NULL;

typedef struct TvMasterKey
{
	bool		ok;
	uint8		key[TV_KEY_LEN];
	char		id[TV_KEYID_LEN + 1];
	char		problem[256];
} TvMasterKey;

static TvMasterKey tv_master;
static TvMasterKey tv_previous;

typedef struct TvDataKey
{
	int32		study_id;
	int32		version;
	uint8		key[TV_KEY_LEN];
} TvDataKey;

static TvDataKey *tv_key_cache = NULL;
static int	tv_key_cache_n = 0;
static EVP_CIPHER *tv_gcm = NULL;
static SPIPlanPtr key_plan = NULL;

/*
 * Wipe the keys this process holds: its cached data keys and its copy of
 * the master keys.  Runs at exit of every process that used them; the
 * message names how many, never what.
 */
static void
tv_crypto_wipe(int code, Datum arg)
{
	int			n = tv_key_cache_n;

	if (tv_key_cache)
		OPENSSL_cleanse(tv_key_cache, sizeof(TvDataKey) * TV_KEY_CACHE);
	tv_key_cache_n = 0;
	OPENSSL_cleanse(&tv_master, sizeof(tv_master));
	OPENSSL_cleanse(&tv_previous, sizeof(tv_previous));
	elog(DEBUG1, "trialvault: wiped %d data key(s) and the master keys from process %d",
		 n, MyProcPid);
}

/*
 * Arrange the wipe in this process.  A child process forgets the exit
 * callbacks the postmaster registered (on_exit_reset() in
 * InitPostmasterChild), so each process that touches a key registers its
 * own, once.
 */
static void
tv_crypto_wipe_at_exit(void)
{
	static int	registered_pid = 0;

	if (registered_pid == MyProcPid)
		return;
	on_proc_exit(tv_crypto_wipe, (Datum) 0);
	registered_pid = MyProcPid;
}

static int
tv_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Run a key command and keep what it printed, if it is 64 hex characters.
 * This runs in the postmaster, before it unblocks signals, so popen/pclose
 * are safe; nothing the command printed is ever logged.
 */
static void
tv_load_master_key(const char *guc, const char *command, TvMasterKey *mk)
{
	char		buf[256];
	size_t		n;
	int			rc;
	FILE	   *f;

	memset(mk, 0, sizeof(*mk));
	if (command == NULL || command[0] == '\0')
	{
		snprintf(mk->problem, sizeof(mk->problem), "%s is not set", guc);
		return;
	}
	fflush(NULL);
	f = popen(command, "r");
	if (f == NULL)
	{
		snprintf(mk->problem, sizeof(mk->problem),
				 "could not run %s: %s", guc, strerror(errno));
		return;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	rc = pclose(f);
	buf[n] = '\0';
	while (n > 0 && isspace((unsigned char) buf[n - 1]))
		n--;
	if (rc != 0)
		snprintf(mk->problem, sizeof(mk->problem), "%s failed: %s",
				 guc, wait_result_to_str(rc));
	else if (n != 2 * TV_KEY_LEN)
		snprintf(mk->problem, sizeof(mk->problem),
				 "%s printed %zu characters, not 64 hexadecimal digits", guc, n);
	else
	{
		int			i;
		uint8		mac[EVP_MAX_MD_SIZE];
		unsigned int maclen = 0;
		static const char label[] = "trialvault master key id";

		for (i = 0; i < TV_KEY_LEN; i++)
		{
			int			hi = tv_hexval(buf[2 * i]);
			int			lo = tv_hexval(buf[2 * i + 1]);

			if (hi < 0 || lo < 0)
				break;
			mk->key[i] = (uint8) (hi << 4 | lo);
		}
		if (i < TV_KEY_LEN)
			snprintf(mk->problem, sizeof(mk->problem),
					 "%s printed something other than 64 hexadecimal digits", guc);
		else if (HMAC(EVP_sha256(), mk->key, TV_KEY_LEN,
					  (const uint8 *) label, sizeof(label) - 1, mac, &maclen) == NULL)
			snprintf(mk->problem, sizeof(mk->problem),
					 "could not compute the id of the key from %s", guc);
		else
		{
			for (i = 0; i < TV_KEYID_LEN / 2; i++)
				snprintf(mk->id + 2 * i, 3, "%02x", mac[i]);
			mk->ok = true;
		}
		if (!mk->ok)
			OPENSSL_cleanse(mk->key, sizeof(mk->key));
	}
	OPENSSL_cleanse(buf, sizeof(buf));
}

/*
 * tv_crypto_init: GUCs, and reading the master key(s), in the postmaster.
 */
void
tv_crypto_init(void)
{
	DefineCustomStringVariable("trialvault.master_key_command",
							   "Command that prints the master key (64 hexadecimal digits); run once at server start.",
							   "The key wraps every study's data keys. It is never stored in the database; keep it on another host or device.",
							   &tv_master_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("trialvault.previous_master_key_command",
							   "Command that prints the previous master key, set only while rotating the master key.",
							   "trialvault.rewrap_data_keys() re-wraps every data key found under this key with the current master key.",
							   &tv_previous_master_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	tv_load_master_key("trialvault.master_key_command",
					   tv_master_key_command, &tv_master);
	if (tv_master.ok)
		ereport(LOG,
				(errmsg("trialvault: master key loaded (key id %s)", tv_master.id)));
	else
		ereport(WARNING,
				(errmsg("trialvault: no master key: %s", tv_master.problem),
				 errdetail("Encryption and decryption of PHI are refused until the server is restarted with a working trialvault.master_key_command.")));

	if (tv_previous_master_key_command && tv_previous_master_key_command[0])
	{
		tv_load_master_key("trialvault.previous_master_key_command",
						   tv_previous_master_key_command, &tv_previous);
		if (tv_previous.ok)
			ereport(LOG,
					(errmsg("trialvault: previous master key loaded (key id %s)",
							tv_previous.id)));
		else
			ereport(WARNING,
					(errmsg("trialvault: previous master key not loaded: %s",
							tv_previous.problem)));
	}
	/* The postmaster's own copy, at its exit. */
	tv_crypto_wipe_at_exit();
}

/* Refuse clearly when there is no master key. */
static void
tv_require_master_key(void)
{
	tv_crypto_wipe_at_exit();
	if (!tv_loaded_at_preload)
		tv_require_preload();
	if (!tv_master.ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trialvault has no master key"),
				 errdetail("%s.", tv_master.problem),
				 errhint("Set trialvault.master_key_command in postgresql.conf to a command that prints the key, and restart the server.")));
}

static EVP_CIPHER *
tv_cipher(void)
{
	if (tv_gcm == NULL)
	{
		tv_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
		if (tv_gcm == NULL)
			elog(ERROR, "OpenSSL has no AES-256-GCM");
	}
	return tv_gcm;
}

/*
 * AES-256-GCM in one call.  Returns false on any failure (for decryption:
 * a tag that does not match); never leaves partial output behind.
 */
static bool
tv_gcm_run(bool encrypt, const uint8 *key, const uint8 *iv,
		   const uint8 *ad, int adlen, const uint8 *in, int inlen,
		   uint8 *out, uint8 *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			len = 0;
	int			fin = 0;
	bool		ok;

	if (ctx == NULL)
		return false;
	ok = EVP_CipherInit_ex2(ctx, tv_cipher(), key, iv, encrypt ? 1 : 0, NULL) == 1 &&
		(adlen == 0 || EVP_CipherUpdate(ctx, NULL, &len, ad, adlen) == 1) &&
		(inlen == 0 || EVP_CipherUpdate(ctx, out, &len, in, inlen) == 1);
	if (ok && !encrypt)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TV_TAG_LEN, (void *) tag) == 1;
	if (ok)
		ok = EVP_CipherFinal_ex(ctx, out + len, &fin) == 1;
	if (ok && encrypt)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TV_TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok && inlen > 0)
		OPENSSL_cleanse(out, inlen);
	return ok;
}

static void
tv_put_u32(StringInfo buf, uint32 v)
{
	uint8		b[4] = {v >> 24, v >> 16, v >> 8, v};

	appendBinaryStringInfo(buf, (const char *) b, 4);
}

static void
tv_put_lp(StringInfo buf, const void *data, uint32 len)
{
	tv_put_u32(buf, len);
	appendBinaryStringInfo(buf, data, len);
}

static uint32
tv_get_u32(const uint8 *p)
{
	return (uint32) p[0] << 24 | (uint32) p[1] << 16 | (uint32) p[2] << 8 | p[3];
}

/* Associated data of a wrapped data key. */
static void
tv_wrap_ad(StringInfo ad, int32 study_id, const char *study, int32 version,
		   const char *master_id)
{
	appendStringInfoString(ad, "trialvault data key v1");
	tv_put_u32(ad, (uint32) study_id);
	tv_put_lp(ad, study, strlen(study));
	tv_put_u32(ad, (uint32) version);
	tv_put_lp(ad, master_id, strlen(master_id));
}

/* Associated data of a field: the header, then where the value belongs. */
static void
tv_field_ad(StringInfo ad, const uint8 *header, const char *study,
			int64 doc_id, const char *field)
{
	uint8		id[8];
	int			i;

	initStringInfo(ad);
	appendBinaryStringInfo(ad, (const char *) header, TV_HDR_LEN);
	tv_put_lp(ad, study, strlen(study));
	for (i = 0; i < 8; i++)
		id[i] = (uint64) doc_id >> (56 - 8 * i);
	tv_put_lp(ad, id, 8);
	tv_put_lp(ad, field, strlen(field));
}

/* Wrapped key: IV || tag || ciphertext of the 32 key bytes. */
static bytea *
tv_wrap_key(const TvMasterKey *mk, int32 study_id, const char *study,
			int32 version, const uint8 *key)
{
	StringInfoData ad;
	bytea	   *out = palloc(VARHDRSZ + TV_IV_LEN + TV_TAG_LEN + TV_KEY_LEN);
	uint8	   *p = (uint8 *) VARDATA(out);

	SET_VARSIZE(out, VARHDRSZ + TV_IV_LEN + TV_TAG_LEN + TV_KEY_LEN);
	initStringInfo(&ad);
	tv_wrap_ad(&ad, study_id, study, version, mk->id);
	if (RAND_bytes(p, TV_IV_LEN) != 1 ||
		!tv_gcm_run(true, mk->key, p, (uint8 *) ad.data, ad.len, key,
					TV_KEY_LEN, p + TV_IV_LEN + TV_TAG_LEN, p + TV_IV_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not wrap the data key of study \"%s\"", study)));
	pfree(ad.data);
	return out;
}

static bool
tv_unwrap_key(const TvMasterKey *mk, int32 study_id, const char *study,
			  int32 version, bytea *wrapped, uint8 *key)
{
	StringInfoData ad;
	uint8	   *p = (uint8 *) VARDATA_ANY(wrapped);
	bool		ok;

	if (VARSIZE_ANY_EXHDR(wrapped) != TV_IV_LEN + TV_TAG_LEN + TV_KEY_LEN)
		return false;
	initStringInfo(&ad);
	tv_wrap_ad(&ad, study_id, study, version, mk->id);
	ok = tv_gcm_run(false, mk->key, p, (uint8 *) ad.data, ad.len,
					p + TV_IV_LEN + TV_TAG_LEN, TV_KEY_LEN, key, p + TV_IV_LEN);
	pfree(ad.data);
	return ok;
}

/*
 * Small secrets other than data keys (a member's one-time-code secret),
 * wrapped under the master key like a data key: IV || tag || ciphertext,
 * bound by the associated data to what the secret is for, whose it is and
 * the master key id, so a wrapped secret copied to another member or
 * purpose fails to open.
 */
static void
tv_secret_ad(StringInfo ad, const char *purpose, int64 id, const char *owner,
			 const char *master_id)
{
	uint8		b[8];
	int			i;

	initStringInfo(ad);
	appendStringInfoString(ad, "trialvault secret v1");
	tv_put_lp(ad, purpose, strlen(purpose));
	for (i = 0; i < 8; i++)
		b[i] = (uint64) id >> (56 - 8 * i);
	tv_put_lp(ad, b, 8);
	tv_put_lp(ad, owner, strlen(owner));
	tv_put_lp(ad, master_id, strlen(master_id));
}

/*
 * tv_wrap_secret: len bytes of secret wrapped under the current master key,
 * whose id is returned in *master_id.
 */
bytea *
tv_wrap_secret(const char *purpose, int64 id, const char *owner,
			   const uint8 *secret, int len, const char **master_id)
{
	StringInfoData ad;
	bytea	   *out = palloc(VARHDRSZ + TV_IV_LEN + TV_TAG_LEN + len);
	uint8	   *p = (uint8 *) VARDATA(out);

	tv_require_master_key();
	SET_VARSIZE(out, VARHDRSZ + TV_IV_LEN + TV_TAG_LEN + len);
	tv_secret_ad(&ad, purpose, id, owner, tv_master.id);
	if (RAND_bytes(p, TV_IV_LEN) != 1 ||
		!tv_gcm_run(true, tv_master.key, p, (uint8 *) ad.data, ad.len, secret,
					len, p + TV_IV_LEN + TV_TAG_LEN, p + TV_IV_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not wrap a %s", purpose)));
	pfree(ad.data);
	*master_id = pstrdup(tv_master.id);
	return out;
}

/*
 * tv_unwrap_secret: the secret tv_wrap_secret() wrapped, in palloc'd
 * memory (*len bytes), under the current or the previous master key as
 * master_id says; NULL with *problem set when neither is that key or the
 * wrapped secret does not open.
 */
uint8 *
tv_unwrap_secret(const char *purpose, int64 id, const char *owner,
				 bytea *wrapped, const char *master_id, int *len, const char **problem)
{
	const TvMasterKey *mk = NULL;
	StringInfoData ad;
	uint8	   *p = (uint8 *) VARDATA_ANY(wrapped);
	int			n = (int) VARSIZE_ANY_EXHDR(wrapped) - TV_IV_LEN - TV_TAG_LEN;
	uint8	   *out;

	tv_require_master_key();
	if (strcmp(master_id, tv_master.id) == 0)
		mk = &tv_master;
	else if (tv_previous.ok && strcmp(master_id, tv_previous.id) == 0)
		mk = &tv_previous;
	if (mk == NULL)
	{
		*problem = psprintf("it is wrapped under master key %s, which this server does not have", master_id);
		return NULL;
	}
	if (n <= 0)
	{
		*problem = "the wrapped secret is too short";
		return NULL;
	}
	out = palloc(n);
	tv_secret_ad(&ad, purpose, id, owner, mk->id);
	if (!tv_gcm_run(false, mk->key, p, (uint8 *) ad.data, ad.len,
					p + TV_IV_LEN + TV_TAG_LEN, n, out, p + TV_IV_LEN))
	{
		pfree(ad.data);
		pfree(out);
		*problem = "the wrapped secret does not open (altered, or not this member's)";
		return NULL;
	}
	pfree(ad.data);
	*len = n;
	return out;
}

static TvDataKey *
tv_cache_lookup(int32 study_id, int32 version)
{
	int			i;

	for (i = 0; i < tv_key_cache_n; i++)
		if (tv_key_cache[i].study_id == study_id &&
			tv_key_cache[i].version == version)
			return &tv_key_cache[i];
	return NULL;
}

static TvDataKey *
tv_cache_add(int32 study_id, int32 version, const uint8 *key)
{
	TvDataKey  *k;

	if (tv_key_cache == NULL)
		tv_key_cache = MemoryContextAllocZero(TopMemoryContext,
											  sizeof(TvDataKey) * TV_KEY_CACHE);
	if (tv_key_cache_n == TV_KEY_CACHE)
	{
		/* Full: start over rather than track use; refills are cheap. */
		OPENSSL_cleanse(tv_key_cache, sizeof(TvDataKey) * TV_KEY_CACHE);
		tv_key_cache_n = 0;
	}
	k = &tv_key_cache[tv_key_cache_n++];
	k->study_id = study_id;
	k->version = version;
	memcpy(k->key, key, TV_KEY_LEN);
	return k;
}

/* Problem texts tv_data_key() reports; tv_unknown_version is data corruption. */
static const char tv_unknown_version[] =
"the ciphertext names a data key version the study does not have";

/*
 * Find a study's data key (a given version, or the newest when version is
 * 0) wrapped under the current master key.  Returns NULL, with *problem set,
 * when there is none or it does not unwrap.  Runs SPI as the caller: the
 * callers run as the extension's owner.
 */
static TvDataKey *
tv_data_key(int32 study_id, const char *study, int32 version, const char **problem)
{
	TvDataKey  *k = NULL;
	Oid			types[3] = {INT4OID, INT4OID, TEXTOID};
	Datum		values[3];
	bool		isnull;
	bool		known;
	int32		v;
	Datum		wrapped;

	tv_crypto_wipe_at_exit();
	if (version > 0 && (k = tv_cache_lookup(study_id, version)) != NULL)
		return k;

	values[0] = Int32GetDatum(study_id);
	values[1] = Int32GetDatum(version);
	values[2] = CStringGetTextDatum(tv_master.id);
	SPI_connect();
	/* Kept: encryption looks up the newest version every time. */
	if (SPI_execute_plan(tv_kept_plan(&key_plan,
									  "SELECT v.version, k.wrapped, EXISTS ("
									  "    SELECT 1 FROM trialvault.study_keys a "
									  "    WHERE a.study_id = $1 AND a.version = v.version) "
									  "FROM (SELECT CASE WHEN $2 > 0 THEN $2 ELSE ("
									  "        SELECT max(a.version) FROM trialvault.study_keys a "
									  "        WHERE a.study_id = $1) END AS version) v "
									  "LEFT JOIN trialvault.study_keys k ON k.study_id = $1 "
									  "  AND k.version = v.version AND k.master_key_id = $3",
									  3, types),
						 values, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read trialvault.study_keys");
	v = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	wrapped = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	known = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (!known)
		*problem = version > 0 ? tv_unknown_version : "the study has no data key";
	else if (DatumGetPointer(wrapped) == NULL)
		*problem = version > 0 ?
			"the data key version named in the ciphertext is not wrapped under the current master key" :
			"the study's newest data key is not wrapped under the current master key";
	else if ((k = tv_cache_lookup(study_id, v)) == NULL)
	{
		uint8		key[TV_KEY_LEN];

		if (tv_unwrap_key(&tv_master, study_id, study, v, DatumGetByteaPP(wrapped), key))
			k = tv_cache_add(study_id, v, key);
		else
			*problem = "the wrapped data key does not unwrap with the current master key";
		OPENSSL_cleanse(key, sizeof(key));
	}
	SPI_finish();
	return k;
}

/*
 * tv_encrypt_field: encrypt one value for (study, doc_id, field) under the
 * study's newest data key.
 */
bytea *
tv_encrypt_field(int32 study_id, const char *study, int64 doc_id,
				 const char *field, const uint8 *data, Size len)
{
	const char *problem = NULL;
	TvDataKey  *k;
	bytea	   *out;
	uint8	   *p;
	StringInfoData ad;

	tv_require_master_key();
	if (len > MaxAllocSize - VARHDRSZ - TV_ENC_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value of %zu bytes is too large to encrypt", len)));
	k = tv_data_key(study_id, study, 0, &problem);
	if (k == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("study \"%s\" has no usable data key", study),
				 errdetail("%s.", problem),
				 errhint("After a master key change, run trialvault.rewrap_data_keys() with the previous key configured.")));

	out = palloc(VARHDRSZ + TV_ENC_OVERHEAD + len);
	SET_VARSIZE(out, VARHDRSZ + TV_ENC_OVERHEAD + len);
	p = (uint8 *) VARDATA(out);
	p[0] = 'T';
	p[1] = 'V';
	p[2] = TV_FORMAT_V1;
	p[3] = (uint32) study_id >> 24;
	p[4] = (uint32) study_id >> 16;
	p[5] = (uint32) study_id >> 8;
	p[6] = (uint32) study_id;
	p[7] = (uint32) k->version >> 24;
	p[8] = (uint32) k->version >> 16;
	p[9] = (uint32) k->version >> 8;
	p[10] = (uint32) k->version;

	tv_field_ad(&ad, p, study, doc_id, field);

	if (RAND_bytes(p + TV_HDR_LEN, TV_IV_LEN) != 1 ||
		!tv_gcm_run(true, k->key, p + TV_HDR_LEN, (uint8 *) ad.data, ad.len,
					data, (int) len, p + TV_ENC_OVERHEAD,
					p + TV_HDR_LEN + TV_IV_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encrypt a value of study \"%s\"", study)));
	pfree(ad.data);
	return out;
}

/*
 * tv_decrypt_field: the inverse.  Never throws for bad ciphertext: returns
 * NULL and sets *reason (a decryption-log reason code) and *problem, so
 * that the caller can put the attempt on record before refusing.
 */
bytea *
tv_decrypt_field(int32 study_id, const char *study, int64 doc_id,
				 const char *field, bytea *ct,
				 const char **reason, const char **problem)
{
	uint8	   *p = (uint8 *) VARDATA_ANY(ct);
	Size		len = VARSIZE_ANY_EXHDR(ct);
	TvDataKey  *k;
	StringInfoData ad;
	bytea	   *out;

	if (!tv_master.ok)
	{
		*reason = "key_unavailable";
		*problem = "the server has no master key";
		return NULL;
	}
	if (len < TV_ENC_OVERHEAD || p[0] != 'T' || p[1] != 'V')
	{
		*reason = "ciphertext_invalid";
		*problem = "the stored value is not trialvault ciphertext (too short or bad magic)";
		return NULL;
	}
	if (p[2] != TV_FORMAT_V1)
	{
		*reason = "ciphertext_invalid";
		*problem = "the ciphertext has an unknown format version";
		return NULL;
	}
	if ((int32) tv_get_u32(p + 3) != study_id)
	{
		*reason = "ciphertext_invalid";
		*problem = "the ciphertext was made for another study";
		return NULL;
	}
	if ((int32) tv_get_u32(p + 7) <= 0)
	{
		*reason = "ciphertext_invalid";
		*problem = "the ciphertext names an invalid key version";
		return NULL;
	}
	k = tv_data_key(study_id, study, (int32) tv_get_u32(p + 7), problem);
	if (k == NULL)
	{
		*reason = (*problem == tv_unknown_version) ? "ciphertext_invalid" : "key_unavailable";
		return NULL;
	}

	tv_field_ad(&ad, p, study, doc_id, field);

	out = palloc(VARHDRSZ + len - TV_ENC_OVERHEAD);
	SET_VARSIZE(out, VARHDRSZ + len - TV_ENC_OVERHEAD);
	if (!tv_gcm_run(false, k->key, p + TV_HDR_LEN, (uint8 *) ad.data, ad.len,
					p + TV_ENC_OVERHEAD, (int) (len - TV_ENC_OVERHEAD),
					(uint8 *) VARDATA(out), p + TV_HDR_LEN + TV_IV_LEN))
	{
		pfree(out);
		pfree(ad.data);
		*reason = "ciphertext_invalid";
		*problem = "the ciphertext does not authenticate: it was altered, truncated, or belongs to another document or field";
		return NULL;
	}
	pfree(ad.data);
	return out;
}

PG_FUNCTION_INFO_V1(tv_encrypt_sql);

/*
 * trialvault._encrypt(study_id, study, doc_id, field, plaintext): the load
 * path's encryption.  Internal (revoked from PUBLIC).
 */
Datum
tv_encrypt_sql(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	char	   *study;
	char	   *field;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) ||
		PG_ARGISNULL(3) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("trialvault._encrypt: arguments must not be NULL")));
	study = text_to_cstring(PG_GETARG_TEXT_PP(1));
	field = text_to_cstring(PG_GETARG_TEXT_PP(3));
	data = PG_GETARG_BYTEA_PP(4);
	PG_RETURN_BYTEA_P(tv_encrypt_field(PG_GETARG_INT32(0), study,
									   PG_GETARG_INT64(2), field,
									   (uint8 *) VARDATA_ANY(data),
									   VARSIZE_ANY_EXHDR(data)));
}

/* Insert one wrapped key row through SPI (the caller is connected). */
static void
tv_insert_wrapped(int32 study_id, const char *study, int32 version,
				  const TvMasterKey *mk, bytea *wrapped)
{
	Oid			types[5] = {INT4OID, TEXTOID, INT4OID, TEXTOID, BYTEAOID};
	Datum		values[5];
	int			ret;

	values[0] = Int32GetDatum(study_id);
	values[1] = CStringGetTextDatum(study);
	values[2] = Int32GetDatum(version);
	values[3] = CStringGetTextDatum(mk->id);
	values[4] = PointerGetDatum(wrapped);
	ret = SPI_execute_with_args(
								"INSERT INTO trialvault.study_keys "
								"(study_id, study, version, master_key_id, wrapped) "
								"VALUES ($1, $2, $3, $4, $5)",
								5, types, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_with_args failed: %d", ret);
}

PG_FUNCTION_INFO_V1(tv_new_study_key);

/*
 * trialvault._new_study_key(study_id, study): a fresh random data key as the
 * study's next version; returns the version.  Internal: create_study() and
 * rotate_study_key() check who may call it.
 */
Datum
tv_new_study_key(PG_FUNCTION_ARGS)
{
	int32		study_id;
	char	   *study;
	int32		version;
	uint8		key[TV_KEY_LEN];
	bytea	   *wrapped;
	bool		isnull;
	Oid			types[1] = {INT4OID};
	Datum		values[1];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("trialvault._new_study_key: arguments must not be NULL")));
	tv_require_master_key();
	study_id = PG_GETARG_INT32(0);
	study = text_to_cstring(PG_GETARG_TEXT_PP(1));
	values[0] = Int32GetDatum(study_id);

	SPI_connect();
	if (SPI_execute_with_args("SELECT coalesce(max(version), 0) + 1 "
							  "FROM trialvault.study_keys WHERE study_id = $1",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trialvault.study_keys");
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	if (RAND_bytes(key, TV_KEY_LEN) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random data key")));
	wrapped = tv_wrap_key(&tv_master, study_id, study, version, key);
	OPENSSL_cleanse(key, sizeof(key));
	tv_insert_wrapped(study_id, study, version, &tv_master, wrapped);
	SPI_finish();
	PG_RETURN_INT32(version);
}

PG_FUNCTION_INFO_V1(tv_rewrap_keys);

/*
 * trialvault._rewrap_data_keys(): for every data key wrapped under the
 * previous master key and not yet under the current one, add a row wrapped
 * under the current key.  No document ciphertext is touched.
 */
Datum
tv_rewrap_keys(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	SPITupleTable *tt;
	uint64		i;
	uint64		nkeys;
	int32		done = 0;

	tv_require_master_key();
	if (!tv_previous.ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no previous master key is configured"),
				 errdetail("%s.", tv_previous.problem[0] ? tv_previous.problem :
						   "trialvault.previous_master_key_command is not set"),
				 errhint("Set trialvault.previous_master_key_command to the old key's command and trialvault.master_key_command to the new one, restart, then call this function.")));
	if (strcmp(tv_previous.id, tv_master.id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the previous and the current master key are the same key")));

	values[0] = CStringGetTextDatum(tv_previous.id);
	values[1] = CStringGetTextDatum(tv_master.id);
	SPI_connect();
	if (SPI_execute_with_args(
							  "SELECT k.study_id, k.study, k.version, k.wrapped "
							  "FROM trialvault.study_keys k "
							  "WHERE k.master_key_id = $1 AND NOT EXISTS ("
							  "  SELECT 1 FROM trialvault.study_keys c "
							  "  WHERE c.study_id = k.study_id AND c.version = k.version "
							  "    AND c.master_key_id = $2) "
							  "ORDER BY k.study_id, k.version",
							  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read trialvault.study_keys");
	tt = SPI_tuptable;
	nkeys = SPI_processed;		/* the INSERTs below overwrite SPI_processed */
	for (i = 0; i < nkeys; i++)
	{
		bool		isnull;
		int32		study_id = DatumGetInt32(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		char	   *study = TextDatumGetCString(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		int32		version = DatumGetInt32(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
		bytea	   *wrapped = DatumGetByteaPP(SPI_getbinval(tt->vals[i], tt->tupdesc, 4, &isnull));
		uint8		key[TV_KEY_LEN];

		if (!tv_unwrap_key(&tv_previous, study_id, study, version, wrapped, key))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("data key version %d of study \"%s\" does not unwrap with the previous master key",
							version, study),
					 errdetail("Nothing was re-wrapped.")));
		wrapped = tv_wrap_key(&tv_master, study_id, study, version, key);
		OPENSSL_cleanse(key, sizeof(key));
		tv_insert_wrapped(study_id, study, version, &tv_master, wrapped);
		done++;
	}
	SPI_finish();
	PG_RETURN_INT32(done);
}

PG_FUNCTION_INFO_V1(tv_key_status);

/*
 * trialvault.key_status(): which master keys this server holds (ids only).
 */
Datum
tv_key_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = BoolGetDatum(tv_master.ok);
	if (tv_master.ok)
		values[1] = CStringGetTextDatum(tv_master.id);
	else
		nulls[1] = true;
	if (tv_master.ok)
		nulls[2] = true;
	else
		values[2] = CStringGetTextDatum(tv_loaded_at_preload ? tv_master.problem :
										"trialvault is not in shared_preload_libraries");
	values[3] = BoolGetDatum(tv_previous.ok);
	if (tv_previous.ok)
		values[4] = CStringGetTextDatum(tv_previous.id);
	else
		nulls[4] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(tv_ciphertext_ok);

/*
 * trialvault._ciphertext_ok(study_id, study, doc_id, field, ciphertext):
 * decrypts in full and says only whether the value authenticates; the
 * plaintext is wiped, never returned.  Internal: for integrity checks and
 * for measuring the decryption path without the decryption log.
 */
Datum
tv_ciphertext_ok(PG_FUNCTION_ARGS)
{
	const char *reason = NULL;
	const char *problem = NULL;
	bytea	   *pt;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) ||
		PG_ARGISNULL(3) || PG_ARGISNULL(4))
		PG_RETURN_NULL();
	tv_require_master_key();
	pt = tv_decrypt_field(PG_GETARG_INT32(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
						  PG_GETARG_INT64(2), text_to_cstring(PG_GETARG_TEXT_PP(3)),
						  PG_GETARG_BYTEA_PP(4), &reason, &problem);
	if (pt == NULL)
		PG_RETURN_BOOL(false);
	OPENSSL_cleanse(VARDATA(pt), VARSIZE(pt) - VARHDRSZ);
	pfree(pt);
	PG_RETURN_BOOL(true);
}
