"""Filter scores checked against an independent autograd computation of each criterion, and the
worked example's first-order prediction and measured loss change against a direct computation."""

import copy
import gc

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from synthetic import randomise_batchnorm
from torch import nn

from facepruning.errors import PruningError
from facepruning.models import build_model
from facepruning.pruning.scoring import (
    ImportanceAccumulator,
    TaylorCheck,
    normalize_per_group,
    taylor_prediction_check,
)
from facepruning.pruning.surgery import prunable_groups


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


ARCHS = ("squeezenet", "mobilenet_v2", "resnet50")


@pytest.fixture(scope="module", params=ARCHS)
def net64(request):
    """A float64 backbone in eval mode (per-image outputs independent of the batch)."""
    torch.manual_seed(0)
    model = build_model(request.param, num_classes=5).double().eval()
    groups = prunable_groups(model, example_input=torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (3,), generator=g)
    return request.param, model, groups, x, y


def _relative_difference(scores, expected):
    """Worst group: max |score - reference| over its channels relative to max |reference|."""
    assert set(scores) == set(expected)
    return max(
        ((scores[k] - expected[k]).abs().max() / expected[k].abs().max().clamp_min(1e-300)).item()
        for k in expected
    )


def _per_image_activation_reference(model, groups, x, y):
    """Molchanov 2017 from scratch, one image at a time: |mean_hw(a * dLoss_image/da)| per
    producer, summed over the group's producers, averaged over the images.

    Each score point's hook passes a clone on to the rest of the network, so in-place updates
    downstream (Bottleneck's ``out += identity``) touch the clone, never ``a`` itself.
    """
    modules = dict(model.named_modules())
    total = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in groups}

    def keeper(store, key):
        def hook(module, inputs, output):
            store[key] = output  # a, untouched: the network goes on with a copy
            return output.clone()

        return hook

    for n in range(len(y)):
        kept = {}
        hooks = [
            modules[p].register_forward_hook(keeper(kept, (g.name, p)))
            for g in groups
            for p in g.score_points
        ]
        try:
            loss = F.cross_entropy(model(x[n : n + 1]), y[n : n + 1])
        finally:
            for h in hooks:
                h.remove()
        keys = list(kept)
        grads = torch.autograd.grad(loss, [kept[k] for k in keys])
        for key, grad in zip(keys, grads, strict=True):
            total[key[0]] += (kept[key][0] * grad[0]).mean(dim=(1, 2)).abs()
    return {k: v / len(y) for k, v in total.items()}


def test_taylor_activation_matches_per_image_autograd_on_every_backbone(net64):
    arch, model, groups, x, y = net64
    expected = _per_image_activation_reference(model, groups, x, y)
    with ImportanceAccumulator(model, groups, importance="taylor_activation") as acc:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        acc.after_backward()
    assert acc.count == len(y)
    difference = _relative_difference(acc.scores(), expected)
    print(f"{arch}: taylor_activation relative difference {difference:.3g}")
    assert difference < 1e-9, f"{arch}: relative difference {difference:.3g}"
    if arch != "squeezenet":  # coupled groups really do add their members' scores
        assert any(len(g.score_points) > 1 for g in groups)


def _weight_reference(model, groups, batches):
    """Molchanov 2019 from scratch: per mini-batch (sum_s w_s * dL/dw_s)^2 over every parameter
    a channel owns (its convs and their BatchNorms), averaged over mini-batches."""
    modules = dict(model.named_modules())
    owned = {
        g.name: [
            p
            for name in dict.fromkeys((*g.convs, *g.score_points))
            for p in (modules[name].weight, getattr(modules[name], "bias", None))
            if p is not None
        ]
        for g in groups
    }
    total = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        params = [p for g in groups for p in owned[g.name]]
        grads = dict(zip(map(id, params), torch.autograd.grad(loss, params), strict=True))
        for g in groups:
            s = sum((p.detach() * grads[id(p)]).reshape(g.size, -1).sum(1) for p in owned[g.name])
            total[g.name] += s**2
    return {k: v / len(batches) for k, v in total.items()}


def test_taylor_weight_matches_independent_autograd_on_every_backbone(net64):
    arch, model, groups, x, y = net64
    batches = [(x[:2], y[:2]), (x[2:], y[2:])]
    expected = _weight_reference(model, groups, batches)
    acc = ImportanceAccumulator(model, groups, importance="taylor_weight")
    with acc:
        for xb, yb in batches:
            model.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            acc.after_backward()
    difference = _relative_difference(acc.scores(), expected)
    print(f"{arch}: taylor_weight relative difference {difference:.3g}")
    assert difference < 1e-9, f"{arch}: relative difference {difference:.3g}"


def test_l1_norm_and_random_and_normalisation(net):
    model, groups = net
    modules = dict(model.named_modules())
    acc = ImportanceAccumulator(model, groups, importance="l1_norm")
    scores = acc.scores()
    g = groups[3]
    manual = sum(modules[c].weight.detach().abs().flatten(1).sum(1).double() for c in g.convs)
    torch.testing.assert_close(scores[g.name], manual)
    normed = normalize_per_group(scores)
    assert all(abs(v.norm().item() - 1) < 1e-9 for v in normed.values())
    r1 = ImportanceAccumulator(
        model, groups, importance="random", generator=torch.Generator().manual_seed(3)
    ).scores()
    r2 = ImportanceAccumulator(
        model, groups, importance="random", generator=torch.Generator().manual_seed(3)
    ).scores()
    assert all(torch.equal(r1[k], r2[k]) for k in r1)


def test_random_scores_are_never_normalised(net):
    model, groups = net
    sizes = [g.size for g in groups]
    assert max(sizes) >= 10 * min(sizes)  # wide and narrow groups
    scores = ImportanceAccumulator(
        model, groups, importance="random", generator=torch.Generator().manual_seed(3)
    ).scores(normalize=True)
    draws = torch.Generator().manual_seed(3)
    for g in groups:  # exactly the uniform draws, whatever the width of the group
        raw = torch.rand(g.size, generator=draws, dtype=torch.float64)
        assert torch.equal(scores[g.name], raw), g.name
    wide = max(groups, key=lambda g: g.size)
    assert scores[wide.name].max() > 0.9  # not divided by ||s|| ~ sqrt(width / 3)


def test_activation_memory_does_not_grow_with_batches(net):
    model, groups = net

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    with ImportanceAccumulator(model, groups, importance="taylor_activation") as acc:
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
    with pytest.raises(PruningError, match="unknown importance"):
        ImportanceAccumulator(model, groups, importance="magic")
    with pytest.raises(PruningError, match="no mini-batch"):
        ImportanceAccumulator(model, groups, importance="taylor_activation").scores()


# --------------------------------------------------------------------------------------------
# the worked example of notebook 03: first-order prediction against measured removal
# --------------------------------------------------------------------------------------------
class _Residual(nn.Module):
    """conv-bn-relu, then conv-bn added in place to it (as torchvision's Bottleneck does), so
    both convs form one group of 16 channels with two score points."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(x))
        out += x  # in place into bn2's output: what the scores must not see
        return self.fc(F.relu(out).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def residual():
    torch.manual_seed(0)
    model = randomise_batchnorm(_Residual(), bias_std=0.3, mean_std=0.3).double().eval()
    example = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    (group,) = prunable_groups(model, example_input=example, ignored=[model.fc])
    assert group.score_points == ["bn1", "bn2"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    return model, group, x, torch.randint(0, 5, (6,), generator=g)


def _first_order_by_hand(model, x, y):
    """-sum(a * dL/da) per channel over batch and map, summed over bn1 and bn2, in float64: each
    BatchNorm's output is kept and the network goes on with a clone."""
    kept = {}

    def keeper(name):
        def hook(module, inputs, output):
            kept[name] = output
            return output.clone()

        return hook

    hooks = [getattr(model, n).register_forward_hook(keeper(n)) for n in ("bn1", "bn2")]
    try:
        loss = F.cross_entropy(model(x), y)
    finally:
        for h in hooks:
            h.remove()
    grads = torch.autograd.grad(loss, list(kept.values()))
    return -sum((kept[n] * g).sum(dim=(0, 2, 3)) for n, g in zip(kept, grads, strict=True))


def _measured_by_hand(model, x, y, channel):
    """The loss change with ``channel`` zeroed: both BatchNorms output 0 there (scale and shift
    0) in a copy of the network."""
    with torch.no_grad():
        base = F.cross_entropy(model(x), y).item()
        zeroed = copy.deepcopy(model)
        for bn in (zeroed.bn1, zeroed.bn2):
            bn.weight[channel] = 0.0
            bn.bias[channel] = 0.0
        return F.cross_entropy(zeroed(x), y).item() - base


def test_taylor_prediction_check_matches_a_direct_computation(residual):
    model, group, x, y = residual
    stats = [b.clone() for b in model.buffers()]
    model.train()  # the check runs in eval mode (BatchNorm statistics untouched), then restores it
    check = taylor_prediction_check(model, group, x, y, channels=5, seed=3)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    model.eval()
    assert len(check.channels) == 5 == len(set(check.channels.tolist()))
    assert list(check.channels) == sorted(check.channels) and check.group == group.name
    assert set(check.channels) <= set(range(group.size))
    expected = _first_order_by_hand(model, x, y)[torch.as_tensor(check.channels)]
    torch.testing.assert_close(torch.as_tensor(check.predicted), expected, rtol=1e-9, atol=1e-15)
    direct = [_measured_by_hand(model, x, y, int(c)) for c in check.channels]
    np.testing.assert_allclose(check.measured, direct, rtol=1e-9, atol=1e-14)
    assert np.abs(check.measured).max() > 0  # zeroing a channel does change the loss
    rho = scipy.stats.spearmanr(check.predicted, check.measured).statistic
    assert check.correlation == pytest.approx(rho)
    # the criterion's one-batch scores, as the accumulator gives them for this batch
    with ImportanceAccumulator(model, [group], importance="taylor_activation") as acc:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        acc.after_backward()
    model.zero_grad()
    np.testing.assert_allclose(check.scores, acc.scores()[group.name].numpy(), rtol=1e-12)


def test_taylor_prediction_check_samples_at_most_channels_for_every_criterion(residual):
    model, group, x, y = residual
    again = taylor_prediction_check(model, group, x, y, channels=5, seed=3)
    other = taylor_prediction_check(model, group, x, y, channels=5, seed=4)
    assert len(other.channels) == 5 and list(other.channels) != list(again.channels)
    every = taylor_prediction_check(model, group, x, y, channels=100, seed=3)
    assert list(every.channels) == list(range(group.size))  # no more than the group holds
    for criterion in ("taylor_weight", "l1_norm", "random"):
        check = taylor_prediction_check(
            model, group, x, y, importance=criterion, channels=5, seed=3
        )
        assert check.scores.shape == (group.size,) and np.isfinite(check.scores).all()
        assert (check.scores >= 0).all(), criterion
        np.testing.assert_array_equal(check.measured, again.measured)  # scores differ, not these
    with pytest.raises(PruningError, match="at least one channel"):
        taylor_prediction_check(model, group, x, y, channels=0)


@pytest.mark.parametrize(
    ("predicted", "measured"),
    [([0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, -1.0]), ([3.0, 0.0, 0.0, 1.0], [2.0, 0.0, 5.0, 1.0])],
)
def test_taylor_check_correlation_gives_tied_channels_their_average_rank(predicted, measured):
    """Channels whose activation is all zero predict and change nothing: tied at 0 on both sides.
    Ranked in their order of appearance, the ties would agree with each other and pull the
    correlation towards +1 (-0.2 for the first case, where Spearman's is -1)."""
    check = TaylorCheck(
        group="g",
        channels=np.arange(4),
        predicted=np.array(predicted),
        measured=np.array(measured),
        scores=np.zeros(4),
        loss=1.0,
    )
    expected = scipy.stats.spearmanr(predicted, measured).statistic
    assert check.correlation == pytest.approx(expected)
