import torch

from tinyclf.evaluate import predict
from tinyclf.model import build_model

# logits of build_model(seed=0) in eval mode for the first sample of each class
GOLDEN_LOGITS = [
    [0.650174, 0.247053, 0.554637],
    [-0.127143, 0.231187, -0.077186],
    [-0.670678, -0.749193, 0.372332],
]

def test_logits_shape(model, batch):
    x, _ = batch
    assert model(x).shape == (x.shape[0], 3)


def test_build_model_seed_fixes_weights():
    a, b = build_model(seed=4), build_model(seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_gradients_reach_every_parameter(model, batch):
    x, y = batch
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_padding_mask_ignores_padded_frames(model, batch):
    x, _ = batch
    model.eval()
    padded = torch.cat([x, torch.full((x.shape[0], 3, x.shape[2]), 50.0)], dim=1)
    mask = torch.zeros(padded.shape[:2], dtype=torch.bool)
    mask[:, : x.shape[1]] = True
    with torch.no_grad():
        assert torch.allclose(model(padded, mask), model(x), atol=1e-5)


def test_predictions_repeatable(model, dataset):
    x = dataset.x[::2]
    first = model(x).argmax(dim=-1)
    second = model(x).argmax(dim=-1)
    assert torch.equal(first, second)


def test_predict_is_repeatable_in_eval_mode(model, batch):
    x, _ = batch
    assert torch.equal(predict(model, x), predict(model, x))
    assert not model.training


def test_golden_logits(model, dataset):
    x = dataset.x[[0, 20, 40]]
    logits = predict(model, x)
    assert torch.allclose(logits, torch.tensor(GOLDEN_LOGITS), atol=1e-4)
