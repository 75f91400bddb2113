/*-------------------------------------------------------------------------
 *
 * catalog.c
 *		The extension's own catalog state, object by object.
 *
 * trialvault.catalog_state() describes every object of the extension as
 * text: its schema, its members, everything in schema trialvault, each
 * function's full definition, each table's columns, defaults, constraints,
 * indexes, triggers, rules, policies and options, each view's definition,
 * owners, privileges and comments.  Role names are kept except the
 * extension's owner, who is written as "(extension owner)", so that two
 * databases installed by different superusers describe alike.
 *
 * Two things rest on it: the upgrade test, which proves that a database
 * updated from an old version has exactly the objects of a fresh install,
 * and verify(), which compares the state with the one sealed when the
 * installed version's script ran.  The query lives here, in the library,
 * rather than in an SQL function that a superuser could replace.
 *
 * The seal: the last statement of the install script and of every update
 * script is SELECT trialvault._seal_catalog(), which stores the SHA-256 of
 * each object's description in trialvault.catalog_seal, under the version
 * the script installs.  Only the extension's own scripts may add rows there
 * (a trigger refuses everyone else, superusers included).  What a DBA may
 * legitimately change is left out of the fingerprints: the privileges of
 * the public functions and of the schema (GRANT EXECUTE on protect(), for
 * instance).  Everything else the DDL guards refuse, so a difference means
 * someone edited the catalogs directly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

#include "trialvault.h"

/* One row per object: (object, definition), in no particular order. */
const char *const tv_catalog_state_sql =
"WITH ext AS (\n"
"	SELECT e.oid, e.extowner, e.extnamespace AS nsp FROM pg_extension e WHERE e.extname = 'trialvault'\n"
"), who(oid, name) AS (\n"
"	SELECT 0::oid, 'PUBLIC'\n"
"	UNION ALL\n"
"	SELECT r.oid, CASE WHEN r.oid = (SELECT extowner FROM ext) THEN '(extension owner)' ELSE r.rolname::text END\n"
"	FROM pg_roles r\n"
"), rels AS (\n"
"	SELECT c.* FROM pg_class c, ext WHERE c.relnamespace = ext.nsp\n"
")\n"
"-- the schema\n"
"SELECT 'schema ' || n.nspname,\n"
"	concat_ws(E'\\n',\n"
"		'owner ' || (SELECT name FROM who WHERE oid = n.nspowner),\n"
"		'acl ' || coalesce((SELECT string_agg(format('%s=%s/%s%s', g.name, a.privilege_type, o.name,\n"
"				CASE WHEN a.is_grantable THEN '*' ELSE '' END), ' ' ORDER BY 1)\n"
"			FROM aclexplode(n.nspacl) a JOIN who g ON g.oid = a.grantee JOIN who o ON o.oid = a.grantor), 'default'),\n"
"		'comment ' || coalesce(obj_description(n.oid, 'pg_namespace'), '(none)'))\n"
"FROM pg_namespace n, ext WHERE n.oid = ext.nsp\n"
"UNION ALL\n"
"-- the extension itself\n"
"SELECT 'extension trialvault',\n"
"	concat_ws(E'\\n',\n"
"		'relocatable ' || e.extrelocatable,\n"
"		'config ' || coalesce((SELECT string_agg(format('%s %L', c.oid::regclass, x.cond), ', ' ORDER BY c.oid::regclass::text)\n"
"			FROM unnest(e.extconfig, e.extcondition) AS x(rel, cond) JOIN pg_class c ON c.oid = x.rel), '(none)'),\n"
"		'requires ' || coalesce((SELECT string_agg(r.extname, ', ' ORDER BY r.extname) FROM pg_depend d\n"
"			JOIN pg_extension r ON r.oid = d.refobjid\n"
"			WHERE d.classid = 'pg_extension'::regclass AND d.objid = e.oid AND d.refclassid = 'pg_extension'::regclass), '(none)'))\n"
"FROM pg_extension e, ext WHERE e.oid = ext.oid\n"
"UNION ALL\n"
"-- its members, wherever they are, and everything else in its schema\n"
"SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid), 'member'\n"
"FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'\n"
"UNION ALL\n"
"SELECT 'in schema ' || pg_describe_object(d.classid, d.objid, d.objsubid), 'in schema'\n"
"FROM pg_depend d, ext WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ext.nsp\n"
"UNION ALL\n"
"-- functions\n"
"SELECT 'function ' || p.oid::regprocedure::text,\n"
"	concat_ws(E'\\n',\n"
"		CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE 'kind ' || p.prokind::text END,\n"
"		'owner ' || (SELECT name FROM who WHERE oid = p.proowner),\n"
"		'acl ' || coalesce((SELECT string_agg(format('%s=%s/%s%s', g.name, a.privilege_type, o.name,\n"
"				CASE WHEN a.is_grantable THEN '*' ELSE '' END), ' ' ORDER BY 1)\n"
"			FROM aclexplode(p.proacl) a JOIN who g ON g.oid = a.grantee JOIN who o ON o.oid = a.grantor), 'default'),\n"
"		'comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '(none)'))\n"
"FROM pg_proc p, ext WHERE p.pronamespace = ext.nsp\n"
"UNION ALL\n"
"-- relations\n"
"SELECT CASE c.relkind WHEN 'r' THEN 'table ' WHEN 'v' THEN 'view ' WHEN 'S' THEN 'sequence '\n"
"		WHEN 'i' THEN 'index ' ELSE 'relation ' || c.relkind::text || ' ' END || c.relname,\n"
"	concat_ws(E'\\n',\n"
"		'persistence ' || c.relpersistence::text,\n"
"		'owner ' || (SELECT name FROM who WHERE oid = c.relowner),\n"
"		'acl ' || coalesce((SELECT string_agg(format('%s=%s/%s%s', g.name, a.privilege_type, o.name,\n"
"				CASE WHEN a.is_grantable THEN '*' ELSE '' END), ' ' ORDER BY 1)\n"
"			FROM aclexplode(c.relacl) a JOIN who g ON g.oid = a.grantee JOIN who o ON o.oid = a.grantor), 'default'),\n"
"		'options ' || coalesce(array_to_string(c.reloptions, ' '), '(none)'),\n"
"		'row security ' || c.relrowsecurity || ' ' || c.relforcerowsecurity,\n"
"		'replica identity ' || c.relreplident::text,\n"
"		'of type ' || coalesce(nullif(c.reloftype, 0)::regtype::text, '(none)'),\n"
"		'partition ' || c.relispartition,\n"
"		'access method ' || coalesce((SELECT amname FROM pg_am WHERE oid = c.relam), '(none)'),\n"
"		'comment ' || coalesce(obj_description(c.oid, 'pg_class'), '(none)'),\n"
"		(SELECT string_agg(format('column %s %s%s%s%s%s%s acl %s comment %s', a.attname, format_type(a.atttypid, a.atttypmod),\n"
"				CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,\n"
"				CASE WHEN a.atthasdef THEN ' default ' || pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END,\n"
"				CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END,\n"
"				CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END,\n"
"				CASE WHEN a.attcollation <> 0 AND a.attcollation <> (SELECT typcollation FROM pg_type WHERE oid = a.atttypid)\n"
"					THEN ' collate ' || a.attcollation::regcollation ELSE '' END,\n"
"				coalesce(a.attacl::text, 'default'),\n"
"				coalesce(col_description(c.oid, a.attnum), '(none)')), E'\\n' ORDER BY a.attnum)\n"
"			FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum\n"
"			WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),\n"
"		CASE WHEN c.relkind IN ('v', 'm') THEN 'definition ' || pg_get_viewdef(c.oid) END,\n"
"		CASE WHEN c.relkind = 'i' THEN 'definition ' || pg_get_indexdef(c.oid) END,\n"
"		CASE WHEN c.relkind = 'S' THEN (SELECT format('sequence %s %s %s %s %s %s %s', format_type(s.seqtypid, NULL),\n"
"				s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)\n"
"			FROM pg_sequence s WHERE s.seqrelid = c.oid) END,\n"
"		(SELECT string_agg(format('constraint %s %s', k.conname, pg_get_constraintdef(k.oid)), E'\\n' ORDER BY k.conname)\n"
"			FROM pg_constraint k WHERE k.conrelid = c.oid),\n"
"		(SELECT string_agg('index ' || pg_get_indexdef(i.indexrelid), E'\\n' ORDER BY 1)\n"
"			FROM pg_index i WHERE i.indrelid = c.oid),\n"
"		(SELECT string_agg(x.d, E'\\n' ORDER BY x.d) FROM (\n"
"			SELECT CASE WHEN t.tgisinternal\n"
"					THEN format('internal trigger of constraint %s type %s function %s enabled %s',\n"
"						(SELECT k.conname FROM pg_constraint k WHERE k.oid = t.tgconstraint), t.tgtype,\n"
"						t.tgfoid::regproc, t.tgenabled::text)\n"
"					ELSE format('trigger %s enabled %s', pg_get_triggerdef(t.oid), t.tgenabled::text) END\n"
"			FROM pg_trigger t WHERE t.tgrelid = c.oid) x(d)),\n"
"		(SELECT string_agg(format('rule %s', pg_get_ruledef(r.oid)), E'\\n' ORDER BY r.rulename)\n"
"			FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'),\n"
"		(SELECT string_agg(format('policy %s %s %s %s %s %s', p.polname, p.polcmd::text, p.polpermissive, p.polroles::text,\n"
"				pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)), E'\\n' ORDER BY p.polname)\n"
"			FROM pg_policy p WHERE p.polrelid = c.oid),\n"
"		(SELECT string_agg('inherits ' || i.inhparent::regclass::text, E'\\n' ORDER BY i.inhseqno)\n"
"			FROM pg_inherits i WHERE i.inhrelid = c.oid),\n"
"		(SELECT string_agg('inherited by ' || i.inhrelid::regclass::text, E'\\n' ORDER BY 1)\n"
"			FROM pg_inherits i WHERE i.inhparent = c.oid))\n"
"FROM rels c\n"
"UNION ALL\n"
"-- types other than the row and array types of its relations\n"
"SELECT 'type ' || format_type(t.oid, NULL),\n"
"	concat_ws(E'\\n', 'kind ' || t.typtype::text,\n"
"		'owner ' || (SELECT name FROM who WHERE oid = t.typowner),\n"
"		'acl ' || coalesce(t.typacl::text, 'default'),\n"
"		'base ' || nullif(t.typbasetype, 0)::regtype::text,\n"
"		'not null ' || t.typnotnull,\n"
"		'default ' || t.typdefault,\n"
"		(SELECT string_agg('label ' || e.enumlabel, E'\\n' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),\n"
"		(SELECT string_agg(format('constraint %s %s', k.conname, pg_get_constraintdef(k.oid)), E'\\n' ORDER BY k.conname)\n"
"			FROM pg_constraint k WHERE k.contypid = t.oid),\n"
"		'comment ' || coalesce(obj_description(t.oid, 'pg_type'), '(none)'))\n"
"FROM pg_type t, ext\n"
"WHERE t.typnamespace = ext.nsp\n"
"  AND NOT (t.typrelid <> 0 AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) <> 'c')\n"
"  AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid AND e.typrelid <> 0)\n";

/*
 * The descriptions name objects and types as search_path shows them
 * (regclass, regprocedure, format_type): every query of this file runs with
 * the path pinned (tv_pin_search_path), so that a script (whose path starts
 * with schema trialvault), verify() and an auditor's session describe alike.
 * Constants in view and default definitions are written out by their output
 * functions (an interval under IntervalStyle, a timestamp under DateStyle
 * and TimeZone): those settings are pinned too, to PostgreSQL's defaults.
 */
static int
tv_pin_description_settings(void)
{
	static const char *const settings[][2] = {
		{"DateStyle", "ISO, MDY"}, {"IntervalStyle", "postgres"}, {"TimeZone", "UTC"},
		{"extra_float_digits", "1"}, {"bytea_output", "hex"}
	};
	int			nestlevel = tv_pin_search_path();
	int			i;

	for (i = 0; i < (int) lengthof(settings); i++)
		(void) set_config_option(settings[i][0], settings[i][1],
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	return nestlevel;
}

PG_FUNCTION_INFO_V1(tv_catalog_state);

/*
 * trialvault.catalog_state(): the rows of tv_catalog_state_sql, ordered by
 * object.  Runs with the caller's rights: the catalogs it reads are
 * readable by everyone.
 */
Datum
tv_catalog_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql;
	uint64		i;

	int			nestlevel;

	InitMaterializedSRF(fcinfo, 0);
	sql = psprintf("SELECT s.object, s.definition FROM (%s) s(object, definition) ORDER BY 1",
				   tv_catalog_state_sql);
	nestlevel = tv_pin_description_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the catalog state of trialvault");
	for (i = 0; i < SPI_processed; i++)
	{
		Datum		values[2];
		bool		nulls[2];

		values[0] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &nulls[0]);
		values[1] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &nulls[1]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	tv_unpin_search_path(nestlevel);
	PG_RETURN_NULL();
}

/*
 * The fingerprint of each object, as an SQL expression over s(object,
 * definition): SHA-256 of the definition, without the privileges of the
 * public functions and the schema, which a DBA may grant (ddlguard.c).
 */
#define TV_FINGERPRINT \
	"pg_catalog.sha256(pg_catalog.convert_to(CASE " \
	"  WHEN s.object = 'schema trialvault' " \
	"    OR (s.object ~ '^function trialvault\\.[^_]' " \
	"        AND s.object !~ '^function trialvault\\.guard\\(') " \
	"  THEN pg_catalog.regexp_replace(s.definition, E'\\nacl [^\\n]*', '') " \
	"  ELSE s.definition END, 'UTF8'))"

PG_FUNCTION_INFO_V1(tv_seal_catalog);

/*
 * trialvault._seal_catalog(): record the fingerprints of the objects the
 * running script leaves, under the version it installs.  Only the
 * extension's own scripts may call it.
 */
Datum
tv_seal_catalog(PG_FUNCTION_ARGS)
{
	char	   *sql;
	int			ret;
	int			nestlevel;

	if (!tv_in_own_script())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only the scripts of extension trialvault may seal its catalog state")));
	sql = psprintf("INSERT INTO trialvault.catalog_seal (version, object, fingerprint) "
				   "SELECT (SELECT e.extversion FROM pg_catalog.pg_extension e "
				   "        WHERE e.extname = 'trialvault'), s.object, %s "
				   "FROM (%s) s(object, definition)",
				   TV_FINGERPRINT, tv_catalog_state_sql);
	nestlevel = tv_pin_description_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute(sql, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not seal the catalog state of trialvault: %s",
			 SPI_result_code_string(ret));
	SPI_finish();
	tv_unpin_search_path(nestlevel);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(tv_seal_insert_guard);

/*
 * Trigger on trialvault.catalog_seal: rows come only from _seal_catalog()
 * in the extension's own scripts.
 */
Datum
tv_seal_insert_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trialvault._seal_insert_guard() may only be called as a trigger")));
	if (!tv_in_own_script())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rows of trialvault.catalog_seal are written only by the extension's own scripts"),
				 errdetail("The seal records what the installed version created; nobody may add to it.")));
	PG_RETURN_POINTER(td->tg_trigtuple);
}

/* The installed version of the extension, as pg_extension records it. */
static char *
get_extension_version(void)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute("SELECT e.extversion FROM pg_catalog.pg_extension e "
					"WHERE e.extname = 'trialvault'", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		return pstrdup("unknown");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? pstrdup("unknown") : TextDatumGetCString(d);
}

/*
 * tv_catalog_problem: NULL when every object of the extension is as the
 * installed version's script sealed it; otherwise a sentence naming the
 * first difference (in object order).  The caller is connected to SPI.
 */
char *
tv_catalog_problem(void)
{
	char	   *sql;
	char	   *result = NULL;
	bool		isnull;
	int			nestlevel;
	Oid			nsp = get_namespace_oid("trialvault", false);

	if (!OidIsValid(get_relname_relid("catalog_seal", nsp)))
		return psprintf("the extension's objects are not sealed (version %s predates 0.6)",
						get_extension_version());
	nestlevel = tv_pin_description_settings();

	sql = psprintf("WITH v AS (SELECT e.extversion FROM pg_catalog.pg_extension e "
				   "           WHERE e.extname = 'trialvault'), "
				   "cur AS (SELECT s.object, %s AS fp FROM (%s) s(object, definition)), "
				   "seal AS (SELECT c.object, c.fingerprint FROM trialvault.catalog_seal c, v "
				   "         WHERE c.version = v.extversion) "
				   "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM seal) "
				   "  THEN pg_catalog.format('no catalog seal for the installed version %%s', (SELECT extversion FROM v)) "
				   "  ELSE (SELECT pg_catalog.format('extension object \"%%s\" %%s', "
				   "          COALESCE(cur.object, seal.object), "
				   "          CASE WHEN seal.object IS NULL THEN 'was added after the version''s script ran' "
				   "               WHEN cur.object IS NULL THEN 'was removed after the version''s script ran' "
				   "               ELSE 'differs from what the version''s script created' END) "
				   "        FROM cur FULL JOIN seal ON seal.object = cur.object "
				   "        WHERE cur.fp IS DISTINCT FROM seal.fingerprint "
				   "        ORDER BY COALESCE(cur.object, seal.object) LIMIT 1) END",
				   TV_FINGERPRINT, tv_catalog_state_sql);
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not compare the catalog state of trialvault with its seal");
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = TextDatumGetCString(d);
	}
	tv_unpin_search_path(nestlevel);
	return result;
}
