"""Channel surgery: physically pruned networks compute what the masked original computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from facepruning.errors import ParameterError, PruningError
from facepruning.models import (
    build_model,
    channel_layout,
    count_macs,
    count_parameters,
    load_model,
    save_model,
)
from facepruning.pruning import ChannelGroup, prunable_groups, remove_channels, zero_channels

SIZE = 48
NUM_CLASSES = 10

# Groups pruned per architecture: the stem, coupled groups (Fire concat halves, expansion +
# depthwise, residual streams) and the groups feeding the classifier / descriptor.
PLANS = {
    "squeezenet": [
        "backbone.features.0",
        "backbone.features.4.expand1x1",  # Fire concat feeding fire5's squeeze, offset 0
        "backbone.features.4.expand3x3",  # ... offset 64
        "backbone.features.7.squeeze",
        "backbone.features.13.expand3x3",  # last Fire, feeds the classifier conv
    ],
    "mobilenet_v2": [
        "backbone.features.0.0",  # stem + the first block's depthwise conv
        "backbone.features.3.conv.0.0",  # expansion tied to its depthwise conv
        "backbone.features.4.conv.2",  # residual stream of a 3-block stage
        "backbone.features.18.0",  # last conv: the descriptor's channels
    ],
    "resnet50": [
        "backbone.conv1",
        "backbone.layer1.0.conv1",
        "backbone.layer2.0.conv3",  # residual stream: conv3 of 4 blocks + downsample
        "backbone.layer4.0.conv3",  # last stream: the descriptor's channels
    ],
}

# Groups whose channels are the descriptor's (MobileNetV2, ResNet50): the pruned descriptor
# keeps the other channels.
DESCRIPTOR_GROUP = {"mobilenet_v2": "backbone.features.18.0", "resnet50": "backbone.layer4.0.conv3"}


def prepared(arch: str, seed: int = 0) -> nn.Module:
    """A model in eval mode with random BN affine parameters and real running statistics."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=NUM_CLASSES)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.momentum = 1.0  # running stats = the last batch's, so eval activations are sane
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, SIZE, SIZE))
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def random_plan(groups: dict[str, ChannelGroup], names: list[str], seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    plan = {}
    for name in names:
        size = groups[name].size
        k = max(1, size // 4)
        plan[name] = torch.randperm(size, generator=g)[:k].tolist()
    return plan


def outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.embed_and_classify(x)


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = max(1.0, float(a.abs().max()))
    assert a.shape == b.shape
    torch.testing.assert_close(b, a, atol=1e-4 * scale, rtol=1e-4)


@pytest.mark.parametrize("arch", ["squeezenet", "mobilenet_v2", "resnet50"])
def test_pruned_equals_masked_original_and_round_trips(arch, tmp_path):
    model = prepared(arch)
    x = torch.randn(2, 3, SIZE, SIZE)
    groups = {g.name: g for g in prunable_groups(model, example_input=x[:1])}
    plan = random_plan(groups, PLANS[arch], seed=1)

    d_full, l_full = outputs(model, x)
    with zero_channels(model, plan):
        d_mask, l_mask = outputs(model, x)
    d_after, l_after = outputs(model, x)
    assert torch.equal(l_after, l_full), "zero_channels left a hook behind"
    assert not torch.allclose(l_mask, l_full), "masking changed nothing: the test is vacuous"

    pruned = copy.deepcopy(model)
    n_before = count_parameters(pruned)
    remove_channels(pruned, plan, example_input=x[:1])
    assert count_parameters(pruned) < n_before
    assert count_macs(pruned, image_size=SIZE) < count_macs(model, image_size=SIZE)
    d_pruned, l_pruned = outputs(pruned, x)

    assert_close(l_mask, l_pruned)
    if arch in DESCRIPTOR_GROUP:
        removed = plan[DESCRIPTOR_GROUP[arch]]
        keep = [i for i in range(d_mask.shape[1]) if i not in set(removed)]
        assert torch.all(d_mask[:, removed] == 0)
        assert d_pruned.shape[1] == pruned.descriptor_size == len(keep)
        assert_close(d_mask[:, keep], d_pruned)
    else:
        assert_close(d_mask, d_pruned)

    # group sizes shrink by the plan; every other group keeps its size
    after = {g.name: g.size for g in prunable_groups(pruned, example_input=x[:1])}
    assert set(after) == set(groups)
    for name, g in groups.items():
        assert after[name] == g.size - len(plan.get(name, []))

    # save / load round trip, weights_only
    path = tmp_path / "pruned.pt"
    save_model(path, pruned, meta={"step": 3, "removed": {k: list(v) for k, v in plan.items()}})
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) >= {"arch", "num_classes", "state_dict", "layout", "meta"}
    loaded, meta = load_model(path)
    assert meta["step"] == 3 and meta["removed"] == plan
    assert not loaded.training
    assert channel_layout(loaded) == channel_layout(pruned)
    d_loaded, l_loaded = outputs(loaded, x)
    assert torch.equal(l_loaded, l_pruned)
    assert torch.equal(d_loaded, d_pruned)
    for name, m in loaded.named_modules():  # depthwise convs stay depthwise
        if isinstance(m, nn.Conv2d) and name.endswith("conv.1.0"):
            assert m.groups == m.in_channels == m.out_channels


def test_group_structure():
    def by_name(arch):
        model = build_model(arch, num_classes=NUM_CLASSES)
        gs = prunable_groups(model, example_input=torch.zeros(1, 3, SIZE, SIZE))
        return model, {g.name: g for g in gs}

    model, sq = by_name("squeezenet")
    assert len(sq) == 25  # stem + 8 Fire modules x (squeeze, expand1x1, expand3x3)
    fire = sq["backbone.features.4.expand3x3"]
    assert fire.convs == ["backbone.features.4.expand3x3"]
    assert fire.score_points == ["backbone.features.4.expand3x3_bn"]
    assert fire.filters_per_channel == 1 and fire.size == 64
    assert not any(n.startswith("backbone.classifier") for g in sq.values() for n in g.convs)

    _, mb = by_name("mobilenet_v2")
    assert len(mb) == 25
    exp = mb["backbone.features.3.conv.0.0"]
    assert exp.convs == ["backbone.features.3.conv.0.0", "backbone.features.3.conv.1.0"]
    assert exp.score_points == ["backbone.features.3.conv.0.1", "backbone.features.3.conv.1.1"]
    assert exp.filters_per_channel == 2 and exp.size == 144
    res = mb["backbone.features.4.conv.2"]
    assert res.convs == [f"backbone.features.{i}.conv.2" for i in (4, 5, 6)]
    assert res.size == 32

    _, rn = by_name("resnet50")
    assert len(rn) == 37  # stem + 16 bottlenecks x (conv1, conv2) + 4 residual streams
    stream = rn["backbone.layer1.0.conv3"]
    assert stream.convs == [
        "backbone.layer1.0.conv3",
        "backbone.layer1.0.downsample.0",
        "backbone.layer1.1.conv3",
        "backbone.layer1.2.conv3",
    ]
    assert stream.score_points[1] == "backbone.layer1.0.downsample.1"
    assert "backbone.fc" not in {n for g in rn.values() for n in g.convs}


@pytest.mark.parametrize(
    ("arch", "group", "per_channel"),
    [
        # squeeze 128->32 (1x1 + bias), its BN, expand1x1 in (64 x 1x1), expand3x3 in (128 x 3x3)
        ("squeezenet", "backbone.features.7.squeeze", 128 + 1 + 2 + 128 + 128 * 9),
        # expansion 24->144 (1x1), BN, depthwise 3x3, BN, projection 144->24 input
        ("mobilenet_v2", "backbone.features.3.conv.0.0", 24 + 2 + 9 + 2 + 24),
        # conv1 64->64 (1x1), bn1, conv2's input (64 x 3x3)
        ("resnet50", "backbone.layer1.0.conv1", 64 + 2 + 64 * 9),
    ],
)
def test_parameter_count_drops_by_expected_amount(arch, group, per_channel):
    model = build_model(arch, num_classes=NUM_CLASSES).eval()
    before = count_parameters(model)
    remove_channels(model, {group: [0, 5, 7]})
    assert before - count_parameters(model) == 3 * per_channel


def test_tracing_keeps_train_mode_and_bn_statistics():
    model = build_model("squeezenet", num_classes=NUM_CLASSES).train()
    bn = model.backbone.features[1]
    stats = bn.running_mean.clone(), int(bn.num_batches_tracked)
    with torch.no_grad():
        prunable_groups(model, example_input=torch.randn(2, 3, SIZE, SIZE))
    assert model.training
    assert torch.equal(bn.running_mean, stats[0]) and int(bn.num_batches_tracked) == stats[1]


def test_prune_twice_keeps_concat_offsets():
    model = prepared("squeezenet", seed=3)
    x = torch.randn(2, 3, SIZE, SIZE)
    reference = copy.deepcopy(model)
    remove_channels(model, {"backbone.features.5.expand1x1": [0, 1, 2, 63]})
    plan2 = {"backbone.features.5.expand3x3": [1, 10, 40], "backbone.features.5.expand1x1": [0]}
    remove_channels(model, plan2)
    # in the original numbering: expand1x1 lost 0,1,2,63 then (new) 0 = old 3
    full = {
        "backbone.features.5.expand1x1": [0, 1, 2, 3, 63],
        "backbone.features.5.expand3x3": [1, 10, 40],
    }
    with zero_channels(reference, full):
        _, expected = outputs(reference, x)
    _, got = outputs(model, x)
    assert_close(expected, got)
    assert model.backbone.features[7].squeeze.in_channels == 128 - 8


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"backbone.features.99.squeeze": [0]}, "unknown channel group"),
        ({"backbone.features.4.squeeze": [16]}, "out of range"),
        ({"backbone.features.4.squeeze": [-1]}, "out of range"),
        ({"backbone.features.4.squeeze": [3, 3]}, "duplicate"),
        ({"backbone.features.4.squeeze": list(range(16))}, "empty"),
        ({"backbone.classifier.1": [0]}, "unknown channel group"),
        ({"backbone.features.4.squeeze": [0.5]}, "integers"),
    ],
)
def test_bad_plans_raise_and_leave_model_unchanged(plan, message):
    model = build_model("squeezenet", num_classes=NUM_CLASSES)
    before = channel_layout(model)
    full_plan = {"backbone.features.0": [1, 2], **plan}  # a valid entry first: nothing may change
    with pytest.raises(PruningError, match=message):
        remove_channels(model, full_plan)
    assert channel_layout(model) == before
    with pytest.raises(PruningError, match=message), zero_channels(model, plan):
        pass


def test_save_model_rejects_non_plain_meta(tmp_path):
    model = build_model("squeezenet", num_classes=NUM_CLASSES)
    with pytest.raises(ParameterError, match="weights_only"):
        save_model(tmp_path / "m.pt", model, meta={"when": object()})
    assert not (tmp_path / "m.pt").exists()


def test_channel_layout_is_plain():
    model = build_model("mobilenet_v2", num_classes=NUM_CLASSES)
    layout = channel_layout(model)
    dw = layout["backbone.features.2.conv.1.0"]
    assert dw == {"type": "conv", "in": 96, "out": 96, "groups": 96}
    assert layout["backbone.classifier.1"] == {"type": "linear", "in": 1280, "out": 10, "groups": 1}
    assert layout["backbone.features.0.1"]["type"] == "bn"


def test_frozen_parameters_are_still_traced():
    model = build_model("resnet50", num_classes=NUM_CLASSES)
    model.backbone.layer1.requires_grad_(False)
    names = {g.name for g in prunable_groups(model, example_input=torch.zeros(1, 3, 32, 32))}
    assert "backbone.layer1.0.conv1" in names and len(names) == 37
    assert not model.backbone.layer1[0].conv1.weight.requires_grad
