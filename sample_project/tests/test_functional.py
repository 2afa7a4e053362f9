import math

import pytest
import torch

from tinyclf.functional import (classification_loss, consistency_loss, distillation_loss, log_probs,
                                masked_mean_pool, predict_proba, soft_target_loss, topk_accuracy)
from tinyclf.seeding import make_generator


def _logits(rows=5, classes=3, seed=0):
    return torch.randn(rows, classes, generator=make_generator(seed))


def test_predict_proba_shape():
    probs = predict_proba(_logits())
    assert probs.shape == (5, 3)


def test_log_probs_are_normalised_per_row():
    lp = log_probs(_logits())
    assert torch.allclose(lp.exp().sum(dim=-1), torch.ones(5), atol=1e-6)
    assert (lp <= 0).all()


def test_masked_mean_pool_values():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    pooled = masked_mean_pool(x, mask)
    assert torch.allclose(pooled[0], x[0, :2].mean(dim=0))
    assert torch.allclose(pooled[1], x[1, 0])


def test_classification_loss_matches_manual():
    logits, targets = _logits(), torch.tensor([0, 2, 1, 1, 0])
    manual = -torch.log_softmax(logits, dim=-1)[torch.arange(5), targets]
    assert torch.allclose(classification_loss(logits, targets), manual.mean())
    assert torch.allclose(classification_loss(logits, targets, reduction="none"), manual)


def test_soft_target_loss_equals_cross_entropy_for_one_hot():
    logits, targets = _logits(), torch.tensor([0, 2, 1, 1, 0])
    one_hot = torch.nn.functional.one_hot(targets, 3).float()
    assert torch.allclose(soft_target_loss(logits, one_hot), classification_loss(logits, targets))


def test_distillation_loss_properties():
    student, teacher = _logits(seed=1), _logits(seed=2)
    assert distillation_loss(student, student.clone()).abs() < 1e-6
    loss = distillation_loss(student, teacher)
    assert loss > 0 and math.isfinite(loss.item())


def test_consistency_loss_blocks_gradient_to_target():
    pred = _logits(seed=3).requires_grad_()
    target = _logits(seed=4).requires_grad_()
    consistency_loss(pred, target).backward()
    assert pred.grad is not None
    assert target.grad is None


def test_topk_accuracy():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 3.0, 1.0]])
    targets = torch.tensor([0, 1, 0])
    assert topk_accuracy(logits, targets, k=1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, targets, k=2) == pytest.approx(2 / 3)
