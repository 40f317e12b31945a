#!/usr/bin/env python3
"""Import circles between the files of a crate.

Usage: .ci/import-circles.py CRATE_SRC_DIR...

Reads every `use crate::...;` and `use super::...;` statement (comments stripped, statements that
span lines included) and every `crate::...` path written inline, maps each file to its module path (`control/server.rs` is
`control::server`, `control/mod.rs` is `control`), and reports every strongly connected component
of more than one file in the graph "file A imports something from module B". A `use` of a module's
item counts as an import of the file that holds the module (`crate::boot::Kernel` -> `boot`; a
path into a folder module goes as deep as the files go). Exit status 1 when there is a circle.
"""

import os
import re
import sys


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def module_of(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (as lists of segments)."""
    tree = tree.strip()
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix = [s for s in tree[:i].split("::") if s.strip()]
                inner = tree[i + 1 : tree.rindex("}")]
                parts, d, start = [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        d += 1
                    elif c == "}":
                        d -= 1
                    elif c == "," and d == 0:
                        parts.append(inner[start:j])
                        start = j + 1
                parts.append(inner[start:])
                out = []
                for p in parts:
                    if p.strip():
                        out += [prefix + rest for rest in expand(p)]
                return out
            depth += 1
    name = tree.split(" as ")[0]
    return [[s.strip() for s in name.split("::") if s.strip()]]


def main(dirs):
    status = 0
    for src in dirs:
        files = {}
        for root, _, names in os.walk(src):
            for n in names:
                if n.endswith(".rs"):
                    p = os.path.join(root, n)
                    files[module_of(src, p)] = p
        edges = {m: set() for m in files}
        for mod, path in files.items():
            text = strip_comments(open(path, encoding="utf-8").read())
            stmts = re.findall(r"\buse\s+((?:crate|super)::[^;]*);", text, flags=re.S)
            # Paths written inline (`crate::apps::Apps` in a field's type) count too.
            rest = re.sub(r"\buse\s+(?:crate|super)::[^;]*;", "", text, flags=re.S)
            stmts += re.findall(r"(?<![\w:])((?:crate|super)(?:::(?:super|[A-Za-z_]\w*))+)", rest)
            for stmt in stmts:
                for segs in expand(stmt):
                    if segs[0] == "crate":
                        base = []
                    else:
                        # `super` from a file module is its parent; from mod.rs, the parent too.
                        is_mod = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
                        base = list(mod) if is_mod else list(mod[:-1])
                        while segs and segs[0] == "super":
                            segs = segs[1:]
                            base = base[:-1] if segs and segs[0] == "super" else base
                        segs = ["super"] + segs
                    target = base + segs[1:]
                    # The deepest file module that the path goes into.
                    best = None
                    for k in range(len(target), -1, -1):
                        if tuple(target[:k]) in files:
                            best = tuple(target[:k])
                            break
                    if best is not None and best != mod and best != ():
                        # A file's own descendants (`mod x; use x::...`) are not a circle.
                        if best[: len(mod)] == mod and len(mod) > 0:
                            continue
                        edges[mod].add(best)
        # Tarjan's strongly connected components.
        index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in edges[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(comp)

        sys.setrecursionlimit(10000)
        for v in sorted(edges):
            if v not in index:
                visit(v)
        circles = [c for c in comps if len(c) > 1]
        for c in circles:
            names = sorted("::".join(m) or "(crate root)" for m in c)
            print(f"{src}: import circle: {', '.join(names)}")
            status = 1
        if not circles:
            print(f"{src}: no import circle among {len(files)} files")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
