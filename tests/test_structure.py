"""The shape STYLE.md asks of harness/: imports flow one way, the analysis side is torch-free,
one step loop, one module that reads and writes run records."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "harness"
# The analysis side and everything the planner and the fitter load: must never import torch.
TORCH_FREE = {"config", "errors", "data", "forms", "lm", "allocate", "groups", "accounting", "hparams", "schedule",
              "spec", "records",
              "lock", "plan", "corpus", "prepare", "repetition",
              "wandb_log", "mapping", "collect", "fit", "isoflop", "backtest", "laws", "analysis", "plots", "report",
              "cli_fit", "compare", "prediction", "study", "sweep", "extrapolation", "frontier", "coverage",
              "report_horizon", "ask", "validate"}


def imports(module: str) -> set[str]:
    """harness modules and top-level packages `module` imports, at any depth (lazy imports too)."""
    out = set()
    for node in ast.walk(ast.parse((PKG / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "harness":
                out |= {f"harness.{a.name}" for a in node.names}
            else:
                out.add(node.module if node.module.startswith("harness.") else node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name if a.name.startswith("harness.") else a.name.split(".")[0] for a in node.names}
    return out


MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
GRAPH = {m: {i.removeprefix("harness.") for i in imports(m) if i.startswith("harness.")} for m in MODULES}


def test_no_import_cycle():
    done, active = set(), []

    def visit(m):
        if m in active:
            pytest.fail("import cycle: " + " -> ".join(active[active.index(m):] + [m]))
        if m in done:
            return
        active.append(m)
        for dep in sorted(GRAPH[m]):
            visit(dep)
        active.pop()
        done.add(m)

    for m in MODULES:
        visit(m)


@pytest.mark.parametrize("module", sorted(TORCH_FREE))
def test_torch_free_modules_import_nothing_that_needs_torch(module):
    reach, todo = set(), [module]
    while todo:
        m = todo.pop()
        for dep in GRAPH[m] - reach:
            reach.add(dep)
            todo.append(dep)
    assert "torch" not in imports(module) and not (reach - TORCH_FREE), sorted(reach - TORCH_FREE)


def test_one_step_loop_and_one_record_writer():
    sources = {m: (PKG / f"{m}.py").read_text() for m in MODULES}
    assert [m for m, s in sources.items() if ".step(" in s] == ["loop"]
    names = {"summary.json", "trunk.json"}
    by_name = [m for m in MODULES for node in ast.walk(ast.parse(sources[m]))
               if isinstance(node, ast.Constant) and node.value in names]
    assert set(by_name) == {"records"}, by_name  # everyone else goes through records.read/write
