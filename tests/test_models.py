"""The three backbones: shapes, the SqueezeNet variant, weights loading, sizes vs the papers."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from facepruning.errors import ModelError
from facepruning.models import (
    ARCHITECTURES,
    FaceNet,
    build_model,
    count_macs,
    count_parameters,
    mobilenet_v2,
    resnet50,
    squeezenet,
)

SIZE = 48


@pytest.mark.parametrize(
    ("arch", "dim"), [("squeezenet", 7), ("mobilenet_v2", 1280), ("resnet50", 2048)]
)
def test_forward_and_descriptor_shapes(arch, dim):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7).eval()
    assert isinstance(model, FaceNet) and model.arch == arch and model.num_classes == 7
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        logits = model(x)
        desc = model.embed(x)
        d2, l2 = model.embed_and_classify(x)
    assert logits.shape == (2, 7)
    assert desc.shape == (2, dim) == (2, model.descriptor_size)
    assert torch.equal(d2, desc) and torch.equal(l2, logits)
    heads = model.classifier_modules()
    assert heads and all(isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) for m in heads)


def test_squeezenet_variant():
    model = squeezenet(num_classes=5)
    f = model.backbone.features
    assert f[0].stride == (1, 1) and isinstance(f[1], nn.BatchNorm2d)
    assert squeezenet(num_classes=5, first_stride=2).backbone.features[0].stride == (2, 2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 1 + 8 * 3 + 1  # a BN after every conv
    head = model.backbone.classifier
    assert isinstance(head[1], nn.Conv2d) and head[1].out_channels == 5
    assert isinstance(head[2], nn.BatchNorm2d) and isinstance(head[4], nn.AdaptiveAvgPool2d)
    assert model.classifier_modules() == [head[1], head[2]]
    model.eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), model.embed(x))  # pool10 is both logits and descriptor
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_paper_parameter_counts():
    sq = count_parameters(squeezenet(num_classes=1000))
    tv = sum(p.numel() for p in torchvision.models.squeezenet1_1().parameters())
    assert tv == 1_235_496
    assert tv < sq < tv * 1.01 and round(sq / 1e6, 2) == 1.24
    mb = mobilenet_v2(num_classes=1000)
    assert round(count_parameters(mb) / 1e6, 1) == 3.5
    rn = resnet50(num_classes=1000)
    assert round(count_parameters(rn) / 1e6, 1) == 25.6
    assert round(count_parameters(rn, include_classifier=False) / 1e6, 1) == 23.5
    assert (
        count_parameters(rn) - count_parameters(rn, include_classifier=False) == 2048 * 1000 + 1000
    )


def test_count_macs_grows_with_image_size():
    model = build_model("squeezenet", num_classes=10)
    small, large = count_macs(model, image_size=32), count_macs(model, image_size=64)
    assert 0 < small < large


def test_unknown_arch_and_bad_arguments():
    with pytest.raises(ModelError, match="squeezenet.*mobilenet_v2.*resnet50"):
        build_model("vgg16", num_classes=10)
    with pytest.raises(ModelError, match="first_stride"):
        build_model("squeezenet", num_classes=10, first_stride=3)
    with pytest.raises(ModelError, match="bad keyword"):
        build_model("resnet50", num_classes=10, dropout=0.1)
    assert ARCHITECTURES == ("squeezenet", "mobilenet_v2", "resnet50")


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        build_model("squeezenet", num_classes=10, weights=tmp_path / "nope.pth")


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ModelError, match=r"squeezenet1_1-.*\.pth.*weights="):
        build_model("squeezenet", num_classes=10, weights="imagenet")


def test_local_torchvision_weights_load_and_report(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.squeezenet1_1()
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(tv.state_dict(), path)
    model = build_model("squeezenet", num_classes=10, weights=path)
    b = model.backbone
    assert torch.equal(b.features[0].weight, tv.features[0].weight)
    assert torch.equal(b.features[4].squeeze.weight, tv.features[3].squeeze.weight)
    assert torch.equal(b.features[13].expand3x3.bias, tv.features[12].expand3x3.bias)
    rep = model.weights_report
    assert len(rep["loaded"]) == 2 * 25  # every conv but the classifier: weight + bias
    assert "features.4.squeeze_bn.weight" in rep["skipped"]
    assert "classifier" in rep["skipped"]["classifier.1.weight"]
    assert rep["unused"] == []

    rn = torchvision.models.resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(rn.state_dict(), path)
    model = build_model("resnet50", num_classes=10, weights=path)
    assert torch.equal(model.backbone.layer3[2].conv2.weight, rn.layer3[2].conv2.weight)
    assert torch.equal(model.backbone.layer1[0].bn1.running_var, rn.layer1[0].bn1.running_var)
    assert set(model.weights_report["skipped"]) == {"fc.weight", "fc.bias"}

    with pytest.raises(ModelError, match="fits"):
        build_model("mobilenet_v2", num_classes=10, weights=path)


def test_package_layout_keeps_the_old_names():
    import importlib
    import sys

    import facepruning.models as models

    old_names = {"ARCHITECTURES", "FaceNet", "BNFire", "squeezenet", "mobilenet_v2", "resnet50"}
    old_names |= {"build_model", "count_parameters", "count_macs"}
    io_names = {"channel_layout", "pruned_state", "apply_pruned_state", "save_pruned"}
    io_names |= {"load_pruned", "save_model", "load_model"}  # models.io, moved from pruning
    assert set(models.__all__) == old_names | io_names
    assert all(hasattr(models, n) for n in old_names | io_names)
    for module, name in [
        ("squeezenet", "squeezenet"),
        ("mobilenet_v2", "mobilenet_v2"),
        ("resnet50", "resnet50"),
        ("facenet", "FaceNet"),
        ("build", "build_model"),
        ("counting", "count_macs"),
    ]:
        importlib.import_module(f"facepruning.models.{module}")
        assert getattr(sys.modules[f"facepruning.models.{module}"], name) is getattr(models, name)
    assert sys.modules["facepruning.models.squeezenet"].BNFire is models.BNFire
    for builder in (squeezenet, mobilenet_v2, resnet50):
        with pytest.raises(TypeError):  # keyword-only
            builder(10)
