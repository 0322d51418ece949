"""The shape STYLE.md asks of harness/: a package per stage, imports flow one way, the fit side is
torch-free, one step loop, one module that reads and writes run records, small modules."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "harness"
MODULES = sorted(str(p.relative_to(PKG).with_suffix("")).replace("/", ".")
                 for p in PKG.rglob("*.py") if p.stem != "__init__")
# Everything the planner, the fitter and the study driver load must never import torch: the fit,
# report and store packages whole, and these modules of the others.
TORCH_FREE = {m for m in MODULES if m.split(".")[0] in ("fit", "report", "store", "optimum")} | {
    "_moved", "config", "errors", "validate", "plan", "cli_fit", "cli_optimum", "study", "mixing_study", "data.corpus",
    "data.mixture", "data.prepare", "data.batches", "data.spec", "train.spec", "train.accounting", "train.hparams",
    "train.schedule", "train.sweep", "train.gpus",
    "train.arch"}
# Torch-free at import; torch only inside a function, for what cannot be done without it (arch.counts:
# architectures with no parameter formula are built on the meta device and counted).
LAZY_TORCH = {"train.arch"}


def source(module: str) -> str:
    return (PKG / (module.replace(".", "/") + ".py")).read_text()


def imports(module: str) -> set[str]:
    """harness modules (dotted, below harness) and top-level packages `module` imports, lazy ones too."""
    out = set()
    for node in ast.walk(ast.parse(source(module))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "harness" or node.module.startswith("harness."):
                base = node.module.removeprefix("harness").lstrip(".")
                for a in node.names:
                    sub = f"{base}.{a.name}".lstrip(".")
                    out.add(f"harness.{sub}" if sub in MODULES else f"harness.{base}")
            else:
                out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name if a.name.startswith("harness.") else a.name.split(".")[0] for a in node.names}
    return out


GRAPH = {m: {i.removeprefix("harness.") for i in imports(m) if i.startswith("harness.")} for m in MODULES}


def test_every_import_names_a_module_and_every_package_has_its_map():
    for m, deps in GRAPH.items():
        assert deps <= set(MODULES), (m, deps - set(MODULES))  # packages' __init__ hold no code to import
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and all(m.split(".")[-1] in doc for m in MODULES
                           if m.startswith(f"{init.parent.name}.")), init  # the map names each module


def test_the_data_side_imports_nothing_above_it():
    """conf -> config -> data -> model -> train: data/ takes its config section and never reaches up."""
    up = {m: sorted(d for d in GRAPH[m] if d.split(".")[0] in ("train", "fit", "report", "optimum", "study", "plan"))
          for m in MODULES if m.startswith("data.")}
    assert up and not any(up.values()), up


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
    torch_at = top_imports(module) if module in LAZY_TORCH else imports(module)
    assert "torch" not in torch_at and not (reach - TORCH_FREE), sorted(reach - TORCH_FREE)


def top_imports(module: str) -> set[str]:
    """Top-level packages a module imports at import time (module level, not inside functions)."""
    out = set()
    for node in ast.parse(source(module)).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
    return out


def test_one_step_loop_and_one_record_writer():
    sources = {m: source(m) for m in MODULES}
    assert [m for m, s in sources.items() if ".step(" in s] == ["train.loop"]
    names = {"summary.json", "trunk.json"}
    by_name = [m for m in MODULES for node in ast.walk(ast.parse(sources[m]))
               if isinstance(node, ast.Constant) and node.value in names]
    assert set(by_name) == {"store.records"}, by_name  # everyone else goes through records.read/write


def test_no_module_is_over_300_lines():
    long = {m: n for m in MODULES if (n := len(source(m).splitlines())) > 310}
    assert not long, long


# Above cell.run the whole Config is resolved; below it, functions take the Spec and the sections they need.
TAKES_CONFIG = {("train.spec", "resolve"), ("train.spec", "cell_id"), ("train.spec", "seedless_key"),
                ("train.spec", "branch_plan"), ("train.cell", "run"), ("train.sweep", "record_invalid"),
                ("train.cell", "_train"), ("train.cell", "_worker"), ("train.launch", "spawn")}  # run's parts


def test_below_cell_run_nothing_takes_the_whole_config():
    takers = set()
    for m in MODULES:
        if not m.startswith(("train.", "data.")):
            continue
        for node in ast.walk(ast.parse(source(m))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs + node.args.posonlyargs
                if any(isinstance(a.annotation, ast.Name) and a.annotation.id == "Config" for a in args):
                    takers.add((m, node.name))
    assert takers <= TAKES_CONFIG, sorted(takers - TAKES_CONFIG)


def test_the_data_side_receives_the_resolved_data_spec():
    """train/spec.resolve makes the DataSpec once (data/spec.resolve); what a run reads its tokens through
    takes it, not the settings, so no folder key or mixture share is derived twice."""
    takes = {f: ast.unparse(node.args.args[0].annotation) for node in ast.parse(source("data.batches")).body
             if isinstance(node, ast.FunctionDef) and (f := node.name) in ("prepare", "unique_tokens")}
    assert takes == {"prepare": "DataSpec", "unique_tokens": "DataSpec"}
    calls = [ast.unparse(n) for m in MODULES if m.startswith("train.") for n in ast.walk(ast.parse(source(m)))
             if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(("batches.prepare", "mixture.weights",
                                                                          "mixture.key", "mixture.label"))]
    assert calls == ["batches.prepare(spec.data)"], calls
