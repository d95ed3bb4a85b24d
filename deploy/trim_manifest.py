"""Drop the manifest entries whose files an image does not carry.

Why: the server image ships the Rust components and the model graphs, but not
the Python and JavaScript plugins (`lexical-py`, `minilm-js`: componentize-py
and componentize-js are not in the image build). A manifest entry whose file
is missing would be listed by `GET /v1/components` and fail only when called;
this removes it instead, so what the image lists is what it can run.

Rules: a graph whose file is missing goes; a component goes if its file or a
setting file is missing, or if it names a graph that went; an alias goes if
its component went. Comment lines directly above a removed table go with it.
Everything else is kept byte for byte. The result is parsed again and every
path it names is checked to exist.

Usage:
    python deploy/trim_manifest.py MANIFEST   # rewrites MANIFEST in place; paths relative to it
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

HEADER = re.compile(r"^\[([^\[\]]+)\]\s*(#.*)?$")


def missing(base: Path, rel: str) -> bool:
    return not (base / rel).is_file()


def decide(doc: dict, base: Path) -> tuple[set[str], set[str], set[str]]:
    """Names of the graphs, components and aliases to remove."""
    graphs = {name for name, g in doc.get("graphs", {}).items() if missing(base, g["path"])}
    components = set()
    for name, c in doc.get("components", {}).items():
        files = [c["path"], *c.get("setting-files", {}).values()]
        if any(missing(base, f) for f in files) or set(c.get("graphs", [])) & graphs:
            components.add(name)
    aliases = {a for a, target in doc.get("aliases", {}).items() if target in components}
    return graphs, components, aliases


def trim(text: str, graphs: set[str], components: set[str], aliases: set[str]) -> str:
    # Split into blocks, each starting at a table header; the comment lines
    # directly above a header belong to that header's block.
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in lines:
        m = HEADER.match(line.rstrip("\n"))
        if m:
            prev = blocks[-1][1]
            lead = []
            while prev and prev[-1].lstrip().startswith("#"):
                lead.insert(0, prev.pop())
            blocks.append((m.group(1).strip(), lead + [line]))
        else:
            blocks[-1][1].append(line)

    drop = {f"graphs.{g}" for g in graphs} | {f"components.{c}" for c in components}
    out: list[str] = []
    for table, body in blocks:
        if table in drop:
            continue
        if table == "aliases":
            kept = []
            for line in body:
                stripped = line.strip()
                if stripped and not stripped.startswith("#") and not HEADER.match(stripped):
                    key = next(iter(tomllib.loads(stripped)))
                    if key in aliases:
                        continue
                kept.append(line)
            body = kept
        out.extend(body)
    return "".join(out)


def check(doc: dict, base: Path) -> list[str]:
    problems = []
    for name, g in doc.get("graphs", {}).items():
        if missing(base, g["path"]):
            problems.append(f"graph {name}: {g['path']} is missing")
    for name, c in doc.get("components", {}).items():
        for f in [c["path"], *c.get("setting-files", {}).values()]:
            if missing(base, f):
                problems.append(f"component {name}: {f} is missing")
        for g in c.get("graphs", []):
            if g not in doc.get("graphs", {}):
                problems.append(f"component {name}: graph {g} is not in the manifest")
    for a, target in doc.get("aliases", {}).items():
        if target not in doc.get("components", {}):
            problems.append(f"alias {a}: component {target} is not in the manifest")
    return problems


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    path = Path(sys.argv[1])
    text = path.read_text()
    doc = tomllib.loads(text)
    graphs, components, aliases = decide(doc, path.parent)
    result = trim(text, graphs, components, aliases)
    problems = check(tomllib.loads(result), path.parent)
    if problems:
        sys.exit("trim_manifest: " + "; ".join(problems))
    path.write_text(result)
    for kind, names in (("graph", graphs), ("component", components), ("alias", aliases)):
        for name in sorted(names):
            print(f"trim_manifest: dropped {kind} {name} (its files are not in the image)")
    kept = sorted(tomllib.loads(result).get("components", {}))
    print(f"trim_manifest: serving {', '.join(kept) or 'no component'}")


if __name__ == "__main__":
    main()
