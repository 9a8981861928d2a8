"""Pruning a network that is not a FaceNet: torchvision's ResNet18 and a small CNN with a channel
concat and a residual add, given the layers that must not be pruned (``ignored``)."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from synthetic import randomise_batchnorm
from torch import nn
from torch.nn import functional as F

from facepruning.errors import ModelError
from facepruning.pruning import (
    ImportanceAccumulator,
    prunable_groups,
    remove_channels,
    select_channels,
    zero_channels,
)


class ConcatResidual(nn.Module):
    """stem -> two branches concatenated -> a residual block (conv + projection, added) -> fc."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.left = nn.Sequential(nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6))
        self.right = nn.Sequential(nn.Conv2d(8, 10, 3, padding=1), nn.BatchNorm2d(10))
        self.body = nn.Sequential(nn.Conv2d(16, 12, 3, padding=1), nn.BatchNorm2d(12))
        self.proj = nn.Sequential(nn.Conv2d(16, 12, 1), nn.BatchNorm2d(12))
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(torch.cat([self.left(x), self.right(x)], dim=1))
        x = F.relu(self.body(x) + self.proj(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def randomised(model: nn.Module) -> nn.Module:
    """float64, eval mode, random BatchNorm statistics and affine parameters."""
    torch.manual_seed(0)
    randomise_batchnorm(model, bias_std=0.3, mean_std=0.2)
    return model.double().eval()


NETWORKS = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=7),
    "concat_residual": ConcatResidual,
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_pruned_equals_masked_original(name):
    torch.manual_seed(0)
    model = randomised(NETWORKS[name]())
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    groups = prunable_groups(model, example_input=x[:1], ignored=[model.fc])
    if name == "concat_residual":
        assert [(g.name, g.size, len(g.convs)) for g in groups] == [
            ("stem.0", 8, 1),
            ("left.0", 6, 1),
            ("right.0", 10, 1),
            ("body.0", 12, 2),  # the residual add ties body and proj
        ]
    g = torch.Generator().manual_seed(1)
    plan = {gr.name: torch.randperm(gr.size, generator=g)[: gr.size // 3].tolist() for gr in groups}
    assert all(plan.values()), "every group loses channels"
    with torch.no_grad():
        full = model(x)
        with zero_channels(model, plan, groups=groups):
            masked = model(x)
        pruned = copy.deepcopy(model)
        remove_channels(pruned, plan, example_input=x[:1], ignored=[pruned.fc])
        out = pruned(x)
    assert not torch.allclose(masked, full), "masking changed nothing: the test is vacuous"
    torch.testing.assert_close(out, masked, atol=1e-5, rtol=0)
    after = prunable_groups(pruned, example_input=x[:1], ignored=[pruned.fc])
    assert [a.size for a in after] == [gr.size - len(plan[gr.name]) for gr in groups]
    assert pruned.fc.out_features == model.fc.out_features


@pytest.mark.parametrize("criterion", ["taylor_activation", "taylor_weight", "l1_norm"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_scores_and_selection_work(name, criterion):
    model = randomised(NETWORKS[name]()).float().train()
    x = torch.randn(4, 3, 32, 32)
    y = torch.arange(4) % 5
    groups = prunable_groups(model, example_input=x[:1], ignored=[model.fc])
    with ImportanceAccumulator(model, groups, importance=criterion) as acc:
        for _ in range(2):
            F.cross_entropy(model(x), y).backward()
            acc.after_backward()
            model.zero_grad()
    scores = acc.scores(normalize=True)
    assert {n: len(s) for n, s in scores.items()} == {g.name: g.size for g in groups}
    assert all(torch.isfinite(s).all() and (s >= 0).all() for s in scores.values())
    assert any(bool((s > 0).any()) for s in scores.values())
    plan = select_channels(scores, count=6)
    remove_channels(model, plan, example_input=x[:1], ignored=[model.fc])
    assert model.eval()(x).shape == (4, model.fc.out_features)


def test_a_plain_network_must_name_its_classifier():
    model = ConcatResidual()
    with pytest.raises(ModelError, match=r"ignored=\[model\.fc\]"):
        prunable_groups(model)
    # ignored=[] prunes everything (here nothing feeds a fixed output but the Linear)
    assert len(prunable_groups(model, ignored=[])) == 4


def test_the_loop_prunes_a_plain_network_to_multiples(tmp_path):
    from synthetic import TinyFaces, transforms

    from facepruning.models import load_pruned
    from facepruning.pruning import prune_iteratively

    torch.manual_seed(0)
    model = ConcatResidual(classes=4)
    train_tf, _ = transforms()
    data = TinyFaces()
    images = train_tf(torch.stack([data[i][0] for i in range(8)]), torch.Generator())
    labels = torch.stack([torch.as_tensor(data[i][1]) for i in range(8)])
    result = prune_iteratively(
        model,
        torch.zeros(1, 3, 16, 16),
        importance="taylor_activation",
        steps=2,
        step_fraction=3,
        score_batches=[(images, labels)],
        channel_multiple=2,
        ignored=[model.fc],
        checkpoint_dir=tmp_path,  # any network checkpoints: state dict plus channel layout
    )
    first, last = result.layers[0]["sizes"], result.layers[-1]["sizes"]
    assert sum(first.values()) - sum(last.values()) >= 2 * 3
    assert all(n % 2 == 0 for n in last.values())
    assert model.fc.out_features == 4
    resumed = load_pruned(tmp_path / "last.pt", ConcatResidual(classes=4))
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(resumed(x), result.model.eval()(x), rtol=0, atol=0)
