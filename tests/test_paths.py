"""`make data`'s remote check: it says where it looked and what to do."""

import os
import shutil
import subprocess
import sys

import pytest

from matdiscovery.paths import DataRemoteMissingError, check_data_remote, project_root


def _clone_config(tmp_path):
    """A project skeleton in tmp_path/clone with this repository's .dvc/config and no ../shared."""
    clone = tmp_path / "clone"
    (clone / ".dvc").mkdir(parents=True)
    shutil.copy(project_root() / ".dvc" / "config", clone / ".dvc" / "config")
    (clone / "pyproject.toml").touch()
    return clone


def test_missing_remote_names_where_it_looked_and_the_fix(tmp_path):
    clone = _clone_config(tmp_path)
    with pytest.raises(DataRemoteMissingError) as info:
        check_data_remote(clone)
    message = str(info.value)
    # the committed url is relative to .dvc/: clone/.dvc/../../shared/dvc-store = tmp_path/shared/dvc-store
    assert f"looked for {tmp_path / 'shared' / 'dvc-store'} " in message
    assert "in .dvc/config, relative to .dvc/" in message
    assert "dvc remote modify --local team url" in message and "`make data`" in message


def test_remote_found_and_local_override(tmp_path):
    clone = _clone_config(tmp_path)
    (tmp_path / "shared" / "dvc-store").mkdir(parents=True)
    assert check_data_remote(clone) == str(tmp_path / "shared" / "dvc-store")
    (clone / ".dvc" / "config.local").write_text("['remote \"team\"']\n    url = /nonexistent/store\n")
    with pytest.raises(DataRemoteMissingError, match=r"looked for /nonexistent/store \(url '/nonexistent/store' in .dvc/config.local\)"):
        check_data_remote(clone)


def test_check_remote_command_exit_status(tmp_path):
    clone = _clone_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATDISCOVERY_")}
    env["PYTHONPATH"] = str(project_root() / "src")
    run = subprocess.run([sys.executable, "-m", "matdiscovery.paths", "check-remote"], cwd=clone,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("error: The DVC remote 'team' holding the raw data is missing: looked for")
