/*-------------------------------------------------------------------------
 *
 * ddlguard.c
 *		Deny by default: what DDL may do to protected tables, to the types
 *		their columns use, and to the extension's own objects.
 *
 * Three kinds of object are guarded:
 *
 *	protected	a table carrying the guard triggers (guard.c)
 *	type		a type, domain or composite that a protected table uses,
 *				directly or nested (in an array, a range, a domain, a
 *				composite), or as the type of a typed table
 *	extension	schema trialvault, everything in it (and everything attached
 *				to its relations), and the extension itself
 *
 * Two layers guard them, for every role, superusers included:
 *
 * 1. The utility hook knows the statements.  For each statement that can
 *    name a guarded object it resolves the objects and applies the allow-
 *    lists below (tv_alter_rules and the switch in classify_statement):
 *    anything not listed as harmless is refused with SQLSTATE 55000 naming
 *    the command.  A statement it lets through leaves an approval: the
 *    guarded objects it checked, and whether it is a kind of statement that
 *    is harmless to every object (VACUUM, CLUSTER, REINDEX, ...).
 *
 * 2. The object-access hook is the net under it.  Every object PostgreSQL
 *    creates, alters, truncates or drops is classified; a change to a
 *    guarded object that the current statement's approval does not cover
 *    is refused, whatever statement, function or cascade caused it.  So a
 *    route the first layer does not know (an unqualified CREATE OR REPLACE
 *    under another search_path, ALTER TYPE ... CASCADE into a typed table,
 *    a rule or trigger created by some other path) is still refused.
 *
 * The extension's objects change only while the extension's own scripts run
 * (CREATE EXTENSION trialvault, ALTER EXTENSION trialvault UPDATE), and are
 * dropped only with the extension, which guard.c allows only while no
 * protected table holds rows.  What a superuser can still do by editing
 * catalogs directly is not refused here; verify() reports it (catalog.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_attrdef.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_event_trigger.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_policy.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_statistic_ext.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "parser/parse_type.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "trialvault.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

#define GUARD_ERRCODE ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE

/* ---------------------------------------------------------------------
 * Approvals: what the statement being executed was checked for
 * ---------------------------------------------------------------------
 */
typedef struct TvApproval
{
	struct TvApproval *prev;	/* the statement this one runs inside */
	const char *command;		/* command tag, for messages */
	bool		protected_ok;	/* harmless to every protected table and type */
	bool		extension_ok;	/* may change the extension's objects */
	bool		dropping_extension; /* may drop the extension with its objects */
	List	   *oids;			/* guarded relations and types checked and allowed */
} TvApproval;

static TvApproval *tv_current = NULL;

/* The relation protect() is protecting right now, if any. */
static Oid	tv_protecting = InvalidOid;

/*
 * tv_ddl_protecting: protect() announces the relation it is about to guard,
 * and InvalidOid when done; its own DDL on that relation is approved.
 */
void
tv_ddl_protecting(Oid relid)
{
	tv_protecting = relid;
}

static void
approve(TvApproval *ap, Oid oid)
{
	if (OidIsValid(oid))
		ap->oids = list_append_unique_oid(ap->oids, oid);
}

/* ---------------------------------------------------------------------
 * What an object is
 * ---------------------------------------------------------------------
 */
typedef enum TvGuarded
{
	TV_NOT_GUARDED = 0,
	TV_GUARDED_PROTECTED,		/* a protected table, or something on it */
	TV_GUARDED_TYPE,			/* a type a protected table uses */
	TV_GUARDED_EXTENSION		/* the extension or one of its objects */
} TvGuarded;

static Oid
tv_schema(void)
{
	return get_namespace_oid("trialvault", true);
}

/*
 * Is the running script the extension's own (CREATE EXTENSION trialvault or
 * ALTER EXTENSION trialvault UPDATE), as opposed to another extension's?
 */
bool
tv_in_own_script(void)
{
	return creating_extension &&
		CurrentExtensionObject == get_extension_oid("trialvault", true);
}

/*
 * One column of the catalog row of an object, looked up by OID with
 * SnapshotSelf, so that rows the current command has just inserted or
 * updated (an object being created) are seen too.  InvalidOid when there is
 * no such row or the column is NULL.
 */
static Oid
self_oid_column(Oid classId, Oid objectId, AttrNumber att)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			result = InvalidOid;

	rel = table_open(classId, AccessShareLock);
	ScanKeyInit(&key, get_object_attnum_oid(classId), BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(objectId));
	scan = systable_beginscan(rel, get_object_oid_index(classId), true,
							  SnapshotSelf, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);

		if (!isnull)
			result = DatumGetObjectId(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * The protected table that uses a type, directly or nested, or InvalidOid.
 * Follows pg_depend as find_composite_type_dependencies() does: arrays,
 * domains and ranges over the type, composites with an attribute of it,
 * columns of it, and tables typed by it.
 */
static Oid
type_used_by_protected(Oid typid)
{
	Relation	depRel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			result = InvalidOid;

	check_stack_depth();
	depRel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(TypeRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(typid));
	scan = systable_beginscan(depRel, DependReferenceIndexId, true, NULL, 2, key);
	while (!OidIsValid(result) && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->classid == TypeRelationId)
			result = type_used_by_protected(dep->objid);
		else if (dep->classid == RelationRelationId)
		{
			char		relkind = get_rel_relkind(dep->objid);
			Oid			rowtype = get_rel_type_id(dep->objid);

			/* A composite type's own relation depends on it: skip that. */
			if (relkind == RELKIND_COMPOSITE_TYPE && rowtype != typid)
				result = type_used_by_protected(rowtype);
			else if (relkind != RELKIND_COMPOSITE_TYPE &&
					 tv_relation_is_protected(dep->objid))
				result = dep->objid;
		}
	}
	systable_endscan(scan);
	table_close(depRel, AccessShareLock);
	return result;
}

/* What a relation is; *user gets the protected table concerned. */
static TvGuarded
classify_relation(Oid relid, Oid *user)
{
	Oid			nsp = self_oid_column(RelationRelationId, relid, Anum_pg_class_relnamespace);

	*user = InvalidOid;
	if (!OidIsValid(nsp))
		return TV_NOT_GUARDED;
	if (nsp == tv_schema())
		return TV_GUARDED_EXTENSION;
	if (get_rel_relkind(relid) == RELKIND_COMPOSITE_TYPE)
	{
		*user = type_used_by_protected(get_rel_type_id(relid));
		return OidIsValid(*user) ? TV_GUARDED_TYPE : TV_NOT_GUARDED;
	}
	if (tv_relation_is_protected(relid))
	{
		*user = relid;
		return TV_GUARDED_PROTECTED;
	}
	return TV_NOT_GUARDED;
}

static TvGuarded
classify_type(Oid typid, Oid *user)
{
	Oid			nsp = self_oid_column(TypeRelationId, typid, Anum_pg_type_typnamespace);

	*user = InvalidOid;
	if (!OidIsValid(nsp))
		return TV_NOT_GUARDED;
	if (nsp == tv_schema())
		return TV_GUARDED_EXTENSION;
	*user = type_used_by_protected(typid);
	return OidIsValid(*user) ? TV_GUARDED_TYPE : TV_NOT_GUARDED;
}

/*
 * What an object is, for any catalog.  *key gets the object an approval
 * must name for a change to be allowed (the relation a trigger or rule is
 * on, the type a domain constraint belongs to, ...), *user the protected
 * table concerned.
 */
static TvGuarded
classify_object(Oid classId, Oid objectId, Oid *key, Oid *user)
{
	Oid			rel = InvalidOid;
	Oid			typ = InvalidOid;

	*key = InvalidOid;
	*user = InvalidOid;
	switch (classId)
	{
		case RelationRelationId:
		case AttrDefaultRelationId: /* the hook passes the relation */
		case InheritsRelationId:	/* the child */
		case IndexRelationId:
			rel = objectId;
			break;
		case TriggerRelationId:
			rel = self_oid_column(classId, objectId, Anum_pg_trigger_tgrelid);
			break;
		case RewriteRelationId:
			rel = self_oid_column(classId, objectId, Anum_pg_rewrite_ev_class);
			break;
		case PolicyRelationId:
			rel = self_oid_column(classId, objectId, Anum_pg_policy_polrelid);
			break;
		case StatisticExtRelationId:
			rel = self_oid_column(classId, objectId, Anum_pg_statistic_ext_stxrelid);
			break;
		case ConstraintRelationId:
			rel = self_oid_column(classId, objectId, Anum_pg_constraint_conrelid);
			if (!OidIsValid(rel))
				typ = self_oid_column(classId, objectId, Anum_pg_constraint_contypid);
			break;
		case TypeRelationId:
			typ = objectId;
			break;
		case NamespaceRelationId:
			/* Until the extension is created it is a schema like any other. */
			*key = objectId;
			return objectId == tv_schema() &&
				OidIsValid(get_extension_oid("trialvault", true)) ?
				TV_GUARDED_EXTENSION : TV_NOT_GUARDED;
		case ExtensionRelationId:
			*key = objectId;
			return objectId == get_extension_oid("trialvault", true) ?
				TV_GUARDED_EXTENSION : TV_NOT_GUARDED;
		default:
			*key = objectId;
			if (is_objectclass_supported(classId) &&
				get_object_attnum_namespace(classId) != InvalidAttrNumber &&
				self_oid_column(classId, objectId,
								get_object_attnum_namespace(classId)) == tv_schema())
				return TV_GUARDED_EXTENSION;
			return TV_NOT_GUARDED;
	}
	if (OidIsValid(rel))
	{
		TvGuarded	g;

		/* An index is judged by its table (indexes never change rows). */
		if (classId != IndexRelationId && get_rel_relkind(rel) == RELKIND_INDEX)
			rel = IndexGetRelation(rel, true);
		if (!OidIsValid(rel))
			return TV_NOT_GUARDED;
		g = classify_relation(rel, user);
		*key = (g == TV_GUARDED_TYPE) ? get_rel_type_id(rel) : rel;
		return g;
	}
	if (OidIsValid(typ))
	{
		*key = typ;
		return classify_type(typ, user);
	}
	return TV_NOT_GUARDED;
}

/* ---------------------------------------------------------------------
 * Refusals
 * ---------------------------------------------------------------------
 */
static void
refuse_extension(const char *what, const char *objdesc)
{
	ereport(ERROR,
			(errcode(GUARD_ERRCODE),
			 errmsg("%s is refused on %s", what, objdesc),
			 errdetail("The objects of extension trialvault change only through its own install and update scripts."),
			 errhint("Use ALTER EXTENSION trialvault UPDATE.")));
}

/* The same for one of the extension's relations, unless its own script runs. */
static void
refuse_extension_relation(const char *what, Oid relid)
{
	if (!tv_in_own_script())
		refuse_extension(what,
						 psprintf("relation %s",
								  quote_qualified_identifier("trialvault", get_rel_name(relid))));
}

static void
refuse_type(const char *what, Oid typid, Oid user)
{
	ereport(ERROR,
			(errcode(GUARD_ERRCODE),
			 errmsg("%s is refused on type %s, which protected table \"%s\" uses",
					what, format_type_be(typid), get_rel_name(user)),
			 errdetail("Changing a type would change the meaning of rows already stored in a protected table."),
			 errhint("Create a new type and add a new column that uses it.")));
}

/*
 * What ALTER TABLE and RENAME do alike: refuse on the extension's relations
 * (outside its scripts) and on the row types of protected tables; approve
 * an index's changes for its table.  True when nothing more is to check.
 */
static bool
relation_basics(Oid relid, const char *what, const char *type_what, TvApproval *ap,
				TvGuarded *g, Oid *user)
{
	*g = classify_relation(relid, user);
	if (*g == TV_GUARDED_EXTENSION)
	{
		refuse_extension_relation(what, relid);
		return true;
	}
	if (*g == TV_GUARDED_TYPE)
		refuse_type(type_what, get_rel_type_id(relid), *user);
	if (get_rel_relkind(relid) == RELKIND_INDEX)
	{
		/* Index-level changes never touch rows: approve its table. */
		approve(ap, IndexGetRelation(relid, true));
		return true;
	}
	return false;
}

/*
 * Event triggers fire on every command of an extension's script, and what
 * their functions do then counts as done by the script: they could change
 * the extension's objects before the script seals them.  So the scripts
 * run only while no event trigger is enabled: ALTER EXTENSION trialvault
 * is checked here, an install by its first statement (_require_preload),
 * however it was reached (CASCADE from another extension too).
 */
void
tv_refuse_event_triggers(const char *what)
{
	Relation	rel = table_open(EventTriggerRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;
	char	   *name = NULL;

	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_event_trigger t = (Form_pg_event_trigger) GETSTRUCT(tup);

		if (t->evtenabled != TRIGGER_DISABLED)
		{
			name = pstrdup(NameStr(t->evtname));
			break;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (name)
		ereport(ERROR,
				(errcode(GUARD_ERRCODE),
				 errmsg("%s is refused while event trigger \"%s\" is enabled", what, name),
				 errdetail("An event trigger fires inside the extension's scripts, and what it does there would pass for the script's own work."),
				 errhint("Disable the event triggers (ALTER EVENT TRIGGER ... DISABLE) for the install or update, then enable them again.")));
}

/* The refusal of the net: a change no statement check approved. */
static void
refuse_unapproved(TvGuarded g, Oid classId, Oid objectId, Oid key, Oid user)
{
	const char *what = tv_current ? tv_current->command : "this operation";

	switch (g)
	{
		case TV_GUARDED_EXTENSION:
			{
				ObjectAddress addr;
				char	   *desc;

				ObjectAddressSet(addr, classId, objectId);
				desc = getObjectDescription(&addr, true);
				if (desc == NULL)
					ereport(ERROR,
							(errcode(GUARD_ERRCODE),
							 errmsg("%s in schema \"trialvault\" is refused", what),
							 errdetail("The objects of schema trialvault belong to the extension and are created only by its install and update scripts."),
							 errhint("Create the object in another schema.")));
				refuse_extension(what, desc);
				break;
			}
		case TV_GUARDED_TYPE:
			refuse_type(what, key, user);
			break;
		case TV_GUARDED_PROTECTED:
			tv_refuse_protected(user, what,
								"Only what docs/dba-guide.md lists under \"What the guards allow\" may be done to a protected table.");
			break;
		case TV_NOT_GUARDED:
			break;
	}
}

/* ---------------------------------------------------------------------
 * Layer 1: the statements
 * ---------------------------------------------------------------------
 */
static ObjectAddress named_object(ObjectType objtype, RangeVar *relation,
								  Node *object, const char *subname);
static void check_addressed(ObjectAddress addr, const char *what, bool harmless,
							TvApproval *ap);

/*
 * What ALTER TABLE may do to a protected table.  Indexed by subcommand; a
 * subcommand missing here (a new one in a later PostgreSQL, say) is
 * refused, because TV_AT_REFUSE is zero.
 */
typedef enum TvAlterVerdict
{
	TV_AT_REFUSE = 0,
	TV_AT_ALLOW,
	TV_AT_COLUMN,				/* ADD COLUMN: only if it fills no row */
	TV_AT_TRIGGER,				/* ENABLE/DISABLE TRIGGER: not a guard */
	TV_AT_ALWAYS,				/* ENABLE ALWAYS TRIGGER: fine for guards too */
	TV_AT_INHERIT,				/* INHERIT: the parent must not be protected */
	TV_AT_NOINHERIT,			/* NO INHERIT: nor here */
	TV_AT_PARTITION				/* ATTACH PARTITION: the partition must not be */
} TvAlterVerdict;

typedef struct TvAlterRule
{
	const char *name;
	TvAlterVerdict verdict;
	const char *hint;
} TvAlterRule;

#define HINT_NAME_TRIGGERS "Name the triggers to enable or disable; the guard triggers stay ENABLE ALWAYS."
#define HINT_NO_RLS "Row level security would hide stored rows from queries and secured views; publish the table with trialvault.create_secured_view() instead."

static const TvAlterRule tv_alter_rules[] = {
	[AT_AddColumn] = {"ADD COLUMN", TV_AT_COLUMN, NULL},
	[AT_AddColumnRecurse] = {"ADD COLUMN", TV_AT_COLUMN, NULL},
	[AT_ColumnDefault] = {"ALTER COLUMN ... SET/DROP DEFAULT", TV_AT_ALLOW, NULL},
	[AT_CookedColumnDefault] = {"ALTER COLUMN ... SET DEFAULT", TV_AT_ALLOW, NULL},
	[AT_DropNotNull] = {"ALTER COLUMN ... DROP NOT NULL", TV_AT_ALLOW, NULL},
	[AT_SetNotNull] = {"ALTER COLUMN ... SET NOT NULL", TV_AT_ALLOW, NULL},
	[AT_CheckNotNull] = {"ALTER COLUMN ... SET NOT NULL", TV_AT_ALLOW, NULL},
	[AT_DropExpression] = {"ALTER COLUMN ... DROP EXPRESSION", TV_AT_REFUSE,
	"The column's values would become stored values that no row's hash covers."},
	[AT_SetStatistics] = {"ALTER COLUMN ... SET STATISTICS", TV_AT_ALLOW, NULL},
	[AT_SetOptions] = {"ALTER COLUMN ... SET (...)", TV_AT_ALLOW, NULL},
	[AT_ResetOptions] = {"ALTER COLUMN ... RESET (...)", TV_AT_ALLOW, NULL},
	[AT_SetStorage] = {"ALTER COLUMN ... SET STORAGE", TV_AT_ALLOW, NULL},
	[AT_SetCompression] = {"ALTER COLUMN ... SET COMPRESSION", TV_AT_ALLOW, NULL},
	[AT_DropColumn] = {"DROP COLUMN", TV_AT_REFUSE, NULL},
	[AT_DropColumnRecurse] = {"DROP COLUMN", TV_AT_REFUSE, NULL},
	[AT_AddIndex] = {"ADD CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_ReAddIndex] = {"ADD CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_AddConstraint] = {"ADD CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_AddConstraintRecurse] = {"ADD CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_ReAddConstraint] = {"ADD CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_AlterConstraint] = {"ALTER CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_ValidateConstraint] = {"VALIDATE CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_ValidateConstraintRecurse] = {"VALIDATE CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_AddIndexConstraint] = {"ADD CONSTRAINT ... USING INDEX", TV_AT_ALLOW, NULL},
	[AT_DropConstraint] = {"DROP CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_DropConstraintRecurse] = {"DROP CONSTRAINT", TV_AT_ALLOW, NULL},
	[AT_ReAddComment] = {"COMMENT", TV_AT_ALLOW, NULL},
	[AT_AlterColumnType] = {"ALTER COLUMN ... TYPE", TV_AT_REFUSE, NULL},
	[AT_AlterColumnGenericOptions] = {"ALTER COLUMN ... OPTIONS", TV_AT_REFUSE, NULL},
	[AT_ChangeOwner] = {"OWNER TO", TV_AT_ALLOW, NULL},
	[AT_ClusterOn] = {"CLUSTER ON", TV_AT_ALLOW, NULL},
	[AT_DropCluster] = {"SET WITHOUT CLUSTER", TV_AT_ALLOW, NULL},
	[AT_SetLogged] = {"SET LOGGED", TV_AT_ALLOW, NULL},
	[AT_SetUnLogged] = {"SET UNLOGGED", TV_AT_REFUSE,
	"Unlogged tables are emptied by crash recovery."},
	[AT_DropOids] = {"SET WITHOUT OIDS", TV_AT_ALLOW, NULL},
	[AT_SetAccessMethod] = {"SET ACCESS METHOD", TV_AT_REFUSE,
	"Another access method would store and return the rows through other code."},
	[AT_SetTableSpace] = {"SET TABLESPACE", TV_AT_ALLOW, NULL},
	[AT_SetRelOptions] = {"SET (...)", TV_AT_ALLOW, NULL},
	[AT_ResetRelOptions] = {"RESET (...)", TV_AT_ALLOW, NULL},
	[AT_ReplaceRelOptions] = {"SET (...)", TV_AT_ALLOW, NULL},
	[AT_EnableTrig] = {"changing when a guard trigger fires", TV_AT_TRIGGER, NULL},
	[AT_EnableAlwaysTrig] = {"ENABLE ALWAYS TRIGGER", TV_AT_ALWAYS, NULL},
	[AT_EnableReplicaTrig] = {"changing when a guard trigger fires", TV_AT_TRIGGER, NULL},
	[AT_DisableTrig] = {"changing when a guard trigger fires", TV_AT_TRIGGER, NULL},
	[AT_EnableTrigAll] = {"enabling or disabling all triggers", TV_AT_REFUSE,
	HINT_NAME_TRIGGERS},
	[AT_DisableTrigAll] = {"enabling or disabling all triggers", TV_AT_REFUSE,
	HINT_NAME_TRIGGERS},
	[AT_EnableTrigUser] = {"enabling or disabling all triggers", TV_AT_REFUSE,
	HINT_NAME_TRIGGERS},
	[AT_DisableTrigUser] = {"enabling or disabling all triggers", TV_AT_REFUSE,
	HINT_NAME_TRIGGERS},
	[AT_EnableRule] = {"ENABLE RULE", TV_AT_REFUSE, NULL},
	[AT_EnableAlwaysRule] = {"ENABLE ALWAYS RULE", TV_AT_REFUSE, NULL},
	[AT_EnableReplicaRule] = {"ENABLE REPLICA RULE", TV_AT_REFUSE, NULL},
	[AT_DisableRule] = {"DISABLE RULE", TV_AT_REFUSE, NULL},
	[AT_AddInherit] = {"INHERIT", TV_AT_INHERIT, NULL},
	[AT_DropInherit] = {"NO INHERIT", TV_AT_NOINHERIT, NULL},
	[AT_AddOf] = {"OF type", TV_AT_REFUSE,
	"A typed table changes whenever its type does."},
	[AT_DropOf] = {"NOT OF", TV_AT_REFUSE, NULL},
	[AT_ReplicaIdentity] = {"REPLICA IDENTITY", TV_AT_ALLOW, NULL},
	[AT_EnableRowSecurity] = {"ENABLE ROW LEVEL SECURITY", TV_AT_REFUSE,
	HINT_NO_RLS},
	[AT_DisableRowSecurity] = {"DISABLE ROW LEVEL SECURITY", TV_AT_ALLOW, NULL},
	[AT_ForceRowSecurity] = {"FORCE ROW LEVEL SECURITY", TV_AT_REFUSE,
	HINT_NO_RLS},
	[AT_NoForceRowSecurity] = {"NO FORCE ROW LEVEL SECURITY", TV_AT_ALLOW, NULL},
	[AT_GenericOptions] = {"OPTIONS", TV_AT_REFUSE, NULL},
	[AT_AttachPartition] = {"ATTACH PARTITION", TV_AT_PARTITION, NULL},
	[AT_DetachPartition] = {"DETACH PARTITION", TV_AT_ALLOW, NULL},
	[AT_DetachPartitionFinalize] = {"DETACH PARTITION ... FINALIZE", TV_AT_ALLOW, NULL},
	[AT_AddIdentity] = {"ALTER COLUMN ... ADD GENERATED AS IDENTITY", TV_AT_ALLOW, NULL},
	[AT_SetIdentity] = {"ALTER COLUMN ... SET GENERATED", TV_AT_ALLOW, NULL},
	[AT_DropIdentity] = {"ALTER COLUMN ... DROP IDENTITY", TV_AT_ALLOW, NULL},
	[AT_ReAddStatistics] = {"CREATE STATISTICS", TV_AT_ALLOW, NULL},
};

static const TvAlterRule *
alter_rule(AlterTableType t)
{
	static const TvAlterRule unknown = {"this ALTER TABLE subcommand", TV_AT_REFUSE, NULL};

	if ((int) t < 0 || (int) t >= (int) lengthof(tv_alter_rules) ||
		tv_alter_rules[t].name == NULL)
		return &unknown;
	return &tv_alter_rules[t];
}

static bool
is_serial_type(const TypeName *tn)
{
	const char *name;

	if (tn == NULL || tn->pct_type || list_length(tn->names) != 1 ||
		tn->arrayBounds != NIL)
		return false;
	name = strVal(linitial(tn->names));
	return strcmp(name, "smallserial") == 0 || strcmp(name, "serial2") == 0 ||
		strcmp(name, "serial") == 0 || strcmp(name, "serial4") == 0 ||
		strcmp(name, "bigserial") == 0 || strcmp(name, "serial8") == 0;
}

/* The domain (outermost first) in a type's chain that has a default. */
static Oid
domain_with_default(Oid typid)
{
	while (OidIsValid(typid))
	{
		HeapTuple	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
		Form_pg_type t;
		bool		has_default;
		Oid			base;

		if (!HeapTupleIsValid(tp))
			return InvalidOid;
		t = (Form_pg_type) GETSTRUCT(tp);
		if (t->typtype != TYPTYPE_DOMAIN)
		{
			ReleaseSysCache(tp);
			return InvalidOid;
		}
		has_default = !heap_attisnull(tp, Anum_pg_type_typdefaultbin, NULL);
		base = t->typbasetype;
		ReleaseSysCache(tp);
		if (has_default)
			return typid;
		typid = base;
	}
	return InvalidOid;
}

/*
 * ADD COLUMN must leave every stored row as it is: refused when the column
 * would be filled for existing rows, from what the column will do rather
 * than from the words used (a default, an identity, a generated
 * expression, a serial type, a domain with a default).
 */
static void
check_add_column(Oid relid, ColumnDef *def)
{
	ListCell   *lc;
	const char *why = NULL;
	Oid			typid;
	Oid			dom;

	if (def->raw_default || def->cooked_default)
		why = "ADD COLUMN with a default";
	else if (def->identity)
		why = "ADD COLUMN ... GENERATED AS IDENTITY";
	else if (def->generated)
		why = "ADD COLUMN ... GENERATED ALWAYS AS";
	foreach(lc, def->constraints)
	{
		Constraint *c = lfirst(lc);

		if (why)
			break;
		if (c->contype == CONSTR_DEFAULT)
			why = "ADD COLUMN with a default";
		else if (c->contype == CONSTR_IDENTITY)
			why = "ADD COLUMN ... GENERATED AS IDENTITY";
		else if (c->contype == CONSTR_GENERATED)
			why = "ADD COLUMN ... GENERATED ALWAYS AS";
	}
	if (why == NULL && is_serial_type(def->typeName))
		why = "ADD COLUMN of a serial type";
	if (why)
		tv_refuse_protected(relid, why,
							"Add the column without a default, then set the default with ALTER COLUMN ... SET DEFAULT; existing rows keep NULL.");

	typid = def->typeName ? LookupTypeNameOid(NULL, def->typeName, true) : InvalidOid;
	dom = OidIsValid(typid) ? domain_with_default(typid) : InvalidOid;
	if (OidIsValid(dom))
		tv_refuse_protected(relid,
							psprintf("ADD COLUMN of a domain with a default (%s)",
									 format_type_be(dom)),
							"Existing rows would be given the domain's default. Add the column with a type that has no default.");
}

/*
 * ALTER TABLE (and ALTER INDEX, VIEW, SEQUENCE, FOREIGN TABLE, TYPE ...
 * ATTRIBUTE, which share its statement).
 */
static void
check_alter_table(AlterTableStmt *stmt, TvApproval *ap)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	Oid			user;
	TvGuarded	g;
	List	   *reached;
	ListCell   *lc;
	ListCell   *cc;

	if (!OidIsValid(relid))
		return;
	/* ALTER TYPE ... ADD/DROP/ALTER/RENAME ATTRIBUTE comes here too. */
	if (relation_basics(relid, "ALTER TABLE", "ALTER TYPE ... ATTRIBUTE", ap, &g, &user))
		return;

	reached = stmt->relation->inh ? find_all_inheritors(relid, NoLock, NULL)
		: list_make1_oid(relid);

	foreach(cc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(cc);
		const TvAlterRule *rule = alter_rule(cmd->subtype);

		/* These three are about another relation than the one named. */
		if (rule->verdict == TV_AT_INHERIT)
		{
			RangeVar   *parent = (RangeVar *) cmd->def;
			Oid			poid = RangeVarGetRelid(parent, NoLock, true);

			if (OidIsValid(poid) && tv_relation_is_protected(poid) &&
				!tv_relation_is_protected(relid))
				tv_refuse_protected(poid, "INHERIT",
									"Rows of an unprotected table would show in every query of the protected one. Protect the child first.");
		}
		else if (rule->verdict == TV_AT_NOINHERIT)
		{
			RangeVar   *parent = (RangeVar *) cmd->def;
			Oid			poid = RangeVarGetRelid(parent, NoLock, true);

			if (OidIsValid(poid) && tv_relation_is_protected(poid))
				tv_refuse_protected(poid, "NO INHERIT",
									"The child's rows would disappear from every query of the protected table.");
		}
		else if (rule->verdict == TV_AT_PARTITION)
		{
			PartitionCmd *pc = (PartitionCmd *) cmd->def;
			Oid			part = RangeVarGetRelid(pc->name, NoLock, true);

			if (OidIsValid(part) && tv_relation_is_protected(part))
				tv_refuse_protected(part, "ATTACH PARTITION",
									"A protected table cannot become a partition.");
		}

		foreach(lc, reached)
		{
			Oid			r = lfirst_oid(lc);

			if (!tv_relation_is_protected(r))
				continue;
			switch (rule->verdict)
			{
				case TV_AT_REFUSE:
					tv_refuse_protected(r, rule->name, rule->hint);
					break;
				case TV_AT_COLUMN:
					if (cmd->def && IsA(cmd->def, ColumnDef))
						check_add_column(r, (ColumnDef *) cmd->def);
					break;
				case TV_AT_TRIGGER:
					if (cmd->name && tv_is_guard_trigger_name(cmd->name))
						tv_refuse_protected(r, rule->name, NULL);
					break;
				case TV_AT_ALLOW:
				case TV_AT_ALWAYS:
				case TV_AT_INHERIT:
				case TV_AT_NOINHERIT:
				case TV_AT_PARTITION:
					break;
			}
			approve(ap, r);
		}
	}
}

/* RENAME ... of anything */
static void
check_rename(RenameStmt *stmt, TvApproval *ap)
{
	Oid			relid = InvalidOid;
	Oid			user;
	TvGuarded	g;

	switch (stmt->renameType)
	{
		case OBJECT_SCHEMA:
			if (stmt->subname && strcmp(stmt->subname, "trialvault") == 0)
				ereport(ERROR,
						(errcode(GUARD_ERRCODE),
						 errmsg("schema \"trialvault\" cannot be renamed"),
						 errdetail("The schema belongs to the trialvault extension.")));
			return;
		case OBJECT_TABLE:
		case OBJECT_VIEW:
		case OBJECT_MATVIEW:
		case OBJECT_INDEX:
		case OBJECT_SEQUENCE:
		case OBJECT_FOREIGN_TABLE:
		case OBJECT_COLUMN:
		case OBJECT_ATTRIBUTE:
		case OBJECT_TRIGGER:
		case OBJECT_RULE:
		case OBJECT_POLICY:
		case OBJECT_TABCONSTRAINT:
			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
			if (!OidIsValid(relid))
				return;
			break;
		default:
			/* Renaming a type or a function changes no stored value. */
			check_addressed(named_object(stmt->renameType, stmt->relation,
										 stmt->object, stmt->subname),
							"RENAME", true, ap);
			return;
	}

	if (relation_basics(relid, "RENAME", "RENAME ATTRIBUTE", ap, &g, &user))
		return;

	switch (stmt->renameType)
	{
		case OBJECT_COLUMN:
			{
				List	   *reached = stmt->relation->inh ?
					find_all_inheritors(relid, NoLock, NULL) : list_make1_oid(relid);
				ListCell   *lc;

				foreach(lc, reached)
				{
					if (tv_relation_is_protected(lfirst_oid(lc)))
						tv_refuse_protected(lfirst_oid(lc), "RENAME COLUMN",
											"Column names are part of each row's hash.");
				}
				return;
			}
		case OBJECT_TRIGGER:
			if (g != TV_GUARDED_PROTECTED || stmt->subname == NULL)
				return;
			if (tv_is_guard_trigger_name(stmt->subname))
				tv_refuse_protected(relid, "renaming a guard trigger", NULL);
			if (tv_late_before_trigger(relid, stmt->subname, stmt->newname))
				tv_refuse_late_trigger(relid, stmt->newname);
			approve(ap, relid);
			return;
		case OBJECT_RULE:
		case OBJECT_POLICY:
			if (g == TV_GUARDED_PROTECTED)
				tv_refuse_protected(relid, stmt->renameType == OBJECT_RULE ?
									"ALTER RULE ... RENAME" : "ALTER POLICY ... RENAME", NULL);
			return;
		default:
			/* the table itself, or one of its constraints */
			if (g == TV_GUARDED_PROTECTED)
				approve(ap, relid);
			return;
	}
}

/*
 * The object an ALTER ... OWNER TO, SET SCHEMA or RENAME names, resolved
 * the way ExecAlterOwnerStmt(), ExecAlterObjectSchemaStmt() and
 * ExecRenameStmt() resolve it (each statement spells objects its own way:
 * a RangeVar, a name list, a TypeName, a String, or only subname).
 * InvalidOid in objectId for kinds that are never guarded (databases,
 * roles, tablespaces, servers, ...) and for objects that do not exist.
 */
static ObjectAddress
named_object(ObjectType objtype, RangeVar *relation, Node *object,
			 const char *subname)
{
	ObjectAddress addr;
	Relation	rel = NULL;

	ObjectAddressSet(addr, InvalidOid, InvalidOid);
	switch (objtype)
	{
		case OBJECT_TABLE:
		case OBJECT_SEQUENCE:
		case OBJECT_VIEW:
		case OBJECT_MATVIEW:
		case OBJECT_INDEX:
		case OBJECT_FOREIGN_TABLE:
			if (relation)
				ObjectAddressSet(addr, RelationRelationId,
								 RangeVarGetRelid(relation, NoLock, true));
			break;
		case OBJECT_TYPE:
		case OBJECT_DOMAIN:
			if (object && IsA(object, List))
				ObjectAddressSet(addr, TypeRelationId,
								 LookupTypeNameOid(NULL, makeTypeNameFromNameList((List *) object), true));
			else if (object && IsA(object, TypeName))
				ObjectAddressSet(addr, TypeRelationId,
								 LookupTypeNameOid(NULL, (TypeName *) object, true));
			break;
		case OBJECT_SCHEMA:
			ObjectAddressSet(addr, NamespaceRelationId,
							 get_namespace_oid(object ? strVal(object) : subname, true));
			break;
		case OBJECT_EXTENSION:
			ObjectAddressSet(addr, ExtensionRelationId,
							 get_extension_oid(object ? strVal(object) : subname, true));
			break;
		case OBJECT_AGGREGATE:
		case OBJECT_COLLATION:
		case OBJECT_CONVERSION:
		case OBJECT_FUNCTION:
		case OBJECT_OPERATOR:
		case OBJECT_OPCLASS:
		case OBJECT_OPFAMILY:
		case OBJECT_PROCEDURE:
		case OBJECT_ROUTINE:
		case OBJECT_STATISTIC_EXT:
		case OBJECT_TSCONFIGURATION:
		case OBJECT_TSDICTIONARY:
		case OBJECT_TSPARSER:
		case OBJECT_TSTEMPLATE:
			if (object)
				addr = get_object_address(objtype, object, &rel, AccessShareLock, true);
			break;
		default:
			break;
	}
	if (rel)
		relation_close(rel, NoLock);
	return addr;
}

/*
 * A statement about one object (owner, schema, comment, security label,
 * dependency on an extension, ALTER FUNCTION): refused on the extension's
 * objects; on protected tables and their types refused unless "harmless".
 */
static void
check_addressed(ObjectAddress addr, const char *what, bool harmless, TvApproval *ap)
{
	Oid			key;
	Oid			user;

	if (!OidIsValid(addr.objectId))
		return;
	switch (classify_object(addr.classId, addr.objectId, &key, &user))
	{
		case TV_GUARDED_EXTENSION:
			if (!tv_in_own_script())
				refuse_extension(what, getObjectDescription(&addr, false));
			break;
		case TV_GUARDED_TYPE:
			if (!harmless)
				refuse_type(what, key, user);
			approve(ap, key);
			approve(ap, get_array_type(key));
			break;
		case TV_GUARDED_PROTECTED:
			if (!harmless)
				tv_refuse_protected(user, what, NULL);
			approve(ap, key);
			break;
		case TV_NOT_GUARDED:
			break;
	}
}

/* The same for a statement that resolves its object with get_object_address(). */
static void
check_addressed_generic(ObjectType objtype, RangeVar *relation, Node *object,
						const char *what, bool harmless, TvApproval *ap)
{
	ObjectAddress addr;
	Relation	rel = NULL;

	if (relation)
		addr = get_object_address_rv(objtype, relation, (List *) object, &rel,
									 AccessShareLock, true);
	else
		addr = get_object_address(objtype, object, &rel, AccessShareLock, true);
	if (rel)
		relation_close(rel, NoLock);
	check_addressed(addr, what, harmless, ap);
}

/*
 * Which privileges a GRANT or REVOKE names: true when it names only the
 * one given (or ALL, which for functions and schemas comes to the same).
 */
static bool
grants_only(GrantStmt *stmt, const char *privilege)
{
	ListCell   *lc;

	foreach(lc, stmt->privileges)
	{
		AccessPriv *p = lfirst(lc);

		if (p->priv_name == NULL || strcmp(p->priv_name, privilege) != 0 || p->cols != NIL)
			return false;
	}
	return true;
}

/*
 * GRANT and REVOKE on the extension's objects.  A DBA grants EXECUTE on
 * the public functions (protect() to the owners of regulated tables, for
 * instance) and USAGE on the schema; everything else (the tables, the
 * sequences, the internal functions whose names start with an underscore,
 * the guard) keeps the privileges the scripts gave it.
 */
static void
check_grant(GrantStmt *stmt)
{
	ListCell   *lc;
	const char *what = stmt->is_grant ? "GRANT" : "REVOKE";

	if (tv_in_own_script())
		return;
	if (stmt->targtype == ACL_TARGET_ALL_IN_SCHEMA)
	{
		foreach(lc, stmt->objects)
		{
			if (strcmp(strVal(lfirst(lc)), "trialvault") == 0)
				refuse_extension(what, "the objects of schema trialvault");
		}
		return;
	}
	if (stmt->targtype != ACL_TARGET_OBJECT)
		return;
	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);
		ObjectAddress addr;
		Oid			key;
		Oid			user;
		bool		allowed = false;

		ObjectAddressSet(addr, InvalidOid, InvalidOid);
		switch (stmt->objtype)
		{
			case OBJECT_TABLE:
			case OBJECT_SEQUENCE:
				ObjectAddressSet(addr, RelationRelationId,
								 RangeVarGetRelid((RangeVar *) obj, NoLock, true));
				break;
			case OBJECT_FUNCTION:
			case OBJECT_PROCEDURE:
			case OBJECT_ROUTINE:
				ObjectAddressSet(addr, ProcedureRelationId,
								 LookupFuncWithArgs(stmt->objtype, (ObjectWithArgs *) obj, true));
				if (OidIsValid(addr.objectId))
				{
					char	   *name = get_func_name(addr.objectId);

					allowed = grants_only(stmt, "execute") && name[0] != '_' &&
						!tv_is_guard_function(addr.objectId);
				}
				break;
			case OBJECT_SCHEMA:
				ObjectAddressSet(addr, NamespaceRelationId,
								 get_namespace_oid(strVal(obj), true));
				allowed = grants_only(stmt, "usage");
				break;
			case OBJECT_TYPE:
			case OBJECT_DOMAIN:
				ObjectAddressSet(addr, TypeRelationId,
								 LookupTypeNameOid(NULL, makeTypeNameFromNameList((List *) obj), true));
				break;
			default:
				break;
		}
		if (!allowed && OidIsValid(addr.objectId) &&
			classify_object(addr.classId, addr.objectId, &key, &user) == TV_GUARDED_EXTENSION)
			ereport(ERROR,
					(errcode(GUARD_ERRCODE),
					 errmsg("%s is refused on %s", what, getObjectDescription(&addr, false)),
					 errdetail("Users reach trialvault's tables only through its functions and secured views; the internal functions and the guard keep the privileges the extension gave them."),
					 errhint("EXECUTE on the public functions of schema trialvault, and USAGE on the schema, may be granted and revoked.")));
	}
}

/* CREATE TRIGGER */
static void
check_create_trigger(CreateTrigStmt *stmt, TvApproval *ap)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	Oid			funcoid;
	Oid			user;
	TvGuarded	g;

	if (!OidIsValid(relid))
		return;
	g = classify_relation(relid, &user);
	if (g == TV_GUARDED_EXTENSION)
	{
		refuse_extension_relation("CREATE TRIGGER", relid);
		return;
	}

	funcoid = LookupFuncName(stmt->funcname, 0, NULL, true);
	if (OidIsValid(funcoid) && tv_is_guard_function(funcoid))
	{
		/*
		 * Only protect() attaches the guard to a table (and a superuser
		 * restoring a dump, whose guard triggers come after its rows): a
		 * guarded table takes a slot of shared memory.
		 */
		if (relid != tv_protecting && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to attach trialvault.guard() to table \"%s\"",
							get_rel_name(relid)),
					 errhint("Use trialvault.protect('%s') to protect a table.",
							 get_rel_name(relid))));
		if (!tv_relation_can_be_guarded(relid))
			ereport(ERROR,
					(errcode(GUARD_ERRCODE),
					 errmsg("trialvault.guard() can only guard a permanent table that has the trialvault chain columns"),
					 errhint("Use trialvault.protect('%s') to protect a table.",
							 get_rel_name(relid))));
		if (g == TV_GUARDED_PROTECTED && stmt->replace && tv_is_guard_trigger_name(stmt->trigname))
			tv_refuse_protected(relid, "replacing a guard trigger", NULL);
		approve(ap, relid);
		return;
	}

	if (g != TV_GUARDED_PROTECTED)
		return;
	if (stmt->replace && tv_is_guard_trigger_name(stmt->trigname))
		tv_refuse_protected(relid, "replacing a guard trigger", NULL);
	if (stmt->row && (stmt->timing & TRIGGER_TYPE_BEFORE) &&
		(stmt->events & (TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE)) &&
		strcmp(stmt->trigname, TV_TRIG_CHAIN) > 0)
		tv_refuse_late_trigger(relid, stmt->trigname);
	approve(ap, relid);
}

/* DROP TRIGGER of a guard trigger */
static void
check_drop_trigger(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		List	   *names = lfirst(lc);
		RangeVar   *rv;
		Oid			relid;

		if (list_length(names) < 2 || !tv_is_guard_trigger_name(strVal(llast(names))))
			continue;
		rv = makeRangeVarFromNameList(list_truncate(list_copy(names),
													list_length(names) - 1));
		relid = RangeVarGetRelid(rv, NoLock, true);
		if (OidIsValid(relid) && tv_relation_is_protected(relid))
			tv_refuse_protected(relid, "DROP TRIGGER",
								"The guard triggers go only with the table, and only while it is empty.");
	}
}

/* A statement that puts something on a relation: rules, policies, ... */
static void
check_on_relation(RangeVar *rv, const char *what, const char *hint, TvApproval *ap,
				  bool harmless)
{
	Oid			relid = rv ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;
	Oid			user;

	if (!OidIsValid(relid))
		return;
	switch (classify_relation(relid, &user))
	{
		case TV_GUARDED_EXTENSION:
			refuse_extension_relation(what, relid);
			break;
		case TV_GUARDED_PROTECTED:
			if (!harmless)
				tv_refuse_protected(relid, what, hint);
			approve(ap, relid);
			break;
		case TV_GUARDED_TYPE:
		case TV_NOT_GUARDED:
			break;
	}
}

/*
 * TRUNCATE of a protected table or an extension table, also through an
 * inheritance parent: refused before any trigger runs.  A caller without
 * the TRUNCATE privilege gets PostgreSQL's own permission error instead.
 */
static void
refuse_truncate(Oid relid)
{
	Oid			user;
	TvGuarded	g = classify_relation(relid, &user);

	if (g == TV_NOT_GUARDED || g == TV_GUARDED_TYPE ||
		pg_class_aclcheck(relid, GetUserId(), ACL_TRUNCATE) != ACLCHECK_OK)
		return;
	if (tv_relation_is_protected(relid))
		tv_refuse_protected(relid, "TRUNCATE", NULL);
	refuse_extension("TRUNCATE",
					 psprintf("relation %s",
							  quote_qualified_identifier("trialvault", get_rel_name(relid))));
}

static void
check_truncate(TruncateStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->relations)
	{
		RangeVar   *rv = lfirst(lc);
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);
		ListCell   *rc;

		if (!OidIsValid(relid))
			continue;
		foreach(rc, rv->inh ? find_all_inheritors(relid, NoLock, NULL) : list_make1_oid(relid))
			refuse_truncate(lfirst_oid(rc));
	}
}

/* CREATE TABLE ... INHERITS (protected): the new child is not protected. */
static void
check_create_table(CreateStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->inhRelations)
	{
		Oid			parent = RangeVarGetRelid((RangeVar *) lfirst(lc), NoLock, true);

		if (OidIsValid(parent) && tv_relation_is_protected(parent))
			tv_refuse_protected(parent, stmt->partbound ? "CREATE TABLE ... PARTITION OF" :
								"CREATE TABLE ... INHERITS",
								"Rows of an unprotected table would show in every query of the protected one. Create the table alone, protect it, then ALTER TABLE ... INHERIT.");
	}
}

/* ALTER TYPE ... (RENAME|ADD) VALUE, on an enum */
static void
check_alter_enum(AlterEnumStmt *stmt, TvApproval *ap)
{
	Oid			typid = LookupTypeNameOid(NULL, makeTypeNameFromNameList(stmt->typeName), true);
	Oid			key;
	Oid			user;

	if (!OidIsValid(typid))
		return;
	switch (classify_object(TypeRelationId, typid, &key, &user))
	{
		case TV_GUARDED_EXTENSION:
			if (!tv_in_own_script())
				refuse_extension("ALTER TYPE", format_type_be(typid));
			break;
		case TV_GUARDED_TYPE:
			if (stmt->oldVal)
				refuse_type("ALTER TYPE ... RENAME VALUE", typid, user);
			approve(ap, typid);
			break;
		default:
			break;
	}
}

/* ALTER TYPE ... SET (...), ALTER DOMAIN */
static void
check_alter_type(List *names, const char *what, bool harmless, TvApproval *ap)
{
	Oid			typid = LookupTypeNameOid(NULL, makeTypeNameFromNameList(names), true);
	Oid			key;
	Oid			user;

	if (!OidIsValid(typid))
		return;
	switch (classify_object(TypeRelationId, typid, &key, &user))
	{
		case TV_GUARDED_EXTENSION:
			if (!tv_in_own_script())
				refuse_extension(what, format_type_be(typid));
			break;
		case TV_GUARDED_TYPE:
			if (!harmless)
				refuse_type(what, typid, user);
			approve(ap, typid);
			approve(ap, get_array_type(typid));
			break;
		default:
			break;
	}
}

/*
 * Does a DROP statement remove the extension as a whole (DROP EXTENSION
 * trialvault, DROP SCHEMA trialvault CASCADE, DROP EXTENSION pgcrypto
 * CASCADE, DROP OWNED)?  Its objects may then go with it; guard.c still
 * refuses while a protected table holds rows.
 */
static bool
drops_extension(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION && stmt->removeType != OBJECT_SCHEMA)
		return false;
	foreach(lc, stmt->objects)
	{
		const char *name = strVal(lfirst(lc));

		if (strcmp(name, "trialvault") == 0 ||
			(stmt->removeType == OBJECT_EXTENSION && stmt->behavior == DROP_CASCADE))
			return true;
	}
	return false;
}

/*
 * ALTER SYSTEM must not take trialvault out of shared_preload_libraries:
 * the next restart would start the server without its guards.
 */
static void
check_alter_system(AlterSystemStmt *stmt)
{
	VariableSetStmt *set = stmt->setstmt;
	bool		keeps = false;
	ListCell   *lc;

	if (set->kind == VAR_RESET_ALL)
		ereport(ERROR,
				(errcode(GUARD_ERRCODE),
				 errmsg("ALTER SYSTEM RESET ALL is refused while trialvault is preloaded"),
				 errdetail("It could take trialvault out of shared_preload_libraries, and the server would restart without its guards."),
				 errhint("Reset settings one by one.")));
	if (set->name == NULL || pg_strcasecmp(set->name, "shared_preload_libraries") != 0)
		return;
	if (set->kind == VAR_SET_VALUE)
	{
		foreach(lc, set->args)
		{
			A_Const    *c = lfirst(lc);

			if (IsA(c, A_Const) && IsA(&c->val, String) &&
				strstr(strVal(&c->val), "trialvault") != NULL)
				keeps = true;
		}
	}
	if (!keeps)
		ereport(ERROR,
				(errcode(GUARD_ERRCODE),
				 errmsg("ALTER SYSTEM would take trialvault out of shared_preload_libraries"),
				 errdetail("The server would restart without the guards of its protected tables."),
				 errhint("Keep trialvault in the list.")));
}

/*
 * The first layer: refuse what a statement would do to a guarded object
 * unless it is listed as harmless, and fill in the approval.
 */
static void
classify_statement(Node *parsetree, TvApproval *ap)
{
	/* The extension's own scripts are what may change its objects. */
	if (tv_in_own_script())
	{
		ap->extension_ok = true;
		return;
	}
	switch (nodeTag(parsetree))
	{
			/* Harmless to every object: maintenance, locks, tablespaces. */
		case T_VacuumStmt:
		case T_ClusterStmt:
		case T_ReindexStmt:
		case T_AlterTableMoveAllStmt:
			ap->protected_ok = true;
			ap->extension_ok = true;
			break;
		case T_ReassignOwnedStmt:
			/* Owners of protected tables may change; the extension's not. */
			ap->protected_ok = true;
			break;

		case T_AlterTableStmt:
			check_alter_table((AlterTableStmt *) parsetree, ap);
			break;
		case T_RenameStmt:
			check_rename((RenameStmt *) parsetree, ap);
			break;
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *s = (AlterObjectSchemaStmt *) parsetree;

				if (s->objectType == OBJECT_EXTENSION)
					break;		/* not relocatable; PostgreSQL refuses */
				check_addressed(named_object(s->objectType, s->relation, s->object, NULL),
								"SET SCHEMA", true, ap);
				break;
			}
		case T_AlterOwnerStmt:
			{
				AlterOwnerStmt *s = (AlterOwnerStmt *) parsetree;

				check_addressed(named_object(s->objectType, s->relation, s->object, NULL),
								"OWNER TO", true, ap);
				break;
			}
		case T_CommentStmt:
			{
				CommentStmt *s = (CommentStmt *) parsetree;

				/* pg_dump writes COMMENT ON EXTENSION for every extension. */
				if (s->objtype != OBJECT_EXTENSION)
					check_addressed_generic(s->objtype, NULL, s->object, "COMMENT", true, ap);
				break;
			}
		case T_SecLabelStmt:
			{
				SecLabelStmt *s = (SecLabelStmt *) parsetree;

				check_addressed_generic(s->objtype, NULL, s->object, "SECURITY LABEL", false, ap);
				break;
			}
		case T_AlterObjectDependsStmt:
			{
				AlterObjectDependsStmt *s = (AlterObjectDependsStmt *) parsetree;

				check_addressed_generic(s->objectType, s->relation, s->object,
										"DEPENDS ON EXTENSION", false, ap);
				break;
			}
		case T_AlterFunctionStmt:
			{
				AlterFunctionStmt *s = (AlterFunctionStmt *) parsetree;

				ObjectAddress addr;

				ObjectAddressSet(addr, ProcedureRelationId,
								 LookupFuncWithArgs(s->objtype, s->func, true));
				check_addressed(addr, "ALTER FUNCTION", false, ap);
				break;
			}
		case T_GrantStmt:
			check_grant((GrantStmt *) parsetree);
			break;
		case T_AlterDefaultPrivilegesStmt:
			{
				AlterDefaultPrivilegesStmt *s = (AlterDefaultPrivilegesStmt *) parsetree;
				ListCell   *lc;

				foreach(lc, s->options)
				{
					DefElem    *d = lfirst(lc);
					ListCell   *nc;

					if (strcmp(d->defname, "schemas") != 0)
						continue;
					foreach(nc, (List *) d->arg)
					{
						if (strcmp(strVal(lfirst(nc)), "trialvault") == 0)
							refuse_extension("ALTER DEFAULT PRIVILEGES", "schema trialvault");
					}
				}
				break;
			}
		case T_CreateTrigStmt:
			check_create_trigger((CreateTrigStmt *) parsetree, ap);
			break;
		case T_RuleStmt:
			check_on_relation(((RuleStmt *) parsetree)->relation, "CREATE RULE",
							  "A rule would send inserts elsewhere or turn refusals into silence.",
							  ap, false);
			break;
		case T_CreatePolicyStmt:
			check_on_relation(((CreatePolicyStmt *) parsetree)->table, "CREATE POLICY",
							  "A policy would hide stored rows from queries and secured views.",
							  ap, false);
			break;
		case T_AlterPolicyStmt:
			check_on_relation(((AlterPolicyStmt *) parsetree)->table, "ALTER POLICY",
							  NULL, ap, false);
			break;
		case T_IndexStmt:
			check_on_relation(((IndexStmt *) parsetree)->relation, "CREATE INDEX",
							  NULL, ap, true);
			break;
		case T_CreateStatsStmt:
			{
				CreateStatsStmt *s = (CreateStatsStmt *) parsetree;

				if (list_length(s->relations) == 1 && IsA(linitial(s->relations), RangeVar))
					check_on_relation(linitial(s->relations), "CREATE STATISTICS",
									  NULL, ap, true);
				break;
			}
		case T_TruncateStmt:
			check_truncate((TruncateStmt *) parsetree);
			break;
		case T_CreateStmt:
			check_create_table((CreateStmt *) parsetree);
			break;
		case T_CreateForeignTableStmt:
			check_create_table(&((CreateForeignTableStmt *) parsetree)->base);
			break;
		case T_AlterEnumStmt:
			check_alter_enum((AlterEnumStmt *) parsetree, ap);
			break;
		case T_AlterTypeStmt:
			check_alter_type(((AlterTypeStmt *) parsetree)->typeName,
							 "ALTER TYPE ... SET", false, ap);
			break;
		case T_AlterDomainStmt:
			/* Defaults, NOT NULL and constraints change no stored value. */
			check_alter_type(((AlterDomainStmt *) parsetree)->typeName,
							 "ALTER DOMAIN", true, ap);
			break;
		case T_AlterExtensionStmt:
			if (strcmp(((AlterExtensionStmt *) parsetree)->extname, "trialvault") == 0)
			{
				tv_refuse_event_triggers("ALTER EXTENSION trialvault");
				ap->extension_ok = true;
			}
			break;
		case T_CreateExtensionStmt:

			/*
			 * CREATE EXTENSION trialvault VERSION '0.4' runs the 0.1 script
			 * and then the updates, and PostgreSQL changes the extension's
			 * catalog row between them, outside any script.
			 */
			if (strcmp(((CreateExtensionStmt *) parsetree)->extname, "trialvault") == 0)
				ap->extension_ok = true;
			break;
		case T_AlterExtensionContentsStmt:
			{
				AlterExtensionContentsStmt *s = (AlterExtensionContentsStmt *) parsetree;

				if (strcmp(s->extname, "trialvault") == 0)
					ereport(ERROR,
							(errcode(GUARD_ERRCODE),
							 errmsg("%s objects %s extension \"trialvault\" is refused",
									s->action > 0 ? "adding" : "removing",
									s->action > 0 ? "to" : "from"),
							 errdetail("A member removed from the extension could then be dropped or replaced, switching the guards off; an object added would be taken for one of its own.")));
				break;
			}
		case T_DropStmt:
			{
				DropStmt   *s = (DropStmt *) parsetree;

				if (s->removeType == OBJECT_TRIGGER)
					check_drop_trigger(s);
				if (drops_extension(s))
					ap->dropping_extension = true;
				break;
			}
		case T_DropOwnedStmt:
			ap->dropping_extension = true;
			break;
		case T_AlterSystemStmt:
			if (tv_loaded_at_preload)
				check_alter_system((AlterSystemStmt *) parsetree);
			break;
		default:

			/*
			 * Everything else approves nothing: if it changes a guarded
			 * object after all (CREATE OR REPLACE, a cascade, ...), the
			 * object-access hook refuses it.
			 */
			break;
	}
}

static void
tv_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	TvApproval	ap;

	memset(&ap, 0, sizeof(ap));
	ap.command = CreateCommandName(pstmt->utilityStmt);
	classify_statement(pstmt->utilityStmt, &ap);

	ap.prev = tv_current;
	tv_current = &ap;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		tv_current = ap.prev;
	}
	PG_END_TRY();
}

/* ---------------------------------------------------------------------
 * Layer 2: the net
 * ---------------------------------------------------------------------
 */

/*
 * A new pg_inherits row that puts an unprotected child under a protected
 * parent (CREATE TABLE ... INHERITS, INHERIT, ATTACH PARTITION, by
 * whatever route).
 */
static void
check_new_inheritance(Oid child, Oid parent)
{
	Relation	inh;
	ScanKeyData key[2];
	SysScanDesc scan;
	bool		linked = false;
	HeapTuple	tup;

	if (!OidIsValid(parent) || !tv_relation_is_protected(parent) ||
		tv_relation_is_protected(child))
		return;
	inh = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_inherits_inhrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(child));
	scan = systable_beginscan(inh, InheritsRelidSeqnoIndexId, true, SnapshotSelf, 1, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		if (((Form_pg_inherits) GETSTRUCT(tup))->inhparent == parent)
			linked = true;
	}
	systable_endscan(scan);
	table_close(inh, AccessShareLock);
	if (linked)
		tv_refuse_protected(parent, tv_current ? tv_current->command : "INHERIT",
							"Rows of an unprotected table would show in every query of the protected one. Protect the child first.");
}

/* Is a change to this guarded object covered by the current statement? */
static bool
approved(TvGuarded g, Oid key)
{
	if (g == TV_GUARDED_EXTENSION)
		return tv_in_own_script() || (tv_current && tv_current->extension_ok);
	if (tv_current == NULL)
		return false;
	if (tv_current->protected_ok)
		return true;
	return list_member_oid(tv_current->oids, key) ||
		(g == TV_GUARDED_PROTECTED && key == tv_protecting);
}

static void
check_change(Oid classId, Oid objectId, bool is_internal, bool is_create)
{
	Oid			key;
	Oid			user;
	TvGuarded	g;

	/* A new schema named trialvault is where CREATE EXTENSION installs. */
	if (classId == NamespaceRelationId && is_create)
		return;
	g = classify_object(classId, objectId, &key, &user);
	if (g == TV_NOT_GUARDED)
		return;
	/* Foreign keys put internal AFTER triggers on the table they reference. */
	if (g == TV_GUARDED_PROTECTED && classId == TriggerRelationId && is_internal)
		return;
	if (!approved(g, key))
		refuse_unapproved(g, classId, objectId, key, user);
}

/*
 * Drops.  A guard trigger (and so a protected table) goes only while its
 * table is empty, a column of a protected table never (guard.c); the
 * extension's objects only with the extension itself.
 */
static void
check_drop(Oid classId, Oid objectId, int subId)
{
	Oid			key;
	Oid			user;

	tv_check_drop_guarded(classId, objectId, subId);
	if (tv_in_own_script() || (tv_current && tv_current->dropping_extension))
		return;
	if (classify_object(classId, objectId, &key, &user) == TV_GUARDED_EXTENSION)
	{
		ObjectAddress addr;

		ObjectAddressSubSet(addr, classId, objectId, subId);
		refuse_extension(tv_current ? tv_current->command : "DROP",
						 getObjectDescription(&addr, false));
	}
}

static void
tv_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (!IsTransactionState())
		return;
	switch (access)
	{
		case OAT_POST_CREATE:
			check_change(classId, objectId,
						 arg ? ((ObjectAccessPostCreate *) arg)->is_internal : false, true);
			break;
		case OAT_POST_ALTER:
			if (classId == InheritsRelationId && arg)
				check_new_inheritance(objectId,
									  ((ObjectAccessPostAlter *) arg)->auxiliary_id);
			check_change(classId, objectId,
						 arg ? ((ObjectAccessPostAlter *) arg)->is_internal : false, false);
			break;
		case OAT_TRUNCATE:
			refuse_truncate(objectId);
			break;
		case OAT_DROP:
			check_drop(classId, objectId, subId);
			break;
		default:
			/* OAT_FUNCTION_EXECUTE, OAT_NAMESPACE_SEARCH: nothing to do */
			break;
	}
}

void
tv_ddlguard_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = tv_ProcessUtility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = tv_object_access;
}
