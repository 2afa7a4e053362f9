import torch

from tinyclf.checkpoint import load_checkpoint, save_checkpoint
from tinyclf.config import TrainConfig
from tinyclf.evaluate import predict
from tinyclf.model import build_model
from tinyclf.train import make_optimizer, make_scheduler, train_step


def test_checkpoint_roundtrip_restores_outputs(tmp_path, model, batch):
    path = save_checkpoint(tmp_path / "ckpt.pt", model, epoch=3, label_map={"a": 0})
    restored = build_model(seed=99)
    meta = load_checkpoint(path, restored)
    assert meta == {"epoch": 3, "label_map": {"a": 0}}
    x, _ = batch
    assert torch.equal(predict(model, x), predict(restored, x))


def test_checkpoint_restores_optimizer_state(tmp_path, model, batch):
    opt = make_optimizer(model, TrainConfig())
    train_step(model, batch, opt)
    path = save_checkpoint(tmp_path / "ckpt.pt", model, opt)
    fresh = build_model(seed=5)
    fresh_opt = make_optimizer(fresh, TrainConfig())
    load_checkpoint(path, fresh, fresh_opt)
    assert fresh_opt.state_dict()["state"][0]["step"] == 1


def test_resume_restores_scheduler_state(tmp_path, model, batch):
    opt = make_optimizer(model, TrainConfig(lr=1e-3))
    sched = make_scheduler(opt, warmup_steps=10)
    for _ in range(3):
        train_step(model, batch, opt)
        sched.step()
    path = save_checkpoint(tmp_path / "ckpt.pt", model, opt, sched, epoch=1)
    fresh = build_model(seed=5)
    fresh_opt = make_optimizer(fresh, TrainConfig(lr=1e-3))
    fresh_sched = make_scheduler(fresh_opt, warmup_steps=10)
    load_checkpoint(path, fresh, fresh_opt, fresh_sched)
    assert fresh_sched.last_epoch == sched.last_epoch
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
