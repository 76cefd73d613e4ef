"""The package's structure: its layers, no import circles, classes of a readable size.

Every ``cgnn_jax`` package belongs to a layer; a module imports (at the top or inside a
function) only packages of its own layer or lower ones, and the packages import no circle.

``cgnn_jax/pretrained`` holds data only (the shipped checkpoint) and ``cgnn_jax/__init__.py`` is
the facade above every layer (it imports ``Pipeline`` and ``ClusteringGNN`` on first use).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "cgnn_jax"

#: Lowest first. ``metrics`` sits with the simulator, which writes its truth weights with them.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils",),  # small shared helpers
    ("io",),  # TrackML files and submissions
    ("data", "features", "sim", "metrics"),  # shipped samples, hit features, simulator, scores
    ("graph", "models", "cluster", "baselines"),  # graphs, networks, clustering, baselines
    ("inference",),  # the trained stages, the pipeline, the dataset runner
    ("train",),  # training of every stage, the estimator
    ("analysis", "viz"),  # diagnostics, evaluation, plots
)
#: Package circles allowed to remain (each a pair of packages); any circle not listed fails.
KNOWN_CIRCLES: set[frozenset[str]] = set()
MAX_PUBLIC_METHODS = 12


def _layer_of() -> dict[str, int]:
    return {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _modules() -> list[tuple[str, Path]]:
    """``(package, file)`` of every module below ``cgnn_jax/<package>/``."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if len(rel.parts) > 1:
            out.append((rel.parts[0], path))
        elif rel.name != "__init__.py":
            out.append((rel.stem, path))
    return out


def _imported_packages(path: Path) -> list[tuple[str, int]]:
    """``(package, line)`` of every ``cgnn_jax.<package>`` a module imports, at the top or in a
    function."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "cgnn_jax" and len(parts) > 1:
                out.append((parts[1], node.lineno))
    return out


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for pkg, path in _modules():
        graph.setdefault(pkg, set())
        graph[pkg] |= {dep for dep, _ in _imported_packages(path) if dep != pkg}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    layer = _layer_of()
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.name != "__init__.py"}
    missing = sorted((packages | modules) - set(layer))
    assert not missing, f"cgnn_jax packages without a layer in tests/test_structure.py: {missing}"


def test_lower_layers_never_import_higher_ones():
    layer = _layer_of()
    bad = [
        f"{path.relative_to(ROOT.parent)}:{line} ({pkg}, layer {layer[pkg]}) imports "
        f"cgnn_jax.{dep} (layer {layer[dep]})"
        for pkg, path in _modules()
        for dep, line in _imported_packages(path)
        if dep in layer and pkg in layer and layer[dep] > layer[pkg]
    ]
    assert not bad, "\n".join(bad)


def test_no_new_import_circle_among_packages():
    circles = [c for c in _circles(_package_graph()) if frozenset(c) not in KNOWN_CIRCLES]
    assert not circles, f"import circles among cgnn_jax packages: {circles}"


def test_the_circle_finder_finds_circles():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def _public_methods(cls: ast.ClassDef) -> list[str]:
    """Every ``def`` in the class body not starting with ``_``: methods, properties,
    class and static methods alike."""
    return [
        node.name
        for node in cls.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
    ]


def test_no_class_has_more_than_twelve_public_methods():
    big = []
    for _, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                names = _public_methods(node)
                if len(names) > MAX_PUBLIC_METHODS:
                    big.append(
                        f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}: {names}"
                    )
    assert not big, f"classes with more than {MAX_PUBLIC_METHODS} public methods:\n" + "\n".join(
        big
    )


def test_the_method_count_sees_properties_and_classmethods():
    src = "class A:\n    @property\n    def a(self): ...\n    @classmethod\n    def b(cls): ...\n"
    src += "    def _c(self): ...\n    def __d__(self): ...\n"
    assert _public_methods(ast.parse(src).body[0]) == ["a", "b"]
