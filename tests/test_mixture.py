"""Data mixtures (data.domains, data.mix): weighted, deterministic sampling; one tokenizer and fixed
evaluation sets for every arm; per-domain loss and bits per byte; bad input refused in one line."""
import hashlib
import json
import math

import numpy as np
import pytest

from harness.config import DataConfig, SourceConfig
from harness.data import batches, corpus, mixture
from harness.data.spec import resolve
from harness.errors import HarnessError
from harness.fit.collect import collect
from harness.train import cell, spec
from tests.conftest import ROOT, cli, make_config

WORDS = {"a": "alpha beta gamma delta epsilon zeta eta theta".split(),
         "b": "def return import class self lambda yield print".split()}


def _docs(domain: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS[domain], size=60)) + f" {domain}{i}." for i in range(n)]


def _write(path, docs):
    path.write_text("\n\n".join(docs) + "\n")
    return str(path)


def _two_domains(tmp_path, n_a=600, n_b=600, shared=()):
    a = _write(tmp_path / "a.txt", _docs("a", n_a, 0) + list(shared))
    b = _write(tmp_path / "b.txt", _docs("b", n_b, 1) + list(shared))
    return a, b


def _data_args(tmp_path, a, b, *more):
    return [f"+data.domains={{a:{{source:files,paths:[{a}]}},b:{{source:files,paths:[{b}]}}}}",
            "data.vocab_size=300", "data.val_fraction=0.1", "data.val_tokens=2048",
            f"data.cache_dir={tmp_path / 'cache'}", *more]


def _cell(tmp_path, results, *data_args):
    return make_config("model=gpt2-8k", "budget.tokens=20480", "evals=1", f"results_dir={tmp_path / results}",
                       "wandb.mode=disabled", *data_args)


def test_mixed_batches_are_deterministic_follow_the_weights_and_resume():
    tokens = {"a": np.arange(0, 5000) % 100, "b": 100 + np.arange(0, 9000) % 100}
    shares = {"a": 0.3, "b": 0.7}

    def draw(mb, n):
        return np.concatenate([mb.next() for _ in range(n)])

    one, two = (mixture.MixedBatches(tokens, shares, 16, 10, seed=3) for _ in range(2))
    windows = draw(one, 100)
    assert np.array_equal(windows, draw(two, 100))  # deterministic
    from_a = (windows[:, 0] < 100).mean()
    assert abs(from_a - 0.3) <= 0.01 * 0.3 + 1 / len(windows)  # the weights, to one window
    for k in (7, 33, 100):  # at every point, not only on average
        assert abs((windows[:k * 10, 0] < 100).sum() - 0.3 * k * 10) <= 1
    state = one.state()
    ahead = draw(one, 30)  # past an epoch of domain a (311 windows)
    one.restore(state)
    assert np.array_equal(ahead, draw(one, 30))
    other_seed = draw(mixture.MixedBatches(tokens, shares, 16, 10, seed=4), 100)
    assert not np.array_equal(windows, other_seed)


def test_evaluation_sets_are_held_out_of_every_domain_and_shared_by_every_arm(tmp_path):
    shared = _docs("a", 40, 9)  # the same documents in both sources
    a, b = _two_domains(tmp_path, shared=shared)
    cfgs = [make_config(*_data_args(tmp_path, a, b, f"data.mix={{a:{w},b:{1 - w}}}")).data for w in (0.2, 0.7)]
    folders = [batches.prepare(resolve(c)) for c in cfgs]
    assert folders[0].dir == folders[1].dir  # one folder, one tokenizer: the weights are not part of it
    assert [d[1] for d in folders[0].domains] == pytest.approx([0.2, 0.8])
    digest = lambda t: hashlib.blake2b(t.encode(), digest_size=16).hexdigest()  # noqa: E731
    train, held = set(), set()
    for name, src in cfgs[0].domains.items():
        tr, va = mixture.split(src, 0.1, tmp_path / "cache")
        train |= set(map(digest, tr))
        held |= set(map(digest, va))
    assert held and not held & train
    assert any(digest(t) in held for t in shared)  # a shared document held out is held out of both


def test_a_fixed_evaluation_file_that_overlaps_a_training_source_is_refused(tmp_path):
    a, b = _two_domains(tmp_path)
    leaked = _docs("b", 600, 1)[:5]
    in_training = sum(not corpus.is_val(t, 0.1) for t in leaked)  # b's own held-out ones do not train
    leak = _write(tmp_path / "eval_a.txt", leaked + _docs("a", 30, 7))
    args = _data_args(tmp_path, a, b, f"+data.domains.a.eval_paths=[{leak}]")
    with pytest.raises(HarnessError, match=f"evaluation set a overlaps training source b: {in_training} of"):
        batches.prepare(resolve(make_config(*args).data))
    clean = _write(tmp_path / "eval_ok.txt", _docs("a", 30, 7))
    fixed = make_config(*_data_args(tmp_path, a, b, f"+data.domains.a.eval_paths=[{clean}]"))
    made = batches.prepare(resolve(fixed.data))
    manifest = json.loads((made.dir / "manifest.json").read_text())
    assert manifest["domains"]["a"]["val_docs"] == 30 and manifest["domains"]["a"]["train_docs"] == 600


def test_a_mixture_run_scores_every_domain_in_nats_and_bits_per_byte(tmp_path):
    a, b = _two_domains(tmp_path)
    rec = cell.run(_cell(tmp_path, "r", *_data_args(tmp_path, a, b, "data.mix={a:3,b:1}")))
    s = rec["summary"]
    assert rec["status"] == "finished" and s["data"] == "a75_b25"
    for d in ("a", "b"):
        bpt = s[f"val/{d}/bytes_per_token"]
        assert s[f"val/{d}/bpb"] == pytest.approx(s[f"val/{d}/loss"] / math.log(2) / bpt, rel=1e-12)
    assert s["val/loss"] == pytest.approx((s["val/a/loss"] + s["val/b/loss"]) / 2, rel=1e-12)
    assert s["val/bpb"] == pytest.approx((s["val/a/bpb"] + s["val/b/bpb"]) / 2, rel=1e-12)
    assert s["mix/a/tokens"] + s["mix/b/tokens"] == s["D"] and s["mix/a/share"] == 0.75
    assert s["epochs"] == pytest.approx(max(s["mix/a/epochs"], s["mix/b/epochs"]), rel=1e-5)  # U whole tokens
    runs, _ = collect(str(tmp_path / "r"))
    assert runs.loc[0, "data"] == "a75_b25" and runs.loc[0, "val/b/loss"] == s["val/b/loss"]
    # the same shares spelt at another scale are the same cell; other shares another
    same = spec.resolve(_cell(tmp_path, "r", *_data_args(tmp_path, a, b, "data.mix={a:0.75,b:0.25}")))
    other = spec.resolve(_cell(tmp_path, "r", *_data_args(tmp_path, a, b, "data.mix={a:0.5,b:0.5}")))
    assert same.cell_id == rec["cell_id"] != other.cell_id


BAD = {
    "negative": ("data.mix={a:-1,b:2}", "data.mix.a=-1: a weight is a finite number >= 0"),
    "zero": ("data.mix={a:0,b:0}", "data.mix: the weights sum to 0"),
    "unknown": ("data.mix={a:1,c:1}", "data.mix names 'c', which is not a source of data.domains (a, b)"),
    "too small": ("data.mix={a:1,b:0}", "source a is too small for its share 1 of the budget"),
    "overlap": ("+data.domains.a.eval_paths=[EVAL]", "evaluation set a overlaps training source b"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_mixtures_are_one_line_exit_2_and_nothing_written(tmp_path, case):
    a, b = _two_domains(tmp_path, n_a=40)  # a: ~3k training tokens: the 20k budget is > 4 epochs of it
    leak = _write(tmp_path / "eval.txt", _docs("b", 600, 1)[:3])
    override, message = BAD[case]
    out = cli("harness-train", "model=gpt2-8k", "budget.tokens=20480", "wandb.mode=disabled",
              f"results_dir={tmp_path / 'r'}", *_data_args(tmp_path, a, b, override.replace("EVAL", leak)), cwd=ROOT)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr
    assert not [p for p in (tmp_path / "r").rglob("*") if ".hydra" not in p.parts]  # Hydra's own log only


def test_a_users_two_source_mixture_is_one_yaml_in_their_config_dir(tmp_path):
    a, b = _two_domains(tmp_path)
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "mine.yaml").write_text(
        f"domains:\n  prose:\n    source: files\n    paths: [{a}]\n  code:\n    source: files\n    paths: [{b}]\n"
        "mix: {prose: 2, code: 1}\nvocab_size: 300\nval_fraction: 0.1\nval_tokens: 2048\n"
        f"cache_dir: {tmp_path / 'cache'}\n")
    out = cli("harness-train", "--config-dir", str(tmp_path / "conf"), "data=mine", "model=gpt2-8k",
              "budget.tokens=20480", "evals=1", "wandb.mode=disabled", f"results_dir={tmp_path / 'r'}", cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    runs, _ = collect(str(tmp_path / "r"))
    row = runs.iloc[0]
    assert row["data"] == "code33.3_prose66.7" and row["val/prose/loss"] < row["val/code/loss"] + 10
    assert np.isfinite(row["val/prose/bpb"]) and np.isfinite(row["val/code/bpb"])


def test_a_mixture_needs_its_domains_and_a_domain_is_a_plain_name():
    with pytest.raises(HarnessError, match="data.mix weighs the domains of data.domains, and none is set"):
        mixture.check(DataConfig(mix={"a": 1.0}))
    with pytest.raises(HarnessError, match="is not a domain name"):
        mixture.check(DataConfig(domains={"Web-Text": SourceConfig()}))
    with pytest.raises(HarnessError, match="prepared folder brings its own tokenizer"):
        mixture.check(DataConfig(domains={"a": SourceConfig(source="prepared", path="x")}))


def test_the_gpu_quality_preset_plans_offline_from_its_domains_caps(tmp_path):
    from harness import plan

    found = plan.main(["sweep=data_gpu", f"results_dir={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}"])
    assert found == {"warnings": [], "errors": []}  # 1.1B tokens of each arm's one domain: under an epoch
    small = plan.main(["sweep=data_gpu", f"results_dir={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}",
                       "data.domains.fineweb_edu.max_tokens=100000000"])
    assert small["errors"] and all("repeats its data" in e for e in small["errors"])  # the FineWeb-Edu arm


def test_near_duplicates_are_dropped_from_training_only_and_the_keep_rate_recorded(tmp_path):
    base = _docs("a", 600, 0)
    copies = [d + " copy" for d in base[:50]]  # one word more: Jaccard of their 5-word shingles ~0.98
    a = _write(tmp_path / "a.txt", base + copies)
    b = _write(tmp_path / "b.txt", _docs("b", 600, 1))
    keep = mixture.near_duplicates(base[:50] + copies + _docs("b", 50, 3))
    assert keep[:50].all() and not keep[50:100].any() and keep[100:].all()
    plain = _cell(tmp_path, "r", *_data_args(tmp_path, a, b, "data.mix={a:1,b:1}"))
    deduped = _cell(tmp_path, "r", *_data_args(tmp_path, a, b, "data.mix={a:1,b:1}", "+data.filter={a:minhash_dedup}"))
    s = cell.run(deduped)["summary"]
    assert s["data"] == "a50_b50_minhash_dedup_a" and spec.resolve(plain).cell_id != spec.resolve(deduped).cell_id
    held = {t for t in base + copies if corpus.is_val(t, 0.1)}
    # a copy goes where both it and its original train (either held out: no twin among the training documents)
    n_train_copies = sum(c not in held and o not in held for o, c in zip(base, copies))
    expected = (len(base) + len(copies) - len(held) - n_train_copies) / (len(base) + len(copies) - len(held))
    assert s["mix/a/keep_rate_docs"] == pytest.approx(expected, abs=0.01)
    assert s["mix/a/unique_tokens"] < batches.prepare(resolve(plain.data)).domains[0][2]
    assert s["mix/a/epochs"] == pytest.approx(s["mix/a/tokens"] / s["mix/a/unique_tokens"])
    with pytest.raises(HarnessError, match="data.filter names 'c'"):
        spec.resolve(_cell(tmp_path, "r", *_data_args(tmp_path, a, b, "data.filter={c:minhash_dedup}")))
    with pytest.raises(HarnessError, match="data.filter.a='bogus' is not one of minhash_dedup, gopher_quality"):
        spec.resolve(_cell(tmp_path, "r", *_data_args(tmp_path, a, b, "data.filter={a:bogus}")))


def test_a_datatrove_quality_filter_keeps_prose_and_drops_what_its_rules_reject():
    pytest.importorskip("datatrove", reason="the quality extra: pip install -e '.[quality]'")
    prose = ("The river runs through the old town and it has been the centre of trade for many years. " * 6).strip()
    keep = mixture.FILTERS["gopher_quality"]()([prose, "Too short to be a document.", "x = 1\n" * 80])
    assert keep.tolist() == [True, False, False]  # Gopher: >= 50 words, stop words, symbol and line rules


@pytest.mark.slow
def test_a_mixing_study_predicts_before_its_check_trains_and_scores_it(tmp_path):
    a, b = _two_domains(tmp_path)
    conf = tmp_path / "conf"
    for group in ("data", "sweep", "study"):
        (conf / group).mkdir(parents=True)
    (conf / "data" / "two.yaml").write_text(
        f"domains:\n  a: {{source: files, paths: [{a}]}}\n  b: {{source: files, paths: [{b}]}}\n"
        f"vocab_size: 300\nval_fraction: 0.1\nval_tokens: 2048\ncache_dir: {tmp_path / 'cache'}\n")
    (conf / "sweep" / "cells.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /data: two\nsweep:\n  name: cells\nevals: 1\n"
        "budget:\n  tokens: 20480\nwandb:\n  mode: disabled\nhydra:\n  sweeper:\n    params:\n"
        '      data.mix: "{a:1,b:0},{a:0.8,b:0.2},{a:0.6,b:0.4},{a:0.4,b:0.6},{a:0.2,b:0.8}"\n'
        "      model: gpt2-8k\n")
    (conf / "study" / "mix.yaml").write_text(
        "sweep: cells\nfit:\n  - [sweep=cells, hydra/launcher=parallel]\n"
        '  - [sweep=cells, seed=1, "data.mix={a:0.6,b:0.4}"]\n'
        "mixing: {sweep: cells, model: gpt2-8k, held: 0.3, target: bpb}\n")
    run = ["harness-study", "--config-dir", str(conf), "study=mix", f"results_dir={tmp_path / 'r'}"]
    out = cli(*run, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    made = json.loads((tmp_path / "r" / "cells" / "mixing_prediction.json").read_text())
    lo, hi = made["optimum"]["search"]["searched"]
    # searched where both domains train: a = 1 trains no b, so b's law leaves it out and the search stops at 0.8
    assert made["domains"] == ["a", "b"] and (lo, hi) == (0.2, 0.8) and lo <= made["optimum"]["shares"]["a"] <= hi
    assert len(made["fitted_on"]) == 5 and made["seed_sd"]["val/a/loss"] is not None
    assert made["held_out"]["shares"] == {"a": 0.3, "b": 0.7}
    v = json.loads((tmp_path / "r" / "cells" / "mixing_verdict.json").read_text())
    at_fitted = any(abs(made["optimum"]["shares"]["a"] - x) < 5e-4 for x in (0.2, 0.4, 0.6, 0.8, 1.0))
    assert v["optimum"]["seeds"] == (1 if at_fitted else 2) and v["held_out"]["seeds"] == 1
    assert set(v["held_out"]["domains"]) == {"a", "b"} and "held-out mixture (a 0.3)" in out.stdout
    runs, _ = collect(str(tmp_path / "r" / "cells"))
    fresh = runs[~runs["cell_id"].isin(made["fitted_runs"])]
    assert len(made["fitted_runs"]) == 6 and 2 <= len(fresh) <= 3  # 2 when the best is a fitted mixture
    again = cli(*run, cwd=ROOT)  # a rerun keeps the prediction and trains nothing
    assert again.returncode == 0 and "it is never rewritten" in again.stdout
    assert json.loads((tmp_path / "r" / "cells" / "mixing_prediction.json").read_text()) == made


@pytest.mark.slow
def test_a_killed_mixture_cell_resumes_bit_for_bit(tmp_path):
    import signal

    from harness.store import records
    from tests.test_checkpoint import _checkpoint_step, _start, _wait_for

    a, b = _two_domains(tmp_path)
    args = ["model=gpt2-8k", "budget.tokens=20480", "evals=1", "wandb.mode=disabled", "threads=1",
            *_data_args(tmp_path, a, b, "data.mix={a:0.3,b:0.7}", "+data.filter={a:minhash_dedup}")]
    reference = cell.run(make_config(*args, f"results_dir={tmp_path / 'ref'}"))
    again = [*args, "checkpoint.every_steps=50", f"results_dir={tmp_path / 'r'}"]
    s = spec.resolve(make_config(*again))
    p = _start(again, tmp_path)
    _wait_for(lambda: _checkpoint_step(s.directory) == 50, p, "checkpoint at step 50")
    p.send_signal(signal.SIGKILL)
    p.wait()
    out = cli("harness-train", *again, cwd=tmp_path)
    assert out.returncode == 0 and "resumed from step 50" in out.stdout, out.stderr[-2000:]
    rec = records.read(s.directory)
    for key in ("val/loss", "val/a/loss", "val/b/loss", "train/loss"):
        assert rec["summary"][key] == reference["summary"][key]
