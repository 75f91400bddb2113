/*-------------------------------------------------------------------------
 *
 * logwriter.c
 *		The log writer: a background worker that makes decryption-log and
 *		audit records durable on behalf of backends, in batches.
 *
 * A backend that must have a record on disk before it goes on (open_document
 * before it returns plaintext) puts the record into a ring of slots in shared
 * memory, wakes the writer and sleeps on its own latch.  The writer takes
 * every queued record, inserts them all in one transaction of its own with
 * synchronous_commit = on, and after the commit marks each slot done (or
 * failed, with the error) and wakes its owner.  So the record survives the
 * caller's ROLLBACK and a crash right after the call, and one WAL flush
 * covers every caller waiting at that moment (group commit).
 *
 * Failing closed: a backend that finds no writer, or no free slot within
 * trialvault.log_timeout, or no acknowledgement within it, gets an error.
 * When the writer exits (SIGTERM, error), its exit callback fails every
 * record it had not committed, so no waiter is left believing otherwise.
 *
 * Slots are used in ring order; a slot is reused only after its owner has
 * read the outcome (or abandoned it, on cancel or timeout, in which case the
 * writer frees it).  One LWLock covers the queue; it is held only to move
 * slot states and copy one record.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "trialvault.h"

PGDLLEXPORT void tv_logwriter_main(Datum arg);

char	   *tv_log_database = NULL;
int			tv_log_queue_size = 1024;
int			tv_log_timeout = 5000;

/* Fallback records kept for the writer while it is away. */
#define TV_FALLBACK_KEPT 32

typedef enum TvSlotState
{
	TV_SLOT_FREE = 0,
	TV_SLOT_QUEUED,
	TV_SLOT_WRITING,
	TV_SLOT_DONE,
	TV_SLOT_FAILED
} TvSlotState;

typedef struct TvLogSlot
{
	TvSlotState state;
	bool		abandoned;		/* owner gave up; writer frees it */
	Latch	   *owner;
	char		error[256];
	TvLogRecord rec;
} TvLogSlot;

typedef struct TvLogQueue
{
	LWLock	   *lock;
	pid_t		writer_pid;
	Oid			writer_db;
	Latch	   *writer_latch;
	uint64		head;			/* next position to fill */
	uint64		tail;			/* next position the writer takes */
	uint64		written;
	uint64		failed;
	uint64		batches;
	pg_atomic_uint32 coming;	/* backends about to submit (tv_log_coming) */
	char		last_error[256];
	uint64		fallbacks;		/* records kept while the writer was away
								 * (tv_log_fallback) */
	uint64		fallbacks_written;	/* of those, put on record since */
	uint64		skipped;		/* security records dropped: no trail yet */
	TvLogRecord fallback[TV_FALLBACK_KEPT];
	int			nslots;
	TvLogSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} TvLogQueue;

static TvLogQueue *tv_queue = NULL;

#define TV_BATCH_MAX 256

Size
tv_log_shmem_size(void)
{
	return add_size(offsetof(TvLogQueue, slots),
					mul_size(sizeof(TvLogSlot), tv_log_queue_size));
}

void
tv_log_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tv_queue = ShmemInitStruct("trialvault log queue", tv_log_shmem_size(), &found);
	if (!found)
	{
		memset(tv_queue, 0, tv_log_shmem_size());
		pg_atomic_init_u32(&tv_queue->coming, 0);
		tv_queue->lock = &(GetNamedLWLockTranche("trialvault_log"))->lock;
		tv_queue->nslots = tv_log_queue_size;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * tv_log_init: GUCs and the worker's registration, at preload.
 */
void
tv_log_init(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable("trialvault.database",
							   "Database whose decryption log and audit trail the log writer writes.",
							   "trialvault's decryption functions work only in this database.",
							   &tv_log_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.log_queue_size",
							"Number of log records that can wait for the log writer.",
							NULL,
							&tv_log_queue_size,
							1024, 16, 65536,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.log_timeout",
							"How long a backend waits for the log writer to make a record durable before refusing.",
							"Decryption fails closed when the record is not acknowledged within this time.",
							&tv_log_timeout,
							5000, 10, 600000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "trialvault");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "tv_logwriter_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "trialvault log writer");
	snprintf(worker.bgw_type, BGW_MAXLEN, "trialvault log writer");
	RegisterBackgroundWorker(&worker);
}

static void
tv_copy_str(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

/*
 * tv_log_context: fill in who is asking, from where, and when.
 */
void
tv_log_context(TvLogRecord *rec)
{
	char	   *user = GetUserNameFromId(GetUserId(), false);
	char	   *suser = GetUserNameFromId(GetSessionUserId(), false);

	rec->dboid = MyDatabaseId;
	rec->pid = MyProcPid;
	rec->at = GetCurrentTimestamp();
	tv_copy_str(rec->requester, sizeof(rec->requester), user);
	tv_copy_str(rec->session_user, sizeof(rec->session_user), suser);
	tv_copy_str(rec->application_name, sizeof(rec->application_name),
				application_name);
	rec->client_addr[0] = '\0';
	{
		/* inet_client_addr() is NULL for unix sockets, so call it by hand. */
		LOCAL_FCINFO(fc, 0);
		Datum		addr;

		InitFunctionCallInfoData(*fc, NULL, 0, InvalidOid, NULL, NULL);
		addr = inet_client_addr(fc);
		if (!fc->isnull)
			tv_copy_str(rec->client_addr, sizeof(rec->client_addr),
						DatumGetCString(DirectFunctionCall1(inet_out, addr)));
	}
}

/*
 * tv_log_audit_record: an audit record of the caller's context for the
 * log writer: event, actor, study, site (NULL for none), doc_id (0 for
 * none) and detail, each cut to what the record holds.
 */
void
tv_log_audit_record(TvLogRecord *rec, const char *event, const char *actor,
					const char *study, const char *site, int64 doc_id,
					const char *detail)
{
	memset(rec, 0, sizeof(*rec));
	rec->kind = TV_LOG_AUDIT;
	tv_log_context(rec);
	strlcpy(rec->reason, event, sizeof(rec->reason));
	strlcpy(rec->requester, actor, sizeof(rec->requester));
	strlcpy(rec->study, study ? study : "", sizeof(rec->study));
	strlcpy(rec->site, site ? site : "", sizeof(rec->site));
	rec->has_doc = doc_id > 0;
	rec->doc_id = doc_id;
	strlcpy(rec->detail, detail ? detail : "", sizeof(rec->detail));
}

/*
 * Refuse before doing any work when the writer cannot take records: when it
 * is not running, or (for records of one database) when it serves another
 * database.  Security records (TV_LOG_SECURITY) come from any database.
 */
static void
tv_require_writer(bool any_db)
{
	pid_t		pid;
	Oid			db;

	if (tv_queue == NULL)
		tv_require_preload();
	LWLockAcquire(tv_queue->lock, LW_SHARED);
	pid = tv_queue->writer_pid;
	db = tv_queue->writer_db;
	LWLockRelease(tv_queue->lock);
	if (pid == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the trialvault log writer is not running"),
				 errdetail("Nothing is decrypted unless the attempt can be put on record first."),
				 errhint("Check the server log for the \"trialvault log writer\" process; the postmaster restarts it within seconds.")));
	if (db != MyDatabaseId && !any_db)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the trialvault log writer serves database \"%s\", not this one",
						tv_log_database),
				 errdetail("Nothing is decrypted unless the attempt can be put on record first."),
				 errhint("Set trialvault.database to the database that holds the documents and restart the server.")));
}

void
tv_log_require_writer(void)
{
	tv_require_writer(false);
}

/* Owner side: give up on a slot (timeout or cancel). */
/*
 * Announcing a record.  A backend that is about to decide a decryption
 * says so before it starts; the writer, when records are waiting for their
 * commit, waits a little for announced ones, so that one WAL flush covers
 * them as well (see tv_write_batch).  The announcement ends when the record
 * is queued, or when the (sub)transaction fails before that.
 */
static bool tv_is_coming = false;
static bool tv_coming_callbacks = false;

static void
tv_log_not_coming(void)
{
	if (tv_is_coming && tv_queue != NULL)
		pg_atomic_fetch_sub_u32(&tv_queue->coming, 1);
	tv_is_coming = false;
}

static void
tv_coming_xact(XactEvent event, void *arg)
{
	tv_log_not_coming();
}

static void
tv_coming_subxact(SubXactEvent event, SubTransactionId mySubid,
				  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		tv_log_not_coming();
}

static void
tv_coming_exit(int code, Datum arg)
{
	tv_log_not_coming();
}

void
tv_log_coming(void)
{
	if (tv_queue == NULL || tv_is_coming)
		return;
	if (!tv_coming_callbacks)
	{
		RegisterXactCallback(tv_coming_xact, NULL);
		RegisterSubXactCallback(tv_coming_subxact, NULL);
		before_shmem_exit(tv_coming_exit, (Datum) 0);
		tv_coming_callbacks = true;
	}
	pg_atomic_fetch_add_u32(&tv_queue->coming, 1);
	tv_is_coming = true;
}

/*
 * Owner side: give up on a slot (timeout or cancel).  With alt, alt is to
 * be recorded instead: in the slot itself while the writer has not taken
 * it, after it when the writer is writing it or has just written it, and
 * kept for the writer's return when the write failed.
 */
static void
tv_slot_abandon(TvLogSlot *slot, const TvLogRecord *alt)
{
	TvSlotState state;

	LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
	state = slot->state;
	if (state == TV_SLOT_DONE || state == TV_SLOT_FAILED)
		slot->state = TV_SLOT_FREE;
	else
	{
		slot->abandoned = true;
		if (state == TV_SLOT_QUEUED && alt)
		{
			slot->rec = *alt;
			alt = NULL;
		}
	}
	LWLockRelease(tv_queue->lock);
	if (alt && (state == TV_SLOT_FAILED || !tv_log_enqueue(alt)))
		tv_log_fallback(alt);
}

/*
 * tv_log_submit: make one record durable, or raise an error.  Returns only
 * after the writer has committed the record.
 */
void
tv_log_submit(const TvLogRecord *rec)
{
	tv_log_submit_alt(rec, NULL);
}

/*
 * tv_log_submit_alt: the same, and when rec cannot be made durable (the
 * error is raised all the same), alt is recorded in its place: queued if the
 * writer can still take it, else kept for its return (tv_log_fallback).  A
 * login refused because its record could not be written is recorded as
 * refused, never as let in.
 */
void
tv_log_submit_alt(const TvLogRecord *rec, const TvLogRecord *alt)
{
	TimestampTz deadline;
	TvLogSlot  *slot = NULL;
	TvSlotState outcome;
	char		error[256];
	bool		any_db = rec->kind == TV_LOG_SECURITY;

	if (alt && tv_queue != NULL && tv_queue->writer_pid == 0)
		tv_log_fallback(alt);
	tv_require_writer(any_db);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), tv_log_timeout);

	/* Take the next slot in ring order, waiting while the ring is full. */
	for (;;)
	{
		Latch	   *writer = NULL;
		long		left;

		LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
		if (tv_queue->writer_pid == 0)
		{
			LWLockRelease(tv_queue->lock);
			if (alt)
				tv_log_fallback(alt);
			tv_require_writer(any_db);
		}
		slot = &tv_queue->slots[tv_queue->head % tv_queue->nslots];
		if (slot->state == TV_SLOT_FREE)
		{
			slot->rec = *rec;
			slot->abandoned = false;
			slot->owner = MyLatch;
			slot->error[0] = '\0';
			slot->state = TV_SLOT_QUEUED;
			tv_queue->head++;
			writer = tv_queue->writer_latch;
		}
		else
			slot = NULL;
		LWLockRelease(tv_queue->lock);
		if (slot)
		{
			tv_log_not_coming();
			if (writer)
				SetLatch(writer);
			break;
		}
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0 && alt)
			tv_log_fallback(alt);
		if (left <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("the trialvault log queue stayed full for %d ms", tv_log_timeout),
					 errdetail("Nothing is decrypted unless the attempt can be put on record first."),
					 errhint("Raise trialvault.log_queue_size or trialvault.log_timeout, or find out why the log writer is slow.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	/* Wait for the outcome. */
	for (;;)
	{
		long		left;

		LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
		outcome = slot->state;
		if (outcome == TV_SLOT_DONE || outcome == TV_SLOT_FAILED)
		{
			strlcpy(error, slot->error, sizeof(error));
			slot->state = TV_SLOT_FREE;
		}
		LWLockRelease(tv_queue->lock);
		if (outcome == TV_SLOT_DONE)
			return;
		if (outcome == TV_SLOT_FAILED && alt)
			tv_log_fallback(alt);
		if (outcome == TV_SLOT_FAILED)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the trialvault log writer could not record this attempt"),
					 errdetail("%s", error),
					 errhint("Nothing was decrypted or returned. The log writer's messages in the server log say more.")));

		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
		{
			tv_slot_abandon(slot, alt);
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the trialvault log writer did not confirm the record within %d ms",
							tv_log_timeout),
					 errdetail("Nothing was decrypted. The record may still be written."),
					 errhint("Raise trialvault.log_timeout, or find out why the log writer is slow.")));
		}
		if (INTERRUPTS_PENDING_CONDITION())
		{
			/* A cancel must not leave the slot owned by nobody. */
			tv_slot_abandon(slot, alt);
			CHECK_FOR_INTERRUPTS();
			/* Not an interrupt that throws: the slot is no longer ours. */
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("gave up waiting for the trialvault log writer")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * tv_log_try_submit_alt: tv_log_submit_alt, returning its error (copied
 * into the caller's memory context) instead of raising it; NULL once the
 * record is durable.  For callers that decide for themselves what a record
 * that cannot be made durable means (a login, a role change at commit).
 * tv_log_submit_alt raises its errors after releasing what it holds, so
 * the caller's transaction stays sound.
 */
ErrorData *
tv_log_try_submit_alt(const TvLogRecord *rec, const TvLogRecord *alt)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;

	PG_TRY();
	{
		tv_log_submit_alt(rec, alt);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	return edata;
}

/*
 * tv_log_enqueue: queue a record without waiting for it, and without ever
 * raising an error (it is called while a failed login's FATAL is being
 * reported).  False when the writer is not running or the ring is full.
 * Nobody waits for the slot, so the writer frees it once it is written.
 */
bool
tv_log_enqueue(const TvLogRecord *rec)
{
	TvLogSlot  *slot;
	Latch	   *writer = NULL;

	if (tv_queue == NULL || MyProc == NULL)
		return false;
	LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
	slot = &tv_queue->slots[tv_queue->head % tv_queue->nslots];
	if (tv_queue->writer_pid != 0 && slot->state == TV_SLOT_FREE)
	{
		slot->rec = *rec;
		slot->abandoned = true;
		slot->owner = NULL;
		slot->error[0] = '\0';
		slot->state = TV_SLOT_QUEUED;
		tv_queue->head++;
		writer = tv_queue->writer_latch;
	}
	LWLockRelease(tv_queue->lock);
	if (writer)
		SetLatch(writer);
	return writer != NULL;
}

/*
 * tv_log_fallback: a record that could not be queued when it was due (a
 * superuser let in, or an ordinary role refused, while the writer was
 * away).  It is kept in shared memory, the last TV_FALLBACK_KEPT of them,
 * and counted; the writer puts them on record when it runs again (a server
 * restart loses them: the server log has a line for each).  Never raises
 * an error.
 */
void
tv_log_fallback(const TvLogRecord *rec)
{
	Latch	   *writer;

	if (tv_queue == NULL)
		return;
	LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
	tv_queue->fallback[tv_queue->fallbacks % TV_FALLBACK_KEPT] = *rec;
	tv_queue->fallbacks++;
	writer = tv_queue->writer_latch;
	LWLockRelease(tv_queue->lock);
	if (writer)
		SetLatch(writer);
}

/* ---------------------------------------------------------------------
 * The writer
 * ---------------------------------------------------------------------
 */

/* Writer side: settle slots [from, to) and wake their owners. */
static void
tv_settle(uint64 from, uint64 to, bool ok, const char *error)
{
	uint64		pos;

	for (pos = from; pos < to; pos++)
	{
		TvLogSlot  *slot = &tv_queue->slots[pos % tv_queue->nslots];

		if (slot->state != TV_SLOT_QUEUED && slot->state != TV_SLOT_WRITING)
			continue;
		if (slot->abandoned)
			slot->state = TV_SLOT_FREE;
		else
		{
			slot->state = ok ? TV_SLOT_DONE : TV_SLOT_FAILED;
			if (!ok)
				strlcpy(slot->error, error, sizeof(slot->error));
			SetLatch(slot->owner);
		}
	}
	if (ok)
		tv_queue->written += to - from;
	else
		tv_queue->failed += to - from;
}

static void
tv_logwriter_exit(int code, Datum arg)
{
	LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
	tv_queue->writer_pid = 0;
	tv_queue->writer_latch = NULL;
	tv_settle(tv_queue->tail, tv_queue->head, false,
			  "The log writer stopped before the record was committed.");
	tv_queue->tail = tv_queue->head;
	LWLockRelease(tv_queue->lock);
}

/*
 * Decryption records arrive in bursts: a run of them is inserted by one
 * statement over arrays, so the executor starts once per batch, not once
 * per record.  unnest() keeps the order, so log_id follows the queue (it is
 * written unqualified because only the parser's special form takes several
 * arrays; the writer's search_path is pg_catalog).
 */
static const char *tv_decryption_insert =
"INSERT INTO trialvault.decryption_log "
"(doc_id, study, site, requester, session_user_name, requested_at, granted, "
" reason, emergency, emergency_reason, client_addr, application_name, backend_pid) "
"SELECT d, st, si, rq, su, ra, g, re, em, er, ca::pg_catalog.inet, an, bp "
"FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
"  AS u(d, st, si, rq, su, ra, g, re, em, er, ca, an, bp)";

#define TV_DCOLS 13
static const Oid tv_dtypes[TV_DCOLS] = {INT8OID, TEXTOID, TEXTOID, NAMEOID, NAMEOID,
	TIMESTAMPTZOID, BOOLOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, INT4OID};

static const char *tv_audit_insert =
"INSERT INTO trialvault.audit_events "
"(event, actor, session_user_name, occurred_at, study, site, doc_id, detail, "
" client_addr, application_name, backend_pid) "
"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.inet, $10, $11)";

static Datum
tv_text_or_null(const char *s, char *isnull)
{
	if (s[0] == '\0')
	{
		*isnull = 'n';
		return (Datum) 0;
	}
	*isnull = ' ';
	return CStringGetTextDatum(s);
}

/* Column c of a decryption record, as the decryption_log insert takes it. */
static Datum
tv_decryption_column(const TvLogRecord *r, int c, bool *isnull)
{
	char		n = ' ';
	Datum		d = (Datum) 0;

	switch (c)
	{
		case 0:
			d = Int64GetDatum(r->doc_id);
			n = r->has_doc ? ' ' : 'n';
			break;
		case 1:
			d = tv_text_or_null(r->study, &n);
			break;
		case 2:
			d = tv_text_or_null(r->site, &n);
			break;
		case 3:
			d = PointerGetDatum(r->requester);	/* NAMEDATALEN, zero-filled */
			break;
		case 4:
			d = PointerGetDatum(r->session_user);
			break;
		case 5:
			d = TimestampTzGetDatum(r->at);
			break;
		case 6:
			d = BoolGetDatum(r->granted);
			break;
		case 7:
			d = tv_text_or_null(r->reason, &n);
			break;
		case 8:
			d = BoolGetDatum(r->emergency);
			break;
		case 9:
			d = tv_text_or_null(r->detail, &n);
			break;
		case 10:
			d = tv_text_or_null(r->client_addr, &n);
			break;
		case 11:
			d = tv_text_or_null(r->application_name, &n);
			break;
		case 12:
			d = Int32GetDatum(r->pid);
			break;
	}
	*isnull = (n == 'n');
	return d;
}

/* Insert a run of decryption records with one statement. */
static void
tv_write_decryptions(const TvLogRecord *recs, int n, SPIPlanPtr plan)
{
	Datum		args[TV_DCOLS];
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			c;
	int			i;
	int			ret;

	for (c = 0; c < TV_DCOLS; c++)
	{
		int16		typlen;
		bool		byval;
		char		align;

		for (i = 0; i < n; i++)
			elems[i] = tv_decryption_column(&recs[i], c, &nulls[i]);
		get_typlenbyvalalign(tv_dtypes[c], &typlen, &byval, &align);
		args[c] = PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
													 tv_dtypes[c], typlen, byval, align));
	}
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "log writer insert failed: %s", SPI_result_code_string(ret));
}

static void
tv_write_audit(const TvLogRecord *r, SPIPlanPtr plan)
{
	Datum		v[11];
	char		n[12];
	int			ret;

	memset(n, ' ', sizeof(n));
	n[11] = '\0';
	v[0] = tv_text_or_null(r->reason, &n[0]);
	v[1] = PointerGetDatum(r->requester);
	v[2] = PointerGetDatum(r->session_user);
	v[3] = TimestampTzGetDatum(r->at);
	v[4] = tv_text_or_null(r->study, &n[4]);
	v[5] = tv_text_or_null(r->site, &n[5]);
	v[6] = Int64GetDatum(r->doc_id);
	n[6] = r->has_doc ? ' ' : 'n';
	v[7] = tv_text_or_null(r->detail, &n[7]);
	v[8] = tv_text_or_null(r->client_addr, &n[8]);
	v[9] = tv_text_or_null(r->application_name, &n[9]);
	v[10] = Int32GetDatum(r->pid);
	ret = SPI_execute_plan(plan, v, n, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "log writer insert failed: %s", SPI_result_code_string(ret));
}

static SPIPlanPtr dplan = NULL;
static SPIPlanPtr aplan = NULL;
static SPIPlanPtr pplan = NULL;

/* A password history entry: "iterations:salt:hash" (hex) in the detail. */
static const char *tv_password_insert =
"INSERT INTO trialvault.password_history (roleid, role_name, set_at, iterations, salt, hash) "
"VALUES ($1, $2, $3, pg_catalog.split_part($4, ':', 1)::integer, "
"        pg_catalog.decode(pg_catalog.split_part($4, ':', 2), 'hex'), "
"        pg_catalog.decode(pg_catalog.split_part($4, ':', 3), 'hex'))";

static void
tv_write_password(const TvLogRecord *r, SPIPlanPtr plan)
{
	Datum		v[4];
	NameData	role;
	int			ret;

	namestrcpy(&role, r->study);
	v[0] = ObjectIdGetDatum((Oid) r->doc_id);
	v[1] = NameGetDatum(&role);
	v[2] = TimestampTzGetDatum(r->at);
	v[3] = CStringGetTextDatum(r->detail);
	ret = SPI_execute_plan(plan, v, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "log writer insert failed: %s", SPI_result_code_string(ret));
}

/*
 * Take queued records, in queue order, into recs[n..]; returns the new count.
 * They must be contiguous with those already taken (the writer is the only
 * taker, so they are).
 */
static int
tv_take(TvLogRecord *recs, int n)
{
	LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
	while (tv_queue->tail < tv_queue->head && n < TV_BATCH_MAX)
	{
		TvLogSlot  *slot = &tv_queue->slots[tv_queue->tail % tv_queue->nslots];

		if (slot->state != TV_SLOT_QUEUED)
			break;
		slot->state = TV_SLOT_WRITING;
		recs[n++] = slot->rec;
		tv_queue->tail++;
	}
	LWLockRelease(tv_queue->lock);
	return n;
}

/*
 * Before committing a batch, wait up to TV_COMING_WAIT_MS in all for the
 * records backends have announced (tv_log_coming): they are moments away,
 * and joining this commit saves them a WAL flush of their own.  With one
 * client nothing is ever announced while a batch waits, so nothing waits.
 */
#define TV_COMING_WAIT_MS 1

static bool
tv_wait_for_coming(volatile int *waited)
{
	if (*waited >= TV_COMING_WAIT_MS || pg_atomic_read_u32(&tv_queue->coming) == 0)
		return false;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1L, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	(*waited)++;
	return true;
}

/* tv_take(), waiting a little (as above) while nothing has come yet. */
static int
tv_take_more(TvLogRecord *recs, int n, volatile int *waited)
{
	int			got;

	while ((got = tv_take(recs, n)) == n && n < TV_BATCH_MAX && tv_wait_for_coming(waited))
		;
	return got;
}

/*
 * Write a batch in one transaction; true when committed.  With "more", the
 * records that arrived while the batch was being inserted join it before
 * the commit (*n grows): one WAL flush then covers them too.
 */
static bool
tv_write_batch(TvLogRecord *recs, int *np, bool more, MemoryContext cxt,
			   char *error, size_t errlen)
{
	volatile bool ok = false;
	volatile int n = *np;
	volatile int waited = 0;
	volatile int skipped = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		Oid			atypes[11] = {TEXTOID, NAMEOID, NAMEOID, TIMESTAMPTZOID,
			TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID};
		Oid			ptypes[4] = {OIDOID, NAMEOID, TIMESTAMPTZOID, TEXTOID};
		int			i;
		int			run;

		bool		installed;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "writing trialvault log records");
		installed = OidIsValid(get_extension_oid("trialvault", true));

		/*
		 * Plans are kept for the writer's life (the plan cache replans them
		 * if the tables change); preparing them for every batch cost as
		 * much as the inserts.
		 */
		for (i = 0; i < n || (more && (n = tv_take_more(recs, n, &waited)) > i); i += run)
		{
			if (recs[i].kind == TV_LOG_DECRYPTION)
			{
				if (dplan == NULL)
				{
					Oid			types[TV_DCOLS];
					int			c;

					for (c = 0; c < TV_DCOLS; c++)
						types[c] = get_array_type(tv_dtypes[c]);
					(void) tv_kept_plan(&dplan, tv_decryption_insert, TV_DCOLS, types);
				}
				for (run = 1; i + run < n && recs[i + run].kind == TV_LOG_DECRYPTION; run++)
					;
				tv_write_decryptions(&recs[i], run, dplan);
			}
			else if (recs[i].kind == TV_LOG_PASSWORD)
			{
				Oid			nsp = get_namespace_oid("trialvault", true);

				/* Dropped, as security records are, while there is no table for it. */
				if (installed && OidIsValid(nsp) &&
					OidIsValid(get_relname_relid("password_history", nsp)))
					tv_write_password(&recs[i],
									  tv_kept_plan(&pplan, tv_password_insert, 4, ptypes));
				else
					skipped++;
				run = 1;
			}
			else if (recs[i].kind == TV_LOG_SECURITY && !installed)
			{
				/*
				 * Logins and account changes before CREATE EXTENSION (or in
				 * a cluster whose trail database has none): there is no
				 * trail, and nothing protected, yet.
				 */
				skipped++;
				run = 1;
			}
			else
			{
				tv_write_audit(&recs[i],
							   tv_kept_plan(&aplan, tv_audit_insert, 11, atypes));
				run = 1;
			}
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		ok = true;
		if (skipped > 0)
		{
			LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
			tv_queue->skipped += skipped;
			LWLockRelease(tv_queue->lock);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		strlcpy(error, edata->message, errlen);
		ereport(WARNING,
				(errmsg("trialvault log writer could not write %d record(s): %s",
						n, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	*np = n;
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/*
 * tv_writer_read: run read() in a transaction of the writer's own, with SPI
 * connected and a snapshot, when this database has trialvault (else there
 * is nothing to read); for the state the writer rebuilds from the trail when
 * it starts (lockout counters, password histories).
 */
void
tv_writer_read(void (*read) (void))
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(get_extension_oid("trialvault", true)))
		read();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Put on record the fallbacks (tv_log_fallback) made while the writer was
 * away: the ones still kept, and one event for any that were not.
 */
static void
tv_write_fallbacks(TvLogRecord *recs, MemoryContext cxt)
{
	uint64		total;
	uint64		first;
	uint64		pos;
	int			n = 0;
	char		error[256];

	LWLockAcquire(tv_queue->lock, LW_SHARED);
	total = tv_queue->fallbacks;
	first = tv_queue->fallbacks_written;
	if (total - first > TV_FALLBACK_KEPT)
		first = total - TV_FALLBACK_KEPT;
	for (pos = first; pos < total; pos++)
		recs[n++] = tv_queue->fallback[pos % TV_FALLBACK_KEPT];
	LWLockRelease(tv_queue->lock);
	if (total == tv_queue->fallbacks_written)
		return;
	if (first > tv_queue->fallbacks_written)
	{
		TvLogRecord *lost = &recs[n++];

		*lost = recs[0];
		snprintf(lost->detail, sizeof(lost->detail),
				 "{\"reason\": \"%llu earlier fallbacks were not kept while the log writer was away; the server log has a line for each\"}",
				 (unsigned long long) (first - tv_queue->fallbacks_written));
	}
	MemoryContextReset(cxt);
	if (!tv_write_batch(recs, &n, false, cxt, error, sizeof(error)))
	{
		int			i;

		/*
		 * One by one, so that one the table refuses does not hold back the
		 * others; a record that fails alone is given up (its WARNING, and
		 * the server log line made when it was kept, remain), or the writer
		 * would retry it forever.
		 */
		for (i = 0; i < n; i++)
		{
			int			one = 1;

			MemoryContextReset(cxt);
			(void) tv_write_batch(&recs[i], &one, false, cxt, error, sizeof(error));
		}
	}
	LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
	tv_queue->fallbacks_written = total;
	LWLockRelease(tv_queue->lock);
}

PG_FUNCTION_INFO_V1(tv_log_kept_pending);

/*
 * trialvault._log_kept_pending(): how many records kept while the log
 * writer was away (tv_log_fallback) are not on record yet.
 */
Datum
tv_log_kept_pending(PG_FUNCTION_ARGS)
{
	int64		pending;

	if (tv_queue == NULL)
		tv_require_preload();
	LWLockAcquire(tv_queue->lock, LW_SHARED);
	pending = (int64) (tv_queue->fallbacks - tv_queue->fallbacks_written);
	LWLockRelease(tv_queue->lock);
	PG_RETURN_INT64(pending);
}

/*
 * The settings whose change is a security policy decision: a reload that
 * changes one (ALTER SYSTEM, or an edit of postgresql.conf) is an audit
 * event, whoever made it.
 */
static const char *const tv_policy_settings[] = {
	"trialvault.audit_logins", "trialvault.lockout_threshold", "trialvault.lockout_duration",
	"trialvault.member_idle_timeout", "trialvault.password_min_length",
	"trialvault.password_accept_hashed", "trialvault.password_history",
	"trialvault.password_max_age", "trialvault.log_timeout",
	"trialvault.backup_conninfo", "trialvault.backup_public_key_file",
	"trialvault.backup_retention", "trialvault.backup_max_defer",
	"trialvault.step_up_duration", "trialvault.step_up_max_failures",
	"trialvault.activation_ttl"
};
#define TV_NPOLICY lengthof(tv_policy_settings)

/*
 * Fill rec as a setting_changed event made by "(configuration)": a reload
 * that changed a policy setting, or (the backup shipper) a key file
 * rewritten under the same setting.
 */
void
tv_log_setting_changed(TvLogRecord *rec, const char *changes)
{
	StringInfoData buf;

	memset(rec, 0, sizeof(*rec));
	rec->kind = TV_LOG_SECURITY;
	rec->pid = MyProcPid;
	rec->at = GetCurrentTimestamp();
	strlcpy(rec->reason, "setting_changed", sizeof(rec->reason));
	strlcpy(rec->requester, "(configuration)", sizeof(rec->requester));
	strlcpy(rec->session_user, "(configuration)", sizeof(rec->session_user));
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	tv_json_field(&buf, "changes", changes);
	appendStringInfoChar(&buf, '}');
	strlcpy(rec->detail, buf.data, sizeof(rec->detail));
	pfree(buf.data);
}

/* Reload the configuration, and record the policy settings it changed. */
static void
tv_reload_config(TvLogRecord *recs, MemoryContext cxt)
{
	char	   *before[TV_NPOLICY];
	int			i;
	int			n = 0;
	char		error[256];

	for (i = 0; i < (int) TV_NPOLICY; i++)
		before[i] = pstrdup(GetConfigOption(tv_policy_settings[i], false, false));
	ProcessConfigFile(PGC_SIGHUP);
	for (i = 0; i < (int) TV_NPOLICY && n < TV_BATCH_MAX; i++)
	{
		const char *after = GetConfigOption(tv_policy_settings[i], false, false);
		TvLogRecord *r;

		if (strcmp(before[i], after) == 0)
			continue;
		r = &recs[n++];
		/* A connection string may hold a password: superusers' eyes only. */
		if (strstr(tv_policy_settings[i], "_conninfo") != NULL)
			tv_log_setting_changed(r, psprintf("%s changed (configuration reloaded; a connection string is not recorded)",
											   tv_policy_settings[i]));
		else
			tv_log_setting_changed(r, psprintf("%s changed from %s to %s (configuration reloaded)",
											   tv_policy_settings[i], before[i], after));
	}
	if (n > 0)
	{
		MemoryContextReset(cxt);
		(void) tv_write_batch(recs, &n, false, cxt, error, sizeof(error));
	}
}

/*
 * About once a second: end the sessions of idle study members
 * (tv_idle_sweep) and put each logoff on record.
 */
static void
tv_sweep(TvLogRecord *recs, MemoryContext cxt, TimestampTz *last)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n;
	char		error[256];

	if (!TimestampDifferenceExceeds(*last, now, 1000))
		return;
	*last = now;
	MemoryContextReset(cxt);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	n = tv_idle_sweep(recs, TV_BATCH_MAX);
	CommitTransactionCommand();
	if (n > 0)
		(void) tv_write_batch(recs, &n, false, cxt, error, sizeof(error));
}

void
tv_logwriter_main(Datum arg)
{
	MemoryContext cxt;
	TvLogRecord *recs;
	TimestampTz last_sweep = 0;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(tv_log_database, NULL, 0);

	/* The records must be flushed whatever postgresql.conf says. */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "trialvault log writer", PGC_SUSET, PGC_S_OVERRIDE);

	cxt = AllocSetContextCreate(TopMemoryContext, "trialvault log writer",
								ALLOCSET_DEFAULT_SIZES);
	recs = MemoryContextAlloc(TopMemoryContext, sizeof(TvLogRecord) * TV_BATCH_MAX);

	/*
	 * Before taking records (and so before anyone but a superuser is let
	 * in): the lockout counters, from the trail.
	 */
	tv_lockout_load();
	tv_password_history_load();

	before_shmem_exit(tv_logwriter_exit, (Datum) 0);
	LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
	tv_queue->writer_pid = MyProcPid;
	tv_queue->writer_db = MyDatabaseId;
	tv_queue->writer_latch = MyLatch;
	tv_queue->tail = tv_queue->head;
	LWLockRelease(tv_queue->lock);
	ereport(LOG,
			(errmsg("trialvault log writer started for database \"%s\"",
					tv_log_database)));

	for (;;)
	{
		uint64		from;
		uint64		to;
		int			n = 0;
		int			i;
		char		error[256];
		bool		ok;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			tv_reload_config(recs, cxt);
		}

		tv_write_fallbacks(recs, cxt);
		tv_sweep(recs, cxt, &last_sweep);

		LWLockAcquire(tv_queue->lock, LW_SHARED);
		from = tv_queue->tail;
		LWLockRelease(tv_queue->lock);
		n = tv_take(recs, 0);

		if (n == 0)
		{
			/*
			 * Idle: report this process's statistics (rows inserted, for
			 * autovacuum; WAL written) as a backend does between queries.
			 * pgstat_report_stat(false) flushes at most once a second and
			 * holds back the rest; a second later, still idle, force it.
			 */
			bool		held_back = pgstat_report_stat(false) > 0;
			int			rc;

			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   1000L, PG_WAIT_EXTENSION);
			if ((rc & WL_TIMEOUT) && held_back)
				pgstat_report_stat(true);
			continue;
		}

		MemoryContextReset(cxt);
		ok = tv_write_batch(recs, &n, true, cxt, error, sizeof(error));
		to = from + n;

		/*
		 * No CHECK_FOR_INTERRUPTS between the commit and here: a writer that
		 * dies in between fails records that are in fact written, which errs
		 * on the safe side (the caller gets no plaintext).
		 */
		if (ok || n == 1)
		{
			LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
			tv_settle(from, to, ok, ok ? "" : error);
			tv_queue->batches++;
			LWLockRelease(tv_queue->lock);
			/* Under steady load the writer is never idle. */
			(void) pgstat_report_stat(false);
			continue;
		}

		/*
		 * One record the table refuses must not fail the others of its
		 * batch: write them one by one.
		 */
		for (i = 0; i < n; i++)
		{
			int			one = 1;

			MemoryContextReset(cxt);
			ok = tv_write_batch(&recs[i], &one, false, cxt, error, sizeof(error));
			LWLockAcquire(tv_queue->lock, LW_EXCLUSIVE);
			tv_settle(from + i, from + i + 1, ok, ok ? "" : error);
			tv_queue->batches++;
			LWLockRelease(tv_queue->lock);
		}
	}
}

/*
 * The columns of log_writer_status() in each version of its SQL
 * declaration, as pg_stat_statements keeps one C symbol per version of its
 * view: a server whose library is newer than the SQL objects of a database
 * (before ALTER EXTENSION UPDATE) must still answer with the columns that
 * database declares.
 */
#define TV_LWS_COLS_0_3		7	/* pid .. queue_size */
#define TV_LWS_COLS_0_5		8	/* + announced */

static Datum
log_writer_status(FunctionCallInfo fcinfo, int ncols)
{
	TupleDesc	tupdesc;
	Datum		values[TV_LWS_COLS_0_5];
	bool		nulls[TV_LWS_COLS_0_5] = {0};
	pid_t		pid;

	if (tv_queue == NULL)
		tv_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != ncols)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("trialvault.log_writer_status() is declared with %d columns, but its C function returns %d",
						tupdesc->natts, ncols),
				 errhint("Run ALTER EXTENSION trialvault UPDATE.")));
	LWLockAcquire(tv_queue->lock, LW_SHARED);
	pid = tv_queue->writer_pid;
	values[0] = Int32GetDatum(pid);
	nulls[0] = (pid == 0);
	values[1] = CStringGetTextDatum(tv_log_database);
	values[2] = Int64GetDatum((int64) (tv_queue->head - tv_queue->tail));
	values[3] = Int64GetDatum((int64) tv_queue->written);
	values[4] = Int64GetDatum((int64) tv_queue->failed);
	values[5] = Int64GetDatum((int64) tv_queue->batches);
	values[6] = Int32GetDatum(tv_queue->nslots);
	if (ncols >= TV_LWS_COLS_0_5)
		values[7] = Int32GetDatum((int32) pg_atomic_read_u32(&tv_queue->coming));
	LWLockRelease(tv_queue->lock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(tv_log_writer_status);

/*
 * The symbol the frozen scripts of 0.3 to 0.5 declare log_writer_status()
 * with: 0.3 and 0.4 with 7 columns, 0.5 with 8.  It cannot tell those
 * versions apart otherwise, so it goes by the declaration.
 */
Datum
tv_log_writer_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return log_writer_status(fcinfo, tupdesc->natts == TV_LWS_COLS_0_3 ?
							 TV_LWS_COLS_0_3 : TV_LWS_COLS_0_5);
}

PG_FUNCTION_INFO_V1(tv_log_writer_status_0_6);

/* trialvault.log_writer_status() from 0.6 on: pid, database, queue depth and counters. */
Datum
tv_log_writer_status_0_6(PG_FUNCTION_ARGS)
{
	return log_writer_status(fcinfo, TV_LWS_COLS_0_5);
}
