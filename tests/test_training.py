"""Identification training: the plateau schedule, determinism, and resume after interruption."""

import pytest
import torch
from synthetic import TinyFaces, transforms

from facepruning.artifacts import fingerprint, load_torch
from facepruning.errors import ArtifactError, ParameterError
from facepruning.models import build_model
from facepruning.parameters import TrainParameters
from facepruning.training import PlateauSchedule, train_identification


def test_plateau_schedule_steps_through_levels_then_finishes():
    schedule = PlateauSchedule([0.1, 0.01], patience=2)
    assert schedule.lr == 0.1
    assert not schedule.step(1.0)  # first value is the best so far
    assert not schedule.step(1.0)  # one bad epoch: wait
    assert schedule.step(1.5)  # second bad epoch: next level
    assert schedule.lr == 0.01 and not schedule.finished
    assert not schedule.step(0.5)  # improvement resets the count
    schedule.step(0.6)
    schedule.step(0.7)
    assert schedule.finished and schedule.lr == 0.01


def test_plateau_schedule_rejects_bad_levels():
    with pytest.raises(ParameterError):
        PlateauSchedule([], patience=1)
    with pytest.raises(ParameterError):
        PlateauSchedule([0.1], patience=0)


def _train(tmp_path, epochs, *, fail_at_batch=None, checkpoint=True, identity=None):
    torch.manual_seed(123)
    model = build_model("squeezenet", num_classes=4)
    train_tf, eval_tf = transforms()
    calls = {"n": 0}

    def transform(batch, generator):
        calls["n"] += 1
        if fail_at_batch is not None and calls["n"] == fail_at_batch:
            raise KeyboardInterrupt("simulated interruption")
        return train_tf(batch, generator)

    history = train_identification(
        model,
        train_set=TinyFaces(),
        val_set=TinyFaces(seed=1, per_class=2),
        train_transform=transform,
        eval_transform=eval_tf,
        config=TrainParameters(epochs=epochs, batch_size=8, seed=7),
        checkpoint_dir=tmp_path if checkpoint else None,
        run_identity=identity or {"config": {"epochs": epochs, "seed": 7}, "data": "tiny"},
        progress=False,
    )
    return model, history


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_is_deterministic_for_a_seed(tmp_path):
    m1, h1 = _train(tmp_path / "a", 2, checkpoint=False)
    m2, h2 = _train(tmp_path / "b", 2, checkpoint=False)
    assert [r["val_loss"] for r in h1] == [r["val_loss"] for r in h2]
    assert _same_weights(m1, m2)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    reference, ref_history = _train(tmp_path / "ref", 3)
    # 24 images / batch 8 = 3 batches per epoch: batch 5 is in the middle of epoch 1.
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", 3, fail_at_batch=5)
    assert (tmp_path / "run" / "last.pt").exists()
    resumed, history = _train(tmp_path / "run", 3)
    assert len(history) == 3
    assert [r["val_loss"] for r in history] == [r["val_loss"] for r in ref_history]
    assert _same_weights(reference, resumed)


def test_checkpoint_of_another_run_is_set_aside_with_what_changed(tmp_path, capsys):
    old = {"config": {"lr": 0.01, "seed": 7}, "data": "tiny"}
    new = {"config": {"lr": 0.02, "seed": 7}, "data": "tiny"}
    _train(tmp_path, 1, identity=old)
    before = (tmp_path / "last.pt").read_bytes()
    capsys.readouterr()
    _, history = _train(tmp_path, 1, identity=new)
    assert len(history) == 1  # trained afresh rather than treating the old run as finished
    aside = tmp_path / f"last.{fingerprint(old)}.pt"
    assert aside.read_bytes() == before  # kept, byte for byte
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1
    assert "config.lr: 0.01 -> 0.02" in message[0] and str(aside) in message[0]
    assert "seed" not in message[0]  # only what changed
    state = load_torch(tmp_path / "last.pt")
    assert state["fingerprint"] == fingerprint(new) and state["run_identity"] == new
    _, again = _train(tmp_path, 1, identity=new)  # the same run now resumes: nothing to do
    assert again == history and not capsys.readouterr().err


def test_truncated_checkpoint_names_the_file_and_the_fix(tmp_path):
    _train(tmp_path, 1)
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="truncated or corrupt") as info:
        _train(tmp_path, 1)
    assert str(ckpt) in str(info.value) and "delete it" in str(info.value)
    assert "\n" not in str(info.value)


def test_recalibrate_batchnorm_averages_the_batch_statistics():
    from torch import nn

    from facepruning.training import recalibrate_batchnorm

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    model = nn.Sequential(conv, bn)
    bn.running_mean.fill_(5.0)  # stale statistics of "the larger network"
    batches = [
        (torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8), torch.zeros(6)) for _ in range(3)
    ]
    transform = transforms(image_size=8)[1]
    with torch.no_grad():
        outs = [conv(transform(x, None)) for x, _ in batches]
    means = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    variances = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outs]).mean(0)
    weights_before = conv.weight.clone()
    used = recalibrate_batchnorm(model, batches, transform, generator=None, channels_last=False)
    assert used == 3
    torch.testing.assert_close(bn.running_mean, means, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, variances, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and torch.equal(conv.weight, weights_before)
    assert recalibrate_batchnorm(model, [], transform, generator=None) == 0
    torch.testing.assert_close(bn.running_mean, means, rtol=1e-5, atol=1e-5)  # untouched
