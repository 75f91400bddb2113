/*-------------------------------------------------------------------------
 *
 * guard.c
 *		The guards of protected tables: the trigger that refuses UPDATE,
 *		DELETE and TRUNCATE and chains every INSERT, what a protected table
 *		must look like, and the refusals that DDL guarding shares.
 *
 * A table is protected when it carries triggers calling trialvault.guard()
 * (C symbol tv_guard); that is the only mark, so it survives pg_dump and
 * restore like any other trigger.  Only protect() attaches the guard (and
 * a superuser restoring a dump), see ddlguard.c.  The triggers are created
 * ENABLE ALWAYS, so session_replication_role = replica does not switch them
 * off, and a statement-level trigger refuses UPDATE and DELETE even when
 * they would touch no row (and INSERT ... ON CONFLICT DO UPDATE, which fires
 * the UPDATE statement triggers too).  A row-level trigger covers updates
 * that reach the table through an inheritance parent.
 *
 * INSERT ... ON CONFLICT is refused at executor start: the chain trigger
 * runs before the executor finds the conflict, so a row skipped by DO
 * NOTHING would already have been chained to.
 *
 * What DDL may do to a protected table is decided in ddlguard.c, deny by
 * default.  Drops are decided here: a guard trigger, and so a protected
 * table, goes only while the table is empty, and a column never.
 *
 * Every refusal uses SQLSTATE 55000 (object_not_in_prerequisite_state).
 * Changes made behind these guards (catalog or page edits) are found by
 * trialvault.verify().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/partition.h"
#include "catalog/pg_language.h"
#include "catalog/pg_policy.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/plannodes.h"
#include "parser/parsetree.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "trialvault.h"

static ExecutorStart_hook_type prev_ExecutorStart = NULL;

#define GUARD_ERRCODE ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE

/*
 * Is this pg_proc OID our guard function?  Identified by what it runs
 * (language C, symbol tv_guard in the trialvault library), not by name, so
 * the answer does not depend on search_path or on a renamed function.
 */
bool
tv_is_guard_function(Oid funcoid)
{
	HeapTuple	tp;
	bool		result = false;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	if (!HeapTupleIsValid(tp))
		return false;
	if (((Form_pg_proc) GETSTRUCT(tp))->prolang == ClanguageId)
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc, &isnull);
		Datum		bin;

		if (!isnull && strcmp(TextDatumGetCString(src), TV_GUARD_SYMBOL) == 0)
		{
			bin = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_probin, &isnull);
			if (!isnull && strstr(TextDatumGetCString(bin), "trialvault") != NULL)
				result = true;
		}
	}
	ReleaseSysCache(tp);
	return result;
}

/*
 * All triggers of a relation: copies of their pg_trigger rows, in the
 * caller's memory context.
 */
static List *
relation_triggers(Oid relid)
{
	Relation	tgrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *result = NIL;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		result = lappend(result, heap_copytuple(tup));
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return result;
}

/* The guard triggers of a relation, as relation_triggers() returns them. */
static List *
guard_triggers(Oid relid)
{
	List	   *all = relation_triggers(relid);
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, all)
	{
		HeapTuple	tup = lfirst(lc);

		if (tv_is_guard_function(((Form_pg_trigger) GETSTRUCT(tup))->tgfoid))
			result = lappend(result, tup);
		else
			heap_freetuple(tup);
	}
	list_free(all);
	return result;
}

bool
tv_relation_is_protected(Oid relid)
{
	List	   *l = guard_triggers(relid);
	bool		result = (l != NIL);

	list_free_deep(l);
	return result;
}

bool
tv_is_guard_trigger_name(const char *name)
{
	return strcmp(name, TV_TRIG_STMT) == 0 ||
		strcmp(name, TV_TRIG_ROW) == 0 ||
		strcmp(name, TV_TRIG_CHAIN) == 0;
}

/*
 * tv_guard_problem: NULL when the relation carries all three guard
 * triggers, each enabled ALWAYS with the events it must catch; otherwise a
 * sentence saying what is wrong.  verify() reports it.
 */
char *
tv_guard_problem(Oid relid)
{
	List	   *l = guard_triggers(relid);
	ListCell   *lc;
	bool		have_stmt = false,
				have_row = false,
				have_chain = false;
	int16		want_stmt = TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_UPDATE |
		TRIGGER_TYPE_DELETE | TRIGGER_TYPE_TRUNCATE;
	int16		want_row = TRIGGER_TYPE_ROW | TRIGGER_TYPE_BEFORE |
		TRIGGER_TYPE_UPDATE | TRIGGER_TYPE_DELETE;
	int16		want_chain = TRIGGER_TYPE_ROW | TRIGGER_TYPE_BEFORE |
		TRIGGER_TYPE_INSERT;

	if (l == NIL)
		return pstrdup("the guard triggers are missing");

	foreach(lc, l)
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT((HeapTuple) lfirst(lc));
		const char *name = NameStr(tg->tgname);

		if (tg->tgenabled != TRIGGER_FIRES_ALWAYS)
			return psprintf("guard trigger %s is not enabled ALWAYS (tgenabled = '%c')",
							name, tg->tgenabled);
		if (strcmp(name, TV_TRIG_STMT) == 0 && tg->tgtype == want_stmt)
			have_stmt = true;
		else if (strcmp(name, TV_TRIG_ROW) == 0 && tg->tgtype == want_row)
			have_row = true;
		else if (strcmp(name, TV_TRIG_CHAIN) == 0 && tg->tgtype == want_chain)
			have_chain = true;
	}
	if (!have_stmt)
		return psprintf("guard trigger %s is missing or altered", TV_TRIG_STMT);
	if (!have_row)
		return psprintf("guard trigger %s is missing or altered", TV_TRIG_ROW);
	if (!have_chain)
		return psprintf("guard trigger %s is missing or altered", TV_TRIG_CHAIN);
	return NULL;
}

/*
 * tv_table_problem: NULL when nothing about the table itself would hide,
 * replace or add rows behind its guards; otherwise a sentence saying what.
 * The DDL guards refuse all of these; a table can have them only from
 * before 0.6 or from a catalog edit.
 */
char *
tv_table_problem(Oid relid)
{
	HeapTuple	tp;
	Form_pg_class rel;
	char	   *result = NULL;
	Relation	catalog;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		return pstrdup("the table does not exist");
	rel = (Form_pg_class) GETSTRUCT(tp);
	if (rel->relrowsecurity || rel->relforcerowsecurity)
		result = pstrdup("row level security is enabled on the table, which can hide rows from queries");
	else if (rel->relispartition)
		result = psprintf("the table is a partition of \"%s\"",
						  get_rel_name(get_partition_parent(relid, true)));
	else if (rel->relhasrules)
		result = pstrdup("the table has rules, which can redirect inserts or silence refusals");
	ReleaseSysCache(tp);
	if (result)
		return result;

	catalog = table_open(PolicyRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_policy_polrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(catalog, PolicyPolrelidPolnameIndexId, true, NULL, 1, &key);
	if (HeapTupleIsValid(systable_getnext(scan)))
		result = pstrdup("the table has row level security policies");
	systable_endscan(scan);
	table_close(catalog, AccessShareLock);
	if (result)
		return result;

	catalog = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_inherits_inhparent, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(catalog, InheritsParentIndexId, true, NULL, 1, &key);
	while (result == NULL && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Oid			child = ((Form_pg_inherits) GETSTRUCT(tup))->inhrelid;

		if (!tv_relation_is_protected(child))
			result = psprintf("inheritance child \"%s\" is not protected, and its rows show in queries of the table",
							  get_rel_name(child));
	}
	systable_endscan(scan);
	table_close(catalog, AccessShareLock);
	return result;
}

/*
 * A BEFORE ... FOR EACH ROW trigger on INSERT or UPDATE that fires after
 * the chain trigger (triggers fire in name order) could change a row after
 * it was hashed.  Returns the name of the first such trigger of the
 * relation other than the guards, or of the one named "newname" if given,
 * or NULL.
 */
char *
tv_late_before_trigger(Oid relid, const char *oldname, const char *newname)
{
	List	   *all = relation_triggers(relid);
	ListCell   *lc;
	char	   *result = NULL;

	foreach(lc, all)
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT((HeapTuple) lfirst(lc));
		const char *name = NameStr(tg->tgname);

		if (tg->tgisinternal || tv_is_guard_function(tg->tgfoid))
			continue;
		if (!TRIGGER_FOR_ROW(tg->tgtype) || !TRIGGER_FOR_BEFORE(tg->tgtype) ||
			!(TRIGGER_FOR_INSERT(tg->tgtype) || TRIGGER_FOR_UPDATE(tg->tgtype)))
			continue;
		if (oldname != NULL)
		{
			if (strcmp(name, oldname) == 0 && strcmp(newname, TV_TRIG_CHAIN) > 0)
				result = pstrdup(newname);
		}
		else if (strcmp(name, TV_TRIG_CHAIN) > 0)
			result = pstrdup(name);
		if (result)
			break;
	}
	list_free_deep(all);
	return result;
}

void
tv_refuse_late_trigger(Oid relid, const char *tgname)
{
	ereport(ERROR,
			(errcode(GUARD_ERRCODE),
			 errmsg("BEFORE INSERT trigger \"%s\" would fire after the chain trigger of protected table \"%s\"",
					tgname, get_rel_name(relid)),
			 errdetail("Triggers fire in name order; a row changed after it was hashed would fail verification."),
			 errhint("Give the trigger a name that sorts before \"%s\".", TV_TRIG_CHAIN)));
}

/* Does the relation hold at least one row visible to a fresh snapshot? */
static bool
relation_has_rows(Relation rel)
{
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snap, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		result = table_scan_getnextslot(scan, ForwardScanDirection, slot);

	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	return result;
}

/*
 * tv_refuse_protected: refuse what to protected table relid.  The refusal
 * is put on record first (protected_table_refused, through the log writer,
 * so that it outlives the statement it fails), from any database.
 */
void
tv_refuse_protected(Oid relid, const char *what, const char *hint)
{
	tv_record_refusal("protected_table_refused",
					  GetUserNameFromId(GetUserId(), false), NULL, NULL, 0,
					  psprintf("%s on %s.%s (database %s)", what,
							   get_namespace_name(get_rel_namespace(relid)),
							   get_rel_name(relid), get_database_name(MyDatabaseId)));
	ereport(ERROR,
			(errcode(GUARD_ERRCODE),
			 errmsg("%s is refused on protected table \"%s\"", what,
					get_rel_name(relid)),
			 errdetail("trialvault keeps this table insert-only and hash-chained: rows can be added, never changed or removed."),
			 hint ? errhint("%s", hint) : 0));
}

PG_FUNCTION_INFO_V1(tv_guard);

/*
 * trialvault.guard(): the trigger function of every guard trigger.
 */
Datum
tv_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TriggerEvent ev;
	Oid			relid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trialvault.guard() may only be called as a trigger")));

	ev = td->tg_event;
	relid = RelationGetRelid(td->tg_relation);

	if (TRIGGER_FIRED_BY_UPDATE(ev))
		tv_refuse_protected(relid, "UPDATE",
			   "Record a correction as a new row that refers to the one it corrects.");
	if (TRIGGER_FIRED_BY_DELETE(ev))
		tv_refuse_protected(relid, "DELETE", NULL);
	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
		tv_refuse_protected(relid, "TRUNCATE", NULL);

	if (TRIGGER_FIRED_BY_INSERT(ev) && TRIGGER_FIRED_BEFORE(ev) &&
		TRIGGER_FIRED_FOR_ROW(ev))
		PG_RETURN_POINTER(tv_chain_insert(td->tg_relation, td->tg_trigtuple));

	if (TRIGGER_FIRED_BY_INSERT(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trialvault.guard() must fire BEFORE INSERT FOR EACH ROW to chain rows")));
	PG_RETURN_NULL();
}

/*
 * A relation the guard may be attached to: a permanent table with the
 * chain columns (protect() adds them).
 */
bool
tv_relation_can_be_guarded(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TvChainCols cols;
	bool		ok = rel->rd_rel->relkind == RELKIND_RELATION &&
		rel->rd_rel->relpersistence == RELPERSISTENCE_PERMANENT &&
		tv_find_chain_cols(RelationGetDescr(rel), &cols);

	table_close(rel, AccessShareLock);
	return ok;
}

/*
 * Is a protected table among the relations an INSERT ... ON CONFLICT
 * writes to, itself or as a partition or inheritance child?
 */
static Oid
protected_target(Oid relid)
{
	ListCell   *lc;

	if (tv_relation_is_protected(relid))
		return relid;
	if (!has_subclass(relid))
		return InvalidOid;
	foreach(lc, find_all_inheritors(relid, NoLock, NULL))
	{
		if (tv_relation_is_protected(lfirst_oid(lc)))
			return lfirst_oid(lc);
	}
	return InvalidOid;
}

/*
 * Refuse INSERT ... ON CONFLICT into a protected table, wherever in the
 * statement it appears (also inside a WITH clause, also through a parent
 * table).  Only statements with an ON CONFLICT clause pay for the catalog
 * lookup.
 */
static void
check_on_conflict(PlannedStmt *ps, Plan *plan)
{
	ModifyTable *mt;
	ListCell   *lc;

	if (plan == NULL || !IsA(plan, ModifyTable))
		return;
	mt = (ModifyTable *) plan;
	if (mt->operation != CMD_INSERT || mt->onConflictAction == ONCONFLICT_NONE)
		return;
	foreach(lc, mt->resultRelations)
	{
		Oid			relid = protected_target(rt_fetch(lfirst_int(lc), ps->rtable)->relid);

		if (OidIsValid(relid))
			tv_refuse_protected(relid, "INSERT ... ON CONFLICT",
								"Use a plain INSERT. To load a row only once, catch unique_violation (23505) in a savepoint, or check for the row first.");
	}
}

static void
tv_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *ps = queryDesc->plannedstmt;

	if (!(eflags & EXEC_FLAG_EXPLAIN_ONLY) &&
		(ps->commandType == CMD_INSERT || ps->hasModifyingCTE))
	{
		ListCell   *lc;

		check_on_conflict(ps, ps->planTree);
		foreach(lc, ps->subplans)
			check_on_conflict(ps, (Plan *) lfirst(lc));
	}

	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * tv_check_drop_guarded: called for every object about to be dropped.
 * Dropping a guard trigger, however it comes about (DROP TABLE, DROP
 * SCHEMA/EXTENSION/FUNCTION ... CASCADE, DROP OWNED), is allowed only while
 * the table is empty; dropping a column of a protected table never is.
 */
void
tv_check_drop_guarded(Oid classId, Oid objectId, int subId)
{
	if (classId == TriggerRelationId)
	{
		Relation	tgrel;
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;
		Oid			relid = InvalidOid;

		tgrel = table_open(TriggerRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(objectId));
		scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
		tup = systable_getnext(scan);
		if (HeapTupleIsValid(tup) &&
			tv_is_guard_function(((Form_pg_trigger) GETSTRUCT(tup))->tgfoid))
			relid = ((Form_pg_trigger) GETSTRUCT(tup))->tgrelid;
		systable_endscan(scan);
		table_close(tgrel, AccessShareLock);

		if (OidIsValid(relid))
		{
			Relation	rel = table_open(relid, AccessShareLock);

			/*
			 * The catalog seal holds no records: it describes the extension
			 * and goes with it.
			 */
			bool		is_seal = strcmp(RelationGetRelationName(rel), "catalog_seal") == 0 &&
				RelationGetNamespace(rel) == get_namespace_oid("trialvault", true);
			bool		has_rows = rel->rd_rel->relpersistence != RELPERSISTENCE_TEMP &&
				!is_seal && relation_has_rows(rel);

			table_close(rel, AccessShareLock);
			if (has_rows)
				ereport(ERROR,
						(errcode(GUARD_ERRCODE),
						 errmsg("cannot drop protected table \"%s\" or its guard because it holds rows",
								get_rel_name(relid)),
						 errdetail("Dropping a protected table, its guard triggers, or the trialvault extension would destroy or unprotect records."),
						 errhint("Protected tables can be dropped only while they are empty.")));
			tv_chain_forget(relid);
		}
	}
	else if (classId == RelationRelationId && subId > 0)
	{
		if (tv_relation_is_protected(objectId))
			tv_refuse_protected(objectId, "DROP COLUMN", NULL);
	}
	else if (classId == RelationRelationId)
		tv_chain_forget(objectId);
}

void
tv_guard_init(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = tv_ExecutorStart;
}
