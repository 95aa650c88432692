"""Configs refuse values that cannot build a working model, naming the field."""

import pytest

from ptlearn.config import BaseConfig


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(d_model=30, n_heads=4), ValueError, "n_heads=4 does not divide d_model=30"),
        (dict(n_layers=0), ValueError, "n_layers must be positive"),
        (dict(vocab_size=-5), ValueError, "vocab_size must be positive"),
        (dict(d_ff=2.5), TypeError, "d_ff must be an int"),
        (dict(dropout=1.0), ValueError, "dropout"),
        (dict(activation="swish"), ValueError, "activation"),
        (dict(norm_eps=0), ValueError, "norm_eps"),
    ],
)
def test_bad_configs_raise(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        BaseConfig(**kwargs)


def test_round_trip_and_unknown_keys():
    c = BaseConfig(d_model=32, n_heads=2)
    assert BaseConfig.from_dict(c.to_dict()) == c and c.d_head == 16
    with pytest.raises(ValueError, match="Unknown BaseConfig fields"):
        BaseConfig.from_dict({"d_modle": 3})
