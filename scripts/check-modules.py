#!/usr/bin/env python3
"""Checks the enclave crate's module structure (DESIGN.md, "Workspace").

1. No import cycles among modules. A module's references to its own submodules do not count
   (a module owns its children); every other `crate::`, `super::` and `self::` path counts.
   Test code (`tests` modules, `test_support`, `#[cfg(test)]` items) is left out.
2. Each folder imports only the folders its rule allows (RULES below, also in DESIGN.md).

Usage: scripts/check-modules.py [SRC_DIR]   (default enclave/src). Exit 1 on a violation.
"""
import os
import re
import sys

# Folder (or top-level module) -> what it may import. Each may use only what comes before it,
# so there is no cycle among folders: the foundation, then who and what documents allow
# (access), the key store and its cryptography (keys), the core (kms), what survives a restart
# (durability), custody of the domain key (custody), and the API edge (api).
FOUNDATION = {"error", "config", "env", "hexfmt", "json"}
RULES = {
    "error": set(),
    "hexfmt": set(),
    "config": {"error"},
    "args": {"config"},
    "env": {"error"},
    "json": {"error", "env", "hexfmt"},
    "access": FOUNDATION,
    "keys": FOUNDATION | {"access"},
    "kms": FOUNDATION | {"access", "keys"},
    "durability": FOUNDATION | {"access", "keys", "kms"},
    "custody": FOUNDATION | {"access", "keys", "kms", "durability"},
    "api": FOUNDATION | {"access", "keys", "kms", "durability", "custody"},
}


def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_tests(text):
    # Drop `#[cfg(test)]`-gated items: a test module block or a single item.
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]":
            j = i + 1
            if j < len(lines) and lines[j].rstrip().endswith(";"):
                i = j + 1
                continue
            depth = 0
            started = False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                started = started or "{" in lines[j]
                j += 1
                if started and depth <= 0:
                    break
            i = j
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "enclave/src"
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            module = module_of(path, src)
            if module == ("main",) or name == "main.rs":
                continue
            if any(part.startswith("tests") or part == "test_support" for part in module):
                continue
            files[module] = path
    modules = set(files)

    def resolve(parts):
        # The longest prefix of `parts` that is a module.
        for n in range(len(parts), 0, -1):
            if tuple(parts[:n]) in modules:
                return tuple(parts[:n])
        return None

    path_re = re.compile(r"\b(crate|super|self)((?:::(?:[A-Za-z_][A-Za-z0-9_]*|\{[^}]*\}))+)")
    edges = {m: set() for m in modules}
    for module, path in files.items():
        text = strip_tests(open(path, encoding="utf-8").read())
        text = re.sub(r"//[^\n]*", "", text)
        for head, rest in path_re.findall(text):
            if head == "crate":
                base = []
            elif head == "super":
                base = list(module[:-1])
            else:
                base = list(module)
            segments = []
            for seg in rest.split("::")[1:]:
                if seg.startswith("{"):
                    break
                if seg == "super":
                    base = base[:-1]
                    continue
                segments.append(seg)
            names = [seg for seg in re.split(r"[{},\s]+", rest.split("{", 1)[1]) if seg] if "{" in rest else []
            candidates = [base + segments + [n.split("::")[0]] for n in names] or [base + segments]
            for parts in candidates:
                target = resolve(parts)
                if target is None or target == module:
                    continue
                if target[: len(module)] == module:
                    continue  # a module's own submodule
                edges[module].add(target)

    failures = []
    # 2. Folder rules.
    for module, targets in edges.items():
        top = module[0] if module else None
        if top not in RULES:
            continue
        for target in targets:
            other = target[0]
            if other != top and other not in RULES[top]:
                failures.append(
                    f"{'::'.join(module)} imports {'::'.join(target)}: {top}/ may not import {other}/"
                )
    # 1. Cycles (Tarjan's strongly connected components).
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

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
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    for v in sorted(modules):
        if v not in index:
            visit(v)
    for scc in sccs:
        names = sorted("::".join(m) or "crate" for m in scc)
        detail = []
        for m in sorted(scc):
            for t in sorted(edges[m] & set(scc)):
                detail.append(f"    {'::'.join(m)} -> {'::'.join(t)}")
        failures.append("import cycle among " + ", ".join(names) + "\n" + "\n".join(detail))
    for f in failures:
        print(f"check-modules: {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"check-modules: {len(modules)} modules, no cycle, every folder within its rule")


if __name__ == "__main__":
    main()
