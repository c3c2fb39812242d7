"""Configuration loading: integer settings are whole numbers, refused clearly otherwise."""
from __future__ import annotations

import pytest

from appliance import config
from appliance.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("section, key, value", [
    ("camera", "fps", "12.5"),
    ("camera", "keyframe_seconds", "1.5"),
    ("camera", "bitrate_kbps", "2000.0"),      # a whole float is still a float: a Pi's encoder refuses it
    ("camera", "width", "1280.0"),
    ("node", "segment_seconds", "60.5"),
    ("central", "retention_days", "30.0"),
])
def test_a_float_in_an_integer_setting_is_refused_at_load(tmp_path, section, key, value):
    path = write(tmp_path, f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as refused:
        config.load(path)
    message = str(refused.value)
    assert f"[{section}] {key}" in message and "whole number" in message and value in message


def test_a_float_override_is_refused_too():
    with pytest.raises(ConfigError, match=r"\[camera\] fps: expected a whole number"):
        config.load(overrides={"camera": {"fps": 7.5}})


def test_numbers_that_fit_are_accepted(tmp_path):
    path = write(tmp_path, "[camera]\nfps = 12\nkeyframe_seconds = 2\nstall_seconds = 4\n"
                           "[node]\nchunk_seconds = 0.5\nfsync_seconds = 3\n")
    cfg = config.load(path)
    assert (cfg.camera.fps, cfg.camera.keyframe_seconds) == (12, 2)
    assert type(cfg.camera.fps) is int
    assert cfg.camera.stall_seconds == 4 and cfg.node.chunk_seconds == 0.5 and cfg.node.fsync_seconds == 3


def test_other_wrong_types_are_still_refused(tmp_path):
    for text in ("[camera]\nfps = \"15\"\n", "[camera]\nfps = true\n", "[camera]\nbackend = 3\n"):
        with pytest.raises(ConfigError, match=r"\[camera\]"):
            config.load(write(tmp_path, text))
