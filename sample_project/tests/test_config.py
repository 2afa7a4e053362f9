from tinyclf.config import TrainConfig


def test_train_config_defaults():
    cfg = TrainConfig.from_env()
    assert cfg.epochs == 20
    assert cfg.batch_size == 16


def test_from_env_reads_learning_rate(monkeypatch):
    monkeypatch.setenv("TINYCLF_LR", "0.01")
    assert TrainConfig.from_env().lr == 0.01
