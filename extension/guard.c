/*-------------------------------------------------------------------------
 *
 * guard.c
 *		The guards of protected tables: the trigger that refuses UPDATE,
 *		DELETE and TRUNCATE and chains every INSERT, and the hooks that
 *		refuse DDL which would change, hide or destroy stored rows.
 *
 * A table is protected when it carries triggers calling trialvault.guard()
 * (C symbol tv_guard); that is the only mark, so it survives pg_dump and
 * restore like any other trigger.  The triggers are created ENABLE ALWAYS,
 * so session_replication_role = replica does not switch them off, and a
 * statement-level trigger refuses UPDATE and DELETE even when they would
 * touch no row (and INSERT ... ON CONFLICT DO UPDATE, which fires the
 * UPDATE statement triggers too).  A row-level trigger covers updates that
 * reach the table through an inheritance or partition parent.
 *
 * What a trigger cannot see is refused in ProcessUtility (disabling or
 * dropping the triggers, dropping, retyping or renaming columns, ADD COLUMN
 * with a default that would rewrite existing rows, SET UNLOGGED) and in the
 * object-access hook (any drop, however cascaded, that would take the guard
 * of a table that still holds rows: DROP TABLE, DROP SCHEMA ... CASCADE,
 * DROP EXTENSION trialvault CASCADE, DROP OWNED).
 *
 * INSERT ... ON CONFLICT is refused at executor start: the chain trigger
 * runs before the executor finds the conflict, so a row skipped by DO
 * NOTHING would already have been chained to.
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
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
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

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

#define GUARD_ERRCODE ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE

/*
 * Is this pg_proc OID our guard function?  Identified by what it runs
 * (language C, symbol tv_guard in the trialvault library), not by name, so
 * the answer does not depend on search_path or on a renamed function.
 */
static bool
is_guard_function(Oid funcoid)
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

		if (is_guard_function(((Form_pg_trigger) GETSTRUCT(tup))->tgfoid))
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

static bool
is_guard_trigger_name(const char *name)
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
 * tv_find_chain_cols: find the chain columns of a relation; false unless
 * all four exist with the right types.
 */
bool
tv_find_chain_cols(TupleDesc tupdesc, TvChainCols *cols)
{
	int			i;

	memset(cols, 0, sizeof(*cols));
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (strcmp(name, TV_COL_SEQ) == 0 && att->atttypid == INT8OID)
			cols->seq = att->attnum;
		else if (strcmp(name, TV_COL_PREV_SEQS) == 0 && att->atttypid == INT8ARRAYOID)
			cols->prev_seqs = att->attnum;
		else if (strcmp(name, TV_COL_PREV_HASH) == 0 && att->atttypid == BYTEAOID)
			cols->prev_hash = att->attnum;
		else if (strcmp(name, TV_COL_HASH) == 0 && att->atttypid == BYTEAOID)
			cols->hash = att->attnum;
	}
	return cols->seq && cols->prev_seqs && cols->prev_hash && cols->hash;
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

		if (tg->tgisinternal || is_guard_function(tg->tgfoid))
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

static void
refuse_late_trigger(Oid relid, const char *tgname)
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

static void
refuse(Oid relid, const char *what, const char *hint)
{
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
		refuse(relid, "UPDATE",
			   "Record a correction as a new row that refers to the one it corrects.");
	if (TRIGGER_FIRED_BY_DELETE(ev))
		refuse(relid, "DELETE", NULL);
	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
		refuse(relid, "TRUNCATE", NULL);

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
 * The relations an ALTER TABLE reaches: the named one and, unless ONLY was
 * given, its inheritance children and partitions.
 */
static List *
reached_relations(RangeVar *rv)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	if (!OidIsValid(relid))
		return NIL;
	if (rv->inh)
		return find_all_inheritors(relid, NoLock, NULL);
	return list_make1_oid(relid);
}

static Oid
first_protected(List *relids)
{
	ListCell   *lc;

	foreach(lc, relids)
	{
		if (tv_relation_is_protected(lfirst_oid(lc)))
			return lfirst_oid(lc);
	}
	return InvalidOid;
}

static bool
coldef_has_default(ColumnDef *def)
{
	ListCell   *lc;

	if (def->raw_default || def->cooked_default || def->identity)
		return true;
	foreach(lc, def->constraints)
	{
		Constraint *c = lfirst(lc);

		if (c->contype == CONSTR_DEFAULT || c->contype == CONSTR_IDENTITY)
			return true;
	}
	return false;
}

static void
check_alter_table(AlterTableStmt *stmt)
{
	ListCell   *lc;
	Oid			relid;

	if (stmt->objtype != OBJECT_TABLE)
		return;
	relid = first_protected(reached_relations(stmt->relation));
	if (!OidIsValid(relid))
		return;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);

		switch (cmd->subtype)
		{
			case AT_DropColumn:
				refuse(relid, "DROP COLUMN", NULL);
				break;
			case AT_AlterColumnType:
				refuse(relid, "ALTER COLUMN ... TYPE", NULL);
				break;
			case AT_DropExpression:
				refuse(relid, "ALTER COLUMN ... DROP EXPRESSION", NULL);
				break;
			case AT_AddColumn:
			case AT_AddColumnRecurse:
				if (cmd->def && IsA(cmd->def, ColumnDef) &&
					coldef_has_default((ColumnDef *) cmd->def))
					refuse(relid, "ADD COLUMN with a default",
						   "Add the column without a default, then set the default with ALTER COLUMN ... SET DEFAULT; existing rows keep NULL.");
				break;
			case AT_SetUnLogged:
				refuse(relid, "SET UNLOGGED",
					   "Unlogged tables are emptied by crash recovery.");
				break;
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				refuse(relid, "enabling or disabling all triggers",
					   "Name the triggers to enable or disable; the guard triggers stay ENABLE ALWAYS.");
				break;
			case AT_EnableTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
				if (cmd->name && is_guard_trigger_name(cmd->name))
					refuse(relid, "changing when a guard trigger fires", NULL);
				break;
			default:
				break;
		}
	}
}

static void
check_rename(RenameStmt *stmt)
{
	Oid			relid;

	switch (stmt->renameType)
	{
		case OBJECT_COLUMN:
			relid = first_protected(reached_relations(stmt->relation));
			if (OidIsValid(relid))
				refuse(relid, "RENAME COLUMN",
					   "Column names are part of each row's hash.");
			break;
		case OBJECT_TRIGGER:
			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
			if (!OidIsValid(relid) || stmt->subname == NULL ||
				!tv_relation_is_protected(relid))
				break;
			if (is_guard_trigger_name(stmt->subname))
				refuse(relid, "renaming a guard trigger", NULL);
			if (tv_late_before_trigger(relid, stmt->subname, stmt->newname))
				refuse_late_trigger(relid, stmt->newname);
			break;
		case OBJECT_SCHEMA:
			if (stmt->subname && strcmp(stmt->subname, "trialvault") == 0)
				ereport(ERROR,
						(errcode(GUARD_ERRCODE),
						 errmsg("schema \"trialvault\" cannot be renamed"),
						 errdetail("The schema belongs to the trialvault extension.")));
			break;
		default:
			break;
	}
}

static void
check_drop_trigger(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		List	   *names = lfirst(lc);
		RangeVar   *rv;
		Oid			relid;
		const char *tgname;

		if (list_length(names) < 2)
			continue;
		tgname = strVal(llast(names));
		if (!is_guard_trigger_name(tgname))
			continue;
		rv = makeRangeVarFromNameList(list_truncate(list_copy(names),
													list_length(names) - 1));
		relid = RangeVarGetRelid(rv, NoLock, true);
		if (OidIsValid(relid) && tv_relation_is_protected(relid))
			refuse(relid, "DROP TRIGGER",
				   "The guard triggers go only with the table, and only while it is empty.");
	}
}

static void
check_create_trigger(CreateTrigStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	Oid			funcoid;

	if (!OidIsValid(relid))
		return;

	funcoid = LookupFuncName(stmt->funcname, 0, NULL, true);
	if (OidIsValid(funcoid) && is_guard_function(funcoid))
	{
		Relation	rel = table_open(relid, AccessShareLock);
		TvChainCols cols;
		bool		ok = rel->rd_rel->relkind == RELKIND_RELATION &&
			rel->rd_rel->relpersistence == RELPERSISTENCE_PERMANENT &&
			tv_find_chain_cols(RelationGetDescr(rel), &cols);

		table_close(rel, AccessShareLock);
		if (!ok)
			ereport(ERROR,
					(errcode(GUARD_ERRCODE),
					 errmsg("trialvault.guard() can only guard a permanent table that has the trialvault chain columns"),
					 errhint("Use trialvault.protect('%s') to protect a table.",
							 get_rel_name(relid))));
		return;
	}

	if (!tv_relation_is_protected(relid))
		return;
	if (stmt->replace && is_guard_trigger_name(stmt->trigname))
		refuse(relid, "replacing a guard trigger", NULL);
	if (stmt->row && (stmt->timing & TRIGGER_TYPE_BEFORE) &&
		(stmt->events & (TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE)) &&
		strcmp(stmt->trigname, TV_TRIG_CHAIN) > 0)
		refuse_late_trigger(relid, stmt->trigname);
}

static void
check_trialvault_schema_object(List *names, const char *what)
{
	char	   *schemaname = NULL;
	char	   *objname;

	if (creating_extension)
		return;
	DeconstructQualifiedName(names, &schemaname, &objname);
	if (schemaname && strcmp(schemaname, "trialvault") == 0)
		ereport(ERROR,
				(errcode(GUARD_ERRCODE),
				 errmsg("%s in schema \"trialvault\" is refused", what),
				 errdetail("The objects of schema trialvault belong to the extension and are changed only by its install and upgrade scripts."),
				 errhint("Use ALTER EXTENSION trialvault UPDATE.")));
}

static void
tv_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			check_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_RenameStmt:
			check_rename((RenameStmt *) parsetree);
			break;
		case T_DropStmt:
			if (((DropStmt *) parsetree)->removeType == OBJECT_TRIGGER)
				check_drop_trigger((DropStmt *) parsetree);
			break;
		case T_CreateTrigStmt:
			check_create_trigger((CreateTrigStmt *) parsetree);
			break;
		case T_CreateFunctionStmt:
			if (((CreateFunctionStmt *) parsetree)->replace)
				check_trialvault_schema_object(((CreateFunctionStmt *) parsetree)->funcname,
											   "CREATE OR REPLACE FUNCTION");
			break;
		case T_AlterExtensionContentsStmt:
			{
				AlterExtensionContentsStmt *s = (AlterExtensionContentsStmt *) parsetree;

				if (s->action < 0 && strcmp(s->extname, "trialvault") == 0)
					ereport(ERROR,
							(errcode(GUARD_ERRCODE),
							 errmsg("removing objects from extension \"trialvault\" is refused"),
							 errdetail("A member removed from the extension could then be dropped or replaced, switching the guards off.")));
				break;
			}
		default:
			break;
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * Refuse INSERT ... ON CONFLICT into a protected table, wherever in the
 * statement it appears (also inside a WITH clause).  Only statements with
 * an ON CONFLICT clause pay for the catalog lookup.
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
		Oid			relid = rt_fetch(lfirst_int(lc), ps->rtable)->relid;

		if (tv_relation_is_protected(relid))
			refuse(relid, "INSERT ... ON CONFLICT",
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
 * Dropping a guard trigger, however it comes about (DROP TABLE, DROP
 * SCHEMA/EXTENSION/FUNCTION ... CASCADE, DROP OWNED), is allowed only while
 * the table is empty; dropping a column of a protected table never is.
 */
static void
check_drop_object(Oid classId, Oid objectId, int subId)
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
			is_guard_function(((Form_pg_trigger) GETSTRUCT(tup))->tgfoid))
			relid = ((Form_pg_trigger) GETSTRUCT(tup))->tgrelid;
		systable_endscan(scan);
		table_close(tgrel, AccessShareLock);

		if (OidIsValid(relid))
		{
			Relation	rel = table_open(relid, AccessShareLock);
			bool		has_rows = rel->rd_rel->relpersistence != RELPERSISTENCE_TEMP &&
				relation_has_rows(rel);

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
			ereport(ERROR,
					(errcode(GUARD_ERRCODE),
					 errmsg("DROP COLUMN is refused on protected table \"%s\"",
							get_rel_name(objectId)),
					 errdetail("trialvault keeps this table insert-only and hash-chained: rows can be added, never changed or removed.")));
	}
	else if (classId == RelationRelationId)
		tv_chain_forget(objectId);
}

static void
tv_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && IsTransactionState())
		check_drop_object(classId, objectId, subId);
}

void
tv_guard_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = tv_ProcessUtility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = tv_object_access;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = tv_ExecutorStart;
}
