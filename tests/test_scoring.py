"""Filter scores checked against an independent autograd computation of each criterion."""

import gc

import pytest
import torch
import torch.nn.functional as F

from facepruning.errors import PruningError
from facepruning.models import build_model
from facepruning.scoring import ImportanceAccumulator, normalize_per_group
from facepruning.surgery import prunable_groups


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", num_classes=5).eval()  # has coupled groups
    example = torch.randn(1, 3, 32, 32)
    groups = prunable_groups(model, example_input=example)
    return model, groups


def _batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g))
        for _ in range(n)
    ]


def _reference_activation_scores(model, groups, batches):
    """Molchanov 2017 from scratch: per image |mean_hw(a * dLoss_image/da)|, averaged."""
    modules = dict(model.named_modules())
    total = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    images = 0
    for x, y in batches:
        outs = {}
        hooks = [
            modules[p].register_forward_hook(
                lambda m, i, o, key=(g.name, p), store=outs: store.__setitem__(key, o)
            )
            for g in groups
            for p in g.score_points
        ]
        logits = model(x)
        for h in hooks:
            h.remove()
        keys = list(outs)
        for n in range(len(y)):  # per-image loss gradients, one image at a time
            loss_n = F.cross_entropy(logits[n : n + 1], y[n : n + 1])
            grads = torch.autograd.grad(loss_n, [outs[k] for k in keys], retain_graph=True)
            for (name, _), a, g in zip(keys, [outs[k] for k in keys], grads, strict=True):
                total[name] += (a[n] * g[n]).mean(dim=(1, 2)).abs().double()
        images += len(y)
    return {k: v / images for k, v in total.items()}


def test_taylor_activation_matches_independent_autograd(net):
    model, groups = net
    batches = _batches(2)
    expected = _reference_activation_scores(model, groups, batches)
    with ImportanceAccumulator(model, groups, criterion="taylor_activation") as acc:
        for x, y in batches:
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            acc.after_backward()
    scores = acc.scores()
    assert set(scores) == set(expected)
    for name in expected:
        torch.testing.assert_close(scores[name], expected[name], rtol=1e-4, atol=1e-9)
    # coupled groups really do add their members' scores
    assert any(len(g.score_points) > 1 for g in groups)


def test_taylor_weight_matches_independent_computation(net):
    model, groups = net
    modules = dict(model.named_modules())
    batches = _batches(3, seed=1)
    expected = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    with ImportanceAccumulator(model, groups, criterion="taylor_weight") as acc:
        for x, y in batches:
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            acc.after_backward()
            for g in groups:
                s = torch.zeros(g.size, dtype=torch.float64)
                for name in set(g.convs) | set(g.score_points):
                    m = modules[name]
                    for p in (m.weight, m.bias):
                        if p is not None and p.grad is not None:
                            s += (p * p.grad).double().reshape(g.size, -1).sum(1)
                expected[g.name] += s**2
    scores = acc.scores()
    for g in groups:
        torch.testing.assert_close(scores[g.name], expected[g.name] / 3, rtol=1e-4, atol=1e-12)


def test_l1_norm_and_random_and_normalisation(net):
    model, groups = net
    modules = dict(model.named_modules())
    acc = ImportanceAccumulator(model, groups, criterion="l1_norm")
    scores = acc.scores()
    g = groups[3]
    manual = sum(modules[c].weight.detach().abs().flatten(1).sum(1).double() for c in g.convs)
    torch.testing.assert_close(scores[g.name], manual)
    normed = normalize_per_group(scores)
    assert all(abs(v.norm().item() - 1) < 1e-9 for v in normed.values())
    r1 = ImportanceAccumulator(
        model, groups, criterion="random", generator=torch.Generator().manual_seed(3)
    ).scores()
    r2 = ImportanceAccumulator(
        model, groups, criterion="random", generator=torch.Generator().manual_seed(3)
    ).scores()
    assert all(torch.equal(r1[k], r2[k]) for k in r1)


def test_activation_memory_does_not_grow_with_batches(net):
    model, groups = net

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    with ImportanceAccumulator(model, groups, criterion="taylor_activation") as acc:
        counts = []
        for x, y in _batches(6, seed=2):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            acc.after_backward()
            del x, y
            counts.append(live_tensors())
    assert counts[-1] <= counts[1], counts  # nothing kept per mini-batch


def test_bad_requests(net):
    model, groups = net
    with pytest.raises(PruningError, match="unknown criterion"):
        ImportanceAccumulator(model, groups, criterion="magic")
    with pytest.raises(PruningError, match="no mini-batch"):
        ImportanceAccumulator(model, groups, criterion="taylor_activation").scores()
