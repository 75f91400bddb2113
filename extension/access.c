/*-------------------------------------------------------------------------
 *
 * access.c
 *		The door to documents: open_document and emergency_open.
 *
 * Like every public function they run as the extension's owner for the
 * real caller (owner.c).  Each call makes the access decision (the everyday
 * grants in C, from a per-backend roles cache; everything else in SQL), the
 * decryption (crypto.c), and the record of the attempt, which the log
 * writer must have committed before the plaintext is returned
 * (logwriter.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/lsyscache.h"

#include "trialvault.h"

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
static SPIPlanPtr decision_plan = NULL;
static SPIPlanPtr roles_plan = NULL;

/*
 * What the decision found out about one call: the verdict, and the
 * document's study, site and stored content.  The content (ciphertext when
 * contains_phi) lives in the SPI context on the SQL path and in the
 * caller's context on the everyday path; either way it is gone after
 * SPI_finish, by which time it has been decrypted or copied.
 */
typedef struct TvOpenRow
{
	bool		granted;
	char	   *reason;
	char	   *study;
	char	   *site;
	int32		study_id;
	bool		contains_phi;
	bytea	   *stored;			/* content, or content_enc with PHI; NULL if none */
} TvOpenRow;

/* ---------------------------------------------------------------------
 * The everyday grant, without SQL
 *
 * Nearly every call is a member opening a document that one of the
 * everyday rules grants: the loader, a document without PHI, site staff or
 * the investigator of its site, safety for an SAE.  Deciding that in SQL
 * (_open_grant) started a join and an aggregate on every call, which cost
 * about as much as the rest of open_document together.  Here the document
 * is read through its primary key, and the caller's roles in its study
 * (with the study's id) come from a small per-backend cache that stays
 * valid while the generation numbers of trialvault.memberships and
 * trialvault.studies have not moved (tv_chain_generation).
 *
 * This path can only grant, and only what _open_grant grants: anything
 * else (no such document, no rule that applies, monitors, emergencies)
 * goes to the SQL decision, which stays the one authority on refusals.
 * The rules below must follow the CASE of _open_grant exactly.
 * ---------------------------------------------------------------------
 */
#define TV_ROLES_CACHE 8

typedef struct TvRoles
{
	char		study[TV_LOG_TEXT];
	NameData	member;
	uint64		gens[2];		/* of memberships and studies */
	int32		study_id;
	int			nroles;
	char	  **roles;			/* "site:role", "*:role" for study-wide */
} TvRoles;

static TvRoles *roles_cache[TV_ROLES_CACHE];
static int	roles_cache_next = 0;
static MemoryContext roles_cxt = NULL;

static void
tv_roles_free(TvRoles *r)
{
	int			i;

	for (i = 0; i < r->nroles; i++)
		pfree(r->roles[i]);
	if (r->roles)
		pfree(r->roles);
	pfree(r);
}

/*
 * The caller's current roles in a study, and the study's id, from the
 * cache or from SQL (_current_roles, the same function _open_grant uses).
 * NULL when there is no such study.  A result that could not be cached is
 * allocated in CurrentMemoryContext.
 */
static TvRoles *
tv_study_roles(const char *study, const char *member, bool cacheable,
			   const uint64 *gens)
{
	Oid			types[2] = {TEXTOID, NAMEOID};
	Datum		values[2];
	NameData	mname;
	TvRoles    *r;
	MemoryContext old;
	Datum	   *elems;
	bool	   *enulls;
	int			nelems;
	bool		isnull;
	int			slot;
	int			i;

	for (slot = 0; slot < TV_ROLES_CACHE; slot++)
	{
		r = roles_cache[slot];
		if (r && strcmp(r->study, study) == 0 && strcmp(NameStr(r->member), member) == 0)
		{
			if (cacheable && r->gens[0] == gens[0] && r->gens[1] == gens[1])
				return r;
			break;
		}
	}

	namestrcpy(&mname, member);
	values[0] = CStringGetTextDatum(study);
	values[1] = NameGetDatum(&mname);
	if (SPI_execute_plan(tv_kept_plan(&roles_plan,
									  "SELECT s.study_id, coalesce((SELECT array_agg(coalesce(c.site, '*') || ':' || c.study_role) "
									  "FROM trialvault._current_roles($1, $2) c), '{}') "
									  "FROM trialvault.studies s WHERE s.code = $1",
									  2, types),
						 values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the roles of %s in study %s", member, study);
	if (SPI_processed != 1)
		return NULL;

	/* Taken apart here; only the result is copied into the cache. */
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &nelems);

	if (cacheable && roles_cxt == NULL)
		roles_cxt = AllocSetContextCreate(TopMemoryContext, "trialvault roles cache",
										  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cacheable ? roles_cxt : CurrentMemoryContext);
	r = palloc0(sizeof(TvRoles));
	strlcpy(r->study, study, sizeof(r->study));
	namestrcpy(&r->member, member);
	r->gens[0] = gens[0];
	r->gens[1] = gens[1];
	r->study_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	r->nroles = nelems;
	r->roles = nelems > 0 ? palloc(sizeof(char *) * nelems) : NULL;
	for (i = 0; i < nelems; i++)
		r->roles[i] = TextDatumGetCString(elems[i]);
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	if (cacheable)
	{
		/* Replace the stale entry for this key, or the oldest one. */
		if (slot == TV_ROLES_CACHE)
			slot = roles_cache_next++ % TV_ROLES_CACHE;
		if (roles_cache[slot])
			tv_roles_free(roles_cache[slot]);
		roles_cache[slot] = r;
	}
	return r;
}

/* Does the caller hold <site>:<role>, as _open_grant writes it? */
static bool
tv_has_role(const TvRoles *r, const char *site, const char *role)
{
	size_t		sl = strlen(site);
	int			i;

	for (i = 0; i < r->nroles; i++)
	{
		const char *e = r->roles[i];

		if (strncmp(e, site, sl) == 0 && e[sl] == ':' && strcmp(e + sl + 1, role) == 0)
			return true;
	}
	return false;
}

/* One text column of the document row, as a C string. */
static char *
tv_doc_text(HeapTuple tup, TupleDesc desc, AttrNumber att)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, att, desc, &isnull);

	if (isnull)
		elog(ERROR, "trialvault.documents has a NULL in a NOT NULL column");
	return TextDatumGetCString(d);
}

/* The columns of trialvault.documents the everyday decision reads. */
enum
{
	DOC_ID, DOC_STUDY, DOC_SITE, DOC_TYPE, DOC_PHI, DOC_LOADED_BY, DOC_CONTENT,
	DOC_CONTENT_ENC, DOC_NCOLS
};
static const char *const tv_doc_colnames[DOC_NCOLS] = {
	"doc_id", "study", "site", "doc_type", "contains_phi", "loaded_by", "content",
	"content_enc"
};

/* Their attribute numbers, in one pass over the descriptor. */
static void
tv_doc_atts(TupleDesc desc, AttrNumber *atts)
{
	int			i;
	int			c;

	memset(atts, 0, sizeof(AttrNumber) * DOC_NCOLS);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		for (c = 0; c < DOC_NCOLS; c++)
			if (strcmp(NameStr(a->attname), tv_doc_colnames[c]) == 0)
				atts[c] = a->attnum;
	}
	for (c = 0; c < DOC_NCOLS; c++)
		if (atts[c] == InvalidAttrNumber)
			elog(ERROR, "trialvault.documents has no column %s", tv_doc_colnames[c]);
}

/*
 * The everyday decision: true, with *row filled in (stored content in
 * CurrentMemoryContext), when one of the everyday rules grants the
 * requester this document; false when the SQL decision must decide.
 */
static bool
tv_open_everyday(int64 doc_id, const char *requester, TvOpenRow *row)
{
	Oid			nsp = get_namespace_oid("trialvault", false);
	Oid			relids[2];
	uint64		gens[2];
	bool		cacheable = true;
	Relation	rel;
	Oid			pkey;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	TupleDesc	desc;
	AttrNumber	atts[DOC_NCOLS];
	bool		found = false;
	bool		isnull;
	char	   *loaded_by = NULL;
	char	   *doc_type = NULL;
	TvRoles    *roles;
	const char *reason = NULL;
	int			i;

	relids[0] = get_relname_relid("memberships", nsp);
	relids[1] = get_relname_relid("studies", nsp);
	for (i = 0; i < 2; i++)
	{
		if (!OidIsValid(relids[i]))
			return false;
		/* Read before the snapshot below is taken (see tv_chain_generation). */
		if (!tv_chain_generation(relids[i], &gens[i]))
			cacheable = false;
	}

	/* What a non-read-only SPI query would see: our own earlier commands too. */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	rel = table_open(get_relname_relid("documents", nsp), AccessShareLock);
	pkey = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(pkey))
		elog(ERROR, "trialvault.documents has no primary key");
	desc = RelationGetDescr(rel);
	tv_doc_atts(desc, atts);
	ScanKeyInit(&key, atts[DOC_ID], BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(doc_id));
	/* systable_* scans any table through a btree index, not only catalogs. */
	scan = systable_beginscan(rel, pkey, true, GetActiveSnapshot(), 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		Datum		d;

		found = true;
		row->study = tv_doc_text(tup, desc, atts[DOC_STUDY]);
		row->site = tv_doc_text(tup, desc, atts[DOC_SITE]);
		doc_type = tv_doc_text(tup, desc, atts[DOC_TYPE]);
		row->contains_phi = DatumGetBool(heap_getattr(tup, atts[DOC_PHI], desc, &isnull));
		loaded_by = pstrdup(NameStr(*DatumGetName(heap_getattr(tup, atts[DOC_LOADED_BY],
																  desc, &isnull))));
		/* Detoasted now, while the snapshot that found the row is active. */
		d = heap_getattr(tup, atts[row->contains_phi ? DOC_CONTENT_ENC : DOC_CONTENT],
						 desc, &isnull);
		row->stored = isnull ? NULL : DatumGetByteaPCopy(d);
	}
	systable_endscan(scan);
	/* Keep the lock until the end of the transaction, as a query would. */
	table_close(rel, NoLock);
	PopActiveSnapshot();
	if (!found)
		return false;

	roles = tv_study_roles(row->study, requester, cacheable, gens);
	if (roles == NULL || roles->nroles == 0)
		return false;

	/* The CASE of _open_grant, in its order. */
	if (strcmp(loaded_by, requester) == 0)
		reason = "loader";
	else if (!row->contains_phi)
		reason = "no_phi";
	else if (tv_has_role(roles, row->site, "site_staff"))
		reason = "site_staff";
	else if (tv_has_role(roles, row->site, "investigator"))
		reason = "investigator";
	else if (strcmp(doc_type, "sae") == 0 && tv_has_role(roles, "*", "safety"))
		reason = "safety";
	if (reason == NULL)
		return false;

	row->granted = true;
	row->reason = (char *) reason;
	row->study_id = roles->study_id;
	return true;
}

/* The SQL decision: every case, refusals included. */
static void
tv_open_decision(Datum *values, char *nulls, TvOpenRow *row)
{
	Oid			types[4] = {INT8OID, NAMEOID, BOOLOID, TEXTOID};
	bool		isnull;
	Datum		d;

	if (SPI_execute_plan(tv_kept_plan(&decision_plan,
									  "SELECT granted, reason, study, site, study_id, "
									  "contains_phi, content, content_enc "
									  "FROM trialvault._open_decision($1, $2, $3, $4)",
									  4, types),
						 values, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "trialvault._open_decision returned no row");

	row->granted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	row->reason = tv_spi_text(2, &isnull);
	row->study = tv_spi_text(3, &isnull);
	row->site = tv_spi_text(4, &isnull);
	if (row->study)
		row->study_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	row->contains_phi = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
					  row->contains_phi ? 8 : 7, &isnull);
	row->stored = isnull ? NULL : DatumGetByteaPP(d);
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
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	TvOpenRow	row;
	NameData	requester;
	bytea	   *content = NULL;
	const char *problem = NULL;
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
	values[1] = tv_name_datum(&requester, rec.requester);
	values[2] = BoolGetDatum(emergency);
	values[3] = why ? CStringGetTextDatum(why) : (Datum) 0;
	nulls[3] = why ? ' ' : 'n';

	memset(&row, 0, sizeof(row));
	tv_owner_spi_begin(&as);
	if (emergency || !tv_open_everyday(doc_id, rec.requester, &row))
	{
		memset(&row, 0, sizeof(row));
		tv_open_decision(values, nulls, &row);
	}

	if (row.granted && row.contains_phi && row.stored == NULL)
	{
		row.granted = false;
		row.reason = "ciphertext_invalid";
		problem = "the document has no ciphertext";
	}
	else if (row.granted && row.stored != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(outer);

		if (row.contains_phi)
		{
			const char *r = NULL;

			content = tv_decrypt_field(row.study_id, row.study, doc_id, "content",
									   row.stored, &r, &problem);
			if (content == NULL)
			{
				row.granted = false;
				row.reason = (char *) r;
			}
		}
		else
			content = DatumGetByteaPCopy(PointerGetDatum(row.stored));
		MemoryContextSwitchTo(old);
	}

	/*
	 * One study at a time: outside emergencies, a document opens only in the
	 * study the session has opened (checked after the decision, so that
	 * non-members are still told they are not members).
	 */
	if (row.granted && !emergency &&
		(tv_session_study_raw() == NULL || strcmp(tv_session_study_raw(), row.study) != 0))
	{
		row.granted = false;
		row.reason = "study_not_open";
		if (content)
			pfree(content);
		content = NULL;
	}
	rec.granted = row.granted;
	strlcpy(rec.reason, row.reason ? row.reason : "", sizeof(rec.reason));
	strlcpy(rec.study, row.study ? row.study : "", sizeof(rec.study));
	strlcpy(rec.site, row.site ? row.site : "", sizeof(rec.site));
	if (!row.granted && problem == NULL)
		problem = tv_refusal_text(rec.reason, rec.study, rec.site);
	if (problem)
		problem = MemoryContextStrdup(outer, problem);
	tv_owner_spi_end(&as);

	/* The record must be durable before anything is returned. */
	tv_log_submit(&rec);

	if (!row.granted)
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
