"""The training loop: the schedule, the budget, determinism, evaluation, checkpoints, and
several processes (torchrun on gloo) taking the same steps as one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course.data import ShapesDataset
from course.model import MaskRCNN, MaskRCNNConfig
from course.train import TrainConfig, evaluate, lr_factor, save_checkpoint, train

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ddp_worker import TINY  # noqa: E402


def tiny(seed=0):
    torch.manual_seed(seed)
    return MaskRCNN(MaskRCNNConfig(**TINY))


def test_lr_warms_up_then_decays_to_the_final_fraction():
    c = TrainConfig(steps=100, warmup_steps=10, final_lr=0.1)
    warm = [lr_factor(s, s / 100, c) for s in range(10)]
    assert all(a < b for a, b in zip(warm, warm[1:]))
    decay = [lr_factor(s, s / 100, c) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert decay[-1] == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs", [{}, {"steps": 3, "minutes": 1.0}, {"steps": 0},
                                    {"minutes": -1.0}, {"steps": 2, "batch_size": 0}])
def test_bad_budgets_are_refused(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("length", [0, 1])
def test_too_few_images_for_one_batch_is_an_error_not_an_endless_wait(length):
    with pytest.raises(ValueError, match=f"has {length} images, too few for one batch of 2"):
        train(tiny(), ShapesDataset("train", length=length, image_size=64),
              TrainConfig(steps=1, batch_size=2), progress=False)


def test_training_is_seeded_and_records_history_and_evaluations():
    data = ShapesDataset("train", image_size=64)
    calls = []

    def evaluate_fn(model):
        calls.append(model.training)
        return {"AP": 0.5}

    config = TrainConfig(steps=4, batch_size=2, eval_every=2)
    first = train(tiny(), data, config, evaluate_fn=evaluate_fn, progress=False)
    second = train(tiny(), data, config, progress=False)
    assert len(first.steps) == 4 and first.losses() == second.losses()
    assert [e["step"] for e in first.evaluations] == [2, 4] and calls == [False, False]
    assert all(torch.isfinite(torch.tensor(first.losses())))
    assert first.steps[0]["lr"] < first.steps[1]["lr"]


def test_a_minute_budget_stops(monkeypatch):
    history = train(tiny(), ShapesDataset("train", image_size=64),
                    TrainConfig(minutes=0.02, batch_size=2), progress=False)
    assert 1 <= len(history.steps) and history.steps[-1]["seconds"] >= 0.02 * 60


def test_evaluate_and_checkpoint(tmp_path):
    model = tiny()
    history = train(model, ShapesDataset("train", image_size=64), TrainConfig(steps=2,
                    batch_size=2), progress=False)
    result = evaluate(model, ShapesDataset("val", length=4, image_size=64))
    assert result.stats.shape == (12,)
    save_checkpoint(tmp_path / "m.pt", model, TrainConfig(steps=2), history)
    loaded = MaskRCNN.load(tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["train_config"]["steps"] == 2 and len(state["history"]["steps"]) == 2
    assert loaded.config == model.config


def test_two_processes_on_gloo_match_one_process(tmp_path):
    """Global batch 4: one process with 4 images per step, then torchrun with 2 x 2."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = str(HERE / "ddp_worker.py")
    subprocess.run([sys.executable, worker, str(one), "3", "4"], check=True, env=env,
                   timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", worker, str(two), "3", "4"], check=True, env=env,
                   timeout=300, capture_output=True)
    single = torch.load(one / "rank0.pt")
    rank0, rank1 = torch.load(two / "rank0.pt"), torch.load(two / "rank1.pt")
    for name, value in rank0["model"].items():
        assert torch.equal(value, rank1["model"][name]), f"replicas differ in {name}"
        torch.testing.assert_close(value, single["model"][name], rtol=1e-4, atol=1e-5,
                                   msg=f"2 processes differ from 1 in {name}")
    # each process's loss is the mean over its own half of the batch
    mean = [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])]
    assert mean == pytest.approx(single["losses"], rel=1e-4)
