/*-------------------------------------------------------------------------
 *
 * trialvault.c
 *		Module entry point: each component's Init (which defines its settings
 *		and installs its hooks), and the shared memory they need.
 *
 * trialvault must be loaded through shared_preload_libraries: the chain
 * state lives in shared memory and the guards are hooks that must be in
 * place in every backend before any protected table is touched.  Loading the
 * library any other way (CREATE EXTENSION without the preload, LOAD) leaves
 * it inert, and trialvault._require_preload() makes CREATE EXTENSION fail
 * with a hint naming the setting.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/guc.h"

#include "trialvault.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

bool		tv_loaded_at_preload = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
tv_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(tv_chain_shmem_size());
	RequestAddinShmemSpace(tv_log_shmem_size());
	RequestAddinShmemSpace(tv_lockout_shmem_size());
	RequestAddinShmemSpace(tv_auth_shmem_size());
	RequestAddinShmemSpace(tv_ship_shmem_size());
	RequestAddinShmemSpace(tv_factor_shmem_size());
	RequestNamedLWLockTranche("trialvault", 1);
	RequestNamedLWLockTranche("trialvault_log", 1);
	RequestNamedLWLockTranche("trialvault_lockout", 1);
	RequestNamedLWLockTranche("trialvault_password_history", 1);
}

static void
tv_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	tv_chain_shmem_init();
	tv_log_shmem_init();
	tv_lockout_shmem_init();
	tv_auth_shmem_init();
	tv_ship_shmem_init();
	tv_factor_shmem_init();
}

void
_PG_init(void)
{
	/*
	 * The guard hooks go in however the library was loaded: if it has been
	 * taken out of shared_preload_libraries, a backend that loads it (say,
	 * through the guard trigger) still refuses DDL on protected tables.  The
	 * chain state needs shared memory, so INSERTs are refused then, and
	 * verify() reports the missing preload.
	 */
	tv_guard_init();
	tv_ddlguard_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	/* Each component defines its own settings. */
	tv_chain_init();
	tv_verify_init();
	tv_xmldoc_init();
	tv_crypto_init();
	tv_certify_init();
	tv_auth_init();
	tv_login_init();
	tv_lockout_init();
	tv_accounts_init();
	tv_factor_init();
	tv_log_init();
	tv_ship_init();
	MarkGUCPrefixReserved("trialvault");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = tv_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = tv_shmem_startup;

	tv_loaded_at_preload = true;
}

/*
 * tv_require_preload: refuse to do anything unless the library was loaded
 * through shared_preload_libraries, because without the hooks the guards
 * would be missing in some backends.
 */
void
tv_require_preload(void)
{
	if (!tv_loaded_at_preload)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trialvault must be loaded via shared_preload_libraries"),
				 errdetail("The guards and the chain state of trialvault live in shared memory and hooks that are only installed at server start."),
				 errhint("Add trialvault to shared_preload_libraries in postgresql.conf and restart the server.")));
}

PG_FUNCTION_INFO_V1(tv_require_preload_sql);

/*
 * trialvault._require_preload(): called first by the install script.
 */
Datum
tv_require_preload_sql(PG_FUNCTION_ARGS)
{
	tv_require_preload();
	if (tv_in_own_script())
		tv_refuse_event_triggers("installing trialvault");
	PG_RETURN_VOID();
}

/*
 * tv_require_schema: refuse when this database's trialvault objects are not
 * those of this library's version: the library was upgraded and ALTER
 * EXTENSION trialvault UPDATE has not run yet.  Entry points that rely on
 * SQL objects of the current version call it (the older objects would fail
 * them halfway, or the older views ask for what no longer exists).  Once
 * the versions match they keep matching for the life of the backend (there
 * are no downgrade scripts), so only a mismatch is looked up again: one
 * catalog scan per call of open_document cost it several per cent.
 */
void
tv_require_schema(void)
{
	static bool matches = false;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	if (matches)
		return;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("trialvault"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (version == NULL || strcmp(version, TV_EXTVERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trialvault's objects in this database are version %s, its library is version %s",
						version ? version : "(none)", TV_EXTVERSION),
				 errhint("Run ALTER EXTENSION trialvault UPDATE.")));
	matches = true;
}
