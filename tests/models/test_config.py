"""TrainConfig: typed, and unknown keys are errors."""

import pytest

from models.config import ConfigError, TrainConfig


def test_defaults():
    config = TrainConfig.from_json(None)
    assert config == TrainConfig()
    assert config.to_dict()["history_len"] == 50 and config.max_steps_per_epoch is None


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize(
    "values",
    [{"epochs": "3"}, {"epochs": 2.5}, {"epochs": True}, {"lr": "fast"}, {"max_steps_per_epoch": 1.5}, {"model": 1}],
)
def test_wrong_types_are_rejected(values):
    with pytest.raises(ConfigError, match=f"'{next(iter(values))}' expects"):
        TrainConfig.from_dict(values)


@pytest.mark.parametrize("values", [{"epochs": 0}, {"lr": 0}, {"model": "gpt"}, {"max_steps_per_epoch": 0}])
def test_invalid_values_are_rejected(values):
    with pytest.raises(ConfigError):
        TrainConfig.from_dict(values)


def test_json_numbers_and_null():
    config = TrainConfig.from_json('{"lr": 1, "max_steps_per_epoch": null, "weight_decay": 0}')
    assert isinstance(config.lr, float) and config.lr == 1.0
    assert config.max_steps_per_epoch is None


def test_invalid_json():
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_json("{epochs: 3}")
    with pytest.raises(ConfigError, match="JSON object"):
        TrainConfig.from_json("[1, 2]")
