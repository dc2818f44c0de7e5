"""The bot process runs 24/7 and must stay light: its modules never import torch or diffusers."""

from __future__ import annotations

import subprocess
import sys

BOT_SIDE = ["bot", "bot.__main__", "bot.wiring", "bot.cli", "bot.options", "commands.generate", "commands.qwerty", "commands.wandb_log",
            "commands.outputs", "commands.community", "gpu_service.schemas", "gpu_service.client", "gpu_service.local_client", "gpu_service.modal_client",
            "gpu_service.registry", "gpu_service.settings", "gpu_service.prompts", "gpu_service.errors"]


def test_bot_side_modules_leave_torch_out():
    code = (
        "import importlib, sys\n"
        f"for name in {BOT_SIDE!r}: importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def _project_imports() -> dict[str, set[str]]:
    """Every module of the project and the project modules it imports, TYPE_CHECKING blocks included."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = {".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
             for package in ("bot", "commands", "gpu_service") for path in (root / package).rglob("*.py")}
    files["modal_app"] = root / "modal_app.py"
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                # `from package import module` depends on that module, not on the package's __init__
                submodules = {f"{base}.{alias.name}" for alias in node.names} & files.keys()
                imported.update(submodules or {base})
        graph[name] = {other for other in imported if other in files and other != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while component[-1:] != [module]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_anywhere_even_for_type_checking():
    graph = _project_imports()
    assert "bot.handlers" in graph and "bot.delivery" in graph["bot.handlers"]  # the reader sees the tree
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_downward():
    """bot -> commands -> gpu_service: never the other way."""
    graph = _project_imports()
    order = {"bot": 2, "commands": 1, "gpu_service": 0, "modal_app": 0}
    upward = [(module, other) for module, imported in graph.items() for other in imported
              if order[other.split(".")[0]] > order[module.split(".")[0]]]
    assert upward == []
