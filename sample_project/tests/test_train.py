import os

import torch

from tinyclf.config import TrainConfig
from tinyclf.data import make_loader
from tinyclf.evaluate import predict
from tinyclf.model import build_model
from tinyclf.seeding import make_generator, seed_everything
from tinyclf.train import fit, make_optimizer, make_scheduler, train_one_epoch, train_step


def test_one_batch_overfit(model, batch):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = [train_step(model, batch, optimizer) for _ in range(60)]
    assert losses[-1] < 0.1 * losses[0]


def test_train_step_matches_manual_sgd(batch):
    x, y = batch
    model = build_model(dropout=0.0, seed=1)
    reference = build_model(dropout=0.0, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        train_step(model, batch, opt)
        reference.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.1 * p.grad
    for p, r in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, r, atol=1e-5)


def test_scheduler_warms_up_linearly(model):
    opt = make_optimizer(model, TrainConfig(lr=1e-3))
    sched = make_scheduler(opt, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]


def test_fit_reduces_loss_and_learns(dataset):
    model = build_model(seed=2)
    history = fit(model, dataset, TrainConfig(epochs=8, batch_size=12))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    preds = predict(model, dataset.x).argmax(dim=-1)
    assert (preds == dataset.labels).float().mean() > 0.9


def test_seeded_training_is_reproducible(dataset):
    def run():
        seed_everything(0)
        model = build_model()
        loader = make_loader(dataset, batch_size=12, generator=make_generator(0))
        opt = make_optimizer(model, TrainConfig())
        train_one_epoch(model, loader, opt)
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)


def test_fit_respects_env_epochs(dataset):
    os.environ["TINYCLF_EPOCHS"] = "2"  # keep this smoke test quick
    history = fit(build_model(seed=3), dataset)
    assert len(history["loss"]) == 2
