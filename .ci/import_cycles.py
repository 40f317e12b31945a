#!/usr/bin/env python3
"""Finds import circles between the files of each crate: `use crate::a::b`, `super::x`, and
`crate::a::f(..)` paths in expressions, resolved to the module file they name. Exits non-zero if it finds a circle."""
import re, sys, pathlib

def module_files(src):
    mods = {}
    for p in src.rglob('*.rs'):
        rel = p.relative_to(src).with_suffix('')
        parts = list(rel.parts)
        if parts[-1] in ('mod', 'lib', 'main'):
            parts = parts[:-1]
        mods[tuple(parts)] = p
    return mods

def resolve(mods, path):
    # longest prefix of path that is a module file
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None

def expand_use(text):
    # crude: flatten `use crate::{a, b::{c}}` into paths
    out = []
    def walk(prefix, body):
        depth = 0; cur = ''
        items = []
        for ch in body:
            if ch == '{': depth += 1
            if ch == '}': depth -= 1
            if ch == ',' and depth == 0:
                items.append(cur); cur = ''
            else:
                cur += ch
        items.append(cur)
        for it in items:
            it = it.strip()
            if not it: continue
            m = re.match(r'([\w:]*?)::\{(.*)\}$', it, re.S)
            if m:
                walk(prefix + [x for x in m.group(1).split('::') if x], m.group(2))
            else:
                it = it.split(' as ')[0]
                out.append(prefix + [x for x in it.split('::') if x])
    walk([], text)
    return out

def deps_of(mods, mod, text):
    deps = set()
    for m in re.finditer(r'\buse\s+([^;]+);', text):
        for path in expand_use(m.group(1)):
            deps.add(tuple(path))
    for m in re.finditer(r'\b((?:crate|super|self)(?:::\w+)+)', text):
        deps.add(tuple(m.group(1).split('::')))
    out = set()
    for path in deps:
        if not path: continue
        base = list(mod)
        # a file mod.rs / foo.rs is module `mod`; `super` is its parent
        if path[0] == 'crate':
            full = list(path[1:])
        elif path[0] == 'super':
            p = list(path); b = base[:]
            while p and p[0] == 'super':
                b = b[:-1]; p = p[1:]
            full = b + p
        elif path[0] == 'self':
            full = base + list(path[1:])
        else:
            continue
        r = resolve(mods, full)
        if r is not None and r != mod and r != tuple(mod[:len(r)]):
            out.add(r)
    return out

def cycles(graph):
    index = {}; low = {}; stack = []; on = set(); res = []; i = [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: res.append(comp)
    for v in graph:
        if v not in index: strong(v)
    return res

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else '.')
found = 0
for cargo in sorted(root.rglob('Cargo.toml')):
    if 'target' in cargo.parts: continue
    src = cargo.parent / 'src'
    if not src.is_dir(): continue
    mods = module_files(src)
    graph = {}
    for mod, p in mods.items():
        text = re.sub(r'//[^\n]*', '', p.read_text())
        # a parent module's `mod x;` / re-exports of its children are not a use of them as a
        # dependency in the circle sense: skip children of this module
        graph[mod] = {d for d in deps_of(mods, mod, text) if d[:len(mod)] != mod}
    for comp in cycles(graph):
        found += 1
        print(f"{cargo.parent}: circle: " + ' -> '.join('/'.join(c) or '(root)' for c in sorted(comp)))
print(f"{found} circle(s)")
sys.exit(1 if found else 0)
