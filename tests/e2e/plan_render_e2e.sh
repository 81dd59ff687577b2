#!/usr/bin/env bash
# End to end, issue 16: what the real binary renders for reviewers, from a
# config and an observed snapshot (no server needed):
#   (a) `plan -o markdown` read by cmark-gfm with GitHub's table and tagfilter
#       extensions: the summary table and each group's before → after table
#       are real <table>s with the expected cells, each group has its
#       <details> section, the diagram is a mermaid code block, the blocked
#       group says what would unblock it, and a hostile stack name in the
#       snapshot neither adds a cell nor a tag
#   (b) `plan -o html`: one self-contained page (no external reference, no
#       script) with the same tables and steps, its tags balanced
# Usage (CTest): bash tests/e2e/plan_render_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
SF=${1:?stackflip binary}
command -v cmark-gfm >/dev/null && command -v python3 >/dev/null ||
  { echo "SKIP: cmark-gfm or python3 missing"; exit 77; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-render.XXXXXX")
trap '[[ -n ${KEEP_E2E_DIR:-} ]] || rm -rf "$DIR"' EXIT

# shop: a planned switch to standby. blog: its primary is gone, so the
# promotion of b is blocked until the commit allows data loss.
cat >"$DIR/stackflip.yaml" <<'EOF'
apiVersion: stackflip/v1
providers:
  db: {type: postgres}
  dns: {type: powerdns, url: "http://127.0.0.1:8081", api_key: "${env:PDNS_API_KEY}"}
groups:
  shop:
    active: standby
    stacks:
      primary: {provider: db, dsn: "host=127.0.0.1 port=5432 user=stackflip dbname=postgres", address: 127.0.0.1}
      standby: {provider: db, dsn: "host=127.0.0.2 port=5432 user=stackflip dbname=postgres", address: 127.0.0.2}
    traffic: {provider: dns, zone: example.test., record: shop.example.test., ttl: 60}
  blog:
    active: b
    stacks:
      a: {provider: db, dsn: "host=127.0.0.3 port=5432 user=stackflip dbname=postgres", address: 127.0.0.3}
      b: {provider: db, dsn: "host=127.0.0.4 port=5432 user=stackflip dbname=postgres", address: 127.0.0.4}
    traffic: {provider: dns, zone: example.test., record: blog.example.test., ttl: 60}
EOF
# The snapshot a loop published; it also reports a stack the config does not
# name, with a name made to break a table, a tag filter and a diagram.
cat >"$DIR/observed.json" <<'EOF'
{"apiVersion": "stackflip/v1", "observed_at": "2026-12-02T10:00:00Z",
 "groups": {
  "shop": {
   "stacks": {
     "primary": {"reachable": true, "maintenance": false,
                 "database": {"role": "primary", "upstream": null, "lsn": "0/3000060", "timeline": 1}},
     "standby": {"reachable": true, "maintenance": true,
                 "database": {"role": "replica", "upstream": "primary", "lsn": "0/3000060", "timeline": 1}},
     "x|y<script>alert(1)</script>`-->": {"reachable": false, "error": "gone"}},
   "traffic": {"target": "primary", "ttl": 60, "content": "127.0.0.1"}},
  "blog": {
   "stacks": {
     "a": {"reachable": false, "error": "connection refused", "maintenance": false,
           "database": {"role": "primary", "upstream": null, "lsn": "0/5000000", "timeline": 1}},
     "b": {"reachable": true, "maintenance": true,
           "database": {"role": "replica", "upstream": "a", "lsn": "0/4FFFF00", "timeline": 1}}},
   "traffic": {"target": "a", "ttl": 60, "content": "127.0.0.3"}}}}
EOF

"$SF" plan -c "$DIR/stackflip.yaml" --observed "$DIR/observed.json" -o markdown --detailed-exitcode \
  >"$DIR/plan.md" 2>"$DIR/plan.err"
check_eq "markdown: a blocked plan exits 3" 3 $?
check "markdown: under 65,000 bytes" test "$(wc -c <"$DIR/plan.md")" -le 65000
cmark-gfm --unsafe --extension table --extension tagfilter "$DIR/plan.md" >"$DIR/plan-comment.html"
check "markdown: cmark-gfm rendered it" test -s "$DIR/plan-comment.html"

# The tables of an HTML document as JSON: [[row cells...]...] per table,
# and the counts of a few tags.
tables() {
  python3 - "$1" <<'PY'
import html.parser, json, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables, self.cell, self.tags = [], None, {}
    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "table": self.tables.append([])
        elif tag == "tr" and self.tables: self.tables[-1].append([])
        elif tag in ("td", "th"): self.cell = ""
    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append(" ".join(self.cell.split()))
            self.cell = None
    def handle_data(self, data):
        if self.cell is not None: self.cell += data
p = P()
p.feed(open(sys.argv[1], encoding="utf-8").read())
print(json.dumps({"tables": p.tables, "tags": p.tags}, ensure_ascii=False))
PY
}
# has JSON_FILE PYTHON_EXPR: true when the expression over `d` holds.
has() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"; }

tables "$DIR/plan-comment.html" >"$DIR/comment.json"
T=$DIR/comment.json
check "comment: summary, blog's and shop's before → after: three tables" has "$T" 'len(d["tables"]) == 3'
check "comment: summary table header" has "$T" \
  'd["tables"][0][0] == ["group", "actions", "blocked", "first step"]'
check "comment: summary row of blog" has "$T" \
  'd["tables"][0][1] == ["blog", "4", "4", "replication.stop b"]'
check "comment: summary row of shop" has "$T" \
  'd["tables"][0][2] == ["shop", "7", "0", "maintenance.on primary"]'
check "comment: before → after header" has "$T" \
  'd["tables"][2][0] == ["state", "before (observed)", "after (desired)"]'
check "comment: shop primary → standby, the stack only observed named too" has "$T" \
  '["primary", "primary; x|y<script>alert(1)</script>`--> unreachable", "standby"] in d["tables"][2]'
check "comment: shop traffic" has "$T" \
  '["traffic target", "primary (127.0.0.1)", "standby (127.0.0.2)"] in d["tables"][2]'
check "comment: shop replication into primary" has "$T" \
  '["replication into primary", "none (is primary)", "from standby"] in d["tables"][2]'
check "comment: shop replication into standby" has "$T" \
  '["replication into standby", "from primary", "none (is primary)"] in d["tables"][2]'
check "comment: shop maintenance" has "$T" \
  '["maintenance of primary", "off", "on"] in d["tables"][2] and ["maintenance of standby", "on", "off"] in d["tables"][2]'
check "comment: blog's unreachable primary shown as such" has "$T" \
  '["primary", "a unreachable, last known: primary", "b"] in d["tables"][1] and
   ["maintenance of a", "unreachable, last known: off", "on"] in d["tables"][1]'
check "comment: the hostile stack name is one cell, as text" has "$T" \
  '["maintenance of x|y<script>alert(1)</script>`-->", "unreachable", "not in the config"] in d["tables"][2]'
check "comment: every row has three cells" has "$T" 'all(len(r) == 3 for t in d["tables"][1:] for r in t)'
check "comment: no script element" has "$T" '"script" not in d["tags"]'
check_eq "comment: two <details> sections" 2 "$(grep -c '^<details><summary>' "$DIR/plan-comment.html")"
check "comment: blog's section" grep -q '^<details><summary>blog — 4 actions, 4 blocked</summary>' "$DIR/plan-comment.html"
check "comment: shop's section" grep -q '^<details><summary>shop — 7 actions</summary>' "$DIR/plan-comment.html"
check_eq "comment: two mermaid code blocks" 2 \
  "$(grep -c '^<pre><code class="language-mermaid">flowchart TD$' "$DIR/plan-comment.html")"
check "comment: the blocked step in the diagram" grep -qx '  s2\[&quot;2. BLOCKED: database.promote b&quot;\]' "$DIR/plan-comment.html"
check "comment: styled as blocked" grep -qx '  class s1,s2,s3,s4 blocked' "$DIR/plan-comment.html"
check "comment: says what would unblock the plan first" grep -q \
  '^<p><strong>To unblock:</strong> blog, step 1 <code>replication.stop</code> b — the old primary a is unreachable' \
  "$DIR/plan-comment.html"

"$SF" plan -c "$DIR/stackflip.yaml" --observed "$DIR/observed.json" -o html >"$DIR/plan.html"
check_eq "html: exits 0" 0 $?
check "html: a document" grep -q '^<!DOCTYPE html>$' "$DIR/plan.html"
check "html: dark mode" grep -q 'prefers-color-scheme: dark' "$DIR/plan.html"
check "html: no external reference" not grep -Eq 'https?://|src=|<link|<script|url\(|@import' "$DIR/plan.html"
check "html: links only to its own anchors" not grep -Eq 'href="[^#]' "$DIR/plan.html"
tables "$DIR/plan.html" >"$DIR/page.json"
check "html: the same three tables" has "$DIR/page.json" 'len(d["tables"]) == 3'
check "html: shop's before → after" has "$DIR/page.json" \
  '["traffic target", "primary (127.0.0.1)", "standby (127.0.0.2) changes"] in d["tables"][2] and
   ["maintenance of standby", "on", "off changes"] in d["tables"][2]'
check "html: blocked step says so" grep -q '<span class="mark">✖ BLOCKED</span>' "$DIR/plan.html"
check "html: hostile name escaped" grep -qF 'x|y&lt;script&gt;alert(1)&lt;/script&gt;`--&gt;' "$DIR/plan.html"
check "html: tags balanced" python3 - "$DIR/plan.html" <<'PY'
import html.parser, sys
VOID = {"meta"}
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.open, self.bad = [], []
    def handle_starttag(self, tag, attrs):
        if tag not in VOID: self.open.append(tag)
    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag: self.bad.append(tag)
p = P()
p.feed(open(sys.argv[1], encoding="utf-8").read())
sys.exit(1 if p.bad or p.open else 0)
PY

# Screenshots for the README, when Chromium is installed (lib.sh chrome):
# the comment as cmark-gfm renders it, its sections opened, with a little
# CSS in GitHub's manner; and the -o html page.
if [[ -n $CHROMIUM ]]; then
  SHOTS=$(cd "$(dirname "$SF")" && pwd)/screenshots
  mkdir -p "$SHOTS"
  {
    printf '<!DOCTYPE html><meta charset="utf-8"><title>plan comment</title><style>'
    printf 'body{font:14px/1.5 system-ui,sans-serif;max-width:920px;margin:24px auto;color:#1f2328}'
    printf 'table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #d1d9e0;padding:4px 12px}'
    printf 'pre{background:#f6f8fa;padding:12px;border-radius:6px}code{font-size:12px}'
    printf 'details{border:1px solid #d1d9e0;border-radius:6px;padding:8px 16px;margin:8px 0}</style>\n'
    sed 's/<details>/<details open>/' "$DIR/plan-comment.html"
  } >"$DIR/comment-page.html"
  check "screenshot: the rendered comment" shot "file://$DIR/comment-page.html" plan-comment.png
  check "screenshot: the html plan" shot "file://$DIR/plan.html" plan-html.png
fi

e2e_finish
