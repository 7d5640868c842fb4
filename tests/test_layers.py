"""The package's layers, read from the code's own imports (no module is run).

jaxrl_lite/envs <- jaxrl_lite/blocks <- jaxrl_lite/agents <- jaxrl_lite/run <- experiments/:
a module imports only from its own floor or lower ones (the few leaf utilities at the
package root, such as native_build, import nothing of the library), jaxrl_lite never imports
the launchers (experiments/) or the exporter (export/), and no module takes part in
an import cycle.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORS = {"jaxrl_lite.envs": 0, "jaxrl_lite.blocks": 1, "jaxrl_lite.agents": 2,
          "jaxrl_lite.run": 3}
PACKAGES = ("jaxrl_lite", "experiments", "export")


def _modules():
    """-> {dotted module name: path} for every .py file of the packages."""
    out = {}
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, f), ROOT)[:-3]
                    name = rel.replace(os.sep, ".").removesuffix(".__init__")
                    out[name] = os.path.join(root, f)
    return out


def _imports(path, modules):
    """Project modules imported by the file at ``path`` (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _floor(module):
    for prefix, floor in FLOORS.items():
        if module == prefix or module.startswith(prefix + "."):
            return floor
    return None


MODULES = _modules()
GRAPH = {m: _imports(p, MODULES) - {m} for m, p in MODULES.items()}


def test_the_floors_are_found():
    assert {_floor(m) for m in MODULES} >= {0, 1, 2, 3}
    assert "jaxrl_lite.run.trainer" in MODULES and "jaxrl_lite.blocks.policy" in MODULES


def test_leaf_utilities_import_nothing_of_the_library():
    # Modules at the package root (native_build) serve every floor, so they use none.
    leaves = [m for m in MODULES if m.count(".") == 1 and m.startswith("jaxrl_lite.")
              and _floor(m) is None]
    assert "jaxrl_lite.native_build" in leaves
    assert sorted(f"{m} -> {d}" for m in leaves for d in GRAPH[m]) == []


def test_no_module_imports_a_higher_floor():
    upward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if _floor(m) is not None
                    for d in deps if _floor(d) is not None and _floor(d) > _floor(m))
    assert upward == []


def test_the_library_never_imports_launchers_or_the_exporter():
    bad = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if m.startswith("jaxrl_lite")
                 for d in deps if not d.startswith("jaxrl_lite"))
    assert bad == []


def test_no_import_cycles():
    # A package imports its own submodules through __init__ (the agent table); edges
    # from a package to its children are that, not a cycle.
    def edges(m):
        return {d for d in GRAPH[m] if not d.startswith(m + ".")}

    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(edges(m)):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == []
