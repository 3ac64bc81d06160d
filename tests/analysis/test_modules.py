"""volnet.analysis is split by concern, and no module imports its caller (function-level imports count)."""

import ast
import pathlib

import volnet.analysis

PACKAGE = pathlib.Path(volnet.analysis.__file__).parent


def _imports() -> dict[str, set[str]]:
    """``module -> the sibling modules it imports``, anywhere in its text."""
    modules = {path.stem: path for path in PACKAGE.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        graph[name] = found & set(modules)
    return graph


def test_no_module_of_analysis_imports_its_caller():
    graph = _imports()

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, (*seen, n))) for n in graph[start])

    circles = [name for name in graph if reaches(name, name)]
    assert not circles, f"import circles through {circles}: {graph}"


def test_analysis_keeps_no_table_of_layer_kinds():
    # the layers describe themselves (volnet.layers.Layer: kind, costs, window, workspaces): analysis
    # neither names a layer class nor reads a layer's attributes through getattr
    from volnet.layers import LAYER_TYPES

    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        strings = {node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not strings & set(LAYER_TYPES), (path.name, strings & set(LAYER_TYPES))
        getattrs = [ast.unparse(node) for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr"
                    and "layer" in ast.unparse(node.args[0])]
        assert not getattrs, (path.name, getattrs)
