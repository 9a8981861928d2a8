"""Data-parallel training and pruning (torch.distributed, gloo on CPU, 2 processes) against one
process on the same global batches.

Tolerances: the two-process runs differ from one process only in the order of floating-point sums
(the loss and the gradients are summed per shard and then over ranks, the BatchNorm batch
statistics are all-reduced). These tiny SqueezeNets are ill-conditioned (BatchNorm over a few 1x1
feature maps: in float32 even one process disagrees with itself in float64 by 1e-3 on the first
gradient), so the runs are compared in float64, where they agree to rounding: state dicts after a
few SGD steps within ``rtol=1e-6, atol=1e-8`` (observed ~1e-10), pruned networks after about 20
steps of scoring and fine-tuning within ``atol=1e-6`` (observed ~2e-7), Taylor scores within
``rtol=1e-6`` (observed ~1e-8); the channels removed are identical. Dropout is off (its masks are
drawn per rank, so with dropout the runs agree only in distribution).
"""

from __future__ import annotations

import itertools
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from synthetic import TinyFaces, transforms

from facepruning import distributed
from facepruning.models import build_model
from facepruning.parameters import PruneParameters, TrainParameters
from facepruning.pruning import ImportanceAccumulator, prunable_groups
from facepruning.stages.prune import FaceTraining, prune_faces
from facepruning.training import (
    epoch_batches,
    epoch_generator,
    make_loader,
    train_epoch,
    train_identification,
)

WORLD = 2
BATCH = 9  # 24 images: global batches of 9, 9, 6 -> shards of 5+4 (uneven) and 3+3
CLOSE = {"rtol": 1e-6, "atol": 1e-8}
PRUNED_CLOSE = {"rtol": 1e-4, "atol": 1e-6}  # after ~20 SGD steps of scoring and fine-tuning


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, scenario, out_dir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    here = distributed.init_from_env(backend="gloo")
    try:
        result = SCENARIOS[scenario](out_dir)
        torch.save(result, os.path.join(out_dir, f"{scenario}-rank{here.rank}.pt"))
    finally:
        distributed.shutdown()


def _spawn(scenario, out_dir):
    mp.spawn(_worker, args=(WORLD, _free_port(), scenario, str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"{scenario}-rank{r}.pt") for r in range(WORLD)]


def _model():
    torch.manual_seed(0)
    return build_model("squeezenet", num_classes=4, dropout=0.0).double()


def _transforms():
    """float64 versions of the synthetic transforms (see the module docstring)."""
    train_tf, eval_tf = transforms(16)
    return (lambda b, g=None: train_tf(b, g).double()), (lambda b, g=None: eval_tf(b, g).double())


def _train(checkpoint_dir, epochs):
    model = _model()
    train_tf, eval_tf = _transforms()
    history = train_identification(
        model,
        train_set=TinyFaces(),
        val_set=TinyFaces(seed=1, per_class=2),
        train_transform=train_tf,
        eval_transform=eval_tf,
        config=TrainParameters(epochs=epochs, batch_size=BATCH, seed=3, lr_levels=[0.01]),
        checkpoint_dir=checkpoint_dir,
        run_identity={"run": "run"},
        progress=False,
    )
    return model, history


def _scores(criterion):
    model = _model()
    train_tf, _ = _transforms()
    groups = prunable_groups(model, example_input=torch.zeros(1, 3, 16, 16, dtype=torch.float64))
    acc = ImportanceAccumulator(model, groups, importance=criterion)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = epoch_batches(TinyFaces(), batch_size=BATCH, seed=1, epoch=0)
    with acc, distributed.data_parallel(model) as net:
        train_epoch(
            net,
            itertools.islice(batches, 4),  # crosses the epoch boundary and its batch of 6
            optimizer,
            train_tf,
            generator=epoch_generator(1, 0, 1),
            before_backward=acc.set_grad_scale,
            after_backward=acc.after_backward,
        )
    distributed.all_reduce_importance(acc)
    return acc.scores(), acc.count


def _prune(checkpoint_dir=None):
    model = _model()
    train_tf, _ = _transforms()
    config = PruneParameters(
        filters_per_step=6,
        max_steps=1,
        score_batches=3,
        batch_size=BATCH,
        lr=0.01,
        finetune_epochs=0,
        final_finetune_epochs=1,
        seed=5,
        checkpoint_dir=checkpoint_dir or "",
    )
    return prune_faces(
        model,
        torch.zeros(1, 3, 16, 16, dtype=torch.float64),
        FaceTraining(TinyFaces(), train_tf, config),
        evaluate=lambda net: {},
        run_identity={"run": "prune"},
        progress=False,
    )


def _scenario_train(out_dir):
    model, history = _train(os.path.join(out_dir, "ckpt"), epochs=1)
    return {"state": model.state_dict(), "history": history}


def _scenario_prune(out_dir):
    scores = {c: _scores(c) for c in ("taylor_activation", "taylor_weight")}
    result = _prune(os.path.join(out_dir, "prune-ckpt"))
    return {
        "scores": scores,
        "state": result.model.state_dict(),
        "layers": result.layers,
        "same": distributed.check_same_across_ranks(result.model),
    }


SCENARIOS = {"train": _scenario_train, "prune": _scenario_prune}


def _assert_states_close(a, b, close=CLOSE):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(
            a[key].double(), b[key].double(), **close, msg=lambda m, k=key: f"{k}: {m}"
        )


# -- without processes -----------------------------------------------------------------------
def test_shards_of_the_global_batches_cover_them_in_order():
    data = TinyFaces()
    single = list(
        make_loader(data, batch_size=BATCH, shuffle=True, generator=epoch_generator(4, 2, 0))
    )
    ranks = [
        list(
            distributed.ShardedLoader(
                data,
                batch_size=BATCH,
                shuffle=True,
                generator=epoch_generator(4, 2, 0),
                rank=r,
                world_size=WORLD,
            )
        )
        for r in range(WORLD)
    ]
    assert [len(r) for r in ranks] == [len(single)] * WORLD
    for g, batch in enumerate(single):
        parts = [ranks[r][g] for r in range(WORLD)]
        assert torch.equal(torch.cat([p.indices for p in parts]), batch[2])
        assert torch.equal(torch.cat([p.images for p in parts]), batch[0])
        assert [p.start for p in parts] == [0, len(parts[0].indices)]
        assert {p.global_size for p in parts} == {len(batch[2])}


def test_a_global_batch_smaller_than_the_ranks_leaves_an_empty_shard():
    data = TinyFaces(n_classes=5, per_class=5)  # 25 images: the last global batch has one
    last = [
        list(distributed.ShardedLoader(data, batch_size=8, shuffle=False, rank=r, world_size=2))[-1]
        for r in range(2)
    ]
    assert [len(b.images) for b in last] == [1, 0]
    assert last[1].images.shape[1:] == data[0][0].shape and last[1].global_size == 1


def test_a_shard_gets_the_augmentation_of_its_rows_in_the_global_batch():
    train_tf, _ = transforms(16)
    images = TinyFaces().images[:7]
    whole = train_tf(images, torch.Generator().manual_seed(9))
    shard = distributed.ShardedBatch(images[4:], torch.zeros(3), torch.arange(3), 4, 7)
    assert torch.equal(shard.transform(train_tf, torch.Generator().manual_seed(9)), whole[4:])


def test_sync_batchnorm_conversion_keeps_modules_and_parameters():
    model = _model()
    before = {n: id(p) for n, p in model.named_parameters()}
    converted = distributed.convert_sync_batchnorm(model)
    assert converted > 0
    assert any(isinstance(m, distributed.CPUSyncBatchNorm2d) for m in model.modules())
    distributed.revert_sync_batchnorm(model)
    assert not any(isinstance(m, distributed.CPUSyncBatchNorm2d) for m in model.modules())
    assert {n: id(p) for n, p in model.named_parameters()} == before


# -- two processes ---------------------------------------------------------------------------
def test_two_process_training_matches_one_process_and_resumes_with_one(tmp_path):
    ranks = _spawn("train", tmp_path)
    single, single_history = _train(None, epochs=1)
    for rank in ranks:  # every rank holds the single-process network
        _assert_states_close(rank["state"], single.state_dict())
    h2, h1 = ranks[0]["history"][0], single_history[0]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert h2[key] == pytest.approx(h1[key], rel=1e-4, abs=1e-6), key

    # The 2-process checkpoint (epoch 0) resumes in 1 process to what 1 process reaches.
    resumed, resumed_history = _train(tmp_path / "ckpt", epochs=2)
    straight, straight_history = _train(None, epochs=2)
    assert len(resumed_history) == 2
    _assert_states_close(resumed.state_dict(), straight.state_dict())
    assert resumed_history[1]["val_loss"] == pytest.approx(
        straight_history[1]["val_loss"], rel=1e-4
    )


def test_distributed_scores_and_pruning_match_one_process(tmp_path):
    ranks = _spawn("prune", tmp_path)
    for criterion in ("taylor_activation", "taylor_weight"):
        single_scores, single_count = _scores(criterion)
        for rank in ranks:
            scores, count = rank["scores"][criterion]
            expected = single_count if criterion == "taylor_activation" else WORLD * single_count
            assert count == expected
            assert scores.keys() == single_scores.keys()
            for name in scores:
                torch.testing.assert_close(scores[name], single_scores[name], rtol=1e-6, atol=0)
    # Every rank removed the same filters and holds the same network ...
    assert all(rank["same"] for rank in ranks)
    assert ranks[0]["layers"] == ranks[1]["layers"]
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    # ... which is what one process removes, with (to rounding) the same weights.
    single = _prune()
    assert ranks[0]["layers"] == single.layers
    _assert_states_close(ranks[0]["state"], single.model.state_dict(), PRUNED_CLOSE)
    # Rank 0 wrote the checkpoint; it loads in one process.
    assert (tmp_path / "prune-ckpt" / "last.pt").is_file()
