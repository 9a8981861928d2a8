"""The pruning engine on networks it was not written for: torchvision's ResNet18,
MobileNetV3-Small (squeeze-excitation: the excitation's channels are coupled to the block's) and
EfficientNet-B0, and a network of our own. Each pruned network must compute exactly what the
masked original computes; a user's own criterion works without editing the package; a pruned
network saved with ``save_pruned`` loads into a fresh copy with identical outputs."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from test_own_network import ConcatResidual

import facepruning
from facepruning.errors import PruningError
from facepruning.pruning import Importance, prunable_groups, zero_channels

NETWORKS = ["resnet18", "mobilenet_v3_small", "efficientnet_b0"]


def _network(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    if name == "own":
        net = ConcatResidual(classes=5)
        return net.eval(), net.fc
    net = getattr(torchvision.models, name)(num_classes=5).eval()
    head = net.fc if hasattr(net, "fc") else net.classifier
    # BatchNorm as trained networks have it (not the identity of a fresh one): removal must be
    # exact whatever the statistics
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.3, 0.3)
    return net, head


def _batches(n=2, size=32):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, size, size, generator=g), torch.randint(0, 5, (4,), generator=g))]


@pytest.mark.parametrize("name", [*NETWORKS, "own"])
@pytest.mark.parametrize("importance", ["l1_norm", "taylor_activation"])
def test_one_call_prunes_and_equals_the_masked_original(name, importance):
    net, head = _network(name)
    masked = copy.deepcopy(net)
    size = 16 if name == "own" else 32
    example = torch.randn(2, 3, size, size)
    groups = prunable_groups(net, example_input=example[:1], ignored=[head])
    batches = _batches(size=size) if importance == "taylor_activation" else None
    model, report = facepruning.prune(
        net, example, importance=importance, amount=0.3, batches=batches, ignored=[head]
    )
    assert model is net and report.parameters[1] < report.parameters[0]
    assert report.macs[1] < report.macs[0]
    removed = report.channels[0] - report.channels[1]
    assert removed == round(0.3 * report.channels[0])
    after = {g: n for g, _, n in report.groups}
    assert sum(g.size - after[g.name] for g in groups) == removed
    plan = report.removed  # the masked original: the same channels zeroed
    assert {g: len(i) for g, i in plan.items()} == {
        g.name: g.size - after[g.name] for g in groups if after[g.name] < g.size
    }
    with torch.no_grad(), zero_channels(masked, plan, groups=groups):
        expected = masked(example)
    with torch.no_grad():
        got = model(example)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


class FilterNorm(Importance):
    """L2 norm of each channel's filters: a user's criterion, defined outside the package."""

    label = "filter L2 norm"
    needs_data = False

    def __call__(self, group, captured):
        return sum(
            captured.modules[c].weight.detach().flatten(1).norm(dim=1).double() for c in group.convs
        )


def test_a_users_importance_subclass_prunes_the_weakest_filters():
    net, head = _network("resnet18")
    groups = {g.name: g for g in prunable_groups(net, ignored=[head])}
    norms = FilterNorm()(groups["conv1"], _captured(net))
    _, report = facepruning.prune(
        net, torch.randn(1, 3, 32, 32), importance=FilterNorm(), amount=0.2, ignored=[head]
    )
    assert report.importance == "FilterNorm"
    kept = net.conv1.weight.detach().flatten(1).norm(dim=1).double()
    lost = len(norms) - len(kept)
    if lost:  # the filters that stayed are the strongest of the group (normalisation is per group)
        assert kept.min() >= norms.sort().values[lost - 1] - 1e-12


def _captured(net):
    from facepruning.pruning import Captured

    return Captured(dict(net.named_modules()))


def test_iterative_loop_runs_on_torchvision_and_resumes_bit_identically(tmp_path):
    def run(folder, interrupt_at=None):
        net, head = _network("mobilenet_v3_small")
        batches = _batches()

        def score_batches(step):
            if step == interrupt_at:
                raise KeyboardInterrupt("simulated interruption")
            torch.manual_seed(step)  # dropout draws from the global generator
            return batches

        return facepruning.prune_iteratively(
            net,
            torch.zeros(1, 3, 32, 32),
            importance="taylor_activation",
            steps=3,
            step_fraction=0.1,
            score_batches=score_batches,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
            channel_multiple=8,
            ignored=[head],
            checkpoint_dir=folder,
        )

    whole = run(tmp_path / "whole")
    assert [r["stage"] for r in whole.history] == ["original", *["pruned"] * 3, "final"]
    assert whole.history[-1]["params"] < whole.history[0]["params"]
    start = whole.layers[0]["sizes"]
    assert all(n % 8 == 0 or n == start[g] for g, n in whole.layers[-1]["sizes"].items())
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", interrupt_at=2)  # step 1 is checkpointed, step 2 is not
    resumed = run(tmp_path / "cut")  # a fresh, unpruned network: reshaped from the checkpoint
    assert resumed.history == whole.history
    done, again = whole.model.state_dict(), resumed.model.state_dict()
    assert done.keys() == again.keys() and all(torch.equal(done[k], again[k]) for k in done)


def test_a_checkpoint_of_other_loop_settings_is_set_aside(tmp_path, capsys):
    def run(step_fraction):
        net, head = _network("resnet18")
        return facepruning.prune_iteratively(
            net,
            torch.zeros(1, 3, 32, 32),
            importance="l1_norm",
            steps=1,
            step_fraction=step_fraction,
            ignored=[head],
            checkpoint_dir=tmp_path,
        )

    first = run(0.1)
    capsys.readouterr()
    other = run(0.2)  # must prune afresh, not "resume" the finished 10% run
    assert "step_fraction" in capsys.readouterr().err
    assert other.history[-1]["channels_removed"] > first.history[-1]["channels_removed"]


def test_a_network_with_nothing_to_prune_is_named():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    with pytest.raises(PruningError, match="no prunable channel group.*fewer layers in ignored"):
        facepruning.prune_iteratively(
            net, torch.zeros(1, 3, 8, 8), importance="l1_norm", steps=1, ignored=[net[0]]
        )


def test_a_per_image_criterion_without_activations_learns_the_batch_size():
    class FilterNormPerImage(Importance):
        per_image = True

        def __call__(self, group, captured):
            assert captured.batch_size == 4  # the images of the mini-batch, not 0
            weight = captured.modules[group.convs[0]].weight
            return captured.batch_size * weight.detach().flatten(1).norm(dim=1).double()

    net, head = _network("resnet18")
    facepruning.prune(
        net, torch.randn(1, 3, 32, 32), importance=FilterNormPerImage(), amount=0.1,
        batches=_batches(), ignored=[head],
    )  # fmt: skip


def test_save_pruned_round_trips_a_pruned_resnet18(tmp_path):
    net, head = _network("resnet18")
    facepruning.prune(
        net, torch.randn(1, 3, 32, 32), importance="l1_norm", amount=0.3, ignored=[head]
    )
    facepruning.save_pruned(net, tmp_path / "r18.pt", meta={"note": "30% by L1"})
    fresh = torchvision.models.resnet18(num_classes=5)
    loaded = facepruning.load_pruned(tmp_path / "r18.pt", fresh)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))
    assert loaded.pruning_meta == {"note": "30% by L1"}


def test_a_layer_the_engine_cannot_narrow_is_named_with_the_fix():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.norm = torch.nn.GroupNorm(2, 8)
            self.fc = torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.norm(self.conv(x)).mean((2, 3)))

    net = Odd()
    advice = r"norm \(GroupNorm\).*ignored=\[model\.get_submodule\('norm'\)\]"
    with pytest.raises(PruningError, match=advice):
        facepruning.prune(net, torch.randn(1, 3, 8, 8), importance="l1_norm", ignored=[net.fc])


def test_data_criteria_ask_for_batches():
    net, head = _network("resnet18")
    with pytest.raises(PruningError, match="batches"):
        facepruning.prune(net, torch.randn(1, 3, 32, 32), ignored=[head])
