/*-------------------------------------------------------------------------
 *
 * access.c
 *		The doors into studies and documents: management functions that know
 *		who called them, and open_document / emergency_open.
 *
 * Users have no rights on trialvault's tables, so its functions must run as
 * the extension's owner; but they must also know who really called them.
 * SECURITY DEFINER hides that (current_user becomes the owner), and passing
 * current_user from an invoker wrapper could be forged by calling the inner
 * function directly.  So the public functions are C: they take the caller's
 * role from GetUserId(), switch to the owner of schema trialvault with a
 * fixed search_path (what fmgr does for SECURITY DEFINER), and call the
 * internal SQL function of the same name with an underscore, passing the
 * caller's role name first.  The internal functions are revoked from PUBLIC.
 *
 * open_document and emergency_open do more: the access decision (SQL), the
 * decryption (crypto.c), and the record of the attempt, which the log writer
 * must have committed before the plaintext is returned (logwriter.c).
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

void
tv_become_owner(TvAsOwner *s)
{
	GetUserIdAndSecContext(&s->save_userid, &s->save_sec);
	SetUserIdAndSecContext(tv_owner(), s->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	s->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

void
tv_restore_user(TvAsOwner *s)
{
	AtEOXact_GUC(true, s->save_nestlevel);
	SetUserIdAndSecContext(s->save_userid, s->save_sec);
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
	int16		typlen;
	bool		typbyval;
	Datum		result;
	bool		isnull = true;
	TvAsOwner	as;

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
	values[0] = CStringGetDatum(GetUserNameFromId(GetUserId(), false));
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

	tv_become_owner(&as);
	SPI_connect();
	if (SPI_execute_with_args(sql.data, nargs + 1, types, values, nulls,
							  false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not run %s", sql.data);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && rettype != VOIDOID)
	{
		get_typlenbyval(rettype, &typlen, &typbyval);
		result = SPI_datumTransfer(result, typbyval, typlen);
	}
	SPI_finish();
	tv_restore_user(&as);

	if (isnull || rettype == VOIDOID)
	{
		if (rettype == VOIDOID)
			PG_RETURN_VOID();
		PG_RETURN_NULL();
	}
	return result;
}

/* Messages for the refusal reasons of trialvault._open_decision(). */
static void
tv_refuse(int64 doc_id, const char *reason, const char *study,
		  const char *site, const char *problem)
{
	if (strcmp(reason, "no_such_document") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("document %lld does not exist", (long long) doc_id),
				 errdetail("The attempt is recorded in the decryption log.")));
	if (strcmp(reason, "ciphertext_invalid") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("document %lld cannot be decrypted", (long long) doc_id),
				 errdetail("%s.", problem),
				 errhint("The attempt is recorded in the decryption log. trialvault.verify('trialvault.documents') checks the stored rows.")));
	if (strcmp(reason, "key_unavailable") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("document %lld cannot be decrypted: no usable key", (long long) doc_id),
				 errdetail("%s.", problem),
				 errhint("trialvault.key_status() shows the master keys this server holds.")));
	if (strcmp(reason, "study_not_open") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to open document %lld", (long long) doc_id),
				 errdetail("%s", problem),
				 errhint("Call trialvault.open_study('%s') first. The attempt is recorded in the decryption log (reason \"%s\").",
						 study, reason)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to open document %lld", (long long) doc_id),
			 errdetail("%s", problem),
			 errhint("The attempt is recorded in the decryption log (reason \"%s\").", reason)));
}

static const char *
tv_refusal_text(const char *reason, const char *study, const char *site)
{
	if (strcmp(reason, "not_a_member") == 0)
		return psprintf("You hold no role in study \"%s\".", study);
	if (strcmp(reason, "membership_revoked") == 0)
		return psprintf("Your roles in study \"%s\" have been revoked.", study);
	if (strcmp(reason, "sponsor_no_phi") == 0)
		return "Sponsors see metadata only, never documents with PHI.";
	if (strcmp(reason, "auditor_no_phi") == 0)
		return "Auditors see logs and audit trails only, never documents with PHI.";
	if (strcmp(reason, "monitor_not_authorized") == 0)
		return psprintf("No investigator of site \"%s\" has authorized you as monitor.", site);
	if (strcmp(reason, "monitor_authorization_expired") == 0)
		return psprintf("Your monitor authorization for site \"%s\" has expired.", site);
	if (strcmp(reason, "monitor_authorization_revoked") == 0)
		return psprintf("Your monitor authorization for site \"%s\" was revoked.", site);
	if (strcmp(reason, "other_site") == 0)
		return psprintf("The document belongs to site \"%s\", where you hold no role.", site);
	if (strcmp(reason, "emergency_not_authorized") == 0)
		return "Emergency access needs membership in role trialvault_emergency.";
	if (strcmp(reason, "study_not_open") == 0)
		return psprintf("Document is in study \"%s\", which this session has not opened.", study);
	if (strcmp(reason, "emergency_reason_missing") == 0)
		return "Emergency access needs a reason of at least three words.";
	return psprintf("Your roles in study \"%s\" do not entitle you to this document.", study);
}

static char *
tv_spi_text(int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);

	return *isnull ? NULL : TextDatumGetCString(d);
}

/* The decision queries, planned once per backend. */
static SPIPlanPtr grant_plan = NULL;
static SPIPlanPtr decision_plan = NULL;

SPIPlanPtr
tv_kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/*
 * Decide, decrypt, record, and only then return (or refuse).
 */
static Datum
tv_open(FunctionCallInfo fcinfo, bool emergency)
{
	int64		doc_id;
	char	   *why = NULL;
	TvLogRecord rec;
	TvAsOwner	as;
	Oid			types[4] = {INT8OID, NAMEOID, BOOLOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	bool		granted;
	char	   *reason;
	char	   *study;
	char	   *site;
	int32		study_id = 0;
	bool		contains_phi;
	bytea	   *content = NULL;
	const char *problem = NULL;
	bool		decided = false;
	MemoryContext outer = CurrentMemoryContext;

	/* Fail closed before any work if nothing could be put on record. */
	tv_log_require_writer();
	tv_log_coming();

	memset(&rec, 0, sizeof(rec));
	rec.kind = TV_LOG_DECRYPTION;
	tv_log_context(&rec);
	rec.emergency = emergency;
	rec.has_doc = !PG_ARGISNULL(0);
	doc_id = rec.has_doc ? PG_GETARG_INT64(0) : 0;
	rec.doc_id = doc_id;
	if (emergency && !PG_ARGISNULL(1))
	{
		why = text_to_cstring(PG_GETARG_TEXT_PP(1));
		strlcpy(rec.detail, why, sizeof(rec.detail));
	}

	/*
	 * Malformed requests are attempts too: on record, then refused.  (A NULL
	 * reason goes through the decision and is refused there.)
	 */
	if (!rec.has_doc || (why && strlen(why) >= TV_LOG_DETAIL))
	{
		strlcpy(rec.reason, "invalid_request", sizeof(rec.reason));
		tv_log_submit(&rec);
		if (!rec.has_doc)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("document id must not be NULL"),
					 errdetail("The attempt is recorded in the decryption log.")));
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("emergency reason is too long"),
				 errdetail("At most %d bytes are kept. The attempt is recorded in the decryption log.",
						   TV_LOG_DETAIL - 1)));
	}

	values[0] = Int64GetDatum(doc_id);
	values[1] = CStringGetDatum(rec.requester);
	values[2] = BoolGetDatum(emergency);
	values[3] = why ? CStringGetTextDatum(why) : (Datum) 0;
	nulls[3] = why ? ' ' : 'n';

	tv_become_owner(&as);
	SPI_connect();

	/*
	 * The everyday rules first (a small plan); the full decision only when
	 * they do not grant access, or in an emergency.
	 */
	if (!emergency)
	{
		Oid			gtypes[2] = {INT8OID, NAMEOID};
		bool		found;
		bool		reason_null;

		if (SPI_execute_plan(tv_kept_plan(&grant_plan,
										  "SELECT true, reason, study, site, study_id, "
										  "contains_phi, content, content_enc, found "
										  "FROM trialvault._open_grant($1, $2)",
										  2, gtypes),
							 values, nulls, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "trialvault._open_grant returned no row");
		found = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 9, &isnull));
		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &reason_null);
		decided = found && !reason_null;
		if (!decided)
			SPI_freetuptable(SPI_tuptable);
	}
	if (!decided &&
		(SPI_execute_plan(tv_kept_plan(&decision_plan,
									   "SELECT granted, reason, study, site, study_id, "
									   "contains_phi, content, content_enc "
									   "FROM trialvault._open_decision($1, $2, $3, $4)",
									   4, types),
						  values, nulls, false, 1) != SPI_OK_SELECT ||
		 SPI_processed != 1))
		elog(ERROR, "trialvault._open_decision returned no row");

	granted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	reason = tv_spi_text(2, &isnull);
	study = tv_spi_text(3, &isnull);
	site = tv_spi_text(4, &isnull);
	if (study)
		study_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	contains_phi = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	if (granted)
	{
		Datum		d;
		MemoryContext old;

		if (contains_phi)
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull);
			if (isnull)
			{
				granted = false;
				reason = "ciphertext_invalid";
				problem = "the document has no ciphertext";
			}
			else
			{
				const char *r = NULL;

				old = MemoryContextSwitchTo(outer);
				content = tv_decrypt_field(study_id, study, doc_id, "content",
										   DatumGetByteaPP(d), &r, &problem);
				MemoryContextSwitchTo(old);
				if (content == NULL)
				{
					granted = false;
					reason = (char *) r;
				}
			}
		}
		else
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull);
			if (isnull)
				content = NULL;
			else
			{
				old = MemoryContextSwitchTo(outer);
				content = DatumGetByteaPCopy(d);
				MemoryContextSwitchTo(old);
			}
		}
	}
	/*
	 * One study at a time: outside emergencies, a document opens only in the
	 * study the session has opened (checked after the decision, so that
	 * non-members are still told they are not members).
	 */
	if (granted && !emergency &&
		(tv_session_study_raw() == NULL || strcmp(tv_session_study_raw(), study) != 0))
	{
		granted = false;
		reason = "study_not_open";
		if (content)
			pfree(content);
		content = NULL;
	}
	rec.granted = granted;
	strlcpy(rec.reason, reason ? reason : "", sizeof(rec.reason));
	strlcpy(rec.study, study ? study : "", sizeof(rec.study));
	strlcpy(rec.site, site ? site : "", sizeof(rec.site));
	if (!granted && problem == NULL)
		problem = tv_refusal_text(rec.reason, rec.study, rec.site);
	if (problem)
		problem = MemoryContextStrdup(outer, problem);
	SPI_finish();
	tv_restore_user(&as);

	/* The record must be durable before anything is returned. */
	tv_log_submit(&rec);

	if (!granted)
		tv_refuse(doc_id, rec.reason, rec.study, rec.site, problem);
	if (content == NULL)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(content);
}

PG_FUNCTION_INFO_V1(tv_open_document);

/* trialvault.open_document(doc_id bigint) RETURNS bytea */
Datum
tv_open_document(PG_FUNCTION_ARGS)
{
	return tv_open(fcinfo, false);
}

PG_FUNCTION_INFO_V1(tv_emergency_open);

/* trialvault.emergency_open(doc_id bigint, reason text) RETURNS bytea */
Datum
tv_emergency_open(PG_FUNCTION_ARGS)
{
	return tv_open(fcinfo, true);
}

PG_FUNCTION_INFO_V1(tv_audit_durable);

/*
 * trialvault._audit_durable(event, actor, study, site, doc_id, detail): put
 * an audit event on record through the log writer, so that it survives the
 * caller's rollback (refusals that end in an error).  Internal: the callers
 * run as the owner and pass the real actor.
 */
Datum
tv_audit_durable(PG_FUNCTION_ARGS)
{
	TvLogRecord rec;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("audit event and actor must not be NULL")));
	memset(&rec, 0, sizeof(rec));
	rec.kind = TV_LOG_AUDIT;
	tv_log_context(&rec);
	strlcpy(rec.reason, text_to_cstring(PG_GETARG_TEXT_PP(0)), sizeof(rec.reason));
	strlcpy(rec.requester, NameStr(*PG_GETARG_NAME(1)), sizeof(rec.requester));
	if (!PG_ARGISNULL(2))
		strlcpy(rec.study, text_to_cstring(PG_GETARG_TEXT_PP(2)), sizeof(rec.study));
	if (!PG_ARGISNULL(3))
		strlcpy(rec.site, text_to_cstring(PG_GETARG_TEXT_PP(3)), sizeof(rec.site));
	if (!PG_ARGISNULL(4))
	{
		rec.doc_id = PG_GETARG_INT64(4);
		rec.has_doc = true;
	}
	if (!PG_ARGISNULL(5))
		strlcpy(rec.detail, text_to_cstring(PG_GETARG_TEXT_PP(5)), sizeof(rec.detail));
	tv_log_submit(&rec);
	PG_RETURN_VOID();
}
