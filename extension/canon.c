/*-------------------------------------------------------------------------
 *
 * canon.c
 *		Canonical encoding of a protected row's values, and its SHA-256.
 *
 * The chain hashes what a row says, not how it happens to be stored, so
 * that a row still verifies after pg_dump and restore, on another server,
 * with other client settings.  Each value is encoded in a form that depends
 * neither on session settings (DateStyle, TimeZone, extra_float_digits,
 * client_encoding, bytea_output) nor on OIDs that change across a restore:
 *
 *	row    := "TVROW2" { u32 len(name) name u32 type value }
 *									non-NULL user columns, in byte order of name;
 *									type: the built-in type the column's type
 *									is (domains looked through), by its OID
 *									if PostgreSQL fixes it (below 10000),
 *									else 0
 *	value  := 'r' u32 len bytes		string-like types: the stored bytes
 *			| 'b' u32 len bytes		built-in types: the binary send form
 *			| 'o' u32 len bytes		reg* types: the schema-qualified name
 *			| 't' u32 len bytes		xml and other types: the text output form
 *			| 'a' u32 len array		arrays: dims, bounds, then elements
 *			| 'd' u32 len fields	composites: { u32 len(name) name u32 type value },
 *									non-NULL attributes in byte order of name
 *			| 'g' u32 len range		ranges: flags and bounds
 *			| 'm' u32 len ranges	user-defined multiranges: each range as 'g'
 *			| 'n'					a NULL element inside an array
 *			| 'x' u32 4 type		an array, composite or range whose header
 *									names another type than the one declared
 *									(retyped in the catalog): never in a row
 *									as it was inserted (inserts refuse it);
 *									not in 0.5's encoding of user multiranges,
 *									which took their text output
 *
 * Columns are taken in the byte order of their names, not their position,
 * because pg_dump can recreate an inheritance child with its columns in
 * another order.  NULL columns are left out, so that ALTER TABLE ... ADD
 * COLUMN (without a default) leaves every existing row's encoding unchanged.
 * xml is taken in its output form because that is what a dump carries (the
 * output drops a standard XML declaration).  Composite values are encoded
 * like rows, attribute by attribute with their names, so that renaming or
 * swapping attributes behind the guards' back changes the hash.  Every
 * column and attribute carries the identity of its type (the OID of a
 * built-in type, which is the same in every PostgreSQL cluster), because the
 * bytes of many values read as another type too (int4 and float4, int8 and
 * timestamp, text and bytea): a column retyped in the catalog, behind the
 * guards' back, changes the hash.
 *
 * 0.6 introduced this encoding ("TVROW2").  Rows hashed before are in the
 * 0.5 encoding, "TVROW1": no type identities, composites by position (tag
 * 'c' { u32 position value }), jsonpath and refcursor by their send
 * functions (which depend on client_encoding), user-defined multiranges by
 * their text output (which depends on TimeZone).  A verifier whose row does
 * not match in the new encoding tries the old one: a row hashed by 0.6 never
 * matches in it, so only rows written by 0.5 are accepted that way.
 *
 * reg* types are taken as
 * schema-qualified names, not OIDs, which change across a restore.  Generated
 * columns are left out because they are computed after BEFORE triggers run
 * and are derived from the others anyway.  Column names are part of the
 * encoding, so renaming a column is refused by the guards and shows up in
 * verify if done behind their back.  All integers are big-endian.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_ts_config.h"
#include "catalog/pg_ts_dict.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/multirangetypes.h"
#include "utils/rangetypes.h"
#include "utils/typcache.h"

#include "trialvault.h"

typedef enum TvCanonMode
{
	TV_CANON_RAW,				/* varlena string-like: stored bytes */
	TV_CANON_NAME,				/* name: NUL-terminated fixed buffer */
	TV_CANON_SEND,				/* binary send function */
	TV_CANON_FIXED,				/* by-value built-in: its send form, inline */
	TV_CANON_OUT,				/* text output function */
	TV_CANON_REG,				/* reg* OID alias: qualified name */
	TV_CANON_ARRAY,
	TV_CANON_COMPOSITE,
	TV_CANON_RANGE,
	TV_CANON_MULTIRANGE			/* user-defined multiranges: range by range */
} TvCanonMode;

/*
 * Per-type encoding plan, cached per backend until a change to pg_type is
 * seen (the syscache callback below marks the cache stale; it is emptied
 * before the next row, never while a row is being encoded).
 */
typedef struct TvTypeCanon
{
	Oid			typid;			/* hash key: the column's declared type */
	Oid			basetype;		/* after looking through domains */
	TvCanonMode mode;
	TvCanonMode legacy_mode;	/* how 0.5 encoded it (see the file header) */
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Oid			elemtype;		/* arrays */
	FmgrInfo	fn;				/* send or output function */
	FmgrInfo	legacy_fn;		/* the same for legacy_mode */
} TvTypeCanon;

static HTAB *tv_type_canon_cache = NULL;
static MemoryContext tv_type_canon_cxt = NULL;
static bool tv_type_canon_stale = false;

/* The SHA-256 implementation, fetched once: OpenSSL 3 looks it up per call otherwise. */
static EVP_MD *tv_sha256_md = NULL;
static EVP_MD_CTX *tv_sha_ctx[TV_SHA_NCTX];

/* Scratch buffer for encoding non-string values, kept across rows. */
static StringInfoData tv_canon_buf;

/* Set for one digest: encode as 0.5 did; refuse mistyped values (an insert). */
static bool tv_legacy = false;
static bool tv_inserting = false;
static const char *tv_canon_column = NULL;

static void canon_value(StringInfo buf, Oid typid, Datum value);
static void append_tagged(StringInfo buf, char tag, const char *data, uint32 len);

/*
 * Types whose binary send form depends on client_encoding (they use
 * pq_sendtext) or on nothing stable; their text output is used instead.
 */
static bool
is_reg_type(Oid basetype)
{
	switch (basetype)
	{
		case REGCLASSOID:
		case REGTYPEOID:
		case REGPROCOID:
		case REGPROCEDUREOID:
		case REGOPEROID:
		case REGOPERATOROID:
		case REGNAMESPACEOID:
		case REGROLEOID:
		case REGCOLLATIONOID:
		case REGCONFIGOID:
		case REGDICTIONARYOID:
			return true;
		default:
			return false;
	}
}

/*
 * Built-in by-value types whose send function writes the value itself in
 * network byte order (bool as one byte 0/1): encoded inline, byte for byte
 * what the send function would produce, without its allocations.
 */
static bool
is_fixed_send_type(Oid basetype)
{
	switch (basetype)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return true;
		default:
			return false;
	}
}

static void
canon_fixed(StringInfo buf, Oid basetype, Datum value)
{
	union
	{
		uint8		b1;
		uint16		b2;
		uint32		b4;
		uint64		b8;
		float4		f4;
		float8		f8;
	}			u;
	uint32		len;

	switch (basetype)
	{
		case BOOLOID:
			u.b1 = DatumGetBool(value) ? 1 : 0;
			len = 1;
			break;
		case INT2OID:
			u.b2 = pg_hton16((uint16) DatumGetInt16(value));
			len = 2;
			break;
		case INT4OID:
		case DATEOID:
			u.b4 = pg_hton32((uint32) DatumGetInt32(value));
			len = 4;
			break;
		case OIDOID:
			u.b4 = pg_hton32(DatumGetObjectId(value));
			len = 4;
			break;
		case FLOAT4OID:
			u.f4 = DatumGetFloat4(value);
			u.b4 = pg_hton32(u.b4);
			len = 4;
			break;
		case FLOAT8OID:
			u.f8 = DatumGetFloat8(value);
			u.b8 = pg_hton64(u.b8);
			len = 8;
			break;
		default:				/* int8, time, timestamp, timestamptz */
			u.b8 = pg_hton64((uint64) DatumGetInt64(value));
			len = 8;
			break;
	}
	append_tagged(buf, 'b', (const char *) &u, len);
}

/*
 * A name for a catalog object looked up through syscache, qualified with
 * its schema; NULL if the object does not exist.
 */
static char *
qualified_syscache_name(int cacheid, Oid oid, int nameoff, int nspoff)
{
	HeapTuple	tp = SearchSysCache1(cacheid, ObjectIdGetDatum(oid));
	char	   *result;

	if (!HeapTupleIsValid(tp))
		return NULL;
	result = quote_qualified_identifier(get_namespace_name(*(Oid *) ((char *) GETSTRUCT(tp) + nspoff)),
										NameStr(*(Name) ((char *) GETSTRUCT(tp) + nameoff)));
	ReleaseSysCache(tp);
	return result;
}

/*
 * The name a reg* value stands for, independent of search_path: what a
 * restore resolves the dumped value to.  An OID that names nothing is kept
 * as a number, as pg_dump writes it.
 */
static char *
reg_name(Oid basetype, Oid oid)
{
	char	   *name = NULL;

	if (!OidIsValid(oid))
		return pstrdup("-");
	switch (basetype)
	{
		case REGCLASSOID:
			if (get_rel_name(oid))
				name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(oid)),
												  get_rel_name(oid));
			break;
		case REGTYPEOID:
			if (SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(oid)))
				name = format_type_be_qualified(oid);
			break;
		case REGPROCOID:
		case REGPROCEDUREOID:
			if (SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(oid)))
				name = format_procedure_qualified(oid);
			break;
		case REGOPEROID:
		case REGOPERATOROID:
			if (SearchSysCacheExists1(OPEROID, ObjectIdGetDatum(oid)))
				name = format_operator_qualified(oid);
			break;
		case REGNAMESPACEOID:
			name = get_namespace_name(oid);
			break;
		case REGROLEOID:
			name = GetUserNameFromId(oid, true);
			break;
		case REGCOLLATIONOID:
			name = qualified_syscache_name(COLLOID, oid,
										   offsetof(FormData_pg_collation, collname),
										   offsetof(FormData_pg_collation, collnamespace));
			break;
		case REGCONFIGOID:
			name = qualified_syscache_name(TSCONFIGOID, oid,
										   offsetof(FormData_pg_ts_config, cfgname),
										   offsetof(FormData_pg_ts_config, cfgnamespace));
			break;
		case REGDICTIONARYOID:
			name = qualified_syscache_name(TSDICTOID, oid,
										   offsetof(FormData_pg_ts_dict, dictname),
										   offsetof(FormData_pg_ts_dict, dictnamespace));
			break;
	}
	return name ? name : psprintf("%u", oid);
}

static bool
send_is_unstable(Oid basetype)
{
	switch (basetype)
	{
		case JSONBOID:
		case TSVECTOROID:
		case TSQUERYOID:
		case UNKNOWNOID:
		case CSTRINGOID:
			return true;
		case JSONPATHOID:
		case REFCURSOROID:
			/* their send functions write text in the client's encoding */
			return true;
		default:
			return false;
	}
}

/*
 * A type's binary send function, or InvalidOid when it has none (aclitem,
 * for one): getTypeBinaryOutputInfo() would raise an error instead.
 */
static Oid
type_send_function(Oid typid)
{
	HeapTuple	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	Oid			result;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for type %u", typid);
	result = ((Form_pg_type) GETSTRUCT(tp))->typsend;
	ReleaseSysCache(tp);
	return result;
}

/* A type changed somewhere: forget every plan before the next row. */
static void
type_canon_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	tv_type_canon_stale = true;
}

static void
type_canon_forget_if_stale(void)
{
	if (!tv_type_canon_stale || tv_type_canon_cache == NULL)
		return;
	hash_destroy(tv_type_canon_cache);
	tv_type_canon_cache = NULL;
	MemoryContextReset(tv_type_canon_cxt);
	tv_type_canon_stale = false;
}

static TvTypeCanon *
lookup_type_canon(Oid typid)
{
	TvTypeCanon *tc;
	bool		found;

	if (tv_type_canon_cache == NULL)
	{
		HASHCTL		ctl;

		if (tv_type_canon_cxt == NULL)
		{
			tv_type_canon_cxt = AllocSetContextCreate(TopMemoryContext,
													  "trialvault type encodings",
													  ALLOCSET_SMALL_SIZES);
			CacheRegisterSyscacheCallback(TYPEOID, type_canon_invalidate, (Datum) 0);
		}
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TvTypeCanon);
		ctl.hcxt = tv_type_canon_cxt;
		tv_type_canon_cache = hash_create("trialvault type encodings", 64, &ctl,
										  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	tc = hash_search(tv_type_canon_cache, &typid, HASH_FIND, NULL);
	if (tc == NULL)
	{
		Oid			base = getBaseType(typid);
		char		category;
		bool		preferred;
		Oid			fnoid = InvalidOid;
		Oid			legacy_fnoid = InvalidOid;

		/* Fill a local copy first so an error leaves no half-made entry. */
		TvTypeCanon t;

		memset(&t, 0, sizeof(t));
		t.legacy_mode = (TvCanonMode) -1;
		t.typid = typid;
		t.basetype = base;
		get_typlenbyvalalign(base, &t.typlen, &t.typbyval, &t.typalign);
		get_type_category_preferred(base, &category, &preferred);

		if (base == NAMEOID)
			t.mode = TV_CANON_NAME;
		else if (is_reg_type(base))
			t.mode = TV_CANON_REG;
		else if (base == XMLOID)
		{
			bool		isvarlena;

			getTypeOutputInfo(base, &fnoid, &isvarlena);
			t.mode = TV_CANON_OUT;
		}
		else if (t.typlen == -1 &&
				 (category == TYPCATEGORY_STRING || base == BYTEAOID ||
				  base == JSONOID))
			t.mode = TV_CANON_RAW;
		else if (type_is_array(base))
		{
			t.mode = TV_CANON_ARRAY;
			t.elemtype = get_element_type(base);
		}
		else if (type_is_rowtype(base))
			t.mode = TV_CANON_COMPOSITE;
		else if (type_is_range(base))
			t.mode = TV_CANON_RANGE;
		else
		{
			Oid			sendfn = type_send_function(base);
			bool		isvarlena;

			if (is_fixed_send_type(base))
				t.mode = TV_CANON_FIXED;
			else if (base < FirstNormalObjectId && !type_is_enum(base) &&
					 !send_is_unstable(base) && OidIsValid(sendfn))
			{
				t.mode = TV_CANON_SEND;
				fnoid = sendfn;
			}
			else if (type_is_multirange(base))
			{
				/* built-in multiranges take the branch above */
				t.mode = TV_CANON_MULTIRANGE;
				t.legacy_mode = TV_CANON_OUT;
				getTypeOutputInfo(base, &legacy_fnoid, &isvarlena);
			}
			else
			{
				getTypeOutputInfo(base, &fnoid, &isvarlena);
				t.mode = TV_CANON_OUT;
				if ((base == JSONPATHOID || base == REFCURSOROID) && OidIsValid(sendfn))
				{
					t.legacy_mode = TV_CANON_SEND;
					legacy_fnoid = sendfn;
				}
			}
		}
		if (t.legacy_mode == (TvCanonMode) -1)
		{
			t.legacy_mode = t.mode;
			legacy_fnoid = fnoid;
		}
		if (OidIsValid(fnoid))
			fmgr_info_cxt(fnoid, &t.fn, tv_type_canon_cxt);
		if (OidIsValid(legacy_fnoid))
			fmgr_info_cxt(legacy_fnoid, &t.legacy_fn, tv_type_canon_cxt);

		tc = hash_search(tv_type_canon_cache, &typid, HASH_ENTER, &found);
		memcpy(tc, &t, sizeof(t));
	}
	return tc;
}

/*
 * The identity of a value's type in the encoding: the OID of the built-in
 * type it is (after domains), which is fixed in PostgreSQL's sources and
 * the same in every cluster of every version; 0 for any other type.  Only
 * OIDs below FirstGenbkiObjectId are fixed: those up to FirstNormalObjectId
 * are handed out while initdb runs (information_schema's types, the row
 * types of system views) and differ between clusters and versions, and
 * those above by CREATE TYPE, which a dump and restore renumbers.
 */
static uint32
type_identity(const TvTypeCanon *tc)
{
	return tc->basetype < FirstGenbkiObjectId ? (uint32) tc->basetype : 0;
}

static void
append_u32(StringInfo buf, uint32 v)
{
	uint32		be = pg_hton32(v);

	appendBinaryStringInfo(buf, (char *) &be, 4);
}

static void
append_tagged(StringInfo buf, char tag, const char *data, uint32 len)
{
	appendStringInfoChar(buf, tag);
	append_u32(buf, len);
	appendBinaryStringInfo(buf, data, len);
}

/*
 * Start a nested value: write the tag and a length placeholder, return the
 * offset of the placeholder so finish_nested can fill it in.
 */
static int
begin_nested(StringInfo buf, char tag)
{
	int			at;

	appendStringInfoChar(buf, tag);
	at = buf->len;
	append_u32(buf, 0);
	return at;
}

static void
finish_nested(StringInfo buf, int at)
{
	uint32		be = pg_hton32((uint32) (buf->len - at - 4));

	memcpy(buf->data + at, &be, 4);
}

/*
 * Arrays, composites and ranges name their own type in their header.  One
 * that names another type than the column (attribute, element) it is
 * stored in was retyped in the catalog behind the guards' back; reading it
 * as the declared type could read past its end.  It is encoded as a tag
 * ('x' and the type it names) that no value of a consistent row produces,
 * so its row's hash cannot match, whichever encoding the row was hashed in.
 */
static bool
canon_mistyped(StringInfo buf, Oid stored, Oid expected)
{
	uint32		be;

	if (stored == expected)
		return false;
	if (tv_inserting)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("a value in column \"%s\" is of type %s, not of the type the column declares (%s)",
						tv_canon_column ? tv_canon_column : "?",
						format_type_be(stored), format_type_be(expected)),
				 errdetail("The column, or the value it was copied from, was retyped in the catalog behind the guards' back."),
				 errhint("Run trialvault.verify() on the table and on where the value came from.")));
	be = pg_hton32((uint32) stored);
	append_tagged(buf, 'x', (const char *) &be, sizeof(be));
	return true;
}

static void
canon_array(StringInfo buf, TvTypeCanon *tc, Datum value)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	TvTypeCanon *etc = lookup_type_canon(tc->elemtype);
	int			ndim = ARR_NDIM(arr);
	int		   *dims = ARR_DIMS(arr);
	int		   *lbs = ARR_LBOUND(arr);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			at;
	int			i;

	if (canon_mistyped(buf, ARR_ELEMTYPE(arr), tc->elemtype))
		return;
	deconstruct_array(arr, tc->elemtype, etc->typlen, etc->typbyval,
					  etc->typalign, &elems, &nulls, &nelems);

	at = begin_nested(buf, 'a');
	append_u32(buf, (uint32) ndim);
	for (i = 0; i < ndim; i++)
	{
		append_u32(buf, (uint32) dims[i]);
		append_u32(buf, (uint32) lbs[i]);
	}
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
			appendStringInfoChar(buf, 'n');
		else
			canon_value(buf, tc->elemtype, elems[i]);
	}
	finish_nested(buf, at);
}

static int
attname_cmp(const void *a, const void *b)
{
	return strcmp(NameStr((*(Form_pg_attribute const *) a)->attname),
				  NameStr((*(Form_pg_attribute const *) b)->attname));
}

/*
 * A composite value: its non-NULL attributes with their names, in byte
 * order of the names ('d'); or, for rows hashed before 0.6, by position
 * ('c').
 */
static void
canon_composite(StringInfo buf, Oid expected, Datum value)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(value);
	TupleDesc	tupdesc;
	HeapTupleData tuple;
	Form_pg_attribute *atts;
	int			natts = 0;
	int			at;
	int			i;

	if (canon_mistyped(buf, HeapTupleHeaderGetTypeId(th), expected))
		return;
	tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
									 HeapTupleHeaderGetTypMod(th));
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;

	atts = palloc(sizeof(Form_pg_attribute) * Max(tupdesc->natts, 1));
	for (i = 0; i < tupdesc->natts; i++)
	{
		if (!TupleDescAttr(tupdesc, i)->attisdropped)
			atts[natts++] = TupleDescAttr(tupdesc, i);
	}
	if (!tv_legacy)
		qsort(atts, natts, sizeof(Form_pg_attribute), attname_cmp);

	at = begin_nested(buf, tv_legacy ? 'c' : 'd');
	for (i = 0; i < natts; i++)
	{
		bool		isnull;
		Datum		d = heap_getattr(&tuple, atts[i]->attnum, tupdesc, &isnull);

		if (isnull)
			continue;
		if (tv_legacy)
			append_u32(buf, (uint32) (i + 1));
		else
		{
			const char *name = NameStr(atts[i]->attname);

			append_u32(buf, (uint32) strlen(name));
			appendBinaryStringInfo(buf, name, strlen(name));
			append_u32(buf, type_identity(lookup_type_canon(atts[i]->atttypid)));
		}
		canon_value(buf, atts[i]->atttypid, d);
	}
	finish_nested(buf, at);
	pfree(atts);
	ReleaseTupleDesc(tupdesc);
}

static void
canon_range(StringInfo buf, Oid expected, Datum value)
{
	RangeType  *r = DatumGetRangeTypeP(value);
	TypeCacheEntry *typcache;
	RangeBound	lower;
	RangeBound	upper;
	bool		empty;
	char		flags;
	int			at;

	if (canon_mistyped(buf, RangeTypeGetOid(r), expected))
		return;
	typcache = lookup_type_cache(RangeTypeGetOid(r), TYPECACHE_RANGE_INFO);
	flags = range_get_flags(r);
	range_deserialize(typcache, r, &lower, &upper, &empty);
	at = begin_nested(buf, 'g');
	appendStringInfoChar(buf, flags);
	if (!empty && !lower.infinite)
		canon_value(buf, typcache->rngelemtype->type_id, lower.val);
	if (!empty && !upper.infinite)
		canon_value(buf, typcache->rngelemtype->type_id, upper.val);
	finish_nested(buf, at);
}

/* A user-defined multirange: its ranges in order, each as a range. */
static void
canon_multirange(StringInfo buf, Oid expected, Datum value)
{
	MultirangeType *mr = DatumGetMultirangeTypeP(value);
	TypeCacheEntry *typcache;
	int32		nranges;
	RangeType **ranges;
	int			at;
	int32		i;

	if (canon_mistyped(buf, MultirangeTypeGetOid(mr), expected))
		return;
	typcache = lookup_type_cache(MultirangeTypeGetOid(mr), TYPECACHE_MULTIRANGE_INFO);
	multirange_deserialize(typcache->rngtype, mr, &nranges, &ranges);
	at = begin_nested(buf, 'm');
	for (i = 0; i < nranges; i++)
		canon_range(buf, typcache->rngtype->type_id, RangeTypePGetDatum(ranges[i]));
	finish_nested(buf, at);
}

static void
canon_value(StringInfo buf, Oid typid, Datum value)
{
	TvTypeCanon *tc = lookup_type_canon(typid);
	FmgrInfo   *fn = tv_legacy ? &tc->legacy_fn : &tc->fn;

	switch (tv_legacy ? tc->legacy_mode : tc->mode)
	{
		case TV_CANON_RAW:
			{
				struct varlena *v = PG_DETOAST_DATUM_PACKED(value);

				append_tagged(buf, 'r', VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
				break;
			}
		case TV_CANON_NAME:
			{
				const char *s = NameStr(*DatumGetName(value));

				append_tagged(buf, 'r', s, strlen(s));
				break;
			}
		case TV_CANON_SEND:
			{
				bytea	   *b = SendFunctionCall(fn, value);

				append_tagged(buf, 'b', VARDATA(b), VARSIZE(b) - VARHDRSZ);
				break;
			}
		case TV_CANON_OUT:
			{
				char	   *s = OutputFunctionCall(fn, value);

				append_tagged(buf, 't', s, strlen(s));
				break;
			}
		case TV_CANON_FIXED:
			canon_fixed(buf, tc->basetype, value);
			break;
		case TV_CANON_REG:
			{
				char	   *s = reg_name(tc->basetype, DatumGetObjectId(value));

				append_tagged(buf, 'o', s, strlen(s));
				break;
			}
		case TV_CANON_ARRAY:
			canon_array(buf, tc, value);
			break;
		case TV_CANON_COMPOSITE:
			canon_composite(buf, tc->basetype, value);
			break;
		case TV_CANON_RANGE:
			canon_range(buf, tc->basetype, value);
			break;
		case TV_CANON_MULTIRANGE:
			canon_multirange(buf, tc->basetype, value);
			break;
	}
}

/*
 * tv_sha_begin/update/end: SHA-256 through OpenSSL on one of a few
 * long-lived contexts (TV_SHA_CONTENT for row contents, TV_SHA_SMALL for
 * the short link hashes), so that hashing a row allocates nothing.
 */
EVP_MD_CTX *
tv_sha_begin(int which)
{
	EVP_MD_CTX *ctx;

	if (tv_sha256_md == NULL)
	{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		tv_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
		tv_sha256_md = (EVP_MD *) EVP_sha256();
#endif
		if (tv_sha256_md == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("OpenSSL provides no SHA-256 implementation")));
	}
	if (tv_sha_ctx[which] == NULL)
	{
		tv_sha_ctx[which] = EVP_MD_CTX_new();
		if (tv_sha_ctx[which] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory allocating a SHA-256 context")));
	}
	ctx = tv_sha_ctx[which];
	if (EVP_DigestInit_ex(ctx, tv_sha256_md, NULL) != 1)
		elog(ERROR, "trialvault: SHA-256 init failed");
	return ctx;
}

void
tv_sha_update(EVP_MD_CTX *ctx, const void *data, size_t len)
{
	if (EVP_DigestUpdate(ctx, data, len) != 1)
		elog(ERROR, "trialvault: SHA-256 update failed");
}

void
tv_sha_end(EVP_MD_CTX *ctx, uint8 *out)
{
	unsigned int dlen;

	if (EVP_DigestFinal_ex(ctx, out, &dlen) != 1 || dlen != TV_HASH_LEN)
		elog(ERROR, "trialvault: SHA-256 final failed");
}

/*
 * tv_row_layout: what the digest of a row of this descriptor covers, worked
 * out once for many rows (verify's scan): the user columns (chain columns,
 * dropped and generated columns excluded) in byte order of their names,
 * which is the order the encoding takes them in.  Allocated in the current
 * memory context.
 */
TvRowLayout *
tv_row_layout(TupleDesc tupdesc, const TvChainCols *cols)
{
	TvRowLayout *layout = palloc(sizeof(TvRowLayout));
	Form_pg_attribute *atts = palloc(sizeof(Form_pg_attribute) * Max(tupdesc->natts, 1));
	int			ncols = 0;
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped || att->attgenerated)
			continue;
		if (att->attnum == cols->seq || att->attnum == cols->prev_seqs ||
			att->attnum == cols->prev_hash || att->attnum == cols->hash)
			continue;
		atts[ncols++] = att;
	}
	qsort(atts, ncols, sizeof(Form_pg_attribute), attname_cmp);

	layout->ncols = ncols;
	layout->toast = NULL;
	layout->cols = palloc(sizeof(TvRowColumn) * Max(ncols, 1));
	for (i = 0; i < ncols; i++)
	{
		TvRowColumn *c = &layout->cols[i];

		c->attnum = atts[i]->attnum;
		c->typid = atts[i]->atttypid;
		c->name = pstrdup(NameStr(atts[i]->attname));
		c->namelen = (uint32) strlen(c->name);
	}
	pfree(atts);
	return layout;
}

/*
 * The pieces of a row's encoding go through one buffer and reach SHA-256
 * in few, larger updates: the byte stream, and so the digest, is the same
 * as piece by piece.  A large string-like value (the usual payload) skips
 * the buffer and is hashed straight from the detoasted datum.
 */
#define TV_DIGEST_DIRECT	1024

static void
digest_flush(EVP_MD_CTX *md, StringInfo buf)
{
	if (buf->len > 0)
		tv_sha_update(md, buf->data, buf->len);
	resetStringInfo(buf);
}

/*
 * tv_row_values_digest: SHA-256 of the canonical encoding of a row given
 * as its deformed values (values/isnull indexed by attnum - 1), in the
 * current encoding or as 0.5 encoded them (see the file header).  For an
 * insert (TV_DIGEST_INSERT) a value that names another type than its column
 * is refused rather than encoded as the marker: it can only come from a
 * catalog edited behind the guards' back.  Runs in the caller's memory
 * context; the caller is expected to reset it (a trigger call or a per-row
 * context in verify).
 */
void
tv_row_values_digest(const TvRowLayout *layout, const Datum *values,
					 const bool *isnull, uint8 *digest, TvDigestMode mode)
{
	bool		legacy = (mode == TV_DIGEST_LEGACY);
	StringInfo	buf = &tv_canon_buf;
	EVP_MD_CTX *md;
	int			i;

	if (buf->data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(buf);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(buf);
	type_canon_forget_if_stale();
	tv_legacy = legacy;
	tv_inserting = (mode == TV_DIGEST_INSERT);
	md = tv_sha_begin(TV_SHA_CONTENT);
	appendBinaryStringInfo(buf, legacy ? "TVROW1" : "TVROW2", 6);

	for (i = 0; i < layout->ncols; i++)
	{
		const TvRowColumn *c = &layout->cols[i];
		Datum		value;
		TvTypeCanon *tc;

		if (isnull[c->attnum - 1])
			continue;
		value = values[c->attnum - 1];

		tv_canon_column = c->name;
		append_u32(buf, c->namelen);
		appendBinaryStringInfo(buf, c->name, c->namelen);

		tc = lookup_type_canon(c->typid);
		if (!legacy)
			append_u32(buf, type_identity(tc));
		if (tc->mode == TV_CANON_RAW)
		{
			struct varlena *v = tv_toast_scan_value(layout->toast,
													(struct varlena *) DatumGetPointer(value));
			bool		own = false;
			uint32		len;

			if (v == NULL)
			{
				v = PG_DETOAST_DATUM_PACKED(value);
				own = ((Pointer) v != DatumGetPointer(value));
			}
			len = (uint32) VARSIZE_ANY_EXHDR(v);

			appendStringInfoChar(buf, 'r');
			append_u32(buf, len);
			if (len >= TV_DIGEST_DIRECT)
			{
				digest_flush(md, buf);
				tv_sha_update(md, VARDATA_ANY(v), len);
			}
			else
				appendBinaryStringInfo(buf, VARDATA_ANY(v), len);
			if (own)
				pfree(v);
		}
		else
			canon_value(buf, c->typid, value);
	}
	digest_flush(md, buf);
	/* Do not keep a buffer that one huge nested value blew up. */
	if (buf->maxlen > 1024 * 1024)
	{
		pfree(buf->data);
		buf->data = NULL;
	}
	tv_sha_end(md, digest);
}

/*
 * tv_row_content_digest: the same for one heap tuple (an insert, protect()
 * chaining existing rows, a restore).
 */
void
tv_row_content_digest(TupleDesc tupdesc, HeapTuple tuple,
					  const TvChainCols *cols, uint8 *digest,
					  TvDigestMode mode)
{
	TvRowLayout *layout = tv_row_layout(tupdesc, cols);
	Datum	   *values = palloc(sizeof(Datum) * Max(tupdesc->natts, 1));
	bool	   *isnull = palloc(sizeof(bool) * Max(tupdesc->natts, 1));
	int			i;

	heap_deform_tuple(tuple, tupdesc, values, isnull);
	tv_row_values_digest(layout, values, isnull, digest, mode);
	pfree(values);
	pfree(isnull);
	for (i = 0; i < layout->ncols; i++)
		pfree(layout->cols[i].name);
	pfree(layout->cols);
	pfree(layout);
}
