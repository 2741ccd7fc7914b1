"""``train.run`` helpers: the .data file's save periods."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from darknet_torch.errors import CfgError
from darknet_torch.train.run import _data_int


def _data(**extra: str) -> SimpleNamespace:
    return SimpleNamespace(path=Path("t.data"), config=SimpleNamespace(extra=extra))


def test_save_periods_default_and_value():
    assert _data_int(_data(), "savelast", 100) == 100
    assert _data_int(_data(savelast="7"), "savelast", 100) == 7


@pytest.mark.parametrize("text", ["0", "-5", "1_0", "\u00b2", "\u0663", "1.5"])
def test_save_period_that_is_not_a_plain_positive_integer_is_a_cfg_error(text):
    """'²'.isdigit() is True but int('²') raises: it used to escape as a ValueError traceback."""
    with pytest.raises(CfgError, match=r"t.data: savelast=.* must be a positive number of iterations"):
        _data_int(_data(savelast=text), "savelast", 100)
