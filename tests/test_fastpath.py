"""The chunked cross-entropy equals the full-logits loss: value, every gradient, a training trajectory.

Invariants rather than golden floats: chunked vs unfused on identical weights and batches. The
CUDA-only parts (bf16 flash attention, fused AdamW, Inductor kernels) are in the `gpu` test.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from harness.config import ModelConfig
from harness.train import fastpath, model
from harness.train.fastpath import full_logits_loss as loss_fn

V = 251  # prime: no chunk size divides rows or vocabulary evenly by accident


def tiny_net(arch="gpt2", tie=True, seed=0, d=32, ctx=16):
    m = ModelConfig(arch=arch, n_layer=2, n_embd=d, n_head=2, n_positions=ctx, tie_word_embeddings=tie)
    return model.build(m, V, seed)


def batch(b=3, ctx=16, seed=0):
    return torch.randint(0, V, (b, ctx + 1), generator=torch.Generator().manual_seed(seed))


def loss_and_grads(net, fn, x, **kw):
    net.zero_grad(set_to_none=True)
    loss = fn(net, x, **kw)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}


def assert_grads_close(got, want, rtol):
    assert got.keys() == want.keys()
    for name in want:
        scale = want[name].abs().max().clamp_min(1e-12)
        assert (got[name] - want[name]).abs().max() <= rtol * scale, name


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 48, 1000])  # 48 rows: one row each, uneven, exact, one chunk
def test_loss_and_every_grad_equal_full_logits(arch, tie, chunk):
    net, x = tiny_net(arch, tie), batch()
    want_loss, want = loss_and_grads(net, loss_fn, x)
    got_loss, got = loss_and_grads(net, fastpath.lm_loss, x, chunk_tokens=chunk)
    assert torch.allclose(got_loss, want_loss, rtol=1e-6, atol=1e-6)
    assert abs(got_loss.item() - math.log(V)) < 0.3  # random init: near uniform
    assert_grads_close(got, want, rtol=1e-5)
    if tie:  # one shared tensor: the head's and the embedding's gradients both land on it
        assert net.get_output_embeddings().weight is net.get_input_embeddings().weight


def test_function_matches_cross_entropy_and_scales_upstream_grad():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(37, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, 16, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, V, (37,), generator=g)
    (3.0 * F.cross_entropy(h @ w.t(), y)).backward()
    want = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    loss = fastpath.chunked_cross_entropy(h, w, y, chunk_tokens=5)
    (3.0 * loss).backward()
    assert torch.allclose(loss, F.cross_entropy(h @ w.t(), y))
    assert torch.allclose(h.grad, want[0]) and torch.allclose(w.grad, want[1])
    assert torch.autograd.gradcheck(
        lambda a, b: fastpath.chunked_cross_entropy(a, b, y[:8], 3), (h[:8].detach().requires_grad_(), w))


def test_no_grad_eval_gives_the_same_loss():
    net, x = tiny_net(), batch()
    with torch.no_grad():
        assert torch.allclose(fastpath.lm_loss(net, x, 5), loss_fn(net, x), rtol=1e-6)


def test_bad_shapes_fail_fast():
    with pytest.raises(ValueError, match="do not match"):
        fastpath.chunked_cross_entropy(torch.zeros(4, 8), torch.zeros(V, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_tokens"):
        fastpath.chunked_cross_entropy(torch.zeros(4, 8), torch.zeros(V, 8), torch.zeros(4, dtype=torch.long), 0)


def trajectory(fn, steps=6, device="cpu", autocast=False):
    """Losses over AdamW steps from one init, stepping as train.Session.step does."""
    net = tiny_net("llama", tie=True).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.1, fused=device == "cuda")
    losses = []
    x = batch().to(device)  # one batch, again and again: the loss must fall as the model memorizes it
    for _ in range(steps):
        with torch.autocast(device, torch.bfloat16, enabled=autocast):
            loss = fn(net, x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return torch.stack(losses).cpu(), net


def test_training_trajectory_matches_unfused_loss():
    want, net_a = trajectory(loss_fn)
    got, net_b = trajectory(lambda n, x: fastpath.lm_loss(n, x, chunk_tokens=13))
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    assert want[-1] < want[0] - 0.1  # it trains: the comparison is not between two constants
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        assert torch.allclose(a, b, atol=1e-4)


def test_bf16_autocast_is_within_bf16_noise_of_fp32():
    """The shared dtype logic of the CUDA path, exercised by CPU autocast."""
    net, x = tiny_net("gpt2", tie=True), batch()
    want_loss, want = loss_and_grads(net, loss_fn, x)
    with torch.autocast("cpu", torch.bfloat16):
        got_loss, got = loss_and_grads(net, fastpath.lm_loss, x, chunk_tokens=7)
    assert got_loss.dtype == torch.float32
    assert abs(got_loss.item() - want_loss.item()) < 2e-2 * want_loss.item()
    assert all(g.dtype == torch.float32 for g in got.values())  # fp32 master grads for AdamW
    assert_grads_close(got, want, rtol=0.1)


def test_compiles_in_one_graph_and_reuses_it_for_a_second_model():
    explained = torch._dynamo.explain(fastpath.lm_loss)(tiny_net(), batch(), 7)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    f = fastpath.compile_loss(backend="aot_eager")  # traces through AOTAutograd, skips codegen: fast
    for seed in (0, 1):  # second instance, identical shapes: must not recompile
        net, x = tiny_net(seed=seed), batch()
        want_loss, want = loss_and_grads(net, loss_fn, x)
        got_loss, got = loss_and_grads(net, f, x, chunk_tokens=7)
        assert torch.allclose(got_loss, want_loss, rtol=1e-6) and counters["stats"]["unique_graphs"] == 1
        assert_grads_close(got, want, rtol=1e-5)
    loss_and_grads(tiny_net(d=64), f, batch(), chunk_tokens=7)  # a new width does recompile
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.slow
def test_inductor_compiled_loss_equals_eager():
    net, x = tiny_net("llama", tie=False), batch()
    want_loss, want = loss_and_grads(net, loss_fn, x)
    got_loss, got = loss_and_grads(net, fastpath.compile_loss(), x, chunk_tokens=7)
    assert torch.allclose(got_loss, want_loss, rtol=1e-5)
    assert_grads_close(got, want, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_compiled_chunked_matches_cpu_fp32():
    torch.backends.cuda.matmul.allow_tf32 = True
    want, _ = trajectory(loss_fn, device="cpu")
    f = fastpath.compile_loss()
    got, _ = trajectory(lambda n, x: f(n, x, chunk_tokens=13), device="cuda", autocast=True)
    # bf16 has 8 mantissa bits: ~0.4% per rounding; a few steps of training keep it around 1%.
    assert torch.allclose(got, want, rtol=2e-2, atol=0)


def test_evaluation_computes_the_loss_only_not_the_heads_gradient():
    """Under no_grad (evaluation) the head costs one matmul per chunk, and the loss is bit for bit
    the training-mode value; a parameter's needs_input_grad alone would also run the gradient."""
    net, x = tiny_net(), batch(b=4)
    hidden = net.base_model(input_ids=x[:, :-1]).last_hidden_state.flatten(0, 1).detach()
    head, y = net.get_output_embeddings().weight, x[:, 1:].flatten()
    chunk = 20  # 64 rows: 4 chunks

    def matmuls(grad: bool):
        with torch.set_grad_enabled(grad), torch.profiler.profile() as prof:
            loss = fastpath.chunked_cross_entropy(hidden, head, y, chunk)
        return loss.detach(), sum(e.count for e in prof.key_averages() if e.key == "aten::mm")

    eval_loss, eval_mm = matmuls(False)
    train_loss, train_mm = matmuls(True)
    assert eval_loss.item() == train_loss.item()
    assert eval_mm == 4 and train_mm >= 3 * 4


def test_cpu_evaluation_in_cache_sized_blocks_gives_the_same_loss_bit_for_bit(monkeypatch):
    """Evaluation on CPU computes logits a few rows at a time (fastpath.CPU_EVAL_BLOCK_BYTES) but
    sums the per-row losses one chunk at a time as before, so the loss does not change by one bit."""
    net, x = tiny_net(d=24), batch(b=5, seed=3)
    hidden = net.base_model(input_ids=x[:, :-1]).last_hidden_state.flatten(0, 1).detach()
    head, y = net.get_output_embeddings().weight.detach(), x[:, 1:].flatten()
    blocks = []
    row_losses = fastpath._row_losses
    monkeypatch.setattr(fastpath, "_row_losses", lambda h, *a: blocks.append(len(h)) or row_losses(h, *a))
    losses = {}
    for rows in (7, 10**9):  # 7 rows: 80 rows in chunks of 33 become blocks of 7 (and 5); 10**9: unblocked
        monkeypatch.setattr(fastpath, "CPU_EVAL_BLOCK_BYTES", rows * V * 4)
        blocks.clear()
        with torch.no_grad():
            losses[rows] = fastpath.chunked_cross_entropy(hidden, head, y, chunk_tokens=33)
        assert max(blocks) == min(rows, 33)
    assert losses[7].item() == losses[10**9].item()
    assert losses[7].item() == pytest.approx(F.cross_entropy(hidden @ head.t(), y).item(), rel=1e-6)
