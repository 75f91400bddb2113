/*-------------------------------------------------------------------------
 *
 * owner.c
 *		Running as the extension's owner for the real caller, and the SPI
 *		plumbing every component uses while doing so.
 *
 * Users have no rights on trialvault's tables, so its functions must run as
 * the extension's owner; but they must also know who really called them.
 * SECURITY DEFINER hides that (current_user becomes the owner), and passing
 * current_user from an invoker wrapper could be forged by calling the inner
 * function directly.  So the public functions are C: they take the caller's
 * role from GetUserId(), switch to the owner of schema trialvault with a
 * fixed search_path (what fmgr does for SECURITY DEFINER), and run SQL
 * there.  tv_call_as_owner does this for every management function: it
 * calls the internal SQL function of the same name with an underscore,
 * passing the caller's role name first.  The internal functions are revoked
 * from PUBLIC.
 *
 * An error between tv_owner_spi_begin and tv_owner_spi_end needs no
 * cleanup here: transaction (or subtransaction) abort restores the user,
 * the security context and the GUC nest level, and ends SPI, as it does for
 * a SECURITY DEFINER function.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "trialvault.h"

/* Most arguments a management function may have (plus the caller). */
#define TV_MAX_ARGS 8

static Oid
tv_owner(void)
{
	Oid			nsp = get_namespace_oid("trialvault", false);
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Pin search_path to pg_catalog (then pg_temp) until tv_unpin_search_path
 * is given the returned level, so that nothing the caller put on the path
 * is found by the SQL run in between.
 */
int
tv_pin_search_path(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return nestlevel;
}

void
tv_unpin_search_path(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Become the owner of schema trialvault with search_path pinned, as fmgr
 * does for a SECURITY DEFINER function; tv_restore_user undoes it.
 */
void
tv_become_owner(TvAsOwner *s)
{
	GetUserIdAndSecContext(&s->save_userid, &s->save_sec);
	SetUserIdAndSecContext(tv_owner(), s->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	s->save_nestlevel = tv_pin_search_path();
}

void
tv_restore_user(TvAsOwner *s)
{
	tv_unpin_search_path(s->save_nestlevel);
	SetUserIdAndSecContext(s->save_userid, s->save_sec);
}

/* Become the owner and connect to SPI; tv_owner_spi_end undoes both. */
void
tv_owner_spi_begin(TvAsOwner *s)
{
	tv_become_owner(s);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
tv_owner_spi_end(TvAsOwner *s)
{
	SPI_finish();
	tv_restore_user(s);
}

/*
 * A plan prepared on first use and kept for the life of the backend in
 * *slot.  The caller is connected to SPI.
 */
SPIPlanPtr
tv_kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/*
 * Run a plan that returns exactly one row, and return its first column,
 * of type "type", copied out of SPI's memory into the context that was
 * current at SPI_connect.
 */
Datum
tv_spi_value(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
			 Oid type, bool *isnull)
{
	Datum		result;
	int16		typlen;
	bool		typbyval;
	int			ret;

	ret = SPI_execute_plan(plan, values, nulls, read_only, read_only ? 1 : 0);
	if (ret < 0 || SPI_tuptable == NULL || SPI_processed != 1)
		elog(ERROR, "trialvault: expected one row, got %s (%llu rows)",
			 SPI_result_code_string(ret), (unsigned long long) SPI_processed);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	if (*isnull || type == VOIDOID)
		return (Datum) 0;
	get_typlenbyval(type, &typlen, &typbyval);
	return SPI_datumTransfer(result, typbyval, typlen);
}

PG_FUNCTION_INFO_V1(tv_call_as_owner);

/*
 * tv_call_as_owner: the body of every management function declared with
 * AS 'MODULE_PATHNAME', 'tv_call_as_owner'.  trialvault.f(a, b) runs
 * SELECT trialvault._f(<caller's role>, a, b) as the owner.
 */
Datum
tv_call_as_owner(PG_FUNCTION_ARGS)
{
	Oid			fnoid = fcinfo->flinfo->fn_oid;
	HeapTuple	proctup;
	Form_pg_proc proc;
	StringInfoData sql;
	Oid			types[TV_MAX_ARGS + 1];
	Datum		values[TV_MAX_ARGS + 1];
	char		nulls[TV_MAX_ARGS + 1];
	int			nargs;
	int			i;
	Oid			rettype;
	Datum		result;
	bool		isnull;
	TvAsOwner	as;
	NameData	caller;
	SPIPlanPtr	plan;

	proctup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
	if (!HeapTupleIsValid(proctup))
		elog(ERROR, "cache lookup failed for function %u", fnoid);
	proc = (Form_pg_proc) GETSTRUCT(proctup);
	nargs = proc->pronargs;
	if (nargs > TV_MAX_ARGS || proc->proretset)
		elog(ERROR, "tv_call_as_owner cannot call %s", NameStr(proc->proname));
	rettype = proc->prorettype;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT trialvault.%s($1",
					 quote_identifier(psprintf("_%s", NameStr(proc->proname))));
	types[0] = NAMEOID;
	values[0] = tv_name_datum(&caller, GetUserNameFromId(GetUserId(), false));
	nulls[0] = ' ';
	for (i = 0; i < nargs; i++)
	{
		types[i + 1] = proc->proargtypes.values[i];
		values[i + 1] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i + 1] = PG_ARGISNULL(i) ? 'n' : ' ';
		appendStringInfo(&sql, ", $%d", i + 2);
	}
	appendStringInfoChar(&sql, ')');
	ReleaseSysCache(proctup);

	tv_owner_spi_begin(&as);
	plan = SPI_prepare(sql.data, nargs + 1, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql.data, SPI_result_code_string(SPI_result));
	result = tv_spi_value(plan, values, nulls, false, rettype, &isnull);
	tv_owner_spi_end(&as);

	if (rettype == VOIDOID)
		PG_RETURN_VOID();
	if (isnull)
		PG_RETURN_NULL();
	return result;
}
