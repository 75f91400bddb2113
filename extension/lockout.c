/*-------------------------------------------------------------------------
 *
 * lockout.c
 *		Locking a role out after consecutive failed logins, with counters
 *		that survive a restart and a crash.
 *
 * After trialvault.lockout_threshold consecutive failed logins (a wrong
 * password, or a failure of another authentication method), a role is
 * refused for trialvault.lockout_duration even with the right password.
 * The counters live in shared memory, where authentication (which runs
 * before the session can read its database) can see them; they are rebuilt
 * from the audit trail, which holds every attempt, when the log writer
 * starts after a server start or a crash: the trail is the one source of
 * truth, so nothing else has to be made durable.  Until they are rebuilt,
 * only superusers are let in (the log writer is not running then either).
 *
 * Failures that cannot lead to a login (the role does not exist, has no
 * password, its password expired, the client left at the prompt) are not
 * counted, and roles that do not exist take no entry, so that probing
 * random names cannot fill the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "trialvault.h"

/* Roles with failures or a lock at once; see the DBA guide. */
#define TV_LOCKOUT_ROLES 4096

typedef struct TvLockEntry
{
	Oid			roleid;
	int			failures;		/* consecutive, since the last login or lock */
	TimestampTz locked_until;	/* 0: not locked */
} TvLockEntry;

typedef struct TvLockout
{
	LWLock	   *lock;
	bool		loaded;			/* rebuilt from the trail since shmem init */
	int			n;
	uint64		full;			/* failures not counted: table full */
	TvLockEntry entries[TV_LOCKOUT_ROLES];
} TvLockout;

static TvLockout *tv_lockout = NULL;

int			tv_lockout_threshold = 5;
int			tv_lockout_duration = 900;

Size
tv_lockout_shmem_size(void)
{
	return sizeof(TvLockout);
}

void
tv_lockout_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tv_lockout = ShmemInitStruct("trialvault lockout", sizeof(TvLockout), &found);
	if (!found)
	{
		memset(tv_lockout, 0, sizeof(TvLockout));
		tv_lockout->lock = &(GetNamedLWLockTranche("trialvault_lockout"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
tv_lockout_init(void)
{
	DefineCustomIntVariable("trialvault.lockout_threshold",
							"Consecutive failed logins after which a role is locked out.",
							"0 turns lockout off. A superuser is never locked out of the local socket.",
							&tv_lockout_threshold,
							5, 0, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.lockout_duration",
							"How long a locked-out role is refused, even with the right password.",
							"trialvault.unlock_role() ends a lockout sooner.",
							&tv_lockout_duration,
							900, 1, 365 * 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* The entry of roleid, or NULL; with create, a new one (NULL when full). */
static TvLockEntry *
tv_lock_entry(Oid roleid, bool create)
{
	int			i;

	for (i = 0; i < tv_lockout->n; i++)
		if (tv_lockout->entries[i].roleid == roleid)
			return &tv_lockout->entries[i];
	if (!create || tv_lockout->n >= TV_LOCKOUT_ROLES)
		return NULL;
	tv_lockout->entries[tv_lockout->n].roleid = roleid;
	tv_lockout->entries[tv_lockout->n].failures = 0;
	tv_lockout->entries[tv_lockout->n].locked_until = 0;
	return &tv_lockout->entries[tv_lockout->n++];
}

static void
tv_lock_remove(TvLockEntry *e)
{
	*e = tv_lockout->entries[--tv_lockout->n];
}

bool
tv_lockout_enabled(void)
{
	return tv_lockout != NULL && tv_lockout_threshold > 0;
}

bool
tv_lockout_loaded(void)
{
	bool		loaded;

	if (tv_lockout == NULL)
		return true;
	LWLockAcquire(tv_lockout->lock, LW_SHARED);
	loaded = tv_lockout->loaded;
	LWLockRelease(tv_lockout->lock);
	return loaded;
}

/* Until when roleid is locked out; 0 when it is not. */
TimestampTz
tv_lockout_until(Oid roleid)
{
	TvLockEntry *e;
	TimestampTz until = 0;

	if (!tv_lockout_enabled())
		return 0;
	LWLockAcquire(tv_lockout->lock, LW_SHARED);
	e = tv_lock_entry(roleid, false);
	if (e && e->locked_until > GetCurrentTimestamp())
		until = e->locked_until;
	LWLockRelease(tv_lockout->lock);
	return until;
}

/*
 * Count a failed login of roleid.  Returns the end of the lockout when this
 * failure starts one (*failures says after how many), else 0.
 */
TimestampTz
tv_lockout_failed(Oid roleid, int *failures)
{
	TvLockEntry *e;
	TimestampTz until = 0;
	TimestampTz now = GetCurrentTimestamp();

	*failures = 0;
	if (!tv_lockout_enabled())
		return 0;
	LWLockAcquire(tv_lockout->lock, LW_EXCLUSIVE);
	e = tv_lock_entry(roleid, true);
	if (e == NULL)
		tv_lockout->full++;
	else if (e->locked_until <= now)
	{
		*failures = ++e->failures;
		if (e->failures >= tv_lockout_threshold)
		{
			until = TimestampTzPlusMilliseconds(now, (int64) tv_lockout_duration * 1000);
			e->locked_until = until;
			e->failures = 0;
		}
	}
	LWLockRelease(tv_lockout->lock);
	if (e == NULL)
		ereport(WARNING,
				(errmsg("trialvault cannot count this failed login: %d roles already have failed logins or a lockout",
						TV_LOCKOUT_ROLES)));
	return until;
}

/* roleid was let in: its count starts again. */
void
tv_lockout_succeeded(Oid roleid)
{
	TvLockEntry *e;

	if (tv_lockout == NULL)
		return;
	LWLockAcquire(tv_lockout->lock, LW_EXCLUSIVE);
	e = tv_lock_entry(roleid, false);
	if (e)
		tv_lock_remove(e);
	LWLockRelease(tv_lockout->lock);
}

/*
 * The state of every role with failures or a lock, from the trail: the
 * failed logins that count since its last login, lockout or unlock, and its
 * lockout if none of those came after it.  The same rules as above, so a
 * restart changes nothing.
 */
static const char *tv_lockout_query =
"WITH r AS ("
"  SELECT DISTINCT actor FROM trialvault.audit_events"
"   WHERE event IN ('login_failed', 'role_locked')"
"), m AS ("
"  SELECT r.actor,"
"    (SELECT max(e.event_id) FROM trialvault.audit_events e"
"      WHERE e.event = 'role_unlocked' AND e.detail::jsonb ->> 'role' = r.actor) AS unlocked,"
"    (SELECT max(e.event_id) FROM trialvault.audit_events e"
"      WHERE e.event IN ('login', 'login_fallback') AND e.actor = r.actor) AS let_in,"
"    (SELECT max(e.event_id) FROM trialvault.audit_events e"
"      WHERE e.event = 'role_locked' AND e.actor = r.actor) AS locked"
"  FROM r"
") "
"SELECT m.actor::text,"
"  (SELECT count(*) FROM trialvault.audit_events e"
"    WHERE e.event = 'login_failed' AND e.actor = m.actor"
"      AND e.event_id > coalesce(greatest(m.unlocked, m.let_in, m.locked), 0)"
"      AND (e.detail::jsonb ->> 'reason' = 'wrong password'"
"           OR e.detail::jsonb ->> 'reason' LIKE '% authentication failed'))::integer,"
"  CASE WHEN m.locked > coalesce(greatest(m.unlocked, m.let_in), 0) THEN"
"    (SELECT (e.detail::jsonb ->> 'until')::timestamptz FROM trialvault.audit_events e"
"      WHERE e.event_id = m.locked) END "
"FROM m";

/* What tv_lockout_read found, for the server log. */
static int	tv_loaded_roles;
static int	tv_loaded_locked;

/* Merge the trail's state into the counters (inside tv_writer_read). */
static void
tv_lockout_read(void)
{
	uint64		i;

	if (SPI_execute(tv_lockout_query, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the lockout state from the audit trail");
	LWLockAcquire(tv_lockout->lock, LW_EXCLUSIVE);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		int			failures = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		Datum		until = SPI_getbinval(tup, desc, 3, &isnull);
		Oid			roleid = get_role_oid(name, true);
		TvLockEntry *e;

		if (!OidIsValid(roleid) || (failures == 0 && isnull))
			continue;
		e = tv_lock_entry(roleid, true);
		if (e == NULL)
			break;
		/* Attempts made since the start (writer not yet up) stay counted. */
		e->failures = Max(e->failures, failures);
		if (!isnull)
			e->locked_until = Max(e->locked_until, DatumGetTimestampTz(until));
		tv_loaded_roles++;
		if (e->locked_until > GetCurrentTimestamp())
			tv_loaded_locked++;
	}
	LWLockRelease(tv_lockout->lock);
}

/*
 * tv_lockout_load: rebuild the counters from the trail, once per server
 * start (or crash).  Called by the log writer before it takes records, in
 * the trail's database; an error leaves them unloaded, and the writer exits
 * and tries again when it is restarted.
 */
void
tv_lockout_load(void)
{
	if (tv_lockout == NULL || tv_lockout_loaded())
		return;
	tv_loaded_roles = tv_loaded_locked = 0;
	tv_writer_read(tv_lockout_read);
	LWLockAcquire(tv_lockout->lock, LW_EXCLUSIVE);
	tv_lockout->loaded = true;
	LWLockRelease(tv_lockout->lock);
	ereport(LOG,
			(errmsg("trialvault lockout state loaded from the audit trail: %d role(s) with failed logins, %d locked out",
					tv_loaded_roles, tv_loaded_locked)));
}

PG_FUNCTION_INFO_V1(tv_lockout_reset);

/*
 * trialvault._lockout_reset(role name) RETURNS boolean: end the lockout and
 * the failure count of a role (unlock_role records it); true when it had
 * either.
 */
Datum
tv_lockout_reset(PG_FUNCTION_ARGS)
{
	Oid			roleid = get_role_oid(NameStr(*PG_GETARG_NAME(0)), false);
	TvLockEntry *e;
	bool		had;

	if (tv_lockout == NULL)
		tv_require_preload();
	LWLockAcquire(tv_lockout->lock, LW_EXCLUSIVE);
	e = tv_lock_entry(roleid, false);
	had = e != NULL;
	if (e)
		tv_lock_remove(e);
	LWLockRelease(tv_lockout->lock);
	PG_RETURN_BOOL(had);
}

PG_FUNCTION_INFO_V1(tv_lockout_state);

/*
 * trialvault._lockout_state(): every role with failed logins or a lockout
 * now, with whether the state has been rebuilt from the trail yet.
 */
Datum
tv_lockout_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TvLockEntry *copy;
	int			n;
	int			i;
	bool		loaded;
	TimestampTz now = GetCurrentTimestamp();

	if (tv_lockout == NULL)
		tv_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	copy = palloc(sizeof(TvLockEntry) * TV_LOCKOUT_ROLES);
	LWLockAcquire(tv_lockout->lock, LW_SHARED);
	n = tv_lockout->n;
	memcpy(copy, tv_lockout->entries, sizeof(TvLockEntry) * n);
	loaded = tv_lockout->loaded;
	LWLockRelease(tv_lockout->lock);

	for (i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		char	   *name = GetUserNameFromId(copy[i].roleid, true);

		if (name == NULL)
			continue;
		values[0] = DirectFunctionCall1(namein, CStringGetDatum(name));
		values[1] = Int32GetDatum(copy[i].failures);
		values[2] = TimestampTzGetDatum(copy[i].locked_until);
		nulls[2] = copy[i].locked_until <= now;
		values[3] = BoolGetDatum(loaded);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
