"""The recorder in the default fleet: on unless --no-record or [fleet.recorder] enabled = false."""

from __future__ import annotations

import pytest

from workers.config import ConfigError
from workers.launcher import make_supervisor, parse


def _names(argv):
    return set(make_supervisor(parse(argv)).workers)


def test_no_record_flag_leaves_the_recorder_out_but_still_checks_its_table(tmp_path):
    d = ["--data-dir", str(tmp_path)]
    assert "recorder" in _names(d)
    assert "recorder" not in _names([*d, "--no-record"])
    cfg = tmp_path / "fleet.toml"
    cfg.write_text("[fleet.recorder]\nmax_mbb = 64\n")
    with pytest.raises(ConfigError, match="max_mbb"):
        _names([*d, "--no-record", "--config", str(cfg)])
