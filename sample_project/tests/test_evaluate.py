from tinyclf.data import make_loader
from tinyclf.evaluate import evaluate


def test_evaluate_reports_accuracy_in_unit_interval(model, dataset):
    metrics = evaluate(model, make_loader(dataset, batch_size=16, shuffle=False))
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["loss"] > 0
