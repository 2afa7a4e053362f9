import numpy as np
import torch

from tinyclf.data import (SequenceBlobs, build_label_map, class_centres, make_blobs, make_loader,
                          standardize)
from tinyclf.seeding import make_generator


def test_dataset_shapes_and_labels(dataset):
    x, y = dataset[0]
    assert x.shape == (6, 8)
    assert y.dtype == torch.int64
    assert len(dataset) == 60
    assert torch.bincount(dataset.labels).tolist() == [20, 20, 20]


def test_make_blobs_class_means_near_centres():
    x, y = make_blobs(n_per_class=50, num_classes=3, dim=4, spread=1.0)
    centres = class_centres(3, 4)
    for c in range(3):
        assert np.abs(x[y == c].mean(axis=0) - centres[c]).max() < 0.35


def test_make_blobs_seeded_is_reproducible():
    a, la = make_blobs(10, seed=3)
    b, lb = make_blobs(10, seed=3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert a.dtype == np.float32


def test_label_map_is_stable():
    names = ["cat", "dog", "dog", "cat", "dog"]
    assert build_label_map(names) == {"cat": 0, "dog": 1}


def test_label_map_covers_every_name():
    label_map = build_label_map(["a", "b", "c", "a"])
    assert sorted(label_map) == ["a", "b", "c"]
    assert sorted(label_map.values()) == [0, 1, 2]


def test_first_batch_has_every_class(dataset):
    loader = make_loader(dataset, batch_size=6, shuffle=True)
    _, y = next(iter(loader))
    assert set(y.tolist()) == {0, 1, 2}


def test_loader_with_generator_is_reproducible(dataset):
    first = [y.tolist() for _, y in make_loader(dataset, batch_size=8, generator=make_generator(5))]
    again = [y.tolist() for _, y in make_loader(dataset, batch_size=8, generator=make_generator(5))]
    assert first == again
    assert sorted(sum(first, [])) == sorted(dataset.labels.tolist())


def test_loader_drop_last_drops_partial_batch(dataset):
    loader = make_loader(dataset, batch_size=16, shuffle=False, drop_last=True)
    assert [len(y) for _, y in loader] == [16, 16, 16]


def test_standardize_gives_zero_mean_unit_std():
    x = torch.randn(500, 4, generator=make_generator(1)) * 3 + 2
    z, mean, std = standardize(x)
    assert torch.allclose(z.mean(dim=0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(z.std(dim=0), torch.ones(4), atol=1e-4)
    assert mean.shape == (1, 4) and std.shape == (1, 4)
