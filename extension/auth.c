/*-------------------------------------------------------------------------
 *
 * auth.c
 *		Authentication, first part: the password rules, through
 *		check_password_hook.
 *
 * PostgreSQL calls the hook for CREATE ROLE and ALTER ROLE ... PASSWORD, in
 * any database, with the password as the client sent it: in plain text, or
 * already hashed (a SCRAM or MD5 verifier, as psql's \password sends it),
 * whose strength cannot be known.  A plain-text password must have
 * trialvault.password_min_length characters or more, an upper-case and a
 * lower-case letter, a digit and another character, and must not contain
 * the role's name; a hashed one is refused unless
 * trialvault.password_accept_hashed is on, and then accepted with an event.
 * The settings can only be changed in the server's configuration, so that
 * a role cannot relax them for its own session before changing its own
 * password.
 *
 * Every refusal names the rules that failed, never the password, and is put
 * on record through the log writer; the statement that carried the
 * password is kept out of the server log with the error (errhidestmt).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "commands/user.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "trialvault.h"

static int	tv_password_min_length = 8;
static bool tv_password_accept_hashed = false;
static int	tv_password_history = 5;
int			tv_password_max_age = 90;
static check_password_hook_type prev_check_password_hook = NULL;

/*
 * Password history: for each role, the salted PBKDF2-HMAC-SHA256 hashes of
 * the last passwords set through CREATE/ALTER ROLE (never the text, never
 * PostgreSQL's verifier).  The hook runs in any database, so the hashes it
 * compares with are in shared memory; they are kept durably in
 * trialvault.password_history of the trail database (written by the log
 * writer when the change commits) and loaded from there when the writer
 * starts, as the lockout counters are.
 */
#define TV_PWH_MAX			24	/* most passwords remembered per role */
#define TV_PWH_ROLES		1024	/* roles with a history at once */
#define TV_PWH_ITERATIONS	100000
#define TV_PWH_SALT			16
#define TV_PWH_HASH			32

typedef struct TvPwHash
{
	int32		iterations;
	uint8		salt[TV_PWH_SALT];
	uint8		hash[TV_PWH_HASH];
} TvPwHash;

typedef struct TvPwRole
{
	Oid			roleid;
	int			count;			/* stored, at most TV_PWH_MAX */
	int			next;			/* ring position of the next one */
	TvPwHash	h[TV_PWH_MAX];
} TvPwRole;

typedef struct TvPwHistory
{
	LWLock	   *lock;
	bool		loaded;
	int			n;
	TvPwRole	roles[TV_PWH_ROLES];
} TvPwHistory;

static TvPwHistory *tv_pwh = NULL;

Size
tv_auth_shmem_size(void)
{
	return sizeof(TvPwHistory);
}

void
tv_auth_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tv_pwh = ShmemInitStruct("trialvault password history", sizeof(TvPwHistory), &found);
	if (!found)
	{
		memset(tv_pwh, 0, sizeof(TvPwHistory));
		tv_pwh->lock = &(GetNamedLWLockTranche("trialvault_password_history"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
tv_pbkdf2(const char *password, const uint8 *salt, int iterations, uint8 *out)
{
	if (PKCS5_PBKDF2_HMAC(password, strlen(password), salt, TV_PWH_SALT, iterations,
						  EVP_sha256(), TV_PWH_HASH, out) != 1)
		elog(ERROR, "PBKDF2 failed");
}

/* Add a hash to roleid's history (newest first out when full); caller holds the lock. */
static void
tv_pwh_add_locked(Oid roleid, const TvPwHash *h)
{
	TvPwRole   *r = NULL;
	int			i;

	for (i = 0; i < tv_pwh->n; i++)
		if (tv_pwh->roles[i].roleid == roleid)
			r = &tv_pwh->roles[i];
	if (r == NULL)
	{
		if (tv_pwh->n >= TV_PWH_ROLES)
		{
			/*
			 * Full (TV_PWH_ROLES roles have a history): the first slot's
			 * history is given up for this one; see the DBA guide.
			 */
			r = &tv_pwh->roles[0];
		}
		else
			r = &tv_pwh->roles[tv_pwh->n++];
		memset(r, 0, sizeof(*r));
		r->roleid = roleid;
	}
	r->h[r->next] = *h;
	r->next = (r->next + 1) % TV_PWH_MAX;
	if (r->count < TV_PWH_MAX)
		r->count++;
}

/*
 * tv_password_history_add: a password set for roleid is on record (its
 * record is durable); remember its hash.  The hash travels in the record's
 * detail as "iterations:salt:hash" in hex.
 */
void
tv_password_history_add(Oid roleid, const char *encoded)
{
	TvPwHash	h;
	int			iterations;
	char		salt[2 * TV_PWH_SALT + 1];
	char		hash[2 * TV_PWH_HASH + 1];

	if (tv_pwh == NULL ||
		sscanf(encoded, "%d:%32[0-9a-f]:%64[0-9a-f]", &iterations, salt, hash) != 3 ||
		strlen(salt) != 2 * TV_PWH_SALT || strlen(hash) != 2 * TV_PWH_HASH)
		return;
	h.iterations = iterations;
	hex_decode(salt, 2 * TV_PWH_SALT, (char *) h.salt);
	hex_decode(hash, 2 * TV_PWH_HASH, (char *) h.hash);
	LWLockAcquire(tv_pwh->lock, LW_EXCLUSIVE);
	tv_pwh_add_locked(roleid, &h);
	LWLockRelease(tv_pwh->lock);
}

/* Whether password is one of the last n set for roleid. */
static bool
tv_password_reused(Oid roleid, const char *password, int n)
{
	TvPwRole	copy;
	bool		found = false;
	int			i;

	copy.count = 0;
	LWLockAcquire(tv_pwh->lock, LW_SHARED);
	for (i = 0; i < tv_pwh->n; i++)
		if (tv_pwh->roles[i].roleid == roleid)
			copy = tv_pwh->roles[i];
	LWLockRelease(tv_pwh->lock);

	/* Newest first, n of them. */
	for (i = 1; i <= Min(n, copy.count) && !found; i++)
	{
		TvPwHash   *h = &copy.h[(copy.next - i + TV_PWH_MAX) % TV_PWH_MAX];
		uint8		out[TV_PWH_HASH];

		tv_pbkdf2(password, h->salt, h->iterations, out);
		found = CRYPTO_memcmp(out, h->hash, TV_PWH_HASH) == 0;
	}
	return found;
}

/* Read the histories (inside tv_writer_read), if this version has the table. */
static void
tv_password_history_read(void)
{
	uint64		i;

	if (SPI_execute("SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
					" WHERE n.nspname = 'trialvault' AND c.relname = 'password_history'", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		return;
	if (SPI_execute("SELECT roleid, iterations || ':' || encode(salt, 'hex') || ':' || encode(hash, 'hex')"
					" FROM trialvault.password_history h"
					" WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = h.roleid)"
					" ORDER BY entry_id", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read trialvault.password_history");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			roleid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));

		tv_password_history_add(roleid, SPI_getvalue(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 2));
	}
}

/*
 * tv_password_history_load: the histories from trialvault.password_history,
 * once per server start; called by the log writer before it takes records.
 */
void
tv_password_history_load(void)
{
	bool		loaded;

	if (tv_pwh == NULL)
		return;
	LWLockAcquire(tv_pwh->lock, LW_SHARED);
	loaded = tv_pwh->loaded;
	LWLockRelease(tv_pwh->lock);
	if (loaded)
		return;
	tv_writer_read(tv_password_history_read);
	LWLockAcquire(tv_pwh->lock, LW_EXCLUSIVE);
	tv_pwh->loaded = true;
	LWLockRelease(tv_pwh->lock);
}

/*
 * The record of a password set for username, put on record with the role
 * change when it commits (accounts.c): a fresh salt, PBKDF2.
 */
static void
tv_password_remember(const char *username, const char *password)
{
	TvLogRecord rec;
	TvPwHash	h;
	char		salt[2 * TV_PWH_SALT + 1];
	char		hash[2 * TV_PWH_HASH + 1];

	if (RAND_bytes(h.salt, TV_PWH_SALT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random salt for the password history")));
	tv_pbkdf2(password, h.salt, TV_PWH_ITERATIONS, h.hash);
	salt[hex_encode((char *) h.salt, TV_PWH_SALT, salt)] = '\0';
	hash[hex_encode((char *) h.hash, TV_PWH_HASH, hash)] = '\0';

	memset(&rec, 0, sizeof(rec));
	tv_log_context(&rec);
	rec.kind = TV_LOG_PASSWORD;
	strlcpy(rec.reason, "password_history", sizeof(rec.reason));
	strlcpy(rec.study, username, sizeof(rec.study));	/* the role; its oid at commit */
	snprintf(rec.detail, sizeof(rec.detail), "%d:%s:%s", TV_PWH_ITERATIONS, salt, hash);
	tv_account_change_pending(&rec);
	explicit_bzero(&h, sizeof(h));
}

/* Whether haystack contains needle, ignoring ASCII case. */
static bool
tv_contains_ci(const char *haystack, const char *needle)
{
	size_t		n = strlen(needle);
	const char *p;

	if (n == 0)
		return false;
	for (p = haystack; *p; p++)
		if (pg_strncasecmp(p, needle, n) == 0)
			return true;
	return false;
}

static void
tv_check_password(const char *username, const char *shadow_pass,
				  PasswordType password_type, Datum validuntil_time,
				  bool validuntil_null)
{
	StringInfoData failed;
	const char *requester;
	const char *p;
	bool		upper = false,
				lower = false,
				digit = false,
				other = false;

	if (prev_check_password_hook)
		prev_check_password_hook(username, shadow_pass, password_type,
								 validuntil_time, validuntil_null);

	requester = GetUserNameFromId(GetUserId(), false);
	if (password_type != PASSWORD_TYPE_PLAINTEXT)
	{
		if (tv_password_accept_hashed)
		{
			tv_record_refusal("password_accepted_hashed", requester, NULL, NULL, 0,
							  psprintf("role %s: a password sent already hashed was accepted unchecked (trialvault.password_accept_hashed)",
									   username));
			return;
		}
		tv_record_refusal("password_refused", requester, NULL, NULL, 0,
						  psprintf("role %s: the password was sent already hashed", username));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the password for role \"%s\" was sent already hashed, so its strength cannot be checked", username),
				 errdetail("The attempt is recorded in the audit trail; the password is not."),
				 errhint("Send it in plain text over an encrypted connection (ALTER ROLE ... PASSWORD), or have a superuser set trialvault.password_accept_hashed."),
				 errhidestmt(true)));
	}

	initStringInfo(&failed);
	if (pg_mbstrlen(shadow_pass) < tv_password_min_length)
		appendStringInfo(&failed, ", shorter than %d characters", tv_password_min_length);
	for (p = shadow_pass; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c >= 'A' && c <= 'Z')
			upper = true;
		else if (c >= 'a' && c <= 'z')
			lower = true;
		else if (c >= '0' && c <= '9')
			digit = true;
		else
			other = true;
	}
	if (!upper)
		appendStringInfoString(&failed, ", no upper-case letter");
	if (!lower)
		appendStringInfoString(&failed, ", no lower-case letter");
	if (!digit)
		appendStringInfoString(&failed, ", no digit");
	if (!other)
		appendStringInfoString(&failed, ", no character other than letters and digits");
	if (tv_contains_ci(shadow_pass, username))
		appendStringInfoString(&failed, ", contains the role's name");
	if (failed.len == 0)
	{
		Oid			roleid = get_role_oid(username, true);

		if (tv_password_history > 0 && OidIsValid(roleid))
		{
			bool		loaded;

			LWLockAcquire(tv_pwh->lock, LW_SHARED);
			loaded = tv_pwh->loaded;
			LWLockRelease(tv_pwh->lock);
			if (!loaded && !superuser_arg(GetSessionUserId()))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the password history is not loaded yet, so the password for role \"%s\" cannot be checked", username),
						 errdetail("The trialvault log writer loads it from the audit trail when it starts."),
						 errhint("Try again in a few seconds; the server log says why if it persists."),
						 errhidestmt(true)));
			if (loaded && tv_password_reused(roleid, shadow_pass, tv_password_history))
			{
				tv_record_refusal("password_refused", requester, NULL, NULL, 0,
								  psprintf("role %s: one of its last %d passwords", username,
										   tv_password_history));
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the password for role \"%s\" was used before", username),
						 errdetail("It is one of the role's last %d passwords (trialvault.password_history). The attempt is recorded in the audit trail; the password is not.",
								   tv_password_history),
						 errhint("Choose a password the role has not had."),
						 errhidestmt(true)));
			}
		}
		if (tv_password_history > 0)
			tv_password_remember(username, shadow_pass);
		return;
	}

	tv_record_refusal("password_refused", requester, NULL, NULL, 0,
					  psprintf("role %s: %s", username, failed.data + 2));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the password for role \"%s\" breaks the password rules: %s", username, failed.data + 2),
			 errdetail("The attempt is recorded in the audit trail; the password is not."),
			 errhint("A password has at least %d characters, an upper-case and a lower-case letter, a digit and another character, and does not contain the role's name.",
					 tv_password_min_length),
			 errhidestmt(true)));
}

/*
 * tv_auth_init: the settings, and the hook.
 */
void
tv_auth_init(void)
{
	DefineCustomIntVariable("trialvault.password_min_length",
							"Fewest characters a password may have.",
							"Passwords also need an upper-case and a lower-case letter, a digit and another character, and must not contain the role's name.",
							&tv_password_min_length,
							8, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("trialvault.password_accept_hashed",
							 "Accept passwords sent already hashed (SCRAM or MD5), whose strength cannot be checked.",
							 "Off: they are refused. On: they are accepted, and each is an audit event.",
							 &tv_password_accept_hashed,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.password_history",
							"How many of a role's last passwords a new one must differ from.",
							"Kept only as salted PBKDF2 hashes in trialvault.password_history; 0 turns the check off (and keeps no hashes).",
							&tv_password_history,
							5, 0, TV_PWH_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.password_max_age",
							"Days a password set by CREATE/ALTER ROLE stays valid (VALID UNTIL).",
							"0 turns aging off. A later VALID UNTIL given with the password is brought down to it.",
							&tv_password_max_age,
							90, 0, 3650,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	prev_check_password_hook = check_password_hook;
	check_password_hook = tv_check_password;
}
