#!/usr/bin/env python3
"""Checks the workspace's shape, as the README's "Layout" promises it:

1. no module cycles inside a crate: a module never imports (`crate::...`, `super::...`) its way
   back into a module that imports it (a child using its parent is fine; doc comments and
   `#[cfg(test)] mod tests` blocks do not count);
2. no source file of a library crate over 1,000 lines unless its first lines say why
   (a `//! Long because: ...` line).

Exits 1 and names each finding. Run from the workspace root: python3 scripts/check-shape.py
"""
import os
import re
import sys

LIBRARY_CRATES = ["runpod-api", "pod-tunnel", "project-store", "blender-session"]
ALL_CRATES = LIBRARY_CRATES + ["rpb-cli", "test-support"]
MAX_LINES = 1000


def modules(src):
    """Maps each module path (`a::b`) of the crate at `src` to its source text."""
    found = {}
    for directory, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if parts and parts[-1] == "tests":
                continue  # a unit-test module file
            with open(path, encoding="utf-8") as handle:
                found["::".join(parts)] = (path, handle.read())
    return found


def reexports(found):
    """Maps items the crate root re-exports (`pub use error::{Error, Result};`) to their module,
    so `crate::Error` counts as a use of `error`."""
    mapping = {}
    _, root = found.get("", (None, ""))
    for module, names in re.findall(r"pub use ([a-z_][a-z0-9_]*)::\{?([^;]*?)\}?;", root):
        for item in re.split(r"[,\s]+", names):
            if item and item[0].isupper():
                mapping[item] = module
    return mapping


def imports(name, text, known, exported):
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    text = "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))
    parts = name.split("::") if name else []
    wanted = set(re.findall(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text))
    for item, module in exported.items():
        if re.search(r"crate::(\{[^}]*\b|)" + item + r"\b", text):
            wanted.add(module)
    base = parts[:-1] if parts else []
    for match in re.findall(r"(?:super::)+[a-z_][a-z0-9_]*", text):
        ups = match.count("super::")
        target = (parts[: len(parts) - ups] if ups <= len(parts) else []) + [match.split("::")[-1]]
        wanted.add("::".join(target))
    edges = set()
    for path in wanted:
        segments = path.split("::")
        for end in range(len(segments), 0, -1):
            candidate = "::".join(segments[:end])
            if candidate in known:
                # A module using its own ancestor is not a cycle.
                if candidate != name and not name.startswith(candidate + "::"):
                    edges.add(candidate)
                break
    return edges


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def main():
    problems = []
    for crate in ALL_CRATES:
        found = modules(os.path.join(crate, "src"))
        exported = reexports(found)
        graph = {name: imports(name, text, found, exported) for name, (_, text) in found.items()}
        for component in cycles(graph):
            problems.append(f"{crate}: modules import each other in a cycle: {', '.join(component)}")
        if crate not in LIBRARY_CRATES:
            continue
        for name, (path, text) in sorted(found.items()):
            lines = text.count("\n")
            if lines > MAX_LINES and "//! Long because:" not in "\n".join(text.split("\n")[:15]):
                problems.append(f"{path}: {lines} lines (over {MAX_LINES}); split it or say why at its top")
    for problem in problems:
        print(f"check-shape: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check-shape: no module cycles in {len(ALL_CRATES)} crates; library files within {MAX_LINES} lines")


if __name__ == "__main__":
    main()
