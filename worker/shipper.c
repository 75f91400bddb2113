/*-------------------------------------------------------------------------
 *
 * shipper.c
 *		Encrypted incremental backups: the background workers that ship
 *		every committed row of every protected table, in batches encrypted
 *		to an OpenPGP public key, to a remote repository (docs/backups.md).
 *
 * A launcher (one static worker) starts one shipper per database of the
 * cluster while trialvault.backup_conninfo is set; a shipper in a database
 * without the extension exits at once and is tried again later, as pg_cron
 * does for its one database.
 *
 * Exactly once, in effect.  The remote is the only record of progress: each
 * batch and its progress row commit in one remote transaction (the
 * repository's trigger writes progress), and after any failure the shipper
 * reads its position back from there before it sends again.  A batch whose
 * outcome is unknown (the connection broke after it was sent) is found
 * there or sent again with the same batch id, which the repository refuses
 * to take twice.
 *
 * Late commits.  tv_seq is taken at INSERT, so a transaction can commit a
 * row with a lower tv_seq than rows already committed.  A shipper therefore
 * ships a table only up to a horizon: it reads the newest committed tv_seq
 * M, then lists the transactions holding a lock that conflicts with
 * ShareLock on the table (the writers; CREATE INDEX CONCURRENTLY asks the
 * same question).  Every tv_seq below M was handed out before M's row was
 * inserted, by a transaction that held RowExclusiveLock on the table from
 * then until its end, so it is in that list unless it has already ended.
 * Once all of them have ended, every row up to M is committed or never
 * will be, and the rows up to M are shipped in tv_seq order.  A long
 * transaction thus holds a table's shipping back (backup_status shows the
 * lag) but never makes it skip a row.
 *
 * Never in the way.  The shipper writes nothing locally and holds no lock
 * an inserter waits for; the remote is reached with non-blocking libpq
 * waited on the process latch, so a remote that is down or slow delays
 * only the backups, and shutdown never waits for it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <sys/stat.h>

#include "libpq-fe.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "trialvault.h"

/* Settings */
static char *tv_backup_conninfo = NULL;
static char *tv_backup_public_key_file = NULL;
static int	tv_backup_naptime = 1000;	/* ms */
static int	tv_backup_batch_rows = 1000;
int			tv_backup_retention = 7;
static char *tv_backup_system_id = NULL;
static int	tv_backup_nice = 10;
static int	tv_backup_max_defer = 60;

#define TV_SHIP_MAX_DBS			64
#define TV_SHIP_MAX_TABLES		4096
#define TV_SHIP_ERRLEN			512
#define TV_SHIP_BATCH_BYTES		(16 * 1024 * 1024)	/* of a batch's JSON */
#define TV_SHIP_REMOTE_TIMEOUT	60000	/* ms, for any one remote step */
#define TV_SHIP_BACKOFF_MAX		10000	/* ms */
#define TV_SHIP_RELAUNCH		10000	/* ms, before a stopped shipper is started again */

/* What backup_status shows, per database and per table, in shared memory. */
typedef struct TvShipDb
{
	Oid			dbid;
	pid_t		pid;
	TimestampTz started_at;
	TimestampTz last_success;
	TimestampTz last_error_at;
	char		system_id[65];
	char		last_error[TV_SHIP_ERRLEN];
	char		key_id[32];		/* of the backup public key, last seen */
	Latch	   *latch;			/* the shipper's, to wake it */
	/* full_backup(): requests, and what the newest one came to */
	uint64		full_requested;
	uint64		full_done;
	int64		full_backup_id;
	bool		full_ok;
	ConditionVariable full_cv;
} TvShipDb;

typedef struct TvShipTable
{
	Oid			dbid;
	Oid			relid;
	int64		shipped_seq;
	int64		shipped_rows;
	int64		batches;
	int64		bytes;
	TimestampTz last_success;
	TimestampTz synced_at;		/* everything committed by then is shipped */
	char		last_error[TV_SHIP_ERRLEN];
} TvShipTable;

typedef struct TvShipShared
{
	LWLock		lock;
	pid_t		launcher_pid;
	TvShipDb	dbs[TV_SHIP_MAX_DBS];
	int			ntables;
	TvShipTable tables[TV_SHIP_MAX_TABLES];
} TvShipShared;

static TvShipShared *tv_ship = NULL;

/*
 * On the remote: the newest signed heads of system $1, from its newest
 * batch or, when the batches are purged, its newest confirmed full backup.
 */
#define TV_SHIP_NEWEST_HEADS_SQL \
	"SELECT u.id, u.heads, u.signature FROM (" \
	" SELECT b.batch_id AS id, b.heads, b.heads_signature AS signature FROM trialvault_repo.batches b" \
	"  WHERE b.system_id = $1 AND b.heads IS NOT NULL" \
	" UNION ALL" \
	" SELECT f.covers_batch_id, f.manifest -> 'heads', f.manifest ->> 'heads_signature'" \
	"  FROM trialvault_repo.full_backups f" \
	"  WHERE f.system_id = $1 AND f.confirmed_at IS NOT NULL AND f.manifest ? 'heads') u" \
	" ORDER BY u.id DESC LIMIT 1"

/* The protected tables of the current database, as "schema"."table". */
#define TV_SHIP_TABLES_SQL \
	"SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname)" \
	" FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace" \
	" WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid" \
	"   AND g.tgfoid = 'trialvault.guard()'::pg_catalog.regprocedure)" \
	" ORDER BY 2"

/* A shipper's own view of one table. */
typedef struct ShipTable
{
	Oid			relid;
	char	   *name;			/* "schema"."table", as the remote keys it */
	int64		shipped_seq;	/* newest tv_seq on the remote */
	bool		has_horizon;
	int64		horizon;		/* ship up to here once the writers are gone */
	TimestampTz horizon_at;
	VirtualTransactionId *writers;	/* terminated by an invalid one */
	int			nheads;
	int			maxheads;
	TvHead	   *heads;			/* the shipped rows no shipped row refers to */
	bool		seen;			/* still protected in this round */
	TimestampTz pending_since;	/* first seen with rows to ship; 0: none */
} ShipTable;

/*
 * A batch sent to the remote and not yet answered: the shipper builds the
 * next one while the remote stores this one.  Only what its answer needs is
 * kept (libpq holds the statement itself).
 */
typedef struct Flight
{
	bool		active;
	ShipTable  *table;
	int			nrows;
	int64		bytes;
	int64		shipped_to;		/* the table's shipped_seq once it lands */
	bool		more;
	TimestampTz horizon_at;
} Flight;

static Flight flight;

static bool land_flight(void);

static PGconn *remote = NULL;
static bool position_known = false;
static int64 next_batch_id = 0;
static List *ship_tables = NIL;
static char system_id[65];
static char ship_error[TV_SHIP_ERRLEN];
static MemoryContext ship_cxt = NULL;
static char *pgcrypto_schema = NULL;
static TvShipDb *my_db = NULL;

void		tv_ship_launcher_main(Datum arg);
void		tv_shipper_main(Datum arg);

/* ---------------------------------------------------------------------
 * Settings and shared memory
 * ---------------------------------------------------------------------
 */

Size
tv_ship_shmem_size(void)
{
	return MAXALIGN(sizeof(TvShipShared));
}

void
tv_ship_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tv_ship = ShmemInitStruct("trialvault backup shipping", sizeof(TvShipShared), &found);
	if (!found)
	{
		int			i;

		memset(tv_ship, 0, sizeof(TvShipShared));
		LWLockInitialize(&tv_ship->lock, LWLockNewTrancheId());
		for (i = 0; i < TV_SHIP_MAX_DBS; i++)
			ConditionVariableInit(&tv_ship->dbs[i].full_cv);
	}
	LWLockRelease(AddinShmemInitLock);
	LWLockRegisterTranche(tv_ship->lock.tranche, "trialvault_backup");
}

static bool
check_system_id(char **newval, void **extra, GucSource source)
{
	const char *p;

	for (p = *newval; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '_' || *p == '-'))
			break;
	if (*p || strlen(*newval) > 40)
	{
		GUC_check_errdetail("trialvault.backup_system_id takes up to 40 letters, digits, '.', '_' and '-'.");
		return false;
	}
	return true;
}

void
tv_ship_init(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable("trialvault.backup_conninfo",
							   "libpq connection string of the remote backup repository; empty: no backups are shipped.",
							   "Prepare the remote database with trialvault-remote-init first.",
							   &tv_backup_conninfo,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("trialvault.backup_public_key_file",
							   "ASCII-armored OpenPGP public key (RSA, with an encryption subkey) that backups are encrypted to.",
							   "Its private half stays off this server; see docs/backups.md.",
							   &tv_backup_public_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.backup_naptime",
							"How long the shipper waits between looks for new rows.",
							NULL,
							&tv_backup_naptime,
							1000, 10, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.backup_batch_rows",
							"Most rows in one encrypted batch.",
							"A batch also stops at 16 MB of rows.",
							&tv_backup_batch_rows,
							1000, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.backup_max_defer",
							"Longest the shipper holds rows back while the server is busy; 0: never.",
							"Busy: more client backends running a statement than the machine has CPUs.",
							&tv_backup_max_defer,
							60, 0, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.backup_retention",
							"How many confirmed full backups the remote keeps.",
							NULL,
							&tv_backup_retention,
							7, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("trialvault.backup_system_id",
							   "Name of this server in the remote repository; empty: its database system identifier.",
							   "Each database ships as <system id>.<database name>.",
							   &tv_backup_system_id,
							   "",
							   PGC_POSTMASTER,
							   0,
							   check_system_id, NULL, NULL);

	DefineCustomIntVariable("trialvault.backup_nice",
							"The nice value the backup shippers run at (0-19).",
							"Shipping is background work: on a busy server the shippers give way to the backends (and lag), rather than slow them.",
							&tv_backup_nice,
							10, 0, 19,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "trialvault");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "tv_ship_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "trialvault backup launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "trialvault backup launcher");
	RegisterBackgroundWorker(&worker);
}

static bool
shipping_configured(void)
{
	return tv_backup_conninfo && tv_backup_conninfo[0] &&
		tv_backup_public_key_file && tv_backup_public_key_file[0];
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

typedef struct LaunchedDb
{
	Oid			dbid;
	BackgroundWorkerHandle *handle;
	TimestampTz next_start;
} LaunchedDb;

static void
launch_shippers(LaunchedDb *dbs, int *ndbs)
{
	List	   *oids = NIL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);

		/* In the launcher's context: the transaction's is gone after it. */
		if (d->datallowconn && !d->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			oids = lappend_oid(oids, d->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, oids)
	{
		Oid			dbid = lfirst_oid(lc);
		LaunchedDb *l = NULL;
		int			i;
		pid_t		pid;
		BackgroundWorker worker;

		for (i = 0; i < *ndbs; i++)
			if (dbs[i].dbid == dbid)
				l = &dbs[i];
		if (l == NULL)
		{
			if (*ndbs >= TV_SHIP_MAX_DBS)
				continue;
			l = &dbs[(*ndbs)++];
			l->dbid = dbid;
			l->handle = NULL;
			l->next_start = 0;
		}
		if (l->handle &&
			GetBackgroundWorkerPid(l->handle, &pid) != BGWH_STOPPED)
			continue;
		if (l->handle)
		{
			pfree(l->handle);
			l->handle = NULL;
			l->next_start = TimestampTzPlusMilliseconds(now, TV_SHIP_RELAUNCH);
		}
		if (now < l->next_start)
			continue;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "trialvault");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "tv_shipper_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "trialvault backup shipper %u", dbid);
		snprintf(worker.bgw_type, BGW_MAXLEN, "trialvault backup shipper");
		worker.bgw_main_arg = ObjectIdGetDatum(dbid);
		worker.bgw_notify_pid = MyProcPid;
		if (!RegisterDynamicBackgroundWorker(&worker, &l->handle))
		{
			l->handle = NULL;
			l->next_start = TimestampTzPlusMilliseconds(now, TV_SHIP_RELAUNCH);
			ereport(WARNING,
					(errmsg("trialvault could not start a backup shipper for database %u", dbid),
					 errhint("Raise max_worker_processes: trialvault needs one worker per database while backups are configured.")));
		}
	}
	list_free(oids);
}

void
tv_ship_launcher_main(Datum arg)
{
	LaunchedDb *dbs;
	int			ndbs = 0;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	dbs = MemoryContextAllocZero(TopMemoryContext, sizeof(LaunchedDb) * TV_SHIP_MAX_DBS);

	LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
	tv_ship->launcher_pid = MyProcPid;
	LWLockRelease(&tv_ship->lock);

	for (;;)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* Shippers stop by themselves when the settings are emptied. */
		if (shipping_configured())
			launch_shippers(dbs, &ndbs);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 shipping_configured() ? TV_SHIP_RELAUNCH / 2 : 60000L,
						 PG_WAIT_EXTENSION);
	}
}

/* ---------------------------------------------------------------------
 * Status, for backup_status
 * ---------------------------------------------------------------------
 */

static void
note_error(ShipTable *t, const char *fmt,...) pg_attribute_printf(2, 3);

static TvShipTable *
status_entry(Oid relid, bool create)
{
	int			i;
	TvShipTable *e;

	for (i = 0; i < tv_ship->ntables; i++)
		if (tv_ship->tables[i].dbid == MyDatabaseId && tv_ship->tables[i].relid == relid)
			return &tv_ship->tables[i];
	if (!create || tv_ship->ntables >= TV_SHIP_MAX_TABLES)
		return NULL;
	e = &tv_ship->tables[tv_ship->ntables++];
	memset(e, 0, sizeof(*e));
	e->dbid = MyDatabaseId;
	e->relid = relid;
	return e;
}

/* Record an error for the database (t NULL) or one table, and log it. */
static void
note_error(ShipTable *t, const char *fmt,...)
{
	va_list		ap;
	char		msg[TV_SHIP_ERRLEN];
	bool		repeated;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
	if (t)
	{
		TvShipTable *e = status_entry(t->relid, true);

		repeated = e && strcmp(e->last_error, msg) == 0;
		if (e)
			strlcpy(e->last_error, msg, sizeof(e->last_error));
	}
	else
	{
		repeated = strcmp(my_db->last_error, msg) == 0;
		strlcpy(my_db->last_error, msg, sizeof(my_db->last_error));
	}
	my_db->last_error_at = GetCurrentTimestamp();
	LWLockRelease(&tv_ship->lock);

	/* The same failure over and over is logged once, until it changes. */
	if (!repeated)
		ereport(LOG,
				(errmsg("trialvault backup shipping failed%s%s: %s",
						t ? " for table " : "", t ? t->name : "", msg),
				 errhint("Shipping resumes by itself once the cause is fixed; trialvault.backup_status shows where it stands.")));
}

static void
clear_error(ShipTable *t)
{
	LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
	if (t)
	{
		TvShipTable *e = status_entry(t->relid, false);

		if (e)
			e->last_error[0] = '\0';
	}
	else
		my_db->last_error[0] = '\0';
	LWLockRelease(&tv_ship->lock);
}

/* ---------------------------------------------------------------------
 * The remote, through non-blocking libpq
 * ---------------------------------------------------------------------
 */

static void
remote_close(void)
{
	if (remote)
		PQfinish(remote);
	remote = NULL;
	position_known = false;
	flight.active = false;
}

/* Wait for the remote's socket, or a signal; false when the deadline passed. */
static bool
remote_wait(int events, TimestampTz deadline)
{
	long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	int			rc;

	if (ms <= 0)
		return false;
	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
						   PQsocket(remote), ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

static void
remote_fail(const char *what)
{
	char	   *msg = remote ? pstrdup(PQerrorMessage(remote)) : pstrdup("");
	int			len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	snprintf(ship_error, sizeof(ship_error), "%s: %s", what, len ? msg : "no answer");
	remote_close();
}

static bool
remote_connect(void)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {tv_backup_conninfo, "trialvault backup shipper", NULL};
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TV_SHIP_REMOTE_TIMEOUT);
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	remote = PQconnectStartParams(keys, vals, true);
	if (remote == NULL || PQstatus(remote) == CONNECTION_BAD)
	{
		remote_fail("cannot connect to the remote repository");
		return false;
	}
	while (st != PGRES_POLLING_OK)
	{
		if (st == PGRES_POLLING_FAILED)
		{
			remote_fail("cannot connect to the remote repository");
			return false;
		}
		if (!remote_wait(st == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
						 deadline))
		{
			remote_close();
			snprintf(ship_error, sizeof(ship_error),
					 "cannot connect to the remote repository: no answer within %d s",
					 TV_SHIP_REMOTE_TIMEOUT / 1000);
			return false;
		}
		st = PQconnectPoll(remote);
	}
	if (PQsetnonblocking(remote, 1) != 0)
	{
		remote_fail("cannot use the remote connection");
		return false;
	}
	return true;
}

/*
 * Send a statement to the remote, entirely; false with ship_error set and
 * the connection closed.
 */
static bool
remote_send(const char *sql, int n, const char *const *values, const int *lengths,
			const int *formats)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TV_SHIP_REMOTE_TIMEOUT);
	int			f;

	if (!PQsendQueryParams(remote, sql, n, NULL, values, lengths, formats, 0))
	{
		remote_fail("cannot send to the remote repository");
		return false;
	}
	while ((f = PQflush(remote)) != 0)
	{
		if (f < 0 || !remote_wait(WL_SOCKET_WRITEABLE | WL_SOCKET_READABLE, deadline) ||
			!PQconsumeInput(remote))
		{
			remote_fail("cannot send to the remote repository");
			return false;
		}
	}
	return true;
}

/*
 * The result of the statement sent, or NULL with ship_error set and the
 * connection closed (a statement whose fate is unknown leaves the position
 * unknown too).
 */
static PGresult *
remote_receive(ExecStatusType want)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TV_SHIP_REMOTE_TIMEOUT);
	PGresult   *res;
	PGresult   *last = NULL;

	for (;;)
	{
		while (PQisBusy(remote))
		{
			if (!remote_wait(WL_SOCKET_READABLE, deadline))
			{
				remote_close();
				snprintf(ship_error, sizeof(ship_error),
						 "the remote repository did not answer within %d s",
						 TV_SHIP_REMOTE_TIMEOUT / 1000);
				if (last)
					PQclear(last);
				return NULL;
			}
			if (!PQconsumeInput(remote))
			{
				if (last)
					PQclear(last);
				remote_fail("lost the connection to the remote repository");
				return NULL;
			}
		}
		res = PQgetResult(remote);
		if (res == NULL)
			break;
		if (last)
			PQclear(last);
		last = res;
	}
	if (last == NULL || PQresultStatus(last) != want)
	{
		const char *msg = last ? PQresultErrorMessage(last) : PQerrorMessage(remote);
		const char *state = last ? PQresultErrorField(last, PG_DIAG_SQLSTATE) : NULL;
		char	   *m = pstrdup(msg ? msg : "");
		int			len = strlen(m);

		while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == ' '))
			m[--len] = '\0';
		snprintf(ship_error, sizeof(ship_error), "the remote repository refused: %s%s%s%s",
				 len ? m : "no result", state ? " (SQLSTATE " : "", state ? state : "",
				 state ? ")" : "");
		if (last)
			PQclear(last);
		/* After a refusal the remote may have moved on: read it back. */
		remote_close();
		return NULL;
	}
	return last;
}

/* One statement on the remote (after the batch in flight has landed). */
static PGresult *
remote_query(const char *sql, int n, const char *const *values, const int *lengths,
			 const int *formats, ExecStatusType want)
{
	if (flight.active && !land_flight())
		return NULL;
	if (!remote_send(sql, n, values, lengths, formats))
		return NULL;
	return remote_receive(want);
}

static ShipTable *
find_table(const char *name)
{
	ListCell   *lc;

	foreach(lc, ship_tables)
	{
		ShipTable  *t = lfirst(lc);

		if (strcmp(t->name, name) == 0)
			return t;
	}
	return NULL;
}

static void
add_head(ShipTable *t, int64 seq, const uint8 *hash)
{
	if (t->nheads == t->maxheads)
	{
		t->maxheads = Max(8, t->maxheads * 2);
		t->heads = t->heads ? repalloc(t->heads, sizeof(TvHead) * t->maxheads)
			: MemoryContextAlloc(ship_cxt, sizeof(TvHead) * t->maxheads);
	}
	t->heads[t->nheads].seq = seq;
	memcpy(t->heads[t->nheads].hash, hash, TV_HASH_LEN);
	t->nheads++;
}

static bool
hex_to_hash(const char *hex, uint8 *out)
{
	int			i;

	if (strlen(hex) != TV_HASH_LEN * 2)
		return false;
	for (i = 0; i < TV_HASH_LEN; i++)
	{
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return false;
		out[i] = (uint8) b;
	}
	return true;
}

/*
 * Where this system stands on the remote: the next batch id, and per table
 * the newest tv_seq shipped and the heads of what was shipped (from the
 * newest batch, which carries them for every table).
 */
static bool
remote_position(void)
{
	const char *params[1] = {system_id};
	PGresult   *res;
	int			i;
	ListCell   *lc;

	res = remote_query("SELECT version FROM trialvault_repo.repo_version ORDER BY version DESC LIMIT 1",
					   0, NULL, NULL, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
	{
		strlcat(ship_error, " (is this database prepared with trialvault-remote-init, and may the role read it?)",
				sizeof(ship_error));
		return false;
	}
	PQclear(res);

	res = remote_query("SELECT p.table_name, p.last_seq, p.last_batch_id FROM trialvault_repo.progress p "
					   "WHERE p.system_id = $1",
					   1, params, NULL, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
		return false;
	foreach(lc, ship_tables)
	{
		ShipTable  *t = lfirst(lc);

		t->shipped_seq = 0;
		t->nheads = 0;
		t->has_horizon = false;
	}
	next_batch_id = 1;
	for (i = 0; i < PQntuples(res); i++)
	{
		ShipTable  *t = find_table(PQgetvalue(res, i, 0));
		int64		batch = strtoi64(PQgetvalue(res, i, 2), NULL, 10);

		if (batch + 1 > next_batch_id)
			next_batch_id = batch + 1;
		if (t == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(ship_cxt);

			t = palloc0(sizeof(ShipTable));
			t->name = pstrdup(PQgetvalue(res, i, 0));
			ship_tables = lappend(ship_tables, t);
			MemoryContextSwitchTo(old);
		}
		t->shipped_seq = strtoi64(PQgetvalue(res, i, 1), NULL, 10);
	}
	PQclear(res);

	/*
	 * The heads, as the newest batch recorded them, or the newest confirmed
	 * full backup once the batches it covers are purged: [[seq, "hex"], ...]
	 * per table.
	 */
	res = remote_query("SELECT h.key, (e.value ->> 0)::bigint, e.value ->> 1 "
					   "FROM (" TV_SHIP_NEWEST_HEADS_SQL ") n, "
					   "     jsonb_each(n.heads -> 'tables') h, jsonb_array_elements(h.value) e",
					   1, params, NULL, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
		return false;
	for (i = 0; i < PQntuples(res); i++)
	{
		ShipTable  *t = find_table(PQgetvalue(res, i, 0));
		uint8		hash[TV_HASH_LEN];

		if (t && hex_to_hash(PQgetvalue(res, i, 2), hash))
			add_head(t, strtoi64(PQgetvalue(res, i, 1), NULL, 10), hash);
	}
	PQclear(res);
	position_known = true;
	return true;
}

/* ---------------------------------------------------------------------
 * Building a batch (in a local transaction)
 * ---------------------------------------------------------------------
 */

typedef struct Batch
{
	ShipTable  *table;
	int			nrows;
	int64		first_seq;
	int64		last_seq;
	bytea	   *ciphertext;
	uint8		sha256[TV_HASH_LEN];
	char	   *heads;			/* JSON, signed */
	char	   *signature;		/* hex, or NULL without a server key */
	TvHead	   *new_heads;		/* the table's heads once it is shipped */
	int			nnew_heads;
	bool		more;			/* rows up to the horizon are left */
} Batch;

static char *
read_public_key(void)
{
	FILE	   *f;
	StringInfoData buf;
	char		chunk[4096];
	size_t		n;

	f = AllocateFile(tv_backup_public_key_file, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("cannot read the backup public key file \"%s\": %m",
						tv_backup_public_key_file),
				 errhint("Set trialvault.backup_public_key_file to an ASCII-armored OpenPGP public key readable by the server.")));
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
	{
		if (buf.len + n > 1024 * 1024)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the backup public key file \"%s\" is larger than 1 MB",
							tv_backup_public_key_file)));
		appendBinaryStringInfo(&buf, chunk, n);
	}
	FreeFile(f);
	if (strstr(buf.data, "-----BEGIN PGP PUBLIC KEY BLOCK-----") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the backup public key file \"%s\" holds no ASCII-armored OpenPGP public key",
						tv_backup_public_key_file),
				 errhint("Export it with gpg --armor --export; see docs/backups.md.")));
	return buf.data;
}

static const char *
find_pgcrypto(void)
{
	if (pgcrypto_schema == NULL)
	{
		if (SPI_execute("SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e"
						" JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
						" WHERE e.extname = 'pgcrypto'", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look pgcrypto up");
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("pgcrypto is not installed in this database")));
		pgcrypto_schema = MemoryContextStrdup(ship_cxt,
											  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	}
	return pgcrypto_schema;
}

static void
append_heads_json(StringInfo buf, int64 batch_id, const char *table, Batch *b)
{
	ListCell   *lc;
	bool		first = true;

	appendStringInfo(buf, "{\"system_id\": ");
	escape_json(buf, system_id);
	appendStringInfo(buf, ", \"batch_id\": " INT64_FORMAT ", \"table\": ", batch_id);
	escape_json(buf, table);
	appendStringInfoString(buf, ", \"tables\": {");
	foreach(lc, ship_tables)
	{
		ShipTable  *t = lfirst(lc);
		TvHead	   *heads = t == b->table ? b->new_heads : t->heads;
		int			n = t == b->table ? b->nnew_heads : t->nheads;
		int			i;

		if (n == 0)
			continue;
		if (!first)
			appendStringInfoString(buf, ", ");
		first = false;
		escape_json(buf, t->name);
		appendStringInfoString(buf, ": [");
		for (i = 0; i < n; i++)
		{
			char		hex[TV_HASH_LEN * 2 + 1];

			tv_hex(heads[i].hash, TV_HASH_LEN, hex);
			appendStringInfo(buf, "%s[" INT64_FORMAT ", \"%s\"]", i ? ", " : "",
							 heads[i].seq, hex);
		}
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoString(buf, "}}");
}

/* Rows of one table, sealed: one OpenPGP message and its SHA-256. */
typedef struct Sealed
{
	int			nrows;
	int64		first_seq;
	int64		last_seq;
	bytea	   *ciphertext;
	uint8		sha256[TV_HASH_LEN];
} Sealed;

/*
 * Encrypt a document (a bytea whose data is the JSON text) to key with
 * pgcrypto, AES-256 and zlib at level 1 (scans hardly compress), and take
 * the SHA-256 of the ciphertext.  pgp_pub_encrypt_bytea is called through
 * fmgr rather than a query: a batch is megabytes, and every pass through
 * the executor (parameter, result tuple, copy out of SPI) copied it once
 * more into freshly faulted memory.  In a transaction with SPI; the
 * ciphertext lives in cxt.
 */
static void
seal_document(bytea *plain, const char *key, MemoryContext cxt, Sealed *out)
{
	const char *pgc = find_pgcrypto();
	Oid			encrypt;
	bytea	   *dearmored;
	bool		isnull;
	MemoryContext old;
	EVP_MD_CTX *ctx;

	if (SPI_execute_with_args(psprintf("SELECT '%s.pgp_pub_encrypt_bytea(bytea, bytea, text)'"
									   "::pg_catalog.regprocedure::pg_catalog.oid, %s.dearmor($1)",
									   pgc, pgc),
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(key)},
							  NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look up pgp_pub_encrypt_bytea");
	encrypt = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	dearmored = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

	old = MemoryContextSwitchTo(cxt);
	out->ciphertext = DatumGetByteaP(OidFunctionCall3(encrypt, PointerGetDatum(plain),
													  PointerGetDatum(dearmored),
													  CStringGetTextDatum("cipher-algo=aes256, compress-algo=1, compress-level=1")));
	MemoryContextSwitchTo(old);
	ctx = tv_sha_begin(TV_SHA_CONTENT);
	tv_sha_update(ctx, VARDATA(out->ciphertext), VARSIZE(out->ciphertext) - VARHDRSZ);
	tv_sha_end(ctx, out->sha256);
}

/* A document's JSON text, begun: a varlena header to fill in, and the heading. */
static void
begin_document(StringInfo doc, const char *format, const char *table)
{
	initStringInfo(doc);
	appendBinaryStringInfo(doc, "\0\0\0\0", VARHDRSZ);
	appendStringInfoString(doc, "{\"format\": ");
	escape_json(doc, format);
	appendStringInfoString(doc, ", \"table\": ");
	if (table)
		escape_json(doc, table);
	else
		appendStringInfoString(doc, "null");
}

/* The document closed, as a bytea of its JSON text (no copy). */
static bytea *
end_document(StringInfo doc)
{
	appendStringInfoString(doc, "]}");
	SET_VARSIZE(doc->data, doc->len);
	return (bytea *) doc->data;
}

/*
 * Seal the rows of a table after tv_seq lo, up to upto, as far as
 * batch_rows rows or 16 MB of their JSON go: one JSON document of the given
 * format (json_populate_recordset takes the rows back), encrypted to key.
 * The rows come from a cursor, each one row_to_json() appended to the
 * document as it arrives, so one pass both sizes the batch and builds it.
 * The JSON is made above the ORDER BY: a sort below it would carry every
 * row detoasted (and spill it to disk) where it now carries TOAST pointers.
 * false when there is no row in the range.  In a transaction with SPI; the
 * result lives in cxt.
 */
static bool
seal_rows(const char *name, int64 lo, int64 upto, const char *format, const char *key,
		  MemoryContext cxt, Sealed *out)
{
	Datum		args[2];
	Oid			types[2] = {INT8OID, INT8OID};
	StringInfoData doc;
	Portal		portal;
	bool		full = false;
	bool		isnull;

	memset(out, 0, sizeof(*out));
	begin_document(&doc, format, name);
	appendStringInfoString(&doc, ", \"columns\": ");
	if (SPI_execute_with_args("SELECT pg_catalog.json_agg(pg_catalog.json_build_object("
							  " 'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod),"
							  " 'not_null', a.attnotnull) ORDER BY a.attnum)::pg_catalog.text"
							  " FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::pg_catalog.regclass"
							  " AND a.attnum > 0 AND NOT a.attisdropped",
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)},
							  NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the columns of %s", name);
	appendStringInfoString(&doc, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	appendStringInfoString(&doc, ", \"rows\": [");

	args[0] = Int64GetDatum(lo);
	args[1] = Int64GetDatum(upto);
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT s.tv_seq, pg_catalog.row_to_json(s) FROM"
												" (SELECT * FROM %s r WHERE r.tv_seq > $1 AND r.tv_seq <= $2"
												"  ORDER BY r.tv_seq LIMIT %d) s",
												name, tv_backup_batch_rows),
									   2, types, args, NULL, true, 0);
	while (!full)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, 64);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed && !full; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			int64		seq = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
			text	   *row = DatumGetTextPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));

			/* A single row larger than the limit still goes, alone. */
			if (out->nrows > 0 && doc.len + VARSIZE_ANY_EXHDR(row) > TV_SHIP_BATCH_BYTES)
			{
				full = true;
				break;
			}
			if (out->nrows > 0)
				appendStringInfoString(&doc, ", ");
			appendBinaryStringInfo(&doc, VARDATA_ANY(row), VARSIZE_ANY_EXHDR(row));
			if (out->nrows++ == 0)
				out->first_seq = seq;
			out->last_seq = seq;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	if (out->nrows == 0)
	{
		pfree(doc.data);
		return false;
	}
	seal_document(end_document(&doc), key, cxt, out);
	pfree(doc.data);
	return true;
}

/*
 * The heads JSON in the form the repository gives back (jsonb's own text,
 * the same for the same value everywhere), and its signature by this
 * server's key (hex; NULL without a key).  In a transaction with SPI.
 */
static void
sign_heads(const char *json, MemoryContext cxt, char **heads, char **signature)
{
	MemoryContext old;

	if (SPI_execute_with_args("SELECT $1::pg_catalog.jsonb::pg_catalog.text", 1, (Oid[]) {TEXTOID},
							  (Datum[]) {CStringGetTextDatum(json)}, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not put chain heads in jsonb form");
	old = MemoryContextSwitchTo(cxt);
	*heads = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*signature = NULL;
	if (tv_have_server_key())
	{
		bytea	   *sig = tv_server_sign((uint8 *) *heads, strlen(*heads));
		char	   *hex = palloc(2 * (VARSIZE(sig) - VARHDRSZ) + 1);

		tv_hex((uint8 *) VARDATA(sig), VARSIZE(sig) - VARHDRSZ, hex);
		*signature = hex;
	}
	MemoryContextSwitchTo(old);
}

/*
 * The next batch of one table, up to its horizon, and the heads of the
 * shipped chain once it is there.  Runs in a transaction of its own; the
 * result lives in cxt (the new heads in ship_cxt).
 */
static bool
build_batch(ShipTable *t, const char *key, Batch *b, MemoryContext cxt)
{
	Datum		args[2];
	Oid			types[2] = {INT8OID, INT8OID};
	Sealed		sealed;
	bool		isnull;
	uint64		i;
	int			j;
	StringInfoData heads;

	memset(b, 0, sizeof(*b));
	b->table = t;
	if (!seal_rows(t->name, t->shipped_seq, t->horizon, "trialvault-batch-1", key, cxt, &sealed))
	{
		/* Nothing committed up to the horizon beyond what is shipped. */
		t->shipped_seq = t->horizon;
		return false;
	}
	b->nrows = sealed.nrows;
	b->first_seq = sealed.first_seq;
	b->last_seq = sealed.last_seq;
	b->ciphertext = sealed.ciphertext;
	memcpy(b->sha256, sealed.sha256, TV_HASH_LEN);
	b->more = b->last_seq < t->horizon;
	args[0] = Int64GetDatum(t->shipped_seq);
	args[1] = Int64GetDatum(b->last_seq);

	/* The heads of the shipped chain, this batch's rows included. */
	if (SPI_execute_with_args(psprintf("SELECT r.tv_seq, r.tv_prev_seqs, r.tv_hash FROM %s r"
									   " WHERE r.tv_seq > $1 AND r.tv_seq <= $2 ORDER BY r.tv_seq",
									   t->name),
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the chain of %s", t->name);
	b->nnew_heads = t->nheads;
	b->new_heads = MemoryContextAlloc(ship_cxt, sizeof(TvHead) * (t->nheads + SPI_processed + 1));
	if (t->nheads > 0)
		memcpy(b->new_heads, t->heads, sizeof(TvHead) * t->nheads);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		ArrayType  *prev = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull));
		bytea	   *hash = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));
		Datum	   *elems;
		bool	   *enulls;
		int			nelems;
		int			k;

		deconstruct_array(prev, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &elems, &enulls, &nelems);
		for (k = 0; k < nelems; k++)
			for (j = 0; j < b->nnew_heads; j++)
				if (b->new_heads[j].seq == DatumGetInt64(elems[k]))
				{
					b->new_heads[j] = b->new_heads[--b->nnew_heads];
					break;
				}
		b->new_heads[b->nnew_heads].seq = seq;
		if (VARSIZE_ANY_EXHDR(hash) == TV_HASH_LEN)
			memcpy(b->new_heads[b->nnew_heads].hash, VARDATA_ANY(hash), TV_HASH_LEN);
		else
			memset(b->new_heads[b->nnew_heads].hash, 0, TV_HASH_LEN);
		b->nnew_heads++;
	}

	initStringInfo(&heads);
	append_heads_json(&heads, next_batch_id, t->name, b);
	sign_heads(heads.data, cxt, &b->heads, &b->signature);
	return true;
}

/*
 * Send a batch: it is in flight until land_flight() hears the remote's
 * answer.  The previous one must have landed.
 */
static bool
send_batch(Batch *b)
{
	char		batch_id[32];
	char		first[32];
	char		last[32];
	char		nrows[16];
	const char *values[11];
	int			lengths[11] = {0};
	int			formats[11] = {0};

	snprintf(batch_id, sizeof(batch_id), INT64_FORMAT, next_batch_id);
	snprintf(first, sizeof(first), INT64_FORMAT, b->first_seq);
	snprintf(last, sizeof(last), INT64_FORMAT, b->last_seq);
	snprintf(nrows, sizeof(nrows), "%d", b->nrows);
	values[0] = system_id;
	values[1] = batch_id;
	values[2] = b->table->name;
	values[3] = first;
	values[4] = last;
	values[5] = nrows;
	values[6] = timestamptz_to_str(GetCurrentTimestamp());
	values[7] = (const char *) b->sha256;
	lengths[7] = TV_HASH_LEN;
	formats[7] = 1;
	values[8] = VARDATA(b->ciphertext);
	lengths[8] = VARSIZE(b->ciphertext) - VARHDRSZ;
	formats[8] = 1;
	values[9] = b->heads;
	values[10] = b->signature;
	Assert(!flight.active);
	if (!remote_send("INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq,"
					 " last_seq, row_count, created_at, sha256, ciphertext, heads, heads_signature)"
					 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
					 11, values, lengths, formats))
		return false;
	flight.active = true;
	flight.table = b->table;
	flight.nrows = b->nrows;
	flight.bytes = VARSIZE(b->ciphertext) - VARHDRSZ;
	flight.shipped_to = b->more ? b->last_seq : b->table->horizon;
	flight.more = b->more;
	flight.horizon_at = b->table->horizon_at;
	return true;
}

/* ---------------------------------------------------------------------
 * One round: which tables, which horizons, which batches
 * ---------------------------------------------------------------------
 */

/* The protected tables of this database, as "schema"."table". */
static void
list_tables(void)
{
	ListCell   *lc;
	uint64		i;

	foreach(lc, ship_tables)
		((ShipTable *) lfirst(lc))->seen = false;
	if (SPI_execute(TV_SHIP_TABLES_SQL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the protected tables");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		ShipTable  *t = find_table(name);

		if (t == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(ship_cxt);

			t = palloc0(sizeof(ShipTable));
			t->name = pstrdup(name);
			ship_tables = lappend(ship_tables, t);
			MemoryContextSwitchTo(old);
		}
		t->relid = relid;
		t->seen = true;
	}
}

/*
 * Take a new horizon for a table: the newest committed tv_seq, and the
 * transactions that may still hold a lower one (see the file header).
 */
static void
take_horizon(ShipTable *t)
{
	LOCKTAG		tag;
	VirtualTransactionId *w;
	int			n = 0;
	bool		isnull;
	int64		newest;

	if (SPI_execute(psprintf("SELECT max(tv_seq) FROM %s", t->name), true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the newest row of %s", t->name);
	newest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || newest <= t->shipped_seq)
	{
		LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
		{
			TvShipTable *e = status_entry(t->relid, true);

			if (e)
				e->synced_at = GetCurrentTimestamp();
		}
		LWLockRelease(&tv_ship->lock);
		return;
	}
	/* After the read above, not before: see the file header. */
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, t->relid);
	w = GetLockConflicts(&tag, ShareLock, &n);
	if (t->writers)
		pfree(t->writers);
	t->writers = MemoryContextAlloc(ship_cxt, sizeof(VirtualTransactionId) * (n + 1));
	memcpy(t->writers, w, sizeof(VirtualTransactionId) * (n + 1));
	t->horizon = newest;
	t->horizon_at = GetCurrentTimestamp();
	t->has_horizon = true;
	if (t->pending_since == 0)
		t->pending_since = t->horizon_at;
}

/* Have all the writers of a horizon ended? */
static bool
writers_gone(ShipTable *t)
{
	VirtualTransactionId *v;

	int			keep = 0;

	/* Those that have ended are not asked about again. */
	for (v = t->writers; VirtualTransactionIdIsValid(*v); v++)
		if (!VirtualXactLock(*v, false))
			t->writers[keep++] = *v;
	SetInvalidVirtualTransactionId(t->writers[keep]);
	return keep == 0;
}

/* The table's position once the batch sent lands: the next is built from here. */
static void
advance(ShipTable *t, Batch *b)
{
	t->shipped_seq = b->more ? b->last_seq : t->horizon;
	if (t->heads)
		pfree(t->heads);
	t->heads = b->new_heads;
	t->nheads = b->nnew_heads;
	t->maxheads = b->nnew_heads;
	b->new_heads = NULL;
	next_batch_id++;
	if (!b->more)
	{
		t->has_horizon = false;
		t->pending_since = 0;
	}
}

/*
 * Hear the remote's answer to the batch in flight, and count it shipped.
 * false with ship_error set and the connection closed when it was not
 * committed: the shipper, having moved on (advance()), reads its position
 * back from the remote before it ships again.
 */
static bool
land_flight(void)
{
	PGresult   *res;
	TvShipTable *e;
	TimestampTz now;

	if (!flight.active)
		return true;
	res = remote_receive(PGRES_COMMAND_OK);
	flight.active = false;
	if (res == NULL)
	{
		remote_close();
		return false;
	}
	PQclear(res);

	now = GetCurrentTimestamp();
	LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
	e = status_entry(flight.table->relid, true);
	if (e)
	{
		e->shipped_seq = flight.shipped_to;
		e->shipped_rows += flight.nrows;
		e->batches++;
		e->bytes += flight.bytes;
		e->last_success = now;
		e->last_error[0] = '\0';
		if (!flight.more)
			e->synced_at = flight.horizon_at;
	}
	my_db->last_success = now;
	my_db->last_error[0] = '\0';
	LWLockRelease(&tv_ship->lock);
	clear_error(flight.table);
	return true;
}

/* Client backends running a statement now, other than this process. */
static int
running_backends(void)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			running = 0;
	int			i;

	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);

		if (l && l->backendStatus.st_backendType == B_BACKEND &&
			l->backendStatus.st_procpid != MyProcPid &&
			l->backendStatus.st_state == STATE_RUNNING)
			running++;
	}
	pgstat_clear_backend_activity_snapshot();
	return running;
}

/*
 * Is the server busy: more client backends running statements than the
 * machine has CPUs, over a few samples 5 ms apart?  (More, not as many: a
 * shipper catching up slows the backends down and so keeps them running
 * longer, and at as many it would take that for a busy server and stop
 * itself.)  The shipper's work per
 * row (JSON, zlib, AES, the remote's copy) is a good part of an insert's,
 * and even a niced process slows the backends of a small machine (shared
 * caches, a hypervisor's cores), so on a saturated server it holds its
 * rows back rather than take that from the backends (backup_max_defer).
 */
static bool
server_busy(void)
{
	static int	ncpus = 0;
	int			sum = 0;
	int			i;

	if (ncpus == 0)
	{
		long		n = sysconf(_SC_NPROCESSORS_ONLN);

		ncpus = n > 0 ? (int) n : 1;
	}
	for (i = 0; i < 5; i++)
	{
		int			running = running_backends();

		/* The common case, an idle or moderately loaded server, in one look. */
		if (i == 0 && running <= ncpus)
			return false;
		sum += running;
		if (i < 4)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 5, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	return sum > 5 * ncpus;
}

/*
 * Hold a table's rows back this round?  Only while the server is busy, and
 * only until the oldest of them has waited backup_max_defer.
 */
static bool
defer_table(ShipTable *t, int *busy)
{
	if (tv_backup_max_defer == 0 || t->pending_since == 0 ||
		TimestampDifferenceExceeds(t->pending_since, GetCurrentTimestamp(),
								   tv_backup_max_defer * 1000))
		return false;
	if (*busy < 0)
		*busy = server_busy() ? 1 : 0;
	return *busy == 1;
}

/*
 * Run a step in a local transaction of its own, with SPI and a snapshot.
 * Returns the step's result, or -1 after an error, which is recorded for
 * the table (or the shipper, table NULL) and does not end the shipper.
 */
typedef struct LocalStep LocalStep;
struct LocalStep
{
	int			(*fn) (LocalStep *step);
	ShipTable  *table;
	const char *key;
	MemoryContext cxt;			/* for what the step returns */
	Batch	   *batch;			/* build_batch_step */
	char	   *key_out;		/* horizons_step */
	int64		lo;				/* seal_step: the rows after lo, up to upto */
	int64		upto;
	Sealed		sealed;
	const char *text;			/* heads_step: the JSON to sign */
	char	   *heads;
	char	   *signature;
};

static int
local_step(LocalStep *step)
{
	volatile int result = 0;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		result = step->fn(step);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(step->cxt);
		ed = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		note_error(step->table, "%s", ed->message);
		FreeErrorData(ed);
		result = -1;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(step->cxt);
	return result;
}

/*
 * The public key, read again every round (a new file needs no reload), and
 * its key ID.  A key that changes under the same setting, the file
 * rewritten in place, would otherwise go unseen: it is recorded in the
 * security trail like a changed setting (durably, before anything is
 * encrypted to it) and logged, as is the key each shipper starts with.  The
 * key ID last seen is kept in shared memory, so that a shipper restarted
 * (killed, or after an error) still compares with it.  In a transaction
 * with SPI.
 */
static char *
current_public_key(MemoryContext cxt)
{
	static bool announced = false;
	char	   *key_id = my_db->key_id;
	const char *pgc = find_pgcrypto();
	char	   *key = read_public_key();
	char	   *id;

	if (SPI_execute_with_args(psprintf("SELECT %s.pgp_key_id(%s.dearmor($1))", pgc, pgc),
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(key)},
							  NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the key ID of the backup public key");
	id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (id == NULL)
		id = "";
	if (key_id[0] == '\0' || strcmp(key_id, id) == 0)
	{
		if (!announced)
			ereport(LOG,
					(errmsg("trialvault backup shipper: backups are encrypted to OpenPGP key ID %s (\"%s\")",
							id, tv_backup_public_key_file)));
	}
	else
	{
		TvLogRecord rec;

		tv_log_setting_changed(&rec,
							   psprintf("the OpenPGP key that trialvault.backup_public_key_file (%s) holds changed from key ID %s to %s: "
										"new backups are encrypted to %s",
										tv_backup_public_key_file, key_id, id, id));
		tv_log_submit(&rec);
		ereport(LOG,
				(errmsg("trialvault backup shipper: the backup public key changed from key ID %s to %s",
						key_id, id),
				 errdetail("The key file is \"%s\"; new backups are encrypted to the new key.",
						   tv_backup_public_key_file)));
	}
	strlcpy(my_db->key_id, id, sizeof(my_db->key_id));
	announced = true;
	return MemoryContextStrdup(cxt, key);
}

/* Which tables, their horizons, and the key (read once a round, so a new file needs no reload). */
static int
horizons_step(LocalStep *step)
{
	ListCell   *lc;

	list_tables();
	foreach(lc, ship_tables)
	{
		ShipTable  *t = lfirst(lc);

		if (t->seen && !t->has_horizon)
			take_horizon(t);
	}
	step->key_out = current_public_key(step->cxt);
	return 0;
}

static int
build_batch_step(LocalStep *step)
{
	return build_batch(step->table, step->key, step->batch, step->cxt) ? 1 : 0;
}

/*
 * One round over the tables.  Returns -1 after a failure, 1 when a batch
 * was cut short (go again at once), 0 when everything up to the horizons
 * is shipped.
 */
static int
ship_round(void)
{
	MemoryContext round_cxt = CurrentMemoryContext;
	ListCell   *lc;
	LocalStep	step = {0};
	bool		again = false;
	int			busy = -1;		/* server_busy(), once asked */

	/* Which tables, and their horizons (all in one transaction). */
	step.cxt = round_cxt;
	step.fn = horizons_step;
	if (local_step(&step) < 0)
		return -1;
	step.key = step.key_out;
	step.fn = build_batch_step;

	foreach(lc, ship_tables)
	{
		ShipTable  *t = lfirst(lc);
		Batch		b;
		int			built;

		if (!t->seen || !t->has_horizon || !writers_gone(t))
			continue;
		if (defer_table(t, &busy))
			continue;
		CHECK_FOR_INTERRUPTS();
		step.table = t;
		step.batch = &b;
		/* Built while the remote stores the batch in flight. */
		built = local_step(&step);
		if (!land_flight())
		{
			note_error(NULL, "%s", ship_error);
			return -1;
		}
		if (built < 0)
			return -1;
		if (!built)
		{
			t->has_horizon = false;
			continue;
		}
		if (!send_batch(&b))
		{
			pfree(b.new_heads);
			note_error(NULL, "%s", ship_error);
			return -1;
		}
		advance(t, &b);
		if (b.more)
			again = true;
	}

	/*
	 * With more to ship, the batch in flight lands in the next round, after
	 * that round's horizons are taken; otherwise now, so that a round that
	 * finds nothing more to do ends with everything answered.
	 */
	if (!again && !land_flight())
	{
		note_error(NULL, "%s", ship_error);
		return -1;
	}
	return again ? 1 : 0;
}

/* ---------------------------------------------------------------------
 * Full backups (trialvault.full_backup(), pg_cron), and the purge
 * ---------------------------------------------------------------------
 */

static int
seal_step(LocalStep *step)
{
	if (step->table == NULL)
	{
		/* No protected row at all: one empty document, so the backup has a chunk. */
		StringInfoData doc;

		begin_document(&doc, "trialvault-full-1", NULL);
		appendStringInfoString(&doc, ", \"rows\": [");
		memset(&step->sealed, 0, sizeof(step->sealed));
		seal_document(end_document(&doc), step->key, step->cxt, &step->sealed);
		return 1;
	}
	return seal_rows(step->table->name, step->lo, step->upto, "trialvault-full-1", step->key,
					 step->cxt, &step->sealed) ? 1 : 0;
}

static int
key_step(LocalStep *step)
{
	step->key_out = current_public_key(step->cxt);
	return 0;
}

static int
heads_step(LocalStep *step)
{
	sign_heads(step->text, step->cxt, &step->heads, &step->signature);
	return 0;
}

/* A file for the chunks until the manifest is known: gone when closed. */
static FILE *
chunk_file(void)
{
	char		dir[MAXPGPATH];
	char	   *path;
	FILE	   *f;

	snprintf(dir, sizeof(dir), "base/%s", PG_TEMP_FILES_DIR);
	(void) MakePGDirectory(dir);
	path = psprintf("%s/%strialvault_full.%d", dir, PG_TEMP_FILE_PREFIX, MyProcPid);
	f = fopen(path, "w+b");
	if (f)
		unlink(path);
	else
		snprintf(ship_error, sizeof(ship_error), "cannot create a temporary file for a full backup: %m");
	return f;
}

/* Keep a sealed chunk in the file, and its SHA-256 for the manifest. */
static bool
keep_chunk(FILE *f, const Sealed *sealed, StringInfo chunks, int nchunks)
{
	uint32		len = VARSIZE(sealed->ciphertext) - VARHDRSZ;
	char		hex[TV_HASH_LEN * 2 + 1];

	if (fwrite(&len, sizeof(len), 1, f) != 1 ||
		fwrite(VARDATA(sealed->ciphertext), 1, len, f) != len)
	{
		snprintf(ship_error, sizeof(ship_error), "cannot write a full backup's temporary file: %m");
		return false;
	}
	tv_hex(sealed->sha256, TV_HASH_LEN, hex);
	appendStringInfo(chunks, "%s\"%s\"", nchunks ? ", " : "", hex);
	return true;
}

/*
 * One full backup: every protected row shipped so far (each table up to its
 * shipped tv_seq, which the batches up to covers_batch_id hold), in
 * encrypted chunks, with a manifest; sent, confirmed and followed by the
 * purge in one remote transaction each.  Returns the backup id, or 0 after
 * a failure (ship_error says why).
 */
static int64
full_backup_now(MemoryContext cxt)
{
	LocalStep	step = {0};
	FILE	   *f;
	StringInfoData manifest;
	StringInfoData tables;
	StringInfoData chunks;
	StringInfoData heads;
	int			nchunks = 0;
	int64		nrows = 0;
	int64		backup_id;
	int64		covers = next_batch_id - 1;
	ListCell   *lc;
	PGresult   *res;
	const char *params[5];
	int			lengths[5] = {0};
	int			formats[5] = {0};
	char		idbuf[32];
	char		coversbuf[32];
	char		nbuf[32];
	char	   *started = pstrdup(timestamptz_to_str(GetCurrentTimestamp()));
	bool		first_table = true;
	Batch		none = {0};
	int			i;

	params[0] = system_id;
	res = remote_query("SELECT coalesce(max(backup_id), 0) + 1 FROM trialvault_repo.full_backups WHERE system_id = $1",
					   1, params, NULL, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
		return 0;
	backup_id = strtoi64(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);

	step.cxt = cxt;
	step.fn = key_step;
	if (local_step(&step) < 0)
	{
		strlcpy(ship_error, my_db->last_error, sizeof(ship_error));
		return 0;
	}
	step.key = step.key_out;
	if ((f = chunk_file()) == NULL)
		return 0;

	initStringInfo(&tables);
	initStringInfo(&chunks);
	step.fn = seal_step;
	foreach(lc, ship_tables)
	{
		ShipTable  *t = lfirst(lc);
		int			first_chunk = nchunks + 1;
		int64		rows = 0;

		if (!t->seen || t->shipped_seq <= 0)
			continue;
		step.table = t;
		step.lo = 0;
		step.upto = t->shipped_seq;
		for (;;)
		{
			int			rc = local_step(&step);

			if (rc < 0)
			{
				fclose(f);
				strlcpy(ship_error, "a full backup could not read its rows (backup_status shows the table's error)",
						sizeof(ship_error));
				return 0;
			}
			if (rc == 0)
				break;
			if (!keep_chunk(f, &step.sealed, &chunks, nchunks))
			{
				fclose(f);
				return 0;
			}
			nchunks++;
			rows += step.sealed.nrows;
			step.lo = step.sealed.last_seq;
			pfree(step.sealed.ciphertext);
			CHECK_FOR_INTERRUPTS();
		}
		if (!first_table)
			appendStringInfoString(&tables, ", ");
		first_table = false;
		escape_json(&tables, t->name);
		appendStringInfo(&tables, ": {\"rows\": " INT64_FORMAT ", \"last_seq\": " INT64_FORMAT
						 ", \"first_chunk\": %d, \"last_chunk\": %d}",
						 rows, t->shipped_seq, first_chunk, nchunks);
		nrows += rows;
	}
	if (nchunks == 0)
	{
		step.table = NULL;
		if (local_step(&step) < 0)
		{
			fclose(f);
			strlcpy(ship_error, my_db->last_error, sizeof(ship_error));
			return 0;
		}
		if (!keep_chunk(f, &step.sealed, &chunks, 0))
		{
			fclose(f);
			return 0;
		}
		nchunks = 1;
	}

	/* The manifest, with the shipped heads, signed as a batch's are. */
	initStringInfo(&heads);
	append_heads_json(&heads, covers, "", &none);
	step.fn = heads_step;
	step.table = NULL;
	step.text = heads.data;
	if (local_step(&step) < 0)
	{
		fclose(f);
		strlcpy(ship_error, my_db->last_error, sizeof(ship_error));
		return 0;
	}
	initStringInfo(&manifest);
	appendStringInfoString(&manifest, "{\"format\": \"trialvault-full-1\", \"system_id\": ");
	escape_json(&manifest, system_id);
	appendStringInfo(&manifest, ", \"backup_id\": " INT64_FORMAT ", \"covers_batch_id\": " INT64_FORMAT
					 ", \"rows\": " INT64_FORMAT ", \"tables\": {%s}, \"chunks\": [%s], \"heads\": %s, \"heads_signature\": ",
					 backup_id, covers, nrows, tables.data, chunks.data, step.heads);
	if (step.signature)
		escape_json(&manifest, step.signature);
	else
		appendStringInfoString(&manifest, "null");
	appendStringInfoChar(&manifest, '}');

	/* One remote transaction: the backup, its chunks, its confirmation. */
	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, backup_id);
	snprintf(coversbuf, sizeof(coversbuf), INT64_FORMAT, covers);
	snprintf(nbuf, sizeof(nbuf), "%d", nchunks);
	if ((res = remote_query("BEGIN", 0, NULL, NULL, NULL, PGRES_COMMAND_OK)) == NULL)
	{
		fclose(f);
		return 0;
	}
	PQclear(res);
	params[1] = idbuf;
	params[2] = started;
	params[3] = coversbuf;
	params[4] = nbuf;
	res = remote_query("INSERT INTO trialvault_repo.full_backups (system_id, backup_id, started_at, covers_batch_id, chunks, manifest)"
					   " VALUES ($1, $2, $3, $4, $5, $6)",
					   6, (const char *[]) {system_id, idbuf, started, coversbuf, nbuf, manifest.data},
					   NULL, NULL, PGRES_COMMAND_OK);
	if (res == NULL)
	{
		fclose(f);
		return 0;
	}
	PQclear(res);
	rewind(f);
	for (i = 1; i <= nchunks; i++)
	{
		uint32		len;
		char	   *data;
		uint8		sha[TV_HASH_LEN];
		char		chunk_no[16];
		EVP_MD_CTX *ctx;

		if (fread(&len, sizeof(len), 1, f) != 1)
		{
			snprintf(ship_error, sizeof(ship_error), "cannot read a full backup's temporary file back");
			fclose(f);
			remote_close();
			return 0;
		}
		data = palloc(len);
		if (fread(data, 1, len, f) != len)
		{
			snprintf(ship_error, sizeof(ship_error), "cannot read a full backup's temporary file back");
			fclose(f);
			remote_close();
			return 0;
		}
		ctx = tv_sha_begin(TV_SHA_CONTENT);
		tv_sha_update(ctx, data, len);
		tv_sha_end(ctx, sha);
		snprintf(chunk_no, sizeof(chunk_no), "%d", i);
		params[0] = system_id;
		params[1] = idbuf;
		params[2] = chunk_no;
		params[3] = (const char *) sha;
		lengths[3] = TV_HASH_LEN;
		formats[3] = 1;
		params[4] = data;
		lengths[4] = len;
		formats[4] = 1;
		res = remote_query("INSERT INTO trialvault_repo.backup_chunks (system_id, backup_id, chunk_no, sha256, data)"
						   " VALUES ($1, $2, $3, $4, $5)", 5, params, lengths, formats, PGRES_COMMAND_OK);
		pfree(data);
		if (res == NULL)
		{
			fclose(f);
			return 0;
		}
		PQclear(res);
		CHECK_FOR_INTERRUPTS();
	}
	fclose(f);
	res = remote_query("SELECT trialvault_repo.confirm_full_backup($1, $2)", 2,
					   (const char *[]) {system_id, idbuf}, NULL, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
		return 0;
	PQclear(res);
	if ((res = remote_query("COMMIT", 0, NULL, NULL, NULL, PGRES_COMMAND_OK)) == NULL)
		return 0;
	PQclear(res);

	/* What the confirmed backup covers is redundant now. */
	snprintf(nbuf, sizeof(nbuf), "%d", tv_backup_retention);
	res = remote_query("SELECT batches_purged, backups_purged FROM trialvault_repo.purge($1, $2)", 2,
					   (const char *[]) {system_id, nbuf}, NULL, NULL, PGRES_TUPLES_OK);
	ereport(LOG,
			(errmsg("trialvault full backup " INT64_FORMAT " of system \"%s\" confirmed: %d chunk(s), " INT64_FORMAT " row(s), covering batches up to " INT64_FORMAT,
					backup_id, system_id, nchunks, nrows, covers),
			 res ? errdetail("The repository purged %s batch(es) and %s full backup(s) beyond the retention of %d.",
							 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), tv_backup_retention) :
			 errdetail("The purge failed: %s", ship_error)));
	if (res)
		PQclear(res);
	return backup_id;
}

/*
 * Serve a full_backup() request, if there is one, and wake whoever waits.
 * When the shipper cannot ship (can_run false: the remote is down, the key
 * unreadable), the request fails at once rather than wait for a fix.
 */
static void
serve_full_backup(MemoryContext cxt, bool can_run)
{
	uint64		request;
	int64		id = 0;

	LWLockAcquire(&tv_ship->lock, LW_SHARED);
	request = my_db->full_requested;
	LWLockRelease(&tv_ship->lock);
	if (request <= my_db->full_done)
		return;
	if (can_run)
	{
		id = full_backup_now(cxt);
		if (id == 0)
			note_error(NULL, "full backup failed: %s", ship_error);
	}
	LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
	my_db->full_done = request;
	my_db->full_backup_id = id;
	my_db->full_ok = id != 0;
	LWLockRelease(&tv_ship->lock);
	ConditionVariableBroadcast(&my_db->full_cv);
}

/* ---------------------------------------------------------------------
 * The shipper of one database
 * ---------------------------------------------------------------------
 */

static void
shipper_exit(int code, Datum arg)
{
	remote_close();
	if (my_db)
	{
		LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
		my_db->pid = 0;
		LWLockRelease(&tv_ship->lock);
	}
}

static void
claim_db_slot(void)
{
	int			i;
	TvShipDb   *free_slot = NULL;

	LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
	for (i = 0; i < TV_SHIP_MAX_DBS; i++)
	{
		if (tv_ship->dbs[i].dbid == MyDatabaseId)
		{
			my_db = &tv_ship->dbs[i];
			break;
		}
		if (tv_ship->dbs[i].dbid == InvalidOid && free_slot == NULL)
			free_slot = &tv_ship->dbs[i];
	}
	if (my_db == NULL && free_slot)
	{
		my_db = free_slot;
		my_db->dbid = MyDatabaseId;
		my_db->last_success = 0;
		my_db->last_error[0] = '\0';
		my_db->key_id[0] = '\0';
	}
	if (my_db)
	{
		my_db->pid = MyProcPid;
		my_db->latch = MyLatch;
		my_db->started_at = GetCurrentTimestamp();
		strlcpy(my_db->system_id, system_id, sizeof(my_db->system_id));
	}
	LWLockRelease(&tv_ship->lock);
	if (my_db == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("trialvault ships the protected tables of at most %d databases", TV_SHIP_MAX_DBS)));
}

/* <system id>.<database>: the database by name when the name fits. */
static void
make_system_id(const char *dbname)
{
	char		sys[41];
	const char *p;
	bool		plain = strlen(dbname) <= 23;

	if (tv_backup_system_id && tv_backup_system_id[0])
		strlcpy(sys, tv_backup_system_id, sizeof(sys));
	else
		snprintf(sys, sizeof(sys), UINT64_FORMAT, GetSystemIdentifier());
	for (p = dbname; *p && plain; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
			plain = false;
	if (plain && dbname[0])
		snprintf(system_id, sizeof(system_id), "%s.%s", sys, dbname);
	else
		snprintf(system_id, sizeof(system_id), "%s.db%u", sys, MyDatabaseId);
}

void
tv_shipper_main(Datum arg)
{
	Oid			dbid = DatumGetObjectId(arg);
	bool		has_extension;
	int			backoff = 0;
	MemoryContext round_cxt;
	char	   *conninfo;
	char	   *dbname;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "trialvault backup shipper", PGC_SUSET, PGC_S_OVERRIDE);
	/* What the rows look like as JSON must not depend on postgresql.conf. */
	SetConfigOption("DateStyle", "ISO, YMD", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("bytea_output", "hex", PGC_SUSET, PGC_S_OVERRIDE);

	StartTransactionCommand();
	has_extension = OidIsValid(get_extension_oid("trialvault", true));
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	make_system_id(dbname);
	CommitTransactionCommand();
	if (!has_extension)
		proc_exit(0);

	/* Below the backends: never slow local writes for the sake of a backup. */
	errno = 0;
	if (setpriority(PRIO_PROCESS, 0, tv_backup_nice) != 0 && errno != 0)
		ereport(LOG,
				(errmsg("trialvault backup shipper could not lower its priority: %m")));
#ifdef __GLIBC__

	/*
	 * A batch passes through a few buffers of megabytes.  glibc would map
	 * each afresh and unmap it when freed, so every batch page-faulted its
	 * megabytes in again (a third of the shipper's time in a profile); kept
	 * in the heap, they are reused.  The shipper keeps some 100 MB at most.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
#endif

	ship_cxt = AllocSetContextCreate(TopMemoryContext, "trialvault shipper",
									 ALLOCSET_DEFAULT_SIZES);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "trialvault shipper round",
									  ALLOCSET_DEFAULT_SIZES);
	claim_db_slot();
	before_shmem_exit(shipper_exit, (Datum) 0);
	conninfo = MemoryContextStrdup(ship_cxt, tv_backup_conninfo);
	ereport(LOG,
			(errmsg("trialvault backup shipper started for database \"%s\" as system \"%s\"",
					dbname, system_id)));

	for (;;)
	{
		int			rc = 0;
		long		wait;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!shipping_configured())
			{
				ereport(LOG,
						(errmsg("trialvault backup shipper stopping: backups are no longer configured")));
				proc_exit(0);
			}
			if (strcmp(conninfo, tv_backup_conninfo) != 0)
			{
				remote_close();
				pfree(conninfo);
				conninfo = MemoryContextStrdup(ship_cxt, tv_backup_conninfo);
			}
		}
		if (!shipping_configured())
			proc_exit(0);

		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		if (remote == NULL && !remote_connect())
			rc = -1;
		if (rc == 0 && !position_known && !remote_position())
			rc = -1;
		if (rc < 0)
			note_error(NULL, "%s", ship_error);
		else
			rc = ship_round();
		/* A full backup once everything up to the horizons is shipped. */
		if (rc <= 0)
			serve_full_backup(round_cxt, rc == 0);
		MemoryContextSwitchTo(TopMemoryContext);

		if (rc < 0)
		{
			backoff = backoff == 0 ? 1000 : Min(backoff * 2, TV_SHIP_BACKOFF_MAX);
			wait = backoff;
		}
		else
		{
			backoff = 0;
			if (rc == 0)
				clear_error(NULL);
			wait = rc > 0 ? 0 : tv_backup_naptime;
		}
		pgstat_report_stat(false);
		if (wait > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait, PG_WAIT_EXTENSION);
	}
}

/* ---------------------------------------------------------------------
 * trialvault.backup_status()
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(tv_backup_status);

/*
 * One row per protected table of this database: what is shipped, what is
 * left (counted here), and the newest error, the table's own or the
 * shipper's.
 */
Datum
tv_backup_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TvShipDb	db;
	bool		running = false;
	TimestampTz now = GetCurrentTimestamp();
	uint64		i;
	int			k;
	SPITupleTable *tables;
	uint64		ntables;
	TvAsOwner	as;

	if (tv_ship == NULL)
		tv_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	memset(&db, 0, sizeof(db));
	LWLockAcquire(&tv_ship->lock, LW_SHARED);
	for (k = 0; k < TV_SHIP_MAX_DBS; k++)
		if (tv_ship->dbs[k].dbid == MyDatabaseId)
		{
			db = tv_ship->dbs[k];
			running = db.pid != 0;
		}
	LWLockRelease(&tv_ship->lock);

	/* As the extension's owner: the caller need not read the tables. */
	tv_owner_spi_begin(&as);
	if (SPI_execute(TV_SHIP_TABLES_SQL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the protected tables");
	tables = SPI_tuptable;
	ntables = SPI_processed;
	for (i = 0; i < ntables; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(tables->vals[i], tables->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(tables->vals[i], tables->tupdesc, 2);
		TvShipTable e;
		bool		known = false;
		Datum		values[8];
		bool		nulls[8] = {0};
		int64		lag;
		const char *error;

		memset(&e, 0, sizeof(e));
		LWLockAcquire(&tv_ship->lock, LW_SHARED);
		for (k = 0; k < tv_ship->ntables; k++)
			if (tv_ship->tables[k].dbid == MyDatabaseId && tv_ship->tables[k].relid == relid)
			{
				e = tv_ship->tables[k];
				known = true;
			}
		LWLockRelease(&tv_ship->lock);

		if (SPI_execute_with_args(psprintf("SELECT count(*) FROM %s WHERE tv_seq > $1", name),
								  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(e.shipped_seq)},
								  NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not count the rows of %s", name);
		lag = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		if (!shipping_configured())
			error = "backups are not configured: set trialvault.backup_conninfo and trialvault.backup_public_key_file";
		else if (known && e.last_error[0])
			error = e.last_error;
		else if (db.last_error[0])
			error = db.last_error;
		else if (!running)
			error = "no backup shipper is running for this database";
		else
			error = NULL;

		values[0] = ObjectIdGetDatum(relid);
		values[1] = Int64GetDatum(e.shipped_rows);
		values[2] = Int64GetDatum(lag);
		if (lag == 0)
			values[3] = Float8GetDatum(0.0);
		else if (known && e.synced_at)
			values[3] = Float8GetDatum((double) (now - e.synced_at) / USECS_PER_SEC);
		else if (db.started_at)
			values[3] = Float8GetDatum((double) (now - db.started_at) / USECS_PER_SEC);
		else
			nulls[3] = true;
		values[4] = TimestampTzGetDatum(e.last_success);
		nulls[4] = !known || e.last_success == 0;
		if (error)
			values[5] = CStringGetTextDatum(error);
		else
			nulls[5] = true;
		values[6] = Int64GetDatum(e.batches);
		values[7] = Int64GetDatum(e.bytes);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	tv_owner_spi_end(&as);
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * trialvault.verify_against_remote()
 * ---------------------------------------------------------------------
 */

/* Does sig sign msg with this server's key, or one it signed with before? */
static bool
heads_signed(const char *msg, const char *sighex)
{
	bytea	   *m;
	bytea	   *sig;
	uint64		i;

	if (sighex == NULL)
		return false;
	m = tv_bytea(msg, strlen(msg));
	sig = DatumGetByteaPP(DirectFunctionCall2(binary_decode, CStringGetTextDatum(sighex),
											  CStringGetTextDatum("hex")));
	if (tv_have_server_key() && tv_server_signed(m, sig))
		return true;
	if (SPI_execute("SELECT public_key, fingerprint FROM trialvault.server_keys", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the server keys");
	for (i = 0; i < SPI_processed; i++)
		if (tv_signed_by(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2), m, sig))
			return true;
	return false;
}

/*
 * The newest batch of this system that carries heads, from the remote:
 * its id, the heads and their signature (NULLs when there is none).
 */
static void
newest_heads(char **batch_id, char **heads, char **signature)
{
	*batch_id = *heads = *signature = NULL;
	PG_TRY();
	{
		const char *params[1] = {system_id};
		PGresult   *res;

		if (!remote_connect())
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s", ship_error)));
		res = remote_query("SELECT n.id, n.heads::text, n.signature FROM (" TV_SHIP_NEWEST_HEADS_SQL ") n",
						   1, params, NULL, NULL, PGRES_TUPLES_OK);
		if (res == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s", ship_error)));
		if (PQntuples(res) == 1)
		{
			*batch_id = pstrdup(PQgetvalue(res, 0, 0));
			*heads = pstrdup(PQgetvalue(res, 0, 1));
			if (!PQgetisnull(res, 0, 2))
				*signature = pstrdup(PQgetvalue(res, 0, 2));
		}
		PQclear(res);
	}
	PG_CATCH();
	{
		remote_close();
		PG_RE_THROW();
	}
	PG_END_TRY();
	remote_close();
}

PG_FUNCTION_INFO_V1(tv_verify_against_remote);

/*
 * trialvault.verify_against_remote(): one row per protected table of this
 * database, and per table shipped from it that is no longer one here:
 * whether the local chain still holds what was shipped.  The newest batch
 * carries the heads of every table's shipped chain, signed by this server;
 * each head must still be there with the same tv_hash, and the chain must
 * verify.  A head's hash covers every row before it, so a shipped row
 * rewritten, even consistently (hashes recomputed), cannot pass.
 */
Datum
tv_verify_against_remote(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *batch_id = NULL;
	char	   *heads = NULL;
	char	   *signature = NULL;
	bool		sig_ok;
	TvAsOwner	as;
	SPITupleTable *local;
	uint64		nlocal;
	SPITupleTable *shipped_heads;
	uint64		nheads;
	uint64		i;
	uint64		k;
	bool		system_ok;

	if (tv_ship == NULL)
		tv_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	if (!tv_backup_conninfo || !tv_backup_conninfo[0])
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backups are not configured"),
				 errhint("Set trialvault.backup_conninfo to the remote repository; see docs/backups.md.")));
	make_system_id(get_database_name(MyDatabaseId));

	newest_heads(&batch_id, &heads, &signature);

	tv_owner_spi_begin(&as);
	sig_ok = heads && heads_signed(heads, signature);
	if (SPI_execute(TV_SHIP_TABLES_SQL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the protected tables");
	local = SPI_tuptable;
	nlocal = SPI_processed;
	if (SPI_execute_with_args("SELECT h.key, (e.value ->> 0)::int8, e.value ->> 1,"
							  " ($1::jsonb ->> 'system_id') = $2 AND ($1::jsonb ->> 'batch_id') = $3"
							  " FROM jsonb_each(coalesce($1::jsonb -> 'tables', '{}')) h,"
							  " jsonb_array_elements(h.value) e ORDER BY 1, 2",
							  3, (Oid[]) {TEXTOID, TEXTOID, TEXTOID},
							  (Datum[]) {CStringGetTextDatum(heads ? heads : "{}"),
								  CStringGetTextDatum(system_id),
								  CStringGetTextDatum(batch_id ? batch_id : "0")},
							  NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the shipped heads");
	shipped_heads = SPI_tuptable;
	nheads = SPI_processed;
	system_ok = true;
	for (k = 0; k < nheads; k++)
		if (strcmp(SPI_getvalue(shipped_heads->vals[k], shipped_heads->tupdesc, 4), "t") != 0)
			system_ok = false;

	/* The local tables, then those shipped that are no longer here. */
	for (i = 0; i < nlocal + nheads; i++)
	{
		char	   *name;
		int			nmine = 0;
		int64		newest = 0;
		StringInfoData detail;
		bool		ok = true;
		Datum		values[3];
		bool		nulls[3] = {0};

		initStringInfo(&detail);
		if (i < nlocal)
			name = SPI_getvalue(local->vals[i], local->tupdesc, 2);
		else
		{
			uint64		j;
			bool		is_local = false;

			name = SPI_getvalue(shipped_heads->vals[i - nlocal], shipped_heads->tupdesc, 1);
			/* Once per table: the first of its heads. */
			if (i > nlocal && strcmp(name, SPI_getvalue(shipped_heads->vals[i - nlocal - 1],
														 shipped_heads->tupdesc, 1)) == 0)
				continue;
			for (j = 0; j < nlocal; j++)
				if (strcmp(name, SPI_getvalue(local->vals[j], local->tupdesc, 2)) == 0)
					is_local = true;
			if (is_local)
				continue;
			values[0] = CStringGetTextDatum(name);
			values[1] = BoolGetDatum(false);
			values[2] = CStringGetTextDatum(psprintf("shipped (newest batch %s) but no longer a protected table here",
													 batch_id));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			continue;
		}

		for (k = 0; k < nheads && ok; k++)
		{
			int64		seq;
			char	   *hash;
			char	   *have;
			bool		isnull;

			if (strcmp(name, SPI_getvalue(shipped_heads->vals[k], shipped_heads->tupdesc, 1)) != 0)
				continue;
			seq = DatumGetInt64(SPI_getbinval(shipped_heads->vals[k], shipped_heads->tupdesc, 2, &isnull));
			hash = SPI_getvalue(shipped_heads->vals[k], shipped_heads->tupdesc, 3);
			nmine++;
			newest = Max(newest, seq);
			/* SPI_execute replaces SPI_tuptable, not the tables kept above. */
			if (SPI_execute_with_args(psprintf("SELECT pg_catalog.encode(tv_hash, 'hex') FROM %s WHERE tv_seq = $1", name),
									  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(seq)},
									  NULL, true, 2) != SPI_OK_SELECT)
				elog(ERROR, "could not read %s", name);
			have = SPI_processed == 1 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
			if (have == NULL)
			{
				ok = false;
				appendStringInfo(&detail, "row tv_seq=" INT64_FORMAT ", shipped, is missing here", seq);
			}
			else if (strcmp(have, hash) != 0)
			{
				ok = false;
				appendStringInfo(&detail, "row tv_seq=" INT64_FORMAT " differs from what was shipped (it was rewritten after it was shipped)", seq);
			}
		}
		if (ok && nmine > 0)
		{
			if (SPI_execute(psprintf("SELECT v.ok, v.first_bad FROM trialvault.verify(%s) v",
									 quote_literal_cstr(name)), true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not verify %s", name);
			if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") != 0)
			{
				ok = false;
				appendStringInfo(&detail, "the local chain does not verify: %s",
								 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
			}
		}
		if (ok && nmine > 0 && (!sig_ok || !system_ok))
		{
			ok = false;
			appendStringInfo(&detail, "the heads in batch %s are not signed by this server's key%s",
							 batch_id, system_ok ? "" : " for this system and batch");
		}
		if (ok && nmine > 0)
			appendStringInfo(&detail, "the %d shipped head(s), up to tv_seq " INT64_FORMAT ", are unchanged here and the chain verifies (newest batch %s, signed)",
							 nmine, newest, batch_id);
		else if (ok)
			appendStringInfoString(&detail, "nothing of it has been shipped yet: nothing to compare");
		values[0] = CStringGetTextDatum(name);
		values[1] = BoolGetDatum(ok);
		values[2] = CStringGetTextDatum(detail.data);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	tv_owner_spi_end(&as);
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * trialvault.full_backup()
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(tv_full_backup);

/*
 * Ask this database's shipper for a full backup and wait for it (the
 * caller can cancel the wait; statement_timeout applies): the backup id
 * and whether it was confirmed by the repository.  The shipper first
 * ships everything up to its horizons, so the backup covers every batch
 * sent before it.
 */
Datum
tv_full_backup(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	TvShipDb   *db = NULL;
	uint64		request;
	int64		id = 0;
	bool		ok = false;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			k;

	if (tv_ship == NULL)
		tv_require_preload();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	LWLockAcquire(&tv_ship->lock, LW_EXCLUSIVE);
	for (k = 0; k < TV_SHIP_MAX_DBS; k++)
		if (tv_ship->dbs[k].dbid == MyDatabaseId && tv_ship->dbs[k].pid != 0)
			db = &tv_ship->dbs[k];
	if (db == NULL || !shipping_configured())
	{
		LWLockRelease(&tv_ship->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no backup shipper is running for this database"),
				 errdetail("%s", !shipping_configured() ?
						   "Backups are not configured." :
						   "The backup launcher starts one within seconds of the configuration, and again after a failure."),
				 errhint("Set trialvault.backup_conninfo and trialvault.backup_public_key_file; trialvault.backup_status shows why nothing ships.")));
	}
	request = ++db->full_requested;
	SetLatch(db->latch);
	LWLockRelease(&tv_ship->lock);

	ConditionVariablePrepareToSleep(&db->full_cv);
	for (;;)
	{
		bool		done;
		bool		gone;

		LWLockAcquire(&tv_ship->lock, LW_SHARED);
		done = db->full_done >= request;
		gone = db->pid == 0 || db->dbid != MyDatabaseId;
		if (done)
		{
			id = db->full_backup_id;
			ok = db->full_ok;
		}
		LWLockRelease(&tv_ship->lock);
		if (done || gone)
			break;
		(void) ConditionVariableTimedSleep(&db->full_cv, 1000, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();

	values[0] = Int64GetDatum(id);
	nulls[0] = (id == 0);
	values[1] = BoolGetDatum(ok);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
