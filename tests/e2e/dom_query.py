#!/usr/bin/env python3
"""Queries a DOM Chromium dumped (--dump-dom), for the status page's e2e test.

Usage: dom_query.py FILE SELECTORS [count | ATTRIBUTE]
  SELECTORS: comma-separated; each a descendant chain of compound selectors
  made of tag, #id, .class and [attr=value] parts (the subset the tests use).
  Prints the text of every match, one per line (whitespace collapsed); with
  `count`, how many elements match; with an attribute name, its value on the
  first match (nothing when none matches).
"""
import html.parser
import re
import sys

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children = []

    def text(self):
        out = []
        for c in self.children:
            out.append(c if isinstance(c, str) else c.text())
        return "".join(out)


class Builder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, [(k, v or "") for k, v in attrs], self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, [(k, v or "") for k, v in attrs], self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


PART = re.compile(r"(?P<tag>^[a-zA-Z][\w-]*)|#(?P<id>[\w-]+)|\.(?P<cls>[\w-]+)|\[(?P<attr>[\w-]+)=(?P<val>[^\]]*)\]")


def parse_compound(s):
    conds, pos = [], 0
    while pos < len(s):
        m = PART.match(s, pos)
        if not m or m.end() == pos:
            sys.exit(f"dom_query: cannot parse selector part {s[pos:]!r}")
        if m.group("tag"):
            conds.append(lambda n, t=m.group("tag").lower(): n.tag == t)
        elif m.group("id"):
            conds.append(lambda n, v=m.group("id"): n.attrs.get("id") == v)
        elif m.group("cls"):
            conds.append(lambda n, v=m.group("cls"): v in n.attrs.get("class", "").split())
        else:
            conds.append(lambda n, a=m.group("attr"), v=m.group("val"): n.attrs.get(a) == v)
        pos = m.end()
    return lambda n: all(c(n) for c in conds)


def walk(node):
    for c in node.children:
        if not isinstance(c, str):
            yield c
            yield from walk(c)


def select(root, selector):
    chain = [parse_compound(p) for p in selector.split()]
    found = [root]
    for test in chain:
        nxt, seen = [], set()
        for f in found:
            for n in walk(f):
                if test(n) and id(n) not in seen:
                    seen.add(id(n))
                    nxt.append(n)
        found = nxt
    return found


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    b = Builder()
    with open(sys.argv[1], encoding="utf-8") as f:
        b.feed(f.read())
    matches = []
    for sel in sys.argv[2].split(","):
        matches += [m for m in select(b.root, sel.strip()) if m not in matches]
    what = sys.argv[3] if len(sys.argv) > 3 else None
    if what == "count":
        print(len(matches))
    elif what:
        if matches:
            print(matches[0].attrs.get(what, ""))
    else:
        for m in matches:
            print(" ".join(m.text().split()))


if __name__ == "__main__":
    main()
