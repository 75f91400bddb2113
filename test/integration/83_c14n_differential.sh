#!/usr/bin/env bash
# Differential test of the two exclusive C14N implementations behind
# inspect_metadata(): the streaming writer driven by SAX events and
# libxml2's xmlC14NDocDumpMemory() on the tree (metadata_c14n /
# metadata_sha256, the reference).  A generator with a fixed seed writes a
# few thousand random well-formed documents that exercise what C14N cares
# about (attribute order and quoting, whitespace in tags and between
# elements, the XML declaration, default and prefixed namespaces declared,
# redeclared, overridden, undeclared and unused, namespaced and xml:
# attributes, entities and character references for everything C14N
# escapes, CDATA, comments, processing instructions, empty elements, deep
# nesting, non-ASCII and astral text and names, long text, mixed content),
# plus some hand-written ones.  Every document must get the same SHA-256 from
# both; the DEBUG2 message of inspect_metadata() tells which path ran, so
# the test also checks that the stream itself handled most documents and
# every feature class (except the ones it gives up on by design).
#
#   C14N_SEED=N    another seed (printed at the start)
#   C14N_DOCS=N    how many random documents (default 3000)
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

SEED=${C14N_SEED:-20241201}
NDOCS=${C14N_DOCS:-3000}
MIN_STREAMED_PCT=60
echo "# seed $SEED (set C14N_SEED to override), $NDOCS random documents"

tv_cluster_start c14n >/dev/null
tv_psql c14n >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
SQL
q() { tv_psql c14n -At -c "$1"; }

W=$TV_TMP/c14n-work
mkdir -p "$W"

# The study "C14N" does not exist: no schema, no rules of its own, and no
# XPath rule among the defaults, so inspect_metadata() may stream.
is "$(q "SELECT (SELECT count(*) FROM trialvault.phi_rules WHERE study = 'C14N')
             + (SELECT count(*) FROM trialvault.metadata_schemas WHERE study = 'C14N')
             + (SELECT count(*) FROM trialvault.metadata_defaults WHERE study = 'C14N')
             + (SELECT count(*) FROM trialvault.phi_rules_for('C14N') WHERE kind = 'xpath')")" \
	"0" "study C14N has no schema, no rules of its own and no XPath rule"
out=$(tv_psql c14n -At 2>"$W/probe.log" <<'SQL'
SET client_min_messages = debug2;
SELECT coalesce(checked_schema, '-') FROM trialvault.inspect_metadata('C14N', '<m a="1"/>', NULL);
SELECT coalesce(checked_schema, '-') FROM trialvault.inspect_metadata('C14N', '<?pi?><m/>', NULL);
SQL
)
is "$out" $'-\n-' "inspect_metadata() of an unknown study, schema_name NULL: no schema checked"
is "$(grep -o 'took the [a-z]* path' "$W/probe.log" | tr '\n' ' ')" "took the streaming path took the tree path " \
	"it streams a plain document, a PI takes the tree, and DEBUG2 says so"

# --- the generator -----------------------------------------------------------
# Writes "id<TAB>{features}<TAB>base64(document)" lines: the hand-written
# cases first (features "hand", or "hand_refused" for documents both paths
# must refuse), then the random ones, each feature it actually emitted
# listed.
PYTHONHASHSEED=0 python3 - "$SEED" "$NDOCS" >"$W/docs.tsv" 2>"$W/gen.log" <<'PY'
import base64
import random
import sys

SEED = int(sys.argv[1])
NDOCS = int(sys.argv[2])
MAXLEN = 64 * 1024 - 1
XML_NS = "http://www.w3.org/XML/1998/namespace"

ASCII_NAMES = ["a", "b", "c", "item", "visit", "form", "row", "x-y", "_u",
               "v.1", "Data", "z9", "A"]
NONASCII_NAMES = ["café", "naïve", "Ωmega", "数据", "データ", "résumé", "ñu",
                  "Ärzte", "한글"]
ASTRAL_NAMES = ["x😀", "𝒳val", "𠀀名"]
PREFIXES = ["p", "q", "r", "ns1", "s_2", "P"]
NONASCII_PREFIXES = ["prä", "数", "é"]
UNUSED_PREFIXES = ["u0", "u1", "unused", "ü"]   # declared, never used
URIS = ["urn:a", "urn:A", "urn:b", "urn:c:d", "http://example.org/ns/e",
        "https://example.com/f?x=1", "urn:x:y%20z",
        "http://example.org/ns/e#frag", "urn:isbn:0-395-36341-1",
        "tag:example.org,2024:g", "mailto:someone@example.org"]
# Absolute, but the stream renders them by other rules: it gives up when one
# must be rendered (a quote or an ampersand in the URI).
ODD_URIS = ["urn:it's", "http://example.org/?a=1&b=2"]
WORDS = ["lorem", "ipsum", "visit", "dose", "mg", "42", "x", "AE", "ok",
         "Grade", "3.5", "n/a", "a-b", "C14N"]
NONASCII_WORDS = ["é", "ü", "ß", "Ω", "ñandú", "Ærø", "señal", "Ünïcödé",
                  "ça", "€", "©"]
CJK_WORDS = ["数据", "データ", "한국어", "試験", "患者"]
ASTRAL_WORDS = ["😀", "𝒳", "🧬", "\U00020000", "👩\u200d🔬", "🏳️"]
SPECIAL_UNICODE = ["\u0085", "\u2028", "\u00a0", "\ufeff", "\u200b", "\ufffd"]
# (character, class name): what C14N escapes, in text or in attributes
SPECIALS = [("&", "amp"), ("<", "lt"), (">", "gt"), ('"', "quot"),
            ("'", "apos"), ("\t", "tab"), ("\n", "lf"), ("\r", "cr")]
PREDEF = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


class Gen:
    def __init__(self, rng):
        self.r = rng
        self.f = set()
        r = rng
        # Per-document switches: each document exercises a few features
        # heavily rather than all of them a little.
        self.sw = {
            "decl": r.random() < 0.4,
            "ns_root_default": r.random() < 0.5,
            "ns_root_prefixed": r.random() < 0.55,
            "ns_deep": r.random() < 0.55,
            "attrs": r.random() < 0.75,
            "xml_attr": r.random() < 0.3,
            "nonascii": r.random() < 0.4,
            "astral": r.random() < 0.25,
            "entities": r.random() < 0.5,
            "charrefs": r.random() < 0.5,
            "cdata": r.random() < 0.35,
            "comments": r.random() < 0.35,
            "pi": r.random() < 0.10,
            "deep": r.random() < 0.10,
            "long": r.random() < 0.05,
            "ws_tags": r.random() < 0.35,
            "ws_between": r.random() < 0.45,
            "odd_uri": r.random() < 0.05,
            "xml_elem": r.random() < 0.02,
            "special_unicode": r.random() < 0.15,
            "many": r.random() < 0.06,
        }
        self.budget = r.choice([1, 3, 8, 15, 30, 60])
        self.size = 0

    # -- small pieces ------------------------------------------------------
    def tagws(self):
        """Whitespace inside a tag (at least one character)."""
        if self.sw["ws_tags"] and self.r.random() < 0.6:
            self.f.add("ws_in_tags")
            return "".join(self.r.choice([" ", "\t", "\n", "\r\n", "  "])
                           for _ in range(self.r.randint(1, 3)))
        return " "

    def optws(self):
        """Optional whitespace inside a tag (around '=', before '>')."""
        if self.sw["ws_tags"] and self.r.random() < 0.4:
            self.f.add("ws_in_tags")
            return self.r.choice([" ", "\t", "\n", "  ", "\r\n"])
        return ""

    def name(self):
        r = self.r
        if self.sw["astral"] and r.random() < 0.15:
            self.f.add("astral_name")
            return r.choice(ASTRAL_NAMES)
        if self.sw["nonascii"] and r.random() < 0.35:
            self.f.add("nonascii_name")
            return r.choice(NONASCII_NAMES)
        return r.choice(ASCII_NAMES)

    def special(self, ch, cls, ctx):
        """A character C14N may escape, written as a reference."""
        r = self.r
        how = r.random()
        if ch in PREDEF and self.sw["entities"] and how < 0.5:
            self.f.add("predef_entity")
            self.f.add("%s_%s" % (ctx, cls))
            return PREDEF[ch]
        if how < 0.75:
            self.f.add("charref_dec")
            self.f.add("%s_%s" % (ctx, cls))
            return "&#%d;" % ord(ch)
        self.f.add("charref_hex")
        self.f.add("%s_%s" % (ctx, cls))
        return r.choice(["&#x%X;", "&#x%x;", "&#x%04X;"]) % ord(ch)

    def piece(self, ctx, quote=None):
        """One run of character data for text (ctx 'text') or an
        attribute value (ctx 'attr', inside quote)."""
        r = self.r
        k = r.random()
        if k < 0.35 or not (self.sw["entities"] or self.sw["charrefs"]
                            or self.sw["nonascii"] or self.sw["astral"]):
            return " ".join(r.choice(WORDS) for _ in range(r.randint(1, 4)))
        if k < 0.55 and (self.sw["entities"] or self.sw["charrefs"]):
            ch, cls = r.choice(SPECIALS)
            return self.special(ch, cls, ctx)
        if k < 0.65:
            # literal characters that need no reference here
            opts = [">", "'" if quote != "'" else '"', "]", "]]", "?", "=",
                    "/", "\t", "\n", "\r\n", "%", "--", "]]>" if ctx == "attr" else "]]"]
            c = r.choice(opts)
            if c == "\r\n":
                self.f.add("literal_crlf")
            if c in ("\t", "\n", "\r\n"):
                self.f.add("%s_literal_ws" % ctx)
            if c == ">":
                self.f.add("%s_literal_gt" % ctx)
            return c
        if k < 0.75 and self.sw["nonascii"]:
            self.f.add("nonascii_text")
            return r.choice(NONASCII_WORDS)
        if k < 0.82 and self.sw["nonascii"]:
            self.f.add("cjk_text")
            return r.choice(CJK_WORDS)
        if k < 0.88 and self.sw["astral"]:
            self.f.add("astral_text")
            return r.choice(ASTRAL_WORDS)
        if k < 0.93 and self.sw["charrefs"]:
            self.f.add("charref_nonascii")
            c = r.choice(["é", "Ω", "数", "😀", "𝒳", "\u2028", "\u00a0"])
            return r.choice(["&#%d;", "&#x%X;"]) % ord(c)
        if k < 0.97 and self.sw["special_unicode"]:
            self.f.add("special_unicode")
            return r.choice(SPECIAL_UNICODE)
        return r.choice(WORDS)

    def chardata(self, ctx, quote=None, n=None):
        if n is None:
            n = self.r.choice([0, 1, 1, 2, 3, 5, 8])
        s = "".join(self.piece(ctx, quote) for _ in range(n))
        if ctx == "text":
            s = s.replace("]]>", "]]&gt;")
        return s

    def attr(self, qname, value_xml, q=None):
        if q is None:
            q = self.r.choice(['"', "'"])
        if q in value_xml:
            q = "'" if q == '"' else '"'
        self.f.add("quote_single" if q == "'" else "quote_double")
        return "%s%s%s=%s%s%s%s" % (self.tagws(), qname, self.optws(), self.optws(),
                                    q, value_xml, q)

    def uri_xml(self, uri):
        """A namespace URI written as an attribute value."""
        out = []
        for ch in uri:
            if ch == "&":
                out.append("&amp;")
            elif ch == "'" and self.r.random() < 0.5:
                out.append("&apos;")
            else:
                out.append(ch)
        return "".join(out)

    def cdata(self):
        r = self.r
        self.f.add("cdata")
        k = r.random()
        if k < 0.15:
            self.f.add("cdata_empty")
            return "<![CDATA[]]>"
        if k < 0.3:
            # "]]>" as text: split over two sections
            self.f.add("cdata_split")
            return "<![CDATA[%s]]]]><![CDATA[>%s]]>" % (
                r.choice(WORDS), r.choice(WORDS))
        parts = []
        for _ in range(r.randint(1, 6)):
            c = r.random()
            if c < 0.4:
                parts.append(r.choice(["<", "&", ">", "]]", "]", "&amp;", "<b>",
                                       "<![CDATA[", '"', "'", "&#13;", "]>",
                                       "]] >", "\t", "\n", "\r\n"]))
                self.f.add("cdata_markup")
            elif c < 0.55 and self.sw["nonascii"]:
                parts.append(r.choice(NONASCII_WORDS + CJK_WORDS))
                self.f.add("nonascii_text")
            elif c < 0.65 and self.sw["astral"]:
                parts.append(r.choice(ASTRAL_WORDS))
                self.f.add("astral_text")
            else:
                parts.append(r.choice(WORDS))
        s = "".join(parts)
        while "]]>" in s:
            s = s.replace("]]>", "]] >")
        if s.endswith("]") or s.endswith("]]"):
            s += "x"
        return "<![CDATA[%s]]>" % s

    def comment(self):
        r = self.r
        self.f.add("comment")
        body = r.choice(["", " c ", " <not> &amp; markup ", " -x- ", " ]]> ",
                         " 数据 😀 ", "\n multi\r\n line\t", "<?pi?>", "<![CDATA[x]]>"])
        return "<!--%s-->" % body

    def pi(self, where):
        r = self.r
        self.f.add("pi")
        self.f.add("pi_" + where)
        target = r.choice(["pi", "tv-pi", "xml-stylesheet", "x.y", "données"])
        data = r.choice(["", " ", " a=\"1\"", " <markup> & ]]> ?", " 😀 é",
                         " href=\"s.xsl\" type=\"text/xsl\"", "\tx\ny"])
        return "<?%s%s?>" % (target, data)

    def misc(self, where):
        """Comments, PIs and whitespace before or after the root."""
        out = []
        for _ in range(self.r.randint(0, 2)):
            k = self.r.random()
            if k < 0.4 and self.sw["comments"]:
                out.append(self.comment())
                self.f.add("comment_" + where)
            elif k < 0.6 and self.sw["pi"]:
                out.append(self.pi(where))
            elif k < 0.9:
                out.append(self.r.choice(["\n", " ", "\t", "\r\n", "\n\n"]))
                self.f.add("ws_" + where)
        return "".join(out)

    def xmldecl(self):
        r = self.r
        self.f.add("xml_decl")
        q = r.choice(['"', "'"])
        s = "<?xml version=%s1.0%s" % (q, q)
        if r.random() < 0.6:
            enc = r.choice(["UTF-8", "utf-8", "UTF-8", "ISO-8859-1", "US-ASCII",
                               "UTF-16", "windows-1252"])
            self.f.add("xml_decl_encoding")
            if enc.upper() != "UTF-8":
                self.f.add("xml_decl_encoding_not_utf8")
            s += " encoding=%s%s%s" % (q, enc, q)
        if r.random() < 0.4:
            self.f.add("xml_decl_standalone")
            s += " standalone=%s%s%s" % (q, r.choice(["yes", "no"]), q)
        s += r.choice(["", " ", "\n"]) + "?>"
        return s

    # -- elements ----------------------------------------------------------
    def ns_decls(self, depth, scope):
        """Namespace declarations for an element: a list of (prefix or None,
        uri); scope is updated."""
        r = self.r
        decls = {}

        def declare(prefix, uri, feat):
            if prefix in decls:
                return
            decls[prefix] = uri
            self.f.add(feat)
            if uri in ODD_URIS:
                self.f.add("ns_odd_uri_declared")

        def any_uri():
            if self.sw["odd_uri"] and r.random() < 0.3:
                return r.choice(ODD_URIS)
            return r.choice(URIS)

        if depth == 0:
            if self.sw["ns_root_default"]:
                declare(None, any_uri(), "ns_default_root")
            if self.sw["ns_root_prefixed"]:
                for _ in range(r.randint(1, 3)):
                    pool = PREFIXES + (NONASCII_PREFIXES if self.sw["nonascii"] else [])
                    declare(r.choice(pool), any_uri(), "ns_prefixed_root")
            if r.random() < 0.3:
                declare(r.choice(UNUSED_PREFIXES), any_uri(), "ns_unused")
            if self.sw["many"]:
                for i in range(r.randint(9, 16)):
                    declare("n%d" % r.randint(0, 30), any_uri(), "ns_many_root")
        elif self.sw["ns_deep"] and r.random() < 0.5:
            for _ in range(r.randint(1, 3)):
                k = r.random()
                bound = [p for p in scope if p not in UNUSED_PREFIXES and p != "xml"]
                if k < 0.15 and bound:
                    p = r.choice(bound)
                    declare(p, scope[p], "ns_redeclare_same")
                elif k < 0.4 and bound:
                    p = r.choice(bound)
                    u = any_uri()
                    if p is None and scope.get(None, "") != "" and r.random() < 0.3:
                        declare(None, "", "ns_undeclare_default")
                    elif u != scope[p]:
                        declare(p, u, "ns_override_default" if p is None else "ns_override_prefix")
                elif k < 0.5 and scope.get(None, "") != "":
                    declare(None, "", "ns_undeclare_default")
                elif k < 0.6:
                    declare(None, any_uri(), "ns_default_deep")
                elif k < 0.75:
                    pool = PREFIXES + (NONASCII_PREFIXES if self.sw["nonascii"] else [])
                    declare(r.choice(pool), any_uri(), "ns_prefixed_deep")
                elif k < 0.85:
                    declare(r.choice(UNUSED_PREFIXES), any_uri(), "ns_unused")
                elif k < 0.97:
                    others = [p for p in scope if p is not None and p != "xml" and scope[p]]
                    if others:
                        u = scope[r.choice(others)]
                        pool = PREFIXES + (NONASCII_PREFIXES if self.sw["nonascii"] else [])
                        p = r.choice(pool)
                        if scope.get(p) != u:
                            declare(p, u, "ns_two_prefixes_one_uri")
                else:
                    declare("xml", XML_NS, "ns_xml_declared")
        return decls

    def element(self, depth, scope, chain=0):
        r = self.r
        self.budget -= 1
        decls = self.ns_decls(depth, scope)
        scope = dict(scope)
        scope.update(decls)
        usable = [p for p in scope if p is not None and p not in UNUSED_PREFIXES
                  and p != "xml"]

        def note_uri(uri):
            if uri in ODD_URIS:
                self.f.add("ns_odd_uri_used")

        # the element's name
        local = self.name()
        if self.sw["xml_elem"] and r.random() < 0.3:
            qname = "xml:" + local
            self.f.add("xml_prefix_element")
        elif usable and r.random() < 0.5:
            p = r.choice(usable)
            qname = p + ":" + local
            self.f.add("elem_prefixed")
            note_uri(scope[p])
        else:
            qname = local
            if scope.get(None, ""):
                self.f.add("elem_default_ns")
                note_uri(scope[None])
            elif depth > 0 and None in scope:
                self.f.add("elem_no_ns_after_undeclare")
            else:
                self.f.add("elem_no_ns")

        # attributes
        items = []
        for p, u in decls.items():
            items.append(("ns", self.attr("xmlns" if p is None else "xmlns:" + p,
                                          self.uri_xml(u))))
        seen_q = set()
        seen_x = {}     # (uri, local) of each attribute, in order (a dict:
                        # sets iterate in an order that changes every run)
        nattr = r.choice([0, 0, 1, 1, 2, 3, 4, 6]) if self.sw["attrs"] else 0
        if self.sw["many"] and r.random() < 0.5:
            nattr = r.randint(10, 24)
            self.f.add("attr_many")
        for _ in range(nattr):
            k = r.random()
            if k < 0.15 and self.sw["xml_attr"]:
                qn, val = r.choice([
                    ("xml:lang", r.choice(["en", "fr-CA", "de", "", "zh-Hans"])),
                    ("xml:space", r.choice(["preserve", "default"])),
                ])
                if qn in seen_q:
                    continue
                seen_q.add(qn)
                seen_x[(XML_NS, qn[4:])] = True
                self.f.add("xml_attr")
                items.append(("attr", self.attr(qn, val)))
                continue
            if k < 0.55 and usable:
                p = r.choice(usable)
                uri = scope[p]
                # same local name as an attribute in another namespace
                same = [lx for (ux, lx) in seen_x if ux != uri]
                if same and r.random() < 0.5:
                    loc = r.choice(same)
                else:
                    loc = self.name()
                if (uri, loc) in seen_x:
                    continue
                if any(lx == loc for (ux, lx) in seen_x):
                    self.f.add("attr_same_local_other_ns")
                seen_x[(uri, loc)] = True
                qn = p + ":" + loc
                self.f.add("attr_prefixed")
                note_uri(uri)
            else:
                loc = self.name()
                if (None, loc) in seen_x:
                    continue
                if any(lx == loc for (ux, lx) in seen_x):
                    self.f.add("attr_same_local_other_ns")
                seen_x[(None, loc)] = True
                qn = loc
            seen_q.add(qn)
            q = r.choice(['"', "'"])
            if self.sw["long"] and not getattr(self, "long_attr_done", False):
                self.long_attr_done = True
                self.f.add("long_attr")
                val = self.chardata("attr", q, r.randint(1000, 4000))
            else:
                val = self.chardata("attr", q, r.choice([0, 1, 1, 2, 4]))
            items.append(("attr", self.attr(qn, val.replace(q, PREDEF[q]), q)))
        if sum(1 for k, _ in items if k == "attr") >= 2:
            self.f.add("attr_several")
        used = {qn.split(":")[0] for qn in [qname] + list(seen_q) if ":" in qn}
        if len(used - {"xml"}) >= 9:
            self.f.add("ns_many_used_on_one_element")
        if sum(1 for k, _ in items if k == "attr") >= 1 and decls:
            r.shuffle(items)
            if items[0][0] == "attr":
                self.f.add("ns_decl_after_attr")
        open_tag = "<" + qname + "".join(s for _, s in items) + self.optws()

        # content
        parts = []
        if chain > 0:
            if r.random() < 0.5:
                parts.append(("t", self.chardata("text")))
            parts.append(("e", self.element(depth + 1, scope, chain - 1)))
            if r.random() < 0.3:
                parts.append(("t", self.chardata("text")))
        elif depth == 0 and self.sw["long"] and not getattr(self, "long_done", False):
            self.long_done = True
            self.f.add("long_text")
            target = r.randint(8000, 40000)
            chunk = []
            n = 0
            while n < target:
                s = self.piece("text") + r.choice(["", " ", "\n"])
                chunk.append(s)
                n += len(s.encode())
            parts.append(("t", "".join(chunk)))
            parts.append(("e", self.element(depth + 1, scope)))
        elif self.budget > 0 and depth < 12:
            nchild = r.choice([0, 1, 2, 3, 4, 6])
            if depth == 0 and self.sw["deep"]:
                self.f.add("deep_nesting")
                parts.append(("e", self.element(1, scope, chain=r.randint(20, 90))))
            for _ in range(nchild):
                k = r.random()
                if k < 0.45 and self.budget > 0:
                    parts.append(("e", self.element(depth + 1, scope)))
                elif k < 0.65:
                    parts.append(("t", self.chardata("text")))
                elif k < 0.75 and self.sw["ws_between"]:
                    self.f.add("ws_between")
                    ws = "".join(r.choice([" ", "\t", "\n", "&#13;", "&#xD;", "&#9;", "&#10;", "\r\n"])
                                 for _ in range(r.randint(1, 4)))
                    if "&#" in ws:
                        self.f.add("text_cr" if ("13" in ws or "D;" in ws) else "charref_ws")
                    parts.append(("t", ws))
                elif k < 0.83 and self.sw["cdata"]:
                    parts.append(("c", self.cdata()))
                elif k < 0.9 and self.sw["comments"]:
                    self.f.add("comment_inside")
                    parts.append(("c", self.comment()))
                elif k < 0.93 and self.sw["pi"]:
                    parts.append(("c", self.pi("inside")))
        elif r.random() < 0.5:
            parts.append(("t", self.chardata("text")))
        # merge adjacent text so that "]]>" cannot form across pieces
        content = []
        for kind, s in parts:
            if kind == "t" and content and content[-1][0] == "t":
                content[-1] = ("t", content[-1][1] + s)
            else:
                content.append((kind, s))
        body = "".join(s.replace("]]>", "]]&gt;") if kind == "t" else s
                       for kind, s in content)
        kinds = {k for k, s in content if s != ""}
        if "e" in kinds and "t" in kinds:
            self.f.add("mixed_content")
        if body == "":
            if r.random() < 0.5:
                self.f.add("empty_selfclose")
                return open_tag + "/>"
            self.f.add("empty_pair")
            return open_tag + "></" + qname + self.optws() + ">"
        return open_tag + ">" + body + "</" + qname + self.optws() + ">"

    def document(self):
        s = ""
        if self.sw["decl"]:
            s += self.xmldecl()
        s += self.misc("prolog")
        s += self.element(0, {})
        s += self.misc("epilog")
        return s


HAND = [
    # (features, document)
    ("hand", '<a xmlns="urn:d"><p:b xmlns:p="urn:p" xmlns=""><c/></p:b></a>'),
    ("hand", '<a xmlns="urn:d"><b xmlns=""><c xmlns="urn:d"/></b></a>'),
    ("hand", '<a><b xmlns=""/></a>'),
    ("hand", '<p:a xmlns:p="urn:a"><p:b xmlns:p="urn:b"><p:c xmlns:p="urn:a" p:x="1"/></p:b></p:a>'),
    ("hand", '<a xmlns:p="urn:a" xmlns:q="urn:b" q:x="2" p:x="1" x="0"/>'),
    ("hand", '<a xmlns:p="urn:b" xmlns:q="urn:a" p:x="2" q:y="1" z="0"/>'),
    ("hand", '<a xmlns:z="urn:a" xmlns:b="urn:a" z:x="1" b:y="2"/>'),
    ("hand", '<a xml:lang="en" xmlns:p="http://a" p:b="1" xml:space="preserve"/>'),
    ("hand", '<a b="&#9;&#10;&#13;&#38;&#60;&#62;&#34;&#39;">&#9;&#10;&#13;&#38;&#60;&#62;&#34;&#39;</a>'),
    ("hand", '<a b="\t\n\r\n x">\t\n\r\n x</a>'),
    ("hand", '<a><![CDATA[]]><![CDATA[ ]]]]><![CDATA[>]]><![CDATA[<&>\r\n]]></a>'),
    ("hand", '<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?><a>é😀</a>'),
    ("hand", '<a>&#x1F600;&#128512;😀\U00020000</a>'),
    ("hand", '<?pi x?><a><?pi y?></a><?pi z?>'),
    ("hand", '<xml:a xml:lang="en"/>'),
    ("hand", '<a xmlns:xml="http://www.w3.org/XML/1998/namespace" xml:lang="en"/>'),
    ("hand", '<a xmlns:p="urn:it\'s"><p:b/></a>'),
    ("hand", '<a xmlns:p="urn:it\'s"><b/></a>'),
    ("hand", '<a xmlns:p="http://e.org/?a=1&amp;b=2" p:x="1"/>'),
    ("hand", '<!--c--><a><!--c-->x<!--c-->y</a><!--c-->'),
    ("hand", '<a\n\tb\n=\n"1"\r\n/>'),
    ("hand", '<a>]]&gt;]]</a>'),
    ("hand", '<a>\u0085\u2028\r\n</a>'),
    ("hand", '<e:a xmlns:e="urn:e" xmlns="urn:d"><b/><e:c xmlns="urn:d"/><d xmlns="urn:D"/></e:a>'),
    ("hand", '<a xmlns:p="urn:p"><b xmlns:p="urn:q"><c p:x="1" xmlns:p="urn:p"/></b></a>'),
    ("hand", '<a xmlns=""><b/></a>'),
    ("hand", '<?xml version="1.0" encoding="UTF-16"?><a b="é">é😀</a>'),
    ("hand", '<a xmlns:p="urn:a" xmlns:q="urn:b"><b q:x="1" p:x="2" x="3" xml:lang="en"/></a>'),
    ("hand", '<a xmlns:b="urn:z" xmlns:a="urn:z" a:x="1" b:y="2"><c b:x="3"/></a>'),
    ("hand", '<a>' + "x&amp;\r&#13;" * 4000 + '</a>'),
    # Both paths must refuse these (PostgreSQL's xml type accepts them).
    ("hand_refused", '<a xmlns:p="rel/ns"><p:b/></a>'),
    ("hand_refused", '<a xmlns="rel"/>'),
    ("hand_refused", '<a xmlns:u="rel"/>'),
    ("hand_refused", '<p:a/>'),
    ("hand_refused", '<p:a xmlns:p="urn:a" xmlns:q="urn:a" p:x="1" q:x="2"/>'),
    ("hand_refused", '<a xmlns:p=""/>'),
    ("hand_refused", '<?xml version="1.0"?><!DOCTYPE a><a/>'),
    ("hand_refused", '<?xml version="1.0" encoding="no-such-encoding"?><a/>'),
]


def main():
    rng = random.Random(SEED)
    out = sys.stdout
    stats = {"max": 0, "total": 0}
    n = 0
    for feats, doc in HAND:
        n += 1
        out.write("%d\t{%s}\t%s\n" % (n, feats, base64.b64encode(doc.encode()).decode()))
    while n < NDOCS + len(HAND):
        g = Gen(rng)
        doc = g.document()
        b = doc.encode("utf-8")
        if len(b) > MAXLEN:
            continue
        n += 1
        stats["max"] = max(stats["max"], len(b))
        stats["total"] += len(b)
        out.write("%d\t{%s}\t%s\n" % (n, ",".join(sorted(g.f)),
                                      base64.b64encode(b).decode()))
    sys.stderr.write("generated %d documents (%d hand-written), %d bytes, largest %d bytes\n"
                     % (n, len(HAND), stats["total"], stats["max"]))


main()
PY
sed 's/^/# /' "$W/gen.log"
ndocs=$(wc -l <"$W/docs.tsv")
check "the generator wrote the documents ($ndocs)" [ "$ndocs" -ge "$NDOCS" ]

# --- load: one COPY, then the cast to xml ------------------------------------
tv_psql c14n -q <<SQL
CREATE TABLE c14n_docs (id int PRIMARY KEY, features text[] NOT NULL,
	b64 text NOT NULL, doc xml, cast_error text);
\copy c14n_docs (id, features, b64) FROM '$W/docs.tsv'
CREATE FUNCTION pg_temp.to_xml(b64 text, OUT doc xml, OUT err text) LANGUAGE plpgsql AS \$\$
BEGIN
	doc := convert_from(decode(b64, 'base64'), 'UTF8')::xml;
EXCEPTION WHEN OTHERS THEN
	err := SQLERRM;
END \$\$;
UPDATE c14n_docs SET (doc, cast_error) = (SELECT x.doc, x.err FROM pg_temp.to_xml(b64) x);
SQL
is "$(q "SELECT count(*) FROM c14n_docs")" "$ndocs" "one COPY loaded every document"
bad=$(q "SELECT id || ': ' || cast_error FROM c14n_docs WHERE doc IS NULL ORDER BY id LIMIT 5")
is "$bad" "" "PostgreSQL accepts every generated document as xml"

# --- compare: every document through both paths ------------------------------
# One DO block: a NOTICE names each document before inspect_metadata()'s
# DEBUG2 line says which path it took; errors are kept, not raised.
if ! tv_psql c14n -q 2>"$W/compare.log" <<'SQL'
CREATE TABLE c14n_result (id int PRIMARY KEY, stream_sha bytea, tree_sha bytea,
	stream_err text, tree_err text);
SET client_min_messages = debug2;
DO $$
DECLARE
	r record;
	s bytea;
	t bytea;
	se text;
	te text;
BEGIN
	FOR r IN SELECT id, doc FROM c14n_docs WHERE doc IS NOT NULL ORDER BY id LOOP
		s := NULL; t := NULL; se := NULL; te := NULL;
		RAISE NOTICE 'c14n-doc %', r.id;
		BEGIN
			s := (trialvault.inspect_metadata('C14N', r.doc, NULL)).metadata_sha256;
		EXCEPTION WHEN OTHERS THEN
			se := SQLSTATE || ' ' || SQLERRM;
		END;
		BEGIN
			t := trialvault.metadata_sha256(r.doc);
		EXCEPTION WHEN OTHERS THEN
			te := SQLSTATE || ' ' || SQLERRM;
		END;
		INSERT INTO c14n_result VALUES (r.id, s, t, se, te);
	END LOOP;
END $$;
SQL
then
	grep -v 'NOTICE:  c14n-doc \|inspect_metadata took the' "$W/compare.log" | tail -n 20 | sed 's/^/# /'
	not_ok "the comparison ran"
	done_testing
	exit 1
fi
awk '/NOTICE:  c14n-doc / { id = $3 }
	/DEBUG:  trialvault: inspect_metadata took the / {
		if (id != "") print id "\t" $6; id = "" }' "$W/compare.log" >"$W/paths.tsv"
tv_psql c14n -q <<SQL
CREATE TABLE c14n_paths (id int PRIMARY KEY, path text NOT NULL);
\copy c14n_paths FROM '$W/paths.tsv'
CREATE VIEW c14n_outcome AS
	SELECT d.id, d.features, coalesce(p.path, '-') AS path,
		r.stream_err, r.tree_err,
		r.stream_sha IS DISTINCT FROM r.tree_sha
			OR (r.stream_err IS NULL) <> (r.tree_err IS NULL) AS mismatch
	FROM c14n_docs d JOIN c14n_result r USING (id) LEFT JOIN c14n_paths p USING (id);
SQL

is "$(q "SELECT count(*) FROM c14n_result")" "$ndocs" "both paths ran on every document"
errs=$(q "SELECT id || ': stream: ' || coalesce(stream_err, 'ok') || ' / tree: ' || coalesce(tree_err, 'ok')
	FROM c14n_outcome WHERE (stream_err IS NOT NULL OR tree_err IS NOT NULL) <> ('hand_refused' = ANY (features))
	ORDER BY id LIMIT 5")
is "$errs" "" "no path refused a generated document; both refused each hand-written bad one"

mismatches=$(q "SELECT count(*) FROM c14n_outcome WHERE mismatch")
is "$mismatches" "0" "streaming and tree C14N agree on every document"
if [ "$mismatches" != 0 ]; then
	# The smallest first: the easiest to read.
	tv_psql c14n -At <<'SQL' | sed 's/^/#   /'
SELECT format(E'--- document %s (%s bytes; %s path; features %s)\n%s\n--- stream sha256: %s%s\n--- tree sha256:   %s%s\n--- metadata_c14n (the tree, libxml2):\n%s',
		o.id, octet_length(d.doc::text), o.path, array_to_string(o.features, ','),
		replace(replace(left(d.doc::text, 3000), E'\r', '\r'), E'\t', '\t'),
		encode(r.stream_sha, 'hex'), coalesce(' ' || r.stream_err, ''),
		encode(r.tree_sha, 'hex'), coalesce(' ' || r.tree_err, ''),
		CASE WHEN r.tree_err IS NULL THEN
			replace(replace(left(convert_from(trialvault.metadata_c14n(d.doc), 'UTF8'), 3000),
				E'\r', '\r'), E'\t', '\t') END)
FROM c14n_outcome o JOIN c14n_docs d USING (id) JOIN c14n_result r USING (id)
WHERE o.mismatch
ORDER BY octet_length(d.doc::text), o.id
LIMIT 5;
SQL
fi

# The same comparison as one plain statement (the DO block above keeps
# errors apart; here an error would abort, so only when there were none).
if [ -z "$errs" ] && [ "$(q "SELECT count(*) FROM c14n_outcome WHERE stream_err IS NOT NULL OR tree_err IS NOT NULL")" = 0 ]; then
	is "$(q "SELECT count(*) FROM c14n_docs
		WHERE (trialvault.inspect_metadata('C14N', doc, NULL)).metadata_sha256
			IS DISTINCT FROM trialvault.metadata_sha256(doc)")" "$mismatches" \
		"one set-based statement counts the same mismatches"
fi

# --- which path did the work ---------------------------------------------------
npaths=$(wc -l <"$W/paths.tsv")
streamed=$(q "SELECT count(*) FROM c14n_outcome WHERE path = 'streaming'")
refused=$(q "SELECT count(*) FROM c14n_outcome WHERE stream_err IS NOT NULL")
check "every inspect_metadata() call that did not fail early said which path it took ($npaths of $ndocs, $refused refused)" \
	[ "$npaths" -ge $((ndocs - refused)) ]
pct=$((100 * streamed / ndocs))
check "the stream canonicalized $streamed of $ndocs documents ($pct %, at least $MIN_STREAMED_PCT %)" \
	[ "$pct" -ge "$MIN_STREAMED_PCT" ]

# Per feature class: how many documents have it, how many of those the
# stream handled, how many disagree.  The stream gives up by design on
# processing instructions, the xml prefix on an element, and namespace
# URIs with quotes or ampersands it would have to render.
BY_DESIGN="pi pi_prolog pi_inside pi_epilog xml_prefix_element ns_odd_uri_used hand_refused"
echo "# feature class                     generated  streamed  mismatches"
missing=""
while IFS='|' read -r f n m x; do
	printf '# %-34s %9s %9s %11s\n' "$f" "$n" "$m" "$x"
	if [ "$m" = 0 ] && [[ " $BY_DESIGN " != *" $f "* ]]; then
		missing="$missing $f"
	fi
done < <(q "SELECT f, count(*), count(*) FILTER (WHERE path = 'streaming'),
	count(*) FILTER (WHERE mismatch)
	FROM c14n_outcome, unnest(features) f GROUP BY f ORDER BY f")
is "${missing# }" "" "the stream handled documents of every feature class (except:$BY_DESIGN)"

# The classes the generator must produce (with the default number of
# documents any seed produces all of them).
EXPECTED="attr_amp attr_apos attr_cr attr_gt attr_lf attr_literal_gt attr_literal_ws
	attr_lt attr_prefixed attr_quot attr_same_local_other_ns attr_several attr_tab
	astral_name astral_text cdata cdata_empty cdata_markup cdata_split charref_dec
	charref_hex charref_nonascii cjk_text comment comment_epilog comment_inside
	comment_prolog deep_nesting elem_default_ns elem_no_ns elem_no_ns_after_undeclare
	elem_prefixed empty_pair empty_selfclose literal_crlf long_text mixed_content
	nonascii_name nonascii_text ns_decl_after_attr ns_default_deep ns_default_root
	ns_many_root ns_many_used_on_one_element attr_many long_attr
	ns_odd_uri_declared ns_override_default ns_override_prefix ns_prefixed_deep
	ns_prefixed_root ns_redeclare_same ns_two_prefixes_one_uri ns_undeclare_default
	ns_unused ns_xml_declared pi pi_epilog pi_inside pi_prolog predef_entity
	quote_double quote_single special_unicode text_amp text_apos text_cr text_gt
	text_lf text_literal_gt text_literal_ws text_lt text_quot text_tab ws_between
	ws_epilog ws_in_tags ws_prolog xml_attr xml_decl xml_decl_encoding
	xml_decl_encoding_not_utf8 xml_decl_standalone xml_prefix_element"
have=" $(q "SELECT string_agg(DISTINCT f, ' ') FROM c14n_docs, unnest(features) f") "
absent=""
for f in $EXPECTED; do
	[[ $have == *" $f "* ]] || absent="$absent $f"
done
is "${absent# }" "" "the documents cover every feature class"

done_testing
