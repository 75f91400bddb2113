/*-------------------------------------------------------------------------
 *
 * protect.c
 *		trialvault.protect(regclass): make a table insert-only and
 *		hash-chained.
 *
 * protect() adds the chain columns, chains the rows already present (in
 * physical order, each to the one before), and only then installs the
 * guard triggers, ENABLE ALWAYS.  It runs under an AccessExclusiveLock, so
 * nobody inserts while existing rows are being chained.  Calling it on a
 * table that is already protected does nothing.  A table that has the chain
 * columns but has lost its guard triggers is refused while it holds rows:
 * re-chaining would launder whatever was done to it while unguarded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/catalog.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "trialvault.h"

/*
 * Refuse relations that cannot be protected, with a reason a DBA can act on.
 */
static void
check_protectable(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	switch (rel->rd_rel->relkind)
	{
		case RELKIND_RELATION:
			break;
		case RELKIND_PARTITIONED_TABLE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot protect partitioned table \"%s\"", name),
					 errdetail("A partitioned table holds no rows itself."),
					 errhint("Protect each partition instead.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("cannot protect \"%s\": it is not a table", name),
					 errdetail("Only ordinary tables can be made insert-only and hash-chained.")));
	}
	if (rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot protect \"%s\": it is a partition", name),
				 errdetail("The chain columns cannot be added to a single partition, and partitioned tables are not supported."),
				 errhint("Protect an ordinary table; use inheritance rather than partitioning to split a protected table.")));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot protect temporary table \"%s\"", name),
				 errdetail("A temporary table and its rows disappear at the end of the session.")));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot protect unlogged table \"%s\"", name),
				 errdetail("Crash recovery empties unlogged tables."),
				 errhint("Make it a logged table first: ALTER TABLE %s SET LOGGED.", name)));
	if (IsCatalogRelation(rel))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot protect system catalog \"%s\"", name)));
	if (!pg_class_ownercheck(RelationGetRelid(rel), GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, name);
}

static void
spi_exec(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc < 0)
		elog(ERROR, "trialvault: SPI_execute failed (%d): %s", rc, sql);
}

/*
 * Chain the rows a table already holds, in physical order.  Returns how
 * many rows were chained.
 */
static int64
chain_existing_rows(Relation rel, const char *qname)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	TvChainCols cols;
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext rowcxt;
	MemoryContext old;
	ItemPointerData *tids = NULL;
	uint8	   *digests = NULL;
	int64		n = 0;
	int64		cap = 0;
	int64		i;
	SPIPlanPtr	plan;
	Oid			argtypes[5] = {INT8OID, INT8ARRAYOID, BYTEAOID, BYTEAOID, TIDOID};
	TvHead		prev;
	char	   *sql;

	if (!tv_find_chain_cols(tupdesc, &cols))
		elog(ERROR, "trialvault: chain columns missing after ALTER TABLE");

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault protect row",
								   ALLOCSET_DEFAULT_SIZES);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		HeapTuple	tup;
		bool		shouldfree;

		CHECK_FOR_INTERRUPTS();
		if (n == cap)
		{
			cap = Max(1024, cap * 2);
			if (tids == NULL)
			{
				tids = MemoryContextAllocHuge(CurrentMemoryContext, cap * sizeof(ItemPointerData));
				digests = MemoryContextAllocHuge(CurrentMemoryContext, cap * TV_HASH_LEN);
			}
			else
			{
				tids = repalloc_huge(tids, cap * sizeof(ItemPointerData));
				digests = repalloc_huge(digests, cap * TV_HASH_LEN);
			}
		}
		old = MemoryContextSwitchTo(rowcxt);
		tup = ExecFetchSlotHeapTuple(slot, false, &shouldfree);
		tv_row_content_digest(tupdesc, tup, &cols, digests + n * TV_HASH_LEN,
							  TV_DIGEST_INSERT);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
		tids[n] = slot->tts_tid;
		n++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);

	if (n == 0)
		return 0;

	sql = psprintf("UPDATE %s SET %s = $1, %s = $2, %s = $3, %s = $4 "
				   "WHERE ctid OPERATOR(pg_catalog.=) $5",
				   qname, TV_COL_SEQ, TV_COL_PREV_SEQS, TV_COL_PREV_HASH, TV_COL_HASH);
	plan = SPI_prepare(sql, 5, argtypes);
	if (plan == NULL)
		elog(ERROR, "trialvault: SPI_prepare failed: %s", sql);

	for (i = 0; i < n; i++)
	{
		Datum		values[5];
		uint8		prevdigest[TV_HASH_LEN];
		uint8		hash[TV_HASH_LEN];
		Datum		refdatum;
		int64		seq = i + 1;

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(rowcxt);
		tv_prev_digest(&prev, i == 0 ? 0 : 1, prevdigest);
		tv_row_hash(seq, prevdigest, digests + i * TV_HASH_LEN, hash);

		refdatum = Int64GetDatum(seq - 1);

		values[0] = Int64GetDatum(seq);
		values[1] = PointerGetDatum(construct_array(&refdatum, i == 0 ? 0 : 1,
													INT8OID, 8, FLOAT8PASSBYVAL,
													TYPALIGN_DOUBLE));
		values[2] = PointerGetDatum(tv_hash_bytea(prevdigest));
		values[3] = PointerGetDatum(tv_hash_bytea(hash));
		values[4] = PointerGetDatum(&tids[i]);
		if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE ||
			SPI_processed != 1)
			elog(ERROR, "trialvault: chaining existing row %lld failed", (long long) seq);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);

		prev.seq = seq;
		memcpy(prev.hash, hash, TV_HASH_LEN);
	}
	SPI_freeplan(plan);
	MemoryContextDelete(rowcxt);
	return n;
}

static int64 protect_as_owner(Oid relid, const char *qname, bool has_cols);

PG_FUNCTION_INFO_V1(tv_protect);

/*
 * trialvault.protect(tbl regclass): see the file header.
 */
Datum
tv_protect(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	TvChainCols cols;
	char	   *qname;
	bool		has_cols;
	bool		any_col = false;
	volatile int64 chained = 0;
	int			i;
	TvAsOwner	as;

	tv_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table to protect must not be NULL")));
	relid = PG_GETARG_OID(0);

	rel = try_relation_open(relid, AccessExclusiveLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	check_protectable(rel);
	qname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									   RelationGetRelationName(rel));

	if (tv_relation_is_protected(relid))
	{
		char	   *problem = tv_guard_problem(relid);

		relation_close(rel, NoLock);
		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s is protected but its guard is damaged: %s", qname, problem),
					 errhint("Run trialvault.verify('%s') and investigate before anything else.", qname)));
		ereport(NOTICE,
				(errmsg("table %s is already protected", qname)));
		PG_RETURN_VOID();
	}

	has_cols = tv_find_chain_cols(RelationGetDescr(rel), &cols);
	for (i = 0; i < RelationGetDescr(rel)->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), i);

		if (!att->attisdropped && tv_is_chain_column(NameStr(att->attname)))
			any_col = true;
	}
	if (any_col && !has_cols)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("table %s already has a column named like a trialvault chain column", qname),
				 errdetail("Columns %s, %s, %s and %s are reserved for the chain.",
						   TV_COL_SEQ, TV_COL_PREV_SEQS, TV_COL_PREV_HASH, TV_COL_HASH),
				 errhint("Rename those columns before protecting the table.")));

	{
		char	   *problem = tv_table_problem(relid);

		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s cannot be protected: %s", qname, problem),
					 errdetail("Protected tables must not have row level security, policies, rules or unprotected inheritance children, nor be partitions."),
					 errhint("Remove them first (protect inheritance children before their parent).")));
	}
	{
		char	   *late = tv_late_before_trigger(relid, NULL, NULL);

		if (late)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("BEFORE trigger \"%s\" of table %s would fire after the chain trigger", late, qname),
					 errdetail("Triggers fire in name order; a row changed after it was hashed would fail verification."),
					 errhint("Rename the trigger so that its name sorts before \"%s\", then protect the table.",
							 TV_TRIG_CHAIN)));
	}

	/*
	 * ALTER TABLE refuses a relation this session holds open, so keep only
	 * the lock while the DDL runs.
	 */
	relation_close(rel, NoLock);

	/*
	 * The caller owns the table (checked above).  The DDL runs as the
	 * extension's owner, because attaching trialvault.guard() needs EXECUTE
	 * on it, which nobody else has: a table takes a slot of shared memory
	 * once guarded, so only protect() may guard one.
	 */
	tv_owner_spi_begin(&as);
	tv_ddl_protecting(relid);
	PG_TRY();
	{
		chained = protect_as_owner(relid, qname, has_cols);
	}
	PG_FINALLY();
	{
		tv_ddl_protecting(InvalidOid);
	}
	PG_END_TRY();
	tv_owner_spi_end(&as);
	tv_chain_forget(relid);

	ereport(NOTICE,
			(errmsg("table %s is now insert-only and hash-chained", qname),
			 chained > 0 ? errdetail("%lld existing rows were chained.", (long long) chained) : 0));
	PG_RETURN_VOID();
}

/*
 * The DDL of protect(): the chain columns, the existing rows chained, the
 * guard triggers.  Returns how many rows were chained.
 */
static int64
protect_as_owner(Oid relid, const char *qname, bool has_cols)
{
	Relation	rel;
	int64		chained = 0;
	int			i;
	static const char *const trig_sql[] = {
		"CREATE TRIGGER " TV_TRIG_STMT " BEFORE UPDATE OR DELETE OR TRUNCATE ON %s "
		"FOR EACH STATEMENT EXECUTE FUNCTION trialvault.guard()",
		"CREATE TRIGGER " TV_TRIG_ROW " BEFORE UPDATE OR DELETE ON %s "
		"FOR EACH ROW EXECUTE FUNCTION trialvault.guard()",
		"CREATE TRIGGER " TV_TRIG_CHAIN " BEFORE INSERT ON %s "
		"FOR EACH ROW EXECUTE FUNCTION trialvault.guard()",
		"ALTER TABLE %s ENABLE ALWAYS TRIGGER " TV_TRIG_STMT ", "
		"ENABLE ALWAYS TRIGGER " TV_TRIG_ROW ", "
		"ENABLE ALWAYS TRIGGER " TV_TRIG_CHAIN,
	};

	if (has_cols)
	{
		/* Chain columns without guard triggers: lost its guard somehow. */
		SPI_execute(psprintf("SELECT 1 FROM %s LIMIT 1", qname), true, 1);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s has trialvault chain columns and rows but no guard triggers", qname),
					 errdetail("Its guard was removed while it held rows; chaining it again would hide whatever happened since."),
					 errhint("Run trialvault.verify('%s') and investigate.", qname)));
	}
	else
	{
		spi_exec(psprintf("ALTER TABLE %s ADD COLUMN %s pg_catalog.int8, "
						  "ADD COLUMN %s pg_catalog.int8[], "
						  "ADD COLUMN %s pg_catalog.bytea, ADD COLUMN %s pg_catalog.bytea",
						  qname, TV_COL_SEQ, TV_COL_PREV_SEQS, TV_COL_PREV_HASH,
						  TV_COL_HASH));
		rel = table_open(relid, NoLock);
		chained = chain_existing_rows(rel, qname);
		table_close(rel, NoLock);
		spi_exec(psprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL, "
						  "ALTER COLUMN %s SET NOT NULL, ALTER COLUMN %s SET NOT NULL, "
						  "ALTER COLUMN %s SET NOT NULL",
						  qname, TV_COL_SEQ, TV_COL_PREV_SEQS, TV_COL_PREV_HASH,
						  TV_COL_HASH));
	}

	/*
	 * The rows in tv_seq order, for the backup shipper, which reads each
	 * table's new rows by range; unique, because tv_seq is.
	 */
	SPI_execute(psprintf("SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a"
						 " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
						 " WHERE i.indrelid = %u AND a.attname = '%s' AND i.indpred IS NULL",
						 relid, TV_COL_SEQ), true, 1);
	if (SPI_processed == 0)
		spi_exec(psprintf("CREATE UNIQUE INDEX ON %s (%s)", qname, TV_COL_SEQ));

	for (i = 0; i < (int) lengthof(trig_sql); i++)
		spi_exec(psprintf(trig_sql[i], qname));
	return chained;
}
