import torch

from tinyclf.evaluate import predict
from tinyclf.serving import pad_sequences, predict_batch
from tinyclf.seeding import make_generator


def _sequences():
    gen = make_generator(11)
    return [torch.randn(n, 8, generator=gen) for n in (6, 5, 6)]


def test_pad_sequences_mask_marks_valid_frames():
    batch, mask = pad_sequences(_sequences())
    assert batch.shape == (3, 6, 8)
    assert mask.sum(dim=1).tolist() == [6, 5, 6]


def test_predict_batch_matches_one_by_one(model):
    seqs = _sequences()
    batched = predict_batch(model, seqs)
    single = torch.cat([predict(model, s.unsqueeze(0)) for s in seqs])
    assert torch.allclose(batched, single, atol=1e-5)
