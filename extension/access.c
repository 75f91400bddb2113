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
	const char *todo = "";

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
	/* Refused by the rules: what to do first, where there is something. */
	if (strcmp(reason, "second_factor_required") == 0)
		todo = "Step up with trialvault.step_up(code), the code your authenticator app shows (enrol first with trialvault.enroll_second_factor()). ";
	else if (strcmp(reason, "study_not_open") == 0)
		todo = psprintf("Call trialvault.open_study('%s') first. ", study);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to open document %lld", (long long) doc_id),
			 errdetail("%s", problem),
			 errhint("%sThe attempt is recorded in the decryption log (reason \"%s\").", todo, reason)));
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
	if (strcmp(reason, "second_factor_required") == 0)
		return psprintf("In study \"%s\" your role needs a second factor before you see PHI, and this session has not stepped up.", study);
	return psprintf("Your roles in study \"%s\" do not entitle you to this document.", study);
}

/*
 * What one call found out: the verdict, and the document's study, site and
 * stored content (ciphertext when contains_phi), in the caller's context.
 */
typedef struct TvOpenRow
{
	bool		granted;
	const char *reason;
	char	   *study;
	char	   *site;
	int32		study_id;
	bool		contains_phi;
	bytea	   *stored;			/* content, or content_enc with PHI; NULL if none */
} TvOpenRow;

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

/* The columns of trialvault.documents the decision reads. */
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
 * Read a document through its primary key, without SQL (a query cost about
 * as much as the rest of open_document): its facts into *d and row, its
 * stored content detoasted into CurrentMemoryContext.  False when there is
 * no such document.
 */
static bool
tv_read_document(int64 doc_id, TvDocFacts *d, TvOpenRow *row)
{
	Oid			nsp = get_namespace_oid("trialvault", false);
	Relation	rel;
	Oid			pkey;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	TupleDesc	desc;
	AttrNumber	atts[DOC_NCOLS];
	bool		found = false;
	bool		isnull;

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
		Datum		v;

		found = true;
		row->study = tv_doc_text(tup, desc, atts[DOC_STUDY]);
		row->site = tv_doc_text(tup, desc, atts[DOC_SITE]);
		row->contains_phi = DatumGetBool(heap_getattr(tup, atts[DOC_PHI], desc, &isnull));
		d->site = row->site;
		d->doc_type = tv_doc_text(tup, desc, atts[DOC_TYPE]);
		d->contains_phi = row->contains_phi;
		d->loaded_by = pstrdup(NameStr(*DatumGetName(heap_getattr(tup, atts[DOC_LOADED_BY],
																	 desc, &isnull))));
		/* Detoasted now, while the snapshot that found the row is active. */
		v = heap_getattr(tup, atts[row->contains_phi ? DOC_CONTENT_ENC : DOC_CONTENT],
						 desc, &isnull);
		row->stored = isnull ? NULL : DatumGetByteaPCopy(v);
	}
	systable_endscan(scan);
	/* Keep the lock until the end of the transaction, as a query would. */
	table_close(rel, NoLock);
	PopActiveSnapshot();
	return found;
}

static SPIPlanPtr monitor_plan = NULL;

/* A monitor's authorization at a site now, for tv_open_reason(). */
static const char *
tv_monitor_now(void *arg, const char *site)
{
	const char *const *who = (const char *const *) arg;	/* study, monitor */
	Oid			types[3] = {TEXTOID, TEXTOID, NAMEOID};
	Datum		values[3];
	NameData	name;
	bool		isnull;
	Datum		state;

	values[0] = CStringGetTextDatum(who[0]);
	values[1] = CStringGetTextDatum(site);
	values[2] = tv_name_datum(&name, who[1]);
	state = tv_spi_value(tv_kept_plan(&monitor_plan,
									  "SELECT trialvault._monitor_now($1, $2, $3)",
									  3, types),
						 values, NULL, true, TEXTOID, &isnull);
	return isnull ? "none" : TextDatumGetCString(state);
}

/*
 * Why the member may open a document of a study now, or why not, by the
 * rules of open_document (without its one-study-at-a-time rule, and
 * without a record): for functions that act on a document the caller must
 * be entitled to, such as signing it.  Called as the owner, inside SPI.
 */
const char *
tv_open_reason_now(const char *study, const TvDocFacts *d, const char *requester)
{
	TvStanding *standing = tv_standing(study, requester);
	const char *who[2] = {study, requester};

	if (standing == NULL)
		return "not_a_member";
	return tv_open_reason(standing, d, requester, tv_monitor_now, (void *) who);
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
	TvOpenRow	row;
	TvDocFacts	facts;
	TvStanding *standing = NULL;
	Oid			requester = GetUserId();	/* before becoming the owner */
	bytea	   *content = NULL;
	const char *problem = NULL;
	MemoryContext outer = CurrentMemoryContext;

	/* Fail closed before any work if nothing could be put on record. */
	tv_require_schema();
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

	memset(&row, 0, sizeof(row));
	tv_owner_spi_begin(&as);
	if (!tv_read_document(doc_id, &facts, &row))
		row.reason = "no_such_document";
	else if ((standing = tv_standing(row.study, rec.requester)) == NULL)
	{
		/* documents.study references studies: cannot happen, but refuse */
		row.study = row.site = NULL;
		row.reason = "no_such_document";
	}
	else if (emergency)
		row.reason = tv_emergency_reason(requester, why);
	else
	{
		const char *who[2] = {row.study, rec.requester};

		row.reason = tv_open_reason(standing, &facts, rec.requester, tv_monitor_now,
									(void *) who);
	}
	row.granted = tv_reason_grants(row.reason);

	/*
	 * A second factor, where the grant needs one (monitors, and the roles an
	 * administrator named): refused before anything is decrypted.
	 */
	if (row.granted && !emergency && row.contains_phi && !tv_stepped_up(requester) &&
		tv_second_factor_required(row.study, row.reason))
	{
		row.granted = false;
		row.reason = "second_factor_required";
	}
	if (standing)
		row.study_id = standing->study_id;
	if (!row.granted && row.stored)
	{
		pfree(row.stored);
		row.stored = NULL;
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
	tv_log_audit_record(&rec, text_to_cstring(PG_GETARG_TEXT_PP(0)),
						NameStr(*PG_GETARG_NAME(1)),
						PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
						PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)),
						PG_ARGISNULL(4) ? 0 : PG_GETARG_INT64(4),
						PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5)));
	tv_log_submit(&rec);
	PG_RETURN_VOID();
}
