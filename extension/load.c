/*-------------------------------------------------------------------------
 *
 * load.c
 *		trialvault.load_document(): a document into trialvault.documents,
 *		in one direction.
 *
 * The caller's right to load for the site is decided by the rules
 * (rules.c), the metadata is screened, validated and hashed by
 * tv_inspect() (inspect.c), PHI content is encrypted by crypto.c, and only
 * then does SQL run: the checks that the study and site exist, the INSERT,
 * and the audit event.  (Until 0.6 a plpgsql function in the middle called
 * back into C for each of those steps.)
 *
 * A document refused for PHI in its metadata is an event worth keeping
 * even though the load fails: it is put on record through the log writer
 * (which commits it on its own) before the error reaches the caller.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/xml.h"

#include "trialvault.h"

static const char *const tv_doc_types[] = {
	"source", "protocol", "blank_crf", "sae", "eform", "other"
};

/* A known document type, as a constant string; 22023 for anything else. */
const char *
tv_check_doc_type(const char *doc_type)
{
	int			i;

	for (i = 0; i < (int) lengthof(tv_doc_types); i++)
		if (strcmp(doc_type, tv_doc_types[i]) == 0)
			return tv_doc_types[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown document type \"%s\"",
					pnstrdup(doc_type, pg_mbcharcliplen(doc_type, strlen(doc_type), 100))),
			 errhint("Document types: source, protocol, blank_crf, sae, eform, other.")));
	return NULL;				/* keep the compiler quiet */
}

static SPIPlanPtr study_plan = NULL;
static SPIPlanPtr site_plan = NULL;
static SPIPlanPtr nextval_plan = NULL;
static SPIPlanPtr insert_plan = NULL;

/*
 * Run fn(arg) in a subtransaction, as a plpgsql EXCEPTION block does: NULL
 * when it succeeded, else its error (in the caller's memory context), with
 * the subtransaction rolled back and the caller's state restored.
 */
static ErrorData *
in_subtransaction(void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile e = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return e;
}

static void
submit_record(void *arg)
{
	tv_log_submit((TvLogRecord *) arg);
}

/*
 * Put a refusal on record through the log writer, which commits it on its
 * own, so that it outlives the refused call.  If that fails, say so and
 * let the refusal itself go on.  A refusal of no study is a security
 * record: it is taken from any database of the cluster.
 */
void
tv_record_refusal(const char *event, const char *requester, const char *study,
				  const char *site, int64 doc_id, const char *message)
{
	TvLogRecord rec;
	ErrorData  *e;

	tv_log_audit_record(&rec, event, requester, study, site, doc_id, message);
	/* Refusals of no study (passwords, keys) may come from any database. */
	if (study == NULL)
		rec.kind = TV_LOG_SECURITY;

	if ((e = in_subtransaction(submit_record, &rec)) != NULL)
		ereport(WARNING,
				(errmsg("the refusal below could not be put on record: %s", e->message),
				 e->detail ? errdetail_internal("%s", e->detail) : 0));
}

static SPIPlanPtr audit_plan = NULL;

/*
 * An audit event in the caller's transaction (it commits or rolls back
 * with the change it describes), as trialvault._audit() records it, without
 * going through an SQL function (which would be planned again at every
 * call).  Called as the owner, inside SPI; doc_id 0 for none.
 */
void
tv_audit_event(const char *event, const char *actor, const char *study,
			   const char *site, int64 doc_id, const char *detail)
{
	static const Oid types[6] = {TEXTOID, NAMEOID, TEXTOID, TEXTOID, INT8OID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	NameData	name;

	values[0] = CStringGetTextDatum(event);
	values[1] = tv_name_datum(&name, actor);
	if (study)
		values[2] = CStringGetTextDatum(study);
	else
		nulls[2] = 'n';
	if (site)
		values[3] = CStringGetTextDatum(site);
	else
		nulls[3] = 'n';
	values[4] = Int64GetDatum(doc_id);
	if (doc_id <= 0)
		nulls[4] = 'n';
	if (detail)
		values[5] = CStringGetTextDatum(detail);
	else
		nulls[5] = 'n';
	if (SPI_execute_plan(tv_kept_plan(&audit_plan,
									  "INSERT INTO trialvault.audit_events (event, actor, session_user_name, "
									  "study, site, doc_id, detail, client_addr, application_name) "
									  "VALUES ($1, $2, session_user, $3, $4, $5, $6, inet_client_addr(), "
									  "current_setting('application_name'))",
									  6, (Oid *) types),
						 values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into trialvault.audit_events");
}

typedef struct InspectCall
{
	text	   *study;
	xmltype    *metadata;
	text	   *schema;
	TvInspection *out;
} InspectCall;

static void
inspect_call(void *arg)
{
	InspectCall *c = (InspectCall *) arg;

	tv_inspect(c->study, c->metadata, c->schema, c->out);
}

/*
 * tv_inspect() in a subtransaction, so that a PHI refusal (SQLSTATE 22000)
 * can be put on record before it is raised again.
 */
static void
inspect_or_record(text *study_t, xmltype *metadata, text *schema_t, TvInspection *ins,
				  const char *requester, const char *study, const char *site)
{
	InspectCall call = {study_t, metadata, schema_t, ins};
	ErrorData  *e = in_subtransaction(inspect_call, &call);

	if (e == NULL)
		return;
	if (e->sqlerrcode == ERRCODE_DATA_EXCEPTION)
		tv_record_refusal("metadata_phi_refused", requester, study, site, 0, e->message);
	ReThrowError(e);
}

PG_FUNCTION_INFO_V1(tv_load_document);

/*
 * trialvault.load_document(study, site, doc_type, contains_phi, metadata,
 *							content, schema_name DEFAULT NULL,
 *							signed_at DEFAULT NULL, nonce DEFAULT NULL,
 *							signature DEFAULT NULL,
 *							meaning DEFAULT 'certified_copy') RETURNS bigint
 *
 * With signed_at, nonce and signature, the load is certified: the
 * caller's signature of the certification statement is checked before
 * anything is stored, and countersigned by the server (certify.c).
 */
Datum
tv_load_document(PG_FUNCTION_ARGS)
{
	char	   *study;
	char	   *site;
	char	   *doc_type;
	bool		contains_phi;
	xmltype    *metadata;
	bytea	   *content;
	text	   *schema_t;
	char	   *requester;
	NameData	requester_name;
	TvAsOwner	as;
	TvStanding *standing;
	TvInspection ins;
	int32		study_id;
	int64		doc_id;
	bool		isnull;
	int			i;
	bool		signed_load = false;
	TvStatement stmt;
	bytea	   *statement = NULL;
	bytea	   *signature = NULL;
	uint8		content_sha[TV_HASH_LEN];

	for (i = 0; i < 6; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("arguments of trialvault.load_document must not be NULL (only schema_name may be, and signed_at, nonce and signature together)")));
	memset(&stmt, 0, sizeof(stmt));
	if (PG_NARGS() > 9)
	{
		int			given = !PG_ARGISNULL(7) + !PG_ARGISNULL(8) + !PG_ARGISNULL(9);

		if (given != 0 && given != 3)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("signed_at, nonce and signature of trialvault.load_document go together"),
					 errhint("Give all three for a certified load, or none.")));
		signed_load = given == 3;
		if (signed_load)
		{
			bytea	   *nonce = PG_GETARG_BYTEA_PP(8);

			stmt.signed_at = PG_GETARG_TIMESTAMPTZ(7);
			(void) tv_format_utc(stmt.signed_at);	/* a time the statement can hold */
			tv_check_nonce(nonce);
			stmt.nonce = (uint8 *) VARDATA_ANY(nonce);
			stmt.nonce_len = VARSIZE_ANY_EXHDR(nonce);
			signature = PG_GETARG_BYTEA_PP(9);
			if (PG_NARGS() > 10 && PG_ARGISNULL(10))
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("the meaning of a signature must not be NULL"),
						 errhint("Meanings: certified_copy (the default), review, approval, responsibility.")));
			stmt.meaning = PG_NARGS() > 10 ?
				tv_check_meaning(PG_GETARG_TEXT_PP(10)) : "certified_copy";
		}
	}
	study = text_to_cstring(PG_GETARG_TEXT_PP(0));
	site = text_to_cstring(PG_GETARG_TEXT_PP(1));
	doc_type = text_to_cstring(PG_GETARG_TEXT_PP(2));
	contains_phi = PG_GETARG_BOOL(3);
	metadata = PG_GETARG_XML_P(4);
	content = PG_GETARG_BYTEA_PP(5);
	schema_t = PG_NARGS() > 6 && !PG_ARGISNULL(6) ? PG_GETARG_TEXT_PP(6) : NULL;
	requester = GetUserNameFromId(GetUserId(), false);

	tv_owner_spi_begin(&as);

	/* The study and the site exist (SQL's errors, as the other functions give). */
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2];

		values[0] = PG_GETARG_DATUM(0);
		values[1] = PG_GETARG_DATUM(1);
		study_id = DatumGetInt32(tv_spi_value(tv_kept_plan(&study_plan,
														   "SELECT trialvault._require_study($1)",
														   1, types),
											  values, NULL, false, INT4OID, &isnull));
		(void) tv_spi_value(tv_kept_plan(&site_plan,
										 "SELECT trialvault._require_site($1, $2)", 2, types),
							values, NULL, false, VOIDOID, &isnull);
	}
	doc_type = (char *) tv_check_doc_type(doc_type);

	standing = tv_standing(study, requester);
	if (standing == NULL || !tv_may_load(standing, site))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to load documents for site %s of study %s", site, study),
				 errdetail("Role %s is neither site staff nor investigator of that site.", requester),
				 errhint("A trialvault_admin grants study roles with trialvault.grant_role().")));
	if (VARSIZE_ANY_EXHDR(content) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("document content is empty")));

	inspect_or_record(PG_GETARG_TEXT_PP(0), metadata, schema_t, &ins, requester, study, site);

	{
		EVP_MD_CTX *md = tv_sha_begin(TV_SHA_CONTENT);

		tv_sha_update(md, VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
		tv_sha_end(md, content_sha);
	}

	/* A certified load is checked before anything is stored. */
	if (signed_load)
	{
		memcpy(stmt.content_sha256, content_sha, TV_HASH_LEN);
		memcpy(stmt.metadata_sha256, ins.hash, TV_HASH_LEN);
		stmt.study = study;
		stmt.site = site;
		stmt.doc_type = doc_type;
		stmt.signer = requester;
		statement = tv_check_signature(&stmt, 0, signature);
	}
	else
		tv_require_unsigned_allowed(study, site, requester);

	/* The row, with PHI content encrypted under the study's newest key. */
	{
		static const Oid types[14] = {
			INT8OID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, XMLOID, TEXTOID, INT4OID,
			BYTEAOID, BYTEAOID, BYTEAOID, INT8OID, BYTEAOID, NAMEOID
		};
		Datum		values[14];
		char		nulls[14];

		doc_id = DatumGetInt64(tv_spi_value(tv_kept_plan(&nextval_plan,
														 "SELECT nextval(pg_get_serial_sequence('trialvault.documents', 'doc_id'))",
														 0, NULL),
											NULL, NULL, false, INT8OID, &isnull));
		memset(nulls, ' ', sizeof(nulls));
		values[0] = Int64GetDatum(doc_id);
		values[1] = PG_GETARG_DATUM(0);
		values[2] = PG_GETARG_DATUM(1);
		values[3] = PG_GETARG_DATUM(2);
		values[4] = BoolGetDatum(contains_phi);
		values[5] = PointerGetDatum(metadata);
		if (ins.schema)
		{
			values[6] = CStringGetTextDatum(ins.schema);
			values[7] = Int32GetDatum(ins.version);
		}
		else
			nulls[6] = nulls[7] = 'n';
		values[8] = PointerGetDatum(tv_hash_bytea(ins.hash));
		if (contains_phi)
		{
			nulls[9] = 'n';
			values[10] = PointerGetDatum(tv_encrypt_field(study_id, study, doc_id, "content",
														  (uint8 *) VARDATA_ANY(content),
														  VARSIZE_ANY_EXHDR(content)));
		}
		else
		{
			values[9] = PointerGetDatum(content);
			nulls[10] = 'n';
		}
		values[11] = Int64GetDatum((int64) VARSIZE_ANY_EXHDR(content));
		values[12] = PointerGetDatum(tv_hash_bytea(content_sha));
		values[13] = tv_name_datum(&requester_name, requester);

		if (SPI_execute_plan(tv_kept_plan(&insert_plan,
										  "INSERT INTO trialvault.documents (doc_id, study, site, doc_type, "
										  "contains_phi, metadata, metadata_schema, metadata_schema_version, "
										  "metadata_sha256, content, content_enc, content_length, "
										  "content_sha256, loaded_by) "
										  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
										  14, (Oid *) types),
							 values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not insert into trialvault.documents");
	}

	if (signed_load)
		tv_sign_recorded(&stmt, doc_id, statement, signature, NULL);
	tv_audit_event("document_loaded", requester, study, site, doc_id,
				   signed_load ?
				   psprintf("%s, certified (%s)", doc_type, stmt.meaning) :
				   doc_type);
	tv_owner_spi_end(&as);
	PG_RETURN_INT64(doc_id);
}
