"""The pruning loop: global selection, resume after interruption, impossible requests."""

import pytest
import torch
import torch.nn.functional as F
from synthetic import TinyFaces, transforms

from facepruning.artifacts import fingerprint, load_torch
from facepruning.errors import ArtifactError, ParameterError, PruningError
from facepruning.models import build_model, count_parameters
from facepruning.parameters import PruneParameters
from facepruning.pruning import prunable_groups, prune_iteratively, select_channels


def test_select_channels_takes_the_global_lowest_and_keeps_one_per_group():
    scores = {
        "a": torch.tensor([0.5, 0.1, 0.9]),
        "b": torch.tensor([0.2, 0.05]),
        "c": torch.tensor([0.01]),
    }
    plan = select_channels(scores, count=3, min_channels=1)
    # c's only channel must stay; b keeps one (its best); then a's 0.1 and 0.5 are next.
    assert plan == {"b": [1], "a": [0, 1]}
    assert select_channels(scores, count=1) == {"b": [1]}


def test_select_channels_refuses_more_than_can_go():
    scores = {"a": torch.tensor([0.5, 0.1]), "b": torch.tensor([0.2])}
    with pytest.raises(PruningError, match="only 1 can go"):
        select_channels(scores, count=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters_per_step": 0}, "filters_per_step=0: give a whole count"),
        ({"filters_per_step": 2.5}, "filters_per_step=2.5: give a whole count"),
        ({"target_fraction": 1.2}, "target_fraction=1.2: the share"),
        ({"max_steps": 0}, "max_steps=0: must be at least 1"),
        ({"finetune_epochs": -1}, "finetune_epochs=-1: must be at least 0"),
        ({"bn_recalibration_batches": -2}, "bn_recalibration_batches=-2: must be at least 0"),
    ],
)
def test_bad_pruning_parameters_are_named(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        PruneParameters(**kwargs)


def _evaluate(val):
    def evaluate(model):
        with torch.no_grad():
            x = transforms()[1](val.images, None)
            loss = F.cross_entropy(model(x), val.labels).item()
        return {"val/loss": loss}

    return evaluate


def _prune(tmp_path, *, max_steps, fail_in_step=None, identity=None, **overrides):
    """The generic loop on a FaceNet with its own data, loss and optimiser, the way a user
    drives it: score on 2 mini-batches with SGD in between, recalibrate nothing, fine-tune a
    copy each step and the trunk at the end, checkpoint each step."""
    torch.manual_seed(5)
    model = build_model("squeezenet", num_classes=4)
    train_tf, _ = transforms()
    data = TinyFaces()
    calls = {"n": 0}

    def batches(key, count):
        torch.manual_seed(key)  # dropout draws from the global generator: seed it per pass
        generator = torch.Generator().manual_seed(1000 + key)
        order = torch.randperm(len(data), generator=generator)
        for i in range(count):
            calls["n"] += 1
            if fail_in_step is not None and calls["n"] == fail_in_step:
                raise KeyboardInterrupt("simulated interruption")
            idx = order[(i * 8) % len(data) :][:8]
            images = torch.stack([data[int(j)][0] for j in idx])
            labels = torch.stack([torch.as_tensor(data[int(j)][1]) for j in idx])
            yield train_tf(images, generator), labels

    def finetune(net, key, epochs=1):
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        net.train()
        for x, y in batches(10_000 + key, 3 * epochs):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()

    def recalibrate(net, step):
        net.train()
        with torch.no_grad():
            for x, _ in batches(20_000 + step, overrides.get("bn_recalibration_batches", 0)):
                net(x)

    return prune_iteratively(
        model,
        torch.zeros(1, 3, 16, 16),
        importance="taylor_activation",
        steps=max_steps,
        step_fraction=16,
        target_fraction=overrides.get("target_fraction"),
        score_batches=lambda step: batches(step, 2),
        optimizer=lambda params: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
        after_removal=recalibrate,
        finetune=finetune,
        final_finetune=lambda net: finetune(net, 99),
        evaluate=_evaluate(TinyFaces(seed=1, per_class=2)),
        checkpoint_dir=tmp_path,
        run_identity=identity or {"max_steps": max_steps, **overrides},
    )


def test_loop_removes_what_it_reports(tmp_path):
    result = _prune(tmp_path, max_steps=2)
    stages = [(r["step"], r["stage"]) for r in result.history]
    assert stages == [
        (0, "original"),
        (1, "pruned"),
        (1, "finetuned"),
        (2, "pruned"),
        (2, "finetuned"),
        (2, "final"),
    ]
    assert [r["channels_removed"] for r in result.history if r["stage"] == "pruned"] == [16, 32]
    assert result.history[-1]["params"] == count_parameters(result.model)
    assert result.history[-1]["params"] < result.history[0]["params"]
    groups = prunable_groups(result.model, example_input=torch.zeros(1, 3, 16, 16))
    assert {g.name: g.size for g in groups} == result.layers[-1]["sizes"]
    assert sum(result.layers[0]["sizes"].values()) - sum(g.size for g in groups) == 32


def test_interrupted_loop_resumes_to_the_same_result(tmp_path):
    reference = _prune(tmp_path / "ref", max_steps=3, bn_recalibration_batches=1)
    # Each step: 2 scoring + 1 recalibration + 3 fine-tuning batches; call 9 is in step 2.
    # The loop itself draws no global random numbers; the interruption is in the data.
    with pytest.raises(KeyboardInterrupt):
        _prune(tmp_path / "run", max_steps=3, fail_in_step=9, bn_recalibration_batches=1)
    resumed = _prune(tmp_path / "run", max_steps=3, bn_recalibration_batches=1)
    assert [r["val/loss"] for r in resumed.history] == [r["val/loss"] for r in reference.history]
    ref_state, state = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state)


def test_impossible_amounts_fail_before_any_work(tmp_path):
    with pytest.raises(PruningError, match="can be removed"):
        _prune(tmp_path, max_steps=1000)
    with pytest.raises(PruningError, match="impossible"):
        _prune(tmp_path, max_steps=3, target_fraction=0.9999)


def test_checkpoint_of_another_run_is_set_aside_with_what_changed(tmp_path, capsys):
    old = {"config": {"criterion": "taylor_activation", "seed": 0}, "baseline": "abc"}
    new = {"config": {"criterion": "l1_norm", "seed": 0}, "baseline": "abc"}
    _prune(tmp_path, max_steps=1, identity=old)
    before = (tmp_path / "last.pt").read_bytes()
    capsys.readouterr()
    result = _prune(tmp_path, max_steps=1, identity=new)
    assert [r["stage"] for r in result.history] == ["original", "pruned", "finetuned", "final"]
    (aside,) = tmp_path.glob("last.*.pt")
    assert aside.read_bytes() == before  # kept, byte for byte
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1
    assert 'config.criterion: "taylor_activation" -> "l1_norm"' in message[0]
    assert str(aside) in message[0] and "baseline" not in message[0]
    saved = load_torch(tmp_path / "last.pt")
    # the caller's identity, plus the loop's own settings and the starting weights' digest
    assert saved["run_identity"]["config"] == new["config"] and "loop" in saved["run_identity"]
    assert saved["fingerprint"] == fingerprint(saved["run_identity"])
    assert aside.name == f"last.{load_torch(aside)['fingerprint']}.pt"


def test_truncated_checkpoint_names_the_file_and_the_fix(tmp_path):
    _prune(tmp_path, max_steps=1)
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="truncated or corrupt") as info:
        _prune(tmp_path, max_steps=1)
    assert str(ckpt) in str(info.value) and "delete it" in str(info.value)
