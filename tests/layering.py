"""The package's import layers, read from the source with `ast` (every import statement counts,
including those inside functions: a lazy upward import is still an upward import).

    configs -> parallel -> models -> flow -> checkpointing -> training -> planning / benchmarks
        -> inference / evaluation -> sweeps -> cli

A module may import its own layer and the layers before it. data_pipelines sits beside training:
it may import anything below training, and training may import it. mgen_jax/workdir.py is a leaf
every layer may import; it imports nothing from the package.

Written here rather than with import-linter: the rules need the per-file leaf and the
"beside training" layer, and the check is forty lines of `ast`.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("mgen_jax", "data_pipelines")
RANK = {"configs": 0, "parallel": 1, "models": 2, "flow": 3, "checkpointing": 4,
        "data_pipelines": 5, "training": 6, "planning": 7, "benchmarks": 7, "inference": 8,
        "evaluation": 8, "sweeps": 9, "cli": 10}
LEAVES = ("mgen_jax.workdir", "mgen_jax")  # import nothing from the package; anyone may use them


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "data_pipelines":
        return "data_pipelines"
    return parts[1] if len(parts) > 1 else "mgen_jax"


def package_sources(root: str = ROOT) -> dict[str, str]:
    """{dotted module name: source} of every module of the two packages."""
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(root, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    module = module.removesuffix(".__init__")
                    with open(path) as f:
                        out[module] = (f.read(), name == "__init__.py")
    return out


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """Package modules `module` imports (`from a import b` counts as a.b when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.split(".")[0] in PACKAGES:
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in known else base)
    return found


def import_graph(sources: dict) -> dict[str, set[str]]:
    known = set(sources)
    return {m: imports_of(m, src, is_pkg, known) for m, (src, is_pkg) in sources.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """'a (layer) imports b (layer)' for every import that runs the wrong way."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target in LEAVES and module not in LEAVES:
                continue
            if module in LEAVES:
                bad.append(f"{module} (a leaf) imports {target}")
                continue
            src, dst = layer(module), layer(target)
            wrong = RANK[dst] > RANK[src] or (src == "data_pipelines" and dst == "training")
            if wrong:
                bad.append(f"{module} ({src}) imports {target} ({dst})")
    return bad


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles
