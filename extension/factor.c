/*-------------------------------------------------------------------------
 *
 * factor.c
 *		The second factor: time-based one-time codes (RFC 6238) enrolled by
 *		a member, and the session's step-up they grant.
 *
 * Codes are checked by the OATH Toolkit's liboath, not by code of ours:
 * HMAC-SHA1, six digits, 30-second steps, one step either side of now.  A
 * member's secret is 20 random bytes, kept only wrapped under the master
 * key (trialvault.second_factors, bound to the factor id and the member)
 * and returned once, at enrolment, as an otpauth:// URI.
 *
 * The state of a factor is its history in the audit trail, read again at
 * every attempt: second_factor_enrolled, _confirmed, _step_up (with the
 * time step of the code taken), _refused, _locked and _reset events, each
 * made durable through the log writer before the call returns or fails, so
 * that a refused code counts even though its transaction rolls back, and a
 * code once taken is never taken again (RFC 6238 section 5.2: no code of a
 * step at or before the newest taken).  Attempts on one member's factor are
 * serialized by a transaction-level lock on the member, held from reading
 * that history until the attempt is on record.
 *
 * The step-up itself is backend-local state, like the open study: no GUC,
 * so SET cannot forge it; it is bound to the role that stepped up
 * (current_user, so SET ROLE to another role does not carry it; a session
 * that moves between members keeps each one's) and ends after
 * trialvault.step_up_duration, with a reset of the factor, or with the
 * backend.
 *
 * Invitations: invite_member() grants a study role pending activation and
 * returns two random codes for the application to send over two channels
 * (e-mail, SMS); only salted SHA-256 hashes of them are kept.  The role is
 * granted (as the inviting administrator) only when the member enters both
 * with activate_account() before the invitation expires; until then the
 * member holds nothing in the study.  Attempts are counted like codes:
 * durably, in the trail, read with the latest snapshot under the member's
 * lock; the fifth wrong one voids the invitation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <liboath/oath.h>
#include <openssl/crypto.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "access/htup_details.h"

#include "trialvault.h"

#define TV_TOTP_SECRET_LEN	20	/* bytes: HMAC-SHA1's block, as RFC 4226 advises */
#define TV_TOTP_DIGITS		6
#define TV_TOTP_STEP		30	/* seconds */
#define TV_TOTP_WINDOW		1	/* steps either side of now */
#define TV_FACTOR_PURPOSE	"one-time-code secret"
#define TV_FACTOR_LOCK		0x54565346	/* "TVSF", in the advisory lock tag */

int			tv_step_up_duration = 900;	/* seconds */
int			tv_step_up_max_failures = 5;
int			tv_activation_ttl = 86400;	/* seconds */

#define TV_ACTIVATION_DIGITS	8
#define TV_ACTIVATION_TRIES		5

/*
 * This session's step-ups: per role that stepped up (a session may SET ROLE
 * between members, as a pooled connection does), the factor and until when.
 */
typedef struct StepUp
{
	Oid			role;
	int64		factor_id;
	TimestampTz until;
} StepUp;

#define TV_MAX_STEP_UPS 16
static StepUp step_ups[TV_MAX_STEP_UPS];

/*
 * Factors ended (reset by an administrator, or locked) bump a counter in
 * shared memory; a session that sees it moved checks its step-ups again
 * before it relies on one, so an ended factor's step-ups end in every
 * session, not only in the one that ended it.  Ends are rare: the check
 * costs a query then, and nothing otherwise.
 */
typedef struct TvFactorShared
{
	pg_atomic_uint64 ended;
} TvFactorShared;

static TvFactorShared *tv_factor_shared = NULL;
static uint64 ended_seen = 0;

Size
tv_factor_shmem_size(void)
{
	return MAXALIGN(sizeof(TvFactorShared));
}

void
tv_factor_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tv_factor_shared = ShmemInitStruct("trialvault second factor", sizeof(TvFactorShared), &found);
	if (!found)
		pg_atomic_init_u64(&tv_factor_shared->ended, 0);
	LWLockRelease(AddinShmemInitLock);
}

/* A factor ended: every session checks its step-ups again. */
static void
factor_ended(void)
{
	if (tv_factor_shared)
		pg_atomic_fetch_add_u64(&tv_factor_shared->ended, 1);
}

/* The step-up of a role, or NULL. */
static StepUp *
step_up_of(Oid role)
{
	int			i;

	for (i = 0; i < TV_MAX_STEP_UPS; i++)
		if (step_ups[i].role == role && OidIsValid(role))
			return &step_ups[i];
	return NULL;
}

/* Note a role's step-up, in its old place or the one that ends first. */
static void
note_step_up(Oid role, int64 factor_id, TimestampTz until)
{
	StepUp	   *e = step_up_of(role);
	int			i;

	if (e == NULL)
	{
		e = &step_ups[0];
		for (i = 1; i < TV_MAX_STEP_UPS; i++)
			if (step_ups[i].until < e->until)
				e = &step_ups[i];
	}
	e->role = role;
	e->factor_id = factor_id;
	e->until = until;
}

/* A member's factor, as its row and its history in the trail say. */
typedef struct Factor
{
	bool		exists;			/* a row, not reset since */
	int64		factor_id;
	bytea	   *secret;			/* wrapped */
	char	   *master_key_id;
	bool		confirmed;
	bool		locked;
	int			failures;		/* wrong codes since the newest code taken */
	int64		last_step;		/* of the newest code taken; -1: none */
} Factor;

void
tv_factor_init(void)
{
	DefineCustomIntVariable("trialvault.step_up_duration",
							"How long a step-up (trialvault.step_up) lasts.",
							"Seconds, or with a unit: '15min'. A session re-enters its code after that.",
							&tv_step_up_duration,
							900, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.activation_ttl",
							"How long the activation codes of an invitation (trialvault.invite_member) stay valid.",
							"Seconds, or with a unit: '24h'.",
							&tv_activation_ttl,
							86400, 1, 30 * 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.step_up_max_failures",
							"Wrong one-time codes in a row after which a member's second factor is locked.",
							"An administrator unlocks it with trialvault.reset_second_factor(); the member enrols again.",
							&tv_step_up_max_failures,
							5, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

/* Serialize attempts on one member's factor until the transaction ends. */
static void
lock_member(Oid member)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, TV_FACTOR_LOCK, member, 3);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * The member's factor: the newest row, and what its events in the trail
 * make of it.  Read with the latest snapshot, not the statement's or the
 * transaction's: an attempt that waited for the member's lock must see
 * what the attempt before it recorded, also in a REPEATABLE READ
 * transaction that took its snapshot earlier (else a code could be taken
 * twice).  With SPI, as the owner.
 */
static void
load_factor(const char *member, Factor *f)
{
	static SPIPlanPtr row_plan = NULL;
	static SPIPlanPtr events_plan = NULL;
	Datum		arg;
	uint64		i;
	bool		isnull;
	bool		reset = false;

	memset(f, 0, sizeof(*f));
	f->last_step = -1;
	arg = CStringGetDatum(member);
	tv_kept_plan(&row_plan,
				 "SELECT f.factor_id, f.secret, f.master_key_id FROM trialvault.second_factors f"
				 " WHERE f.member = $1 ORDER BY f.factor_id DESC LIMIT 1",
				 1, (Oid[]) {NAMEOID});
	if (SPI_execute_snapshot(row_plan, &arg, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the second factor of \"%s\"", member);
	if (SPI_processed == 0)
		return;
	f->factor_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	f->secret = DatumGetByteaPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	f->master_key_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	f->master_key_id = pstrdup(f->master_key_id);

	arg = Int64GetDatum(f->factor_id);
	tv_kept_plan(&events_plan,
				 "SELECT e.event, (e.detail::pg_catalog.jsonb ->> 'step')::bigint,"
				 "       coalesce((e.detail::pg_catalog.jsonb ->> 'counts')::boolean, false)"
				 "  FROM trialvault.audit_events e"
				 " WHERE e.event LIKE 'second\\_factor\\_%'"
				 "   AND (e.detail::pg_catalog.jsonb ->> 'factor_id')::bigint = $1"
				 " ORDER BY e.event_id",
				 1, (Oid[]) {INT8OID});
	if (SPI_execute_snapshot(events_plan, &arg, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the history of a second factor");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *event = SPI_getvalue(tup, desc, 1);
		Datum		step = SPI_getbinval(tup, desc, 2, &isnull);

		if (strcmp(event, "second_factor_confirmed") == 0 ||
			strcmp(event, "second_factor_step_up") == 0)
		{
			if (strcmp(event, "second_factor_confirmed") == 0)
				f->confirmed = true;
			if (!isnull && DatumGetInt64(step) > f->last_step)
				f->last_step = DatumGetInt64(step);
			f->failures = 0;
		}
		else if (strcmp(event, "second_factor_refused") == 0)
		{
			if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
				f->failures++;
		}
		else if (strcmp(event, "second_factor_locked") == 0)
			f->locked = true;
		else if (strcmp(event, "second_factor_reset") == 0)
			reset = true;
	}
	f->exists = !reset;
}

/*
 * The detail of a second-factor or invitation event: a JSON object with the
 * member, the id under id_key (when id > 0; the partial indexes on
 * audit_events find an event's factor or invitation by it) and the extra
 * "key": value pairs given ("" for none).
 */
static char *
event_detail(const char *member, const char *id_key, int64 id, const char *extra)
{
	StringInfoData detail;

	initStringInfo(&detail);
	appendStringInfoString(&detail, "{\"member\": ");
	escape_json(&detail, member);
	if (id > 0)
		appendStringInfo(&detail, ", \"%s\": " INT64_FORMAT, id_key, id);
	if (extra[0])
		appendStringInfo(&detail, ", %s", extra);
	appendStringInfoChar(&detail, '}');
	return detail.data;
}

/* Record an event in the audit trail durably, whatever becomes of the caller's transaction. */
static void
record_durable(const char *event, const char *actor, const char *detail)
{
	TvLogRecord rec;

	tv_log_audit_record(&rec, event, actor, NULL, NULL, 0, detail);
	tv_log_submit(&rec);
}

/* Record an event of a member's factor (factor_id 0: none), durably. */
static void
record(const char *event, const char *actor, const char *member, int64 factor_id,
	   const char *extra)
{
	record_durable(event, actor, event_detail(member, "factor_id", factor_id, extra));
}

/* Record a refused attempt (counted towards the lock or not). */
static void
refused(const char *member, int64 factor_id, const char *reason, bool counts)
{
	record("second_factor_refused", member, member, factor_id,
		   psprintf("\"reason\": \"%s\", \"counts\": %s", reason, counts ? "true" : "false"));
}

/*
 * A code as given: exactly six ASCII digits, else refused (and recorded)
 * before anything else is looked at.  The code itself is never recorded.
 */
static char *
code_arg(FunctionCallInfo fcinfo, const char *member, const char *fn)
{
	text	   *t;
	char	   *code;
	int			len;
	int			i;

	if (PG_ARGISNULL(0))
	{
		refused(member, 0, "no_code", false);
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s needs a one-time code", fn),
				 errhint("Pass the six digits your authenticator app shows now. The attempt is recorded.")));
	}
	t = PG_GETARG_TEXT_PP(0);
	len = VARSIZE_ANY_EXHDR(t);
	code = VARDATA_ANY(t);
	for (i = 0; i < len && i <= TV_TOTP_DIGITS; i++)
		if (code[i] < '0' || code[i] > '9')
			break;
	if (len != TV_TOTP_DIGITS || i != TV_TOTP_DIGITS)
	{
		refused(member, 0, len == 0 ? "empty_code" : "malformed_code", false);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a one-time code is %d digits", TV_TOTP_DIGITS),
				 errdetail(len == 0 ? "The code given is empty." :
						   len != TV_TOTP_DIGITS ? "The code given has %d characters." :
						   "The code given has characters other than digits.", len),
				 errhint("Pass the six digits your authenticator app shows now. The attempt is recorded.")));
	}
	return pnstrdup(code, len);
}

/* Refuse when the member has no factor to check a code against. */
static void
require_factor(const Factor *f, const char *member, bool want_confirmed)
{
	if (!f->exists)
	{
		refused(member, 0, "not_enrolled", false);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role \"%s\" has no second factor", member),
				 errhint("Enrol with trialvault.enroll_second_factor(), then confirm it with a code. The attempt is recorded.")));
	}
	if (f->locked)
	{
		refused(member, f->factor_id, "locked", false);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the second factor of role \"%s\" is locked", member),
				 errdetail("It was locked after %d wrong codes in a row.", tv_step_up_max_failures),
				 errhint("An administrator resets it with trialvault.reset_second_factor(); then enrol again. The attempt is recorded.")));
	}
	if (want_confirmed && !f->confirmed)
	{
		refused(member, f->factor_id, "not_confirmed", false);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the second factor of role \"%s\" is not confirmed yet", member),
				 errhint("Confirm it with trialvault.confirm_second_factor() and a code from your authenticator app. The attempt is recorded.")));
	}
	if (!want_confirmed && f->confirmed)
	{
		refused(member, f->factor_id, "already_confirmed", false);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the second factor of role \"%s\" is confirmed already", member),
				 errhint("Step up with trialvault.step_up(code). The attempt is recorded.")));
	}
}

/*
 * Check a code against the member's factor: the time step it belongs to,
 * or a refusal recorded and raised (a wrong or replayed code counts towards
 * the lock, and the one that reaches step_up_max_failures locks it).
 */
static int64
check_code(const Factor *f, const char *member, const char *code)
{
	const char *problem = NULL;
	int			len = 0;
	uint8	   *secret;
	int			pos = 0;
	uint64_t	counter = 0;
	int			rc;
	const char *reason;

	secret = tv_unwrap_secret(TV_FACTOR_PURPOSE, f->factor_id, member, f->secret,
							  f->master_key_id, &len, &problem);
	if (secret == NULL)
	{
		refused(member, f->factor_id, "secret_unavailable", false);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the second factor of role \"%s\" cannot be checked", member),
				 errdetail("Its secret cannot be opened: %s.", problem),
				 errhint("An administrator resets it with trialvault.reset_second_factor(); then enrol again. The attempt is recorded.")));
	}
	rc = oath_init();
	if (rc == OATH_OK)
		rc = oath_totp_validate3((const char *) secret, len, time(NULL), TV_TOTP_STEP, 0,
								 TV_TOTP_WINDOW, &pos, &counter, code);
	OPENSSL_cleanse(secret, len);
	pfree(secret);
	if (rc >= 0 && (int64) counter > f->last_step)
		return (int64) counter;
	if (rc < 0 && rc != OATH_INVALID_OTP)
		elog(ERROR, "liboath could not check a code: %s", oath_strerror(rc));

	reason = rc >= 0 ? "replayed_code" : "wrong_code";
	refused(member, f->factor_id, reason, true);
	if (f->failures + 1 >= tv_step_up_max_failures)
	{
		record("second_factor_locked", member, member, f->factor_id,
			   psprintf("\"failures\": %d", f->failures + 1));
		factor_ended();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg(rc >= 0 ? "this one-time code was used already; the second factor of role \"%s\" is now locked" :
						"wrong one-time code; the second factor of role \"%s\" is now locked", member),
				 errdetail("%d wrong codes in a row.", f->failures + 1),
				 errhint("An administrator resets it with trialvault.reset_second_factor(); then enrol again. The attempt is recorded.")));
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg(rc >= 0 ? "this one-time code was used already" : "wrong one-time code"),
			 errdetail(rc >= 0 ? "A code is taken once, and no code older than the newest taken is taken at all." :
					   "The code does not match the code of the previous, the current or the next 30-second step."),
			 errhint("%d more wrong codes in a row lock the second factor. The attempt is recorded.",
					 tv_step_up_max_failures - f->failures - 1)));
	return -1;					/* not reached */
}

/* The caller's name, with SPI as the owner begun. */
static char *
caller_name(TvAsOwner *as)
{
	return GetUserNameFromId(as->save_userid, false);
}

/* Percent-encode a URI path segment or query value (RFC 3986 unreserved kept). */
static void
append_uri_escaped(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, c);
		else
			appendStringInfo(buf, "%%%02X", c);
	}
}

PG_FUNCTION_INFO_V1(tv_enroll_second_factor);

/*
 * trialvault.enroll_second_factor() RETURNS text: a new secret for the
 * calling member, wrapped and kept; the otpauth:// URI returned once.
 */
Datum
tv_enroll_second_factor(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	char	   *member;
	Factor		f;
	uint8		secret[TV_TOTP_SECRET_LEN];
	char	   *b32 = NULL;
	size_t		b32len = 0;
	int64		factor_id;
	bytea	   *wrapped;
	const char *master_id;
	bool		isnull;
	Datum		args[4];
	StringInfoData uri;
	int			rc;

	tv_require_schema();
	tv_owner_spi_begin(&as);
	member = caller_name(&as);
	lock_member(as.save_userid);
	load_factor(member, &f);
	if (f.exists)
	{
		refused(member, f.factor_id, "already_enrolled", false);
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("role \"%s\" has a second factor already", member),
				 errdetail(f.confirmed ? "It is confirmed." : "It is waiting for confirmation."),
				 errhint(f.confirmed ? "A member has one second factor; an administrator resets a lost one with trialvault.reset_second_factor(). The attempt is recorded." :
						 "Confirm it with trialvault.confirm_second_factor(code); an administrator resets a lost one with trialvault.reset_second_factor(). The attempt is recorded.")));
	}

	if (!pg_strong_random(secret, sizeof(secret)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random secret")));
	if (SPI_execute("SELECT pg_catalog.nextval('trialvault.second_factors_factor_id_seq')", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not number a second factor");
	factor_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	wrapped = tv_wrap_secret(TV_FACTOR_PURPOSE, factor_id, member, secret, sizeof(secret), &master_id);
	args[0] = Int64GetDatum(factor_id);
	args[1] = CStringGetDatum(member);
	args[2] = PointerGetDatum(wrapped);
	args[3] = CStringGetTextDatum(master_id);
	if (SPI_execute_with_args("INSERT INTO trialvault.second_factors (factor_id, member, secret, master_key_id)"
							  " VALUES ($1, $2, $3, $4)",
							  4, (Oid[]) {INT8OID, NAMEOID, BYTEAOID, TEXTOID}, args, NULL,
							  false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not keep a second factor");

	rc = oath_init();
	if (rc == OATH_OK)
		rc = oath_base32_encode((const char *) secret, sizeof(secret), &b32, &b32len);
	OPENSSL_cleanse(secret, sizeof(secret));
	if (rc != OATH_OK)
		elog(ERROR, "liboath could not encode a secret: %s", oath_strerror(rc));

	initStringInfo(&uri);
	appendStringInfoString(&uri, "otpauth://totp/trialvault:");
	append_uri_escaped(&uri, member);
	appendStringInfo(&uri, "?secret=%.*s&issuer=trialvault&algorithm=SHA1&digits=%d&period=%d",
					 (int) b32len, b32, TV_TOTP_DIGITS, TV_TOTP_STEP);
	OPENSSL_cleanse(b32, b32len);
	free(b32);

	record("second_factor_enrolled", member, member, factor_id, "");
	tv_owner_spi_end(&as);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(uri.data, uri.len));
}

PG_FUNCTION_INFO_V1(tv_confirm_second_factor);

/* trialvault.confirm_second_factor(code): the pending factor made active. */
Datum
tv_confirm_second_factor(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	char	   *member;
	char	   *code;
	Factor		f;
	int64		step;

	tv_require_schema();
	tv_owner_spi_begin(&as);
	member = caller_name(&as);
	code = code_arg(fcinfo, member, "confirm_second_factor");
	lock_member(as.save_userid);
	load_factor(member, &f);
	require_factor(&f, member, false);
	step = check_code(&f, member, code);
	record("second_factor_confirmed", member, member, f.factor_id,
		   psprintf("\"step\": " INT64_FORMAT, step));
	tv_owner_spi_end(&as);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(tv_step_up);

/*
 * trialvault.step_up(code) RETURNS timestamptz: the session stepped up for
 * the current role until the time returned.
 */
Datum
tv_step_up(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	char	   *member;
	char	   *code;
	Factor		f;
	int64		step;
	TimestampTz until;

	tv_require_schema();
	tv_owner_spi_begin(&as);
	member = caller_name(&as);
	code = code_arg(fcinfo, member, "step_up");
	lock_member(as.save_userid);
	load_factor(member, &f);
	require_factor(&f, member, true);
	step = check_code(&f, member, code);
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) tv_step_up_duration * 1000);
	record("second_factor_step_up", member, member, f.factor_id,
		   psprintf("\"step\": " INT64_FORMAT ", \"until\": \"%s\"", step, timestamptz_to_str(until)));
	note_step_up(as.save_userid, f.factor_id, until);
	tv_owner_spi_end(&as);
	PG_RETURN_TIMESTAMPTZ(until);
}

PG_FUNCTION_INFO_V1(tv_reset_second_factor);

/* trialvault.reset_second_factor(member): an administrator ends a factor. */
Datum
tv_reset_second_factor(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	char	   *admin;
	char	   *member;
	Oid			member_oid;
	Factor		f;
	Datum		args[2];

	tv_require_schema();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("reset_second_factor needs a member")));
	member = NameStr(*PG_GETARG_NAME(0));
	tv_owner_spi_begin(&as);
	admin = caller_name(&as);
	args[0] = CStringGetDatum(admin);
	args[1] = CStringGetTextDatum("reset a second factor");
	if (SPI_execute_with_args("SELECT trialvault._require_admin($1, $2)", 2,
							  (Oid[]) {NAMEOID, TEXTOID}, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not check the caller's rights");
	member_oid = get_role_oid(member, false);
	lock_member(member_oid);
	load_factor(member, &f);
	if (!f.exists)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("role \"%s\" has no second factor to reset", member)));
	record("second_factor_reset", admin, member, f.factor_id, "");
	factor_ended();
	{
		StepUp	   *e = step_up_of(member_oid);

		if (e)
			e->until = 0;
	}
	tv_owner_spi_end(&as);
	PG_RETURN_VOID();
}

/*
 * tv_stepped_up: is this session stepped up now for the role (the caller's
 * current_user, taken before becoming the owner)?
 */
bool
tv_stepped_up(Oid role)
{
	StepUp	   *e = step_up_of(role);
	uint64		ended;

	if (e == NULL || GetCurrentTimestamp() >= e->until)
		return false;

	/*
	 * A factor ended somewhere since this session last looked: is this
	 * role's still its current one, neither reset nor locked?  (With SPI, as
	 * the owner, from open_document.)
	 */
	ended = tv_factor_shared ? pg_atomic_read_u64(&tv_factor_shared->ended) : 0;
	if (ended != ended_seen)
	{
		int			i;

		for (i = 0; i < TV_MAX_STEP_UPS; i++)
		{
			Factor		f;
			char	   *name;

			if (!OidIsValid(step_ups[i].role) || step_ups[i].until == 0)
				continue;
			name = GetUserNameFromId(step_ups[i].role, true);
			load_factor(name ? name : "", &f);
			if (!f.exists || f.locked || f.factor_id != step_ups[i].factor_id)
				step_ups[i].until = 0;
		}
		ended_seen = ended;
	}
	return GetCurrentTimestamp() < e->until;
}

/*
 * The study roles an administrator made need a step-up, per study: a copy
 * kept per backend while the table's generation number stands still (see
 * tv_chain_generation), since open_document asks on every call.
 */
typedef struct Requirement
{
	char	   *study;
	char	   *role;
} Requirement;

static Requirement *requirements = NULL;
static int	nrequirements = 0;
static uint64 requirements_gen = 0;
static bool requirements_valid = false;
static MemoryContext requirements_cxt = NULL;

/*
 * tv_second_factor_required: must a member who would open a PHI document
 * of the study through this grant of open_document's decision (its reason:
 * "monitor", "investigator", ...) have stepped up first?  Monitors always;
 * investigators, site staff and safety where require_second_factor() said
 * so; the other grants (the loader, documents without PHI, emergencies)
 * never.  The caller runs as the owner, connected to SPI.
 */
bool
tv_second_factor_required(const char *study, const char *grant)
{
	static const char *const tables[1] = {"second_factor_requirements"};
	static SPIPlanPtr plan = NULL;
	uint64		gen;
	bool		cacheable;
	int			i;

	if (strcmp(grant, "monitor") == 0)
		return true;
	if (strcmp(grant, "investigator") != 0 && strcmp(grant, "site_staff") != 0 &&
		strcmp(grant, "safety") != 0)
		return false;

	/* Read before the query's snapshot is taken (see tv_chain_generation). */
	cacheable = tv_tables_generation(tables, 1, &gen);
	if (!cacheable || !requirements_valid || gen != requirements_gen)
	{
		MemoryContext old;
		uint64		r;

		if (requirements_cxt == NULL)
			requirements_cxt = AllocSetContextCreate(TopMemoryContext, "trialvault step-up requirements",
													 ALLOCSET_SMALL_SIZES);
		MemoryContextReset(requirements_cxt);
		requirements_valid = false;
		tv_kept_plan(&plan, "SELECT r.study, r.study_role FROM trialvault.second_factor_requirements r",
					 0, NULL);
		if (SPI_execute_plan(plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the second-factor requirements");
		old = MemoryContextSwitchTo(requirements_cxt);
		requirements = palloc(sizeof(Requirement) * (SPI_processed + 1));
		nrequirements = (int) SPI_processed;
		for (r = 0; r < SPI_processed; r++)
		{
			requirements[r].study = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
			requirements[r].role = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
		}
		MemoryContextSwitchTo(old);
		requirements_gen = gen;
		requirements_valid = cacheable;
	}
	for (i = 0; i < nrequirements; i++)
		if (strcmp(requirements[i].study, study) == 0 && strcmp(requirements[i].role, grant) == 0)
			return true;
	return false;
}

PG_FUNCTION_INFO_V1(tv_second_factor_status);

/* trialvault.second_factor_status(): the caller's factor and step-up. */
Datum
tv_second_factor_status(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {0};
	Factor		f;
	bool		stepped;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "second_factor_status must return a record");
	tv_require_schema();
	tv_owner_spi_begin(&as);
	load_factor(caller_name(&as), &f);
	stepped = tv_stepped_up(as.save_userid);
	tv_owner_spi_end(&as);
	values[0] = BoolGetDatum(f.exists);
	values[1] = BoolGetDatum(f.exists && f.confirmed);
	values[2] = BoolGetDatum(f.exists && f.locked);
	values[3] = Int32GetDatum(f.exists ? f.failures : 0);
	if (stepped && f.exists && f.factor_id == step_up_of(GetUserId())->factor_id)
		values[4] = TimestampTzGetDatum(step_up_of(GetUserId())->until);
	else
		nulls[4] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ---------------------------------------------------------------------
 * Invitations: activation with two codes sent over two channels
 * ---------------------------------------------------------------------
 */

/* A random code of TV_ACTIVATION_DIGITS digits, each uniform. */
static void
random_code(char *out)
{
	int			i = 0;

	while (i < TV_ACTIVATION_DIGITS)
	{
		uint8		b;

		if (!pg_strong_random(&b, 1))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random code")));
		if (b < 250)			/* 250 = 25 * 10: no bias */
			out[i++] = '0' + b % 10;
	}
	out[i] = '\0';
}

/* SHA-256 of salt || code. */
static void
code_hash(const uint8 *salt, const char *code, uint8 *out)
{
	EVP_MD_CTX *ctx = tv_sha_begin(TV_SHA_CONTENT);

	tv_sha_update(ctx, salt, 16);
	tv_sha_update(ctx, code, strlen(code));
	tv_sha_end(ctx, out);
}

/* Record an event of an invitation (invitation_id 0: none), durably. */
static void
record_invitation(const char *event, const char *member, int64 invitation_id, const char *extra)
{
	record_durable(event, member, event_detail(member, "invitation_id", invitation_id, extra));
}

/*
 * Record an event of an invitation in the caller's transaction, with what
 * it records (both commit, or neither).  With SPI, as the owner.
 */
static void
record_in_transaction(const char *event, const char *actor, const char *study,
					  const char *site, const char *detail)
{
	if (SPI_execute_with_args("SELECT trialvault._audit($1, $2, $3, $4, NULL, $5)",
							  5, (Oid[]) {TEXTOID, NAMEOID, TEXTOID, TEXTOID, TEXTOID},
							  (Datum[]) {CStringGetTextDatum(event), CStringGetDatum(actor),
								  CStringGetTextDatum(study), site ? CStringGetTextDatum(site) : (Datum) 0,
							  CStringGetTextDatum(detail)},
							  (char[]) {' ', ' ', ' ', site ? ' ' : 'n', ' '}, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not record %s", event);
}

PG_FUNCTION_INFO_V1(tv_invite_member);

/*
 * trialvault.invite_member(member, study, site, study_role)
 *		RETURNS TABLE (email_code text, sms_code text)
 */
Datum
tv_invite_member(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	char	   *admin;
	char	   *member;
	char	   *study;
	char	   *site;
	char	   *role;
	char		email[TV_ACTIVATION_DIGITS + 1];
	char		sms[TV_ACTIVATION_DIGITS + 1];
	uint8		salt[16];
	uint8		email_hash[TV_HASH_LEN];
	uint8		sms_hash[TV_HASH_LEN];
	bytea	   *b_salt;
	bytea	   *b_email;
	bytea	   *b_sms;
	int64		id;
	bool		isnull;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {0};
	StringInfoData extra;

	tv_require_schema();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "invite_member must return a record");
	tv_owner_spi_begin(&as);
	admin = caller_name(&as);
	member = PG_ARGISNULL(0) ? NULL : NameStr(*PG_GETARG_NAME(0));
	study = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	site = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	role = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	/* The checks grant_role makes, the login role included. */
	if (SPI_execute_with_args("SELECT trialvault._check_role_args($1, 'invite_member', $2, $3, $4, $5)",
							  5, (Oid[]) {NAMEOID, NAMEOID, TEXTOID, TEXTOID, TEXTOID},
							  (Datum[]) {CStringGetDatum(admin), member ? CStringGetDatum(member) : (Datum) 0,
								  study ? CStringGetTextDatum(study) : (Datum) 0,
								  site ? CStringGetTextDatum(site) : (Datum) 0,
							  role ? CStringGetTextDatum(role) : (Datum) 0},
							  (char[]) {' ', member ? ' ' : 'n', study ? ' ' : 'n', site ? ' ' : 'n', role ? ' ' : 'n'},
							  false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not check the arguments of invite_member");
	if (!OidIsValid(get_role_oid(member, true)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", member),
				 errhint("Create the login role first; it gets the study role when it activates the invitation.")));
	if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = $1 AND r.rolcanlogin",
							  1, (Oid[]) {NAMEOID}, (Datum[]) {CStringGetDatum(member)}, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" cannot log in", member),
				 errhint("Study roles are granted to login roles, one per person.")));
	if (SPI_execute_with_args("SELECT 1 FROM trialvault._current_roles($1, $2) c"
							  " WHERE c.study_role = $3 AND c.site IS NOT DISTINCT FROM $4",
							  4, (Oid[]) {TEXTOID, NAMEOID, TEXTOID, TEXTOID},
							  (Datum[]) {CStringGetTextDatum(study), CStringGetDatum(member),
								  CStringGetTextDatum(role), site ? CStringGetTextDatum(site) : (Datum) 0},
							  (char[]) {' ', ' ', ' ', site ? ' ' : 'n'}, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the roles of \"%s\"", member);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("role \"%s\" holds study role %s in study \"%s\" already", member, role, study)));

	random_code(email);
	random_code(sms);
	if (!pg_strong_random(salt, sizeof(salt)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random salt")));
	code_hash(salt, email, email_hash);
	code_hash(salt, sms, sms_hash);
	b_salt = palloc(VARHDRSZ + sizeof(salt));
	SET_VARSIZE(b_salt, VARHDRSZ + sizeof(salt));
	memcpy(VARDATA(b_salt), salt, sizeof(salt));
	b_email = palloc(VARHDRSZ + TV_HASH_LEN);
	SET_VARSIZE(b_email, VARHDRSZ + TV_HASH_LEN);
	memcpy(VARDATA(b_email), email_hash, TV_HASH_LEN);
	b_sms = palloc(VARHDRSZ + TV_HASH_LEN);
	SET_VARSIZE(b_sms, VARHDRSZ + TV_HASH_LEN);
	memcpy(VARDATA(b_sms), sms_hash, TV_HASH_LEN);
	if (SPI_execute_with_args("INSERT INTO trialvault.invitations (member, study, site, study_role, salt,"
							  " email_code_sha256, sms_code_sha256, expires_at, invited_by)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.clock_timestamp() + $8 * interval '1 second', $9)"
							  " RETURNING invitation_id",
							  9, (Oid[]) {NAMEOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, BYTEAOID, INT4OID, NAMEOID},
							  (Datum[]) {CStringGetDatum(member), CStringGetTextDatum(study),
								  site ? CStringGetTextDatum(site) : (Datum) 0, CStringGetTextDatum(role),
								  PointerGetDatum(b_salt), PointerGetDatum(b_email), PointerGetDatum(b_sms),
							  Int32GetDatum(tv_activation_ttl), CStringGetDatum(admin)},
							  (char[]) {' ', ' ', site ? ' ' : 'n', ' ', ' ', ' ', ' ', ' ', ' '},
							  false, 1) != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not keep an invitation");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* On record with the invitation itself: both commit, or neither. */
	initStringInfo(&extra);
	appendStringInfoString(&extra, "\"study_role\": ");
	escape_json(&extra, role);
	appendStringInfo(&extra, ", \"valid_for_seconds\": %d", tv_activation_ttl);
	record_in_transaction("invitation_created", admin, study, site,
						  event_detail(member, "invitation_id", id, extra.data));
	tv_owner_spi_end(&as);

	values[0] = CStringGetTextDatum(email);
	values[1] = CStringGetTextDatum(sms);
	OPENSSL_cleanse(email, sizeof(email));
	OPENSSL_cleanse(sms, sizeof(sms));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* An activation code as given: exactly TV_ACTIVATION_DIGITS digits. */
static bool
activation_code_ok(text *t)
{
	int			len = VARSIZE_ANY_EXHDR(t);
	const char *p = VARDATA_ANY(t);
	int			i;

	if (len != TV_ACTIVATION_DIGITS)
		return false;
	for (i = 0; i < len; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

PG_FUNCTION_INFO_V1(tv_activate_account);

/*
 * trialvault.activate_account(email_code, sms_code) RETURNS text: the
 * study role of the caller's newest invitation, granted.
 */
Datum
tv_activate_account(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr inv_plan = NULL;
	static SPIPlanPtr events_plan = NULL;
	TvAsOwner	as;
	char	   *member;
	int64		id;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *study;
	char	   *site;
	char	   *role;
	char	   *inviter;
	bytea	   *salt;
	bytea	   *want_email;
	bytea	   *want_sms;
	bool		expired;
	int			failures = 0;
	bool		accepted = false;
	bool		is_void = false;
	uint64		i;
	uint8		email_hash[TV_HASH_LEN];
	uint8		sms_hash[TV_HASH_LEN];
	char	   *email;
	char	   *sms;
	Datum		arg;
	char	   *granted;

	tv_require_schema();
	tv_owner_spi_begin(&as);
	member = caller_name(&as);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
	{
		record_invitation("invitation_refused", member, 0, "\"reason\": \"no_code\", \"counts\": false");
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("activate_account needs both activation codes"),
				 errhint("Pass the code sent by e-mail and the code sent by SMS. The attempt is recorded.")));
	}
	if (!activation_code_ok(PG_GETARG_TEXT_PP(0)) || !activation_code_ok(PG_GETARG_TEXT_PP(1)))
	{
		record_invitation("invitation_refused", member, 0, "\"reason\": \"malformed_code\", \"counts\": false");
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an activation code is %d digits", TV_ACTIVATION_DIGITS),
				 errhint("Pass the code sent by e-mail and the code sent by SMS. The attempt is recorded.")));
	}
	email = text_to_cstring(PG_GETARG_TEXT_PP(0));
	sms = text_to_cstring(PG_GETARG_TEXT_PP(1));
	lock_member(as.save_userid);

	/* The newest invitation, and its history, as they stand now. */
	arg = CStringGetDatum(member);
	tv_kept_plan(&inv_plan,
				 "SELECT i.invitation_id, i.study, i.site, i.study_role, i.invited_by, i.salt,"
				 "       i.email_code_sha256, i.sms_code_sha256, i.expires_at <= pg_catalog.clock_timestamp()"
				 "  FROM trialvault.invitations i WHERE i.member = $1 ORDER BY i.invitation_id DESC LIMIT 1",
				 1, (Oid[]) {NAMEOID});
	if (SPI_execute_snapshot(inv_plan, &arg, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the invitations of \"%s\"", member);
	if (SPI_processed == 0)
	{
		record_invitation("invitation_refused", member, 0, "\"reason\": \"no_invitation\", \"counts\": false");
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role \"%s\" has no invitation to activate", member),
				 errhint("An administrator invites members with trialvault.invite_member(). The attempt is recorded.")));
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	study = SPI_getvalue(tup, desc, 2);
	site = SPI_getvalue(tup, desc, 3);
	role = SPI_getvalue(tup, desc, 4);
	inviter = SPI_getvalue(tup, desc, 5);
	salt = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 6, &isnull));
	want_email = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 7, &isnull));
	want_sms = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 8, &isnull));
	expired = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));

	arg = Int64GetDatum(id);
	tv_kept_plan(&events_plan,
				 "SELECT e.event, coalesce((e.detail::pg_catalog.jsonb ->> 'counts')::boolean, false)"
				 "  FROM trialvault.audit_events e"
				 " WHERE e.event LIKE 'invitation\\_%'"
				 "   AND (e.detail::pg_catalog.jsonb ->> 'invitation_id')::bigint = $1",
				 1, (Oid[]) {INT8OID});
	if (SPI_execute_snapshot(events_plan, &arg, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the history of an invitation");
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *event = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (strcmp(event, "invitation_accepted") == 0)
			accepted = true;
		else if (strcmp(event, "invitation_void") == 0)
			is_void = true;
		else if (strcmp(event, "invitation_refused") == 0 &&
				 DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
			failures++;
	}
	if (accepted || is_void || expired)
	{
		const char *reason = accepted ? "accepted_already" : is_void ? "void" : "expired";

		record_invitation("invitation_refused", member, id,
						  psprintf("\"reason\": \"%s\", \"counts\": false", reason));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg(accepted ? "the invitation of role \"%s\" was activated already" :
						is_void ? "the invitation of role \"%s\" is void after %d wrong attempts" :
						"the invitation of role \"%s\" has expired", member, TV_ACTIVATION_TRIES),
				 errhint("An administrator invites again with trialvault.invite_member(). The attempt is recorded.")));
	}

	code_hash((uint8 *) VARDATA_ANY(salt), email, email_hash);
	code_hash((uint8 *) VARDATA_ANY(salt), sms, sms_hash);
	OPENSSL_cleanse(email, strlen(email));
	OPENSSL_cleanse(sms, strlen(sms));
	if ((CRYPTO_memcmp(email_hash, VARDATA_ANY(want_email), TV_HASH_LEN) |
		 CRYPTO_memcmp(sms_hash, VARDATA_ANY(want_sms), TV_HASH_LEN)) != 0)
	{
		record_invitation("invitation_refused", member, id, "\"reason\": \"wrong_codes\", \"counts\": true");
		if (failures + 1 >= TV_ACTIVATION_TRIES)
		{
			record_invitation("invitation_void", member, id, psprintf("\"failures\": %d", failures + 1));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("wrong activation codes; the invitation of role \"%s\" is now void", member),
					 errdetail("%d wrong attempts.", failures + 1),
					 errhint("An administrator invites again with trialvault.invite_member(). The attempt is recorded.")));
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("wrong activation codes"),
				 errdetail("The e-mail code goes first, the SMS code second."),
				 errhint("%d more wrong attempts void the invitation. The attempt is recorded.",
						 TV_ACTIVATION_TRIES - failures - 1)));
	}

	/*
	 * The role granted as the inviting administrator granted it (who must
	 * still be one), and the acceptance on record with it, in the caller's
	 * transaction: rolled back, the invitation stays open.
	 */
	if (SPI_execute_with_args("SELECT trialvault._grant_role($1, $2, $3, $4, $5)",
							  5, (Oid[]) {NAMEOID, NAMEOID, TEXTOID, TEXTOID, TEXTOID},
							  (Datum[]) {CStringGetDatum(inviter), CStringGetDatum(member),
								  CStringGetTextDatum(study), site ? CStringGetTextDatum(site) : (Datum) 0,
							  CStringGetTextDatum(role)},
							  (char[]) {' ', ' ', ' ', site ? ' ' : 'n', ' '}, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not grant the invited role");
	record_in_transaction("invitation_accepted", member, study, site,
						  event_detail(member, "invitation_id", id, ""));
	granted = psprintf("%s/%s:%s", study, site ? site : "*", role);
	tv_owner_spi_end(&as);
	PG_RETURN_TEXT_P(cstring_to_text(granted));
}
