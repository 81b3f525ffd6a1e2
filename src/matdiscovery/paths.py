"""Where things live: the project root, raw data, metrics and reports.

The root is found by walking up from the current directory (so notebooks run from
``notebooks/`` and the pipeline run from the root agree), falling back to the source tree.
Set ``MATDISCOVERY_DATA`` to read raw data from somewhere else.

``python -m matdiscovery.paths check-remote`` (run by ``make data``) checks that the DVC remote
holding the raw data exists and says where it looked when it does not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_MARKERS = (".dvc", "pyproject.toml")


def project_root() -> Path:
    """The directory holding ``.dvc/`` and ``pyproject.toml``."""
    env = os.environ.get("MATDISCOVERY_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (start, *start.parents):
            if all((candidate / m).exists() for m in _MARKERS):
                return candidate
    raise FileNotFoundError(
        "Could not find the matdiscovery project root (a folder with .dvc/ and pyproject.toml) "
        f"above {Path.cwd()}; set MATDISCOVERY_ROOT."
    )


def data_dir() -> Path:
    """Raw data folder materialised by ``dvc pull`` (read-only)."""
    env = os.environ.get("MATDISCOVERY_DATA")
    return Path(env).resolve() if env else project_root() / "data"


def metrics_dir() -> Path:
    return project_root() / "metrics"


def reports_dir() -> Path:
    return project_root() / "reports"


def models_dir() -> Path:
    """Trained checkpoints written by pipeline stages (DVC outs, not in git)."""
    return project_root() / "models"


class DataRemoteMissingError(FileNotFoundError):
    """The DVC remote that ``make data`` pulls the raw data from is not there."""


def check_data_remote(root: Path | None = None) -> str:
    """The default DVC remote's URL (a local path resolved relative to ``.dvc/``, as DVC does).

    Raises :class:`DataRemoteMissingError` saying which config file set the URL, where it looked
    and how to fix it, when the remote is a local directory that does not exist.
    """
    from configobj import ConfigObj  # DVC's own config reader (a DVC dependency)
    from dvc.config import Config

    root = Path(root) if root is not None else project_root()
    config = Config(dvc_dir=root / ".dvc")
    name = config["core"].get("remote")
    if not name or name not in config["remote"]:
        raise DataRemoteMissingError(
            f"No default DVC remote in {root / '.dvc' / 'config'} (core.remote); `make data` cannot pull the raw data."
        )
    url = str(config["remote"][name]["url"])
    if "://" in url or Path(url).is_dir():
        return url
    origin, written = root / ".dvc" / "config", url
    for level in ("local", "repo"):  # the local file overrides the committed one
        path = Path(config.files[level])
        section = ConfigObj(str(path)).get(f'remote "{name}"', {}) if path.exists() else {}
        if "url" in section:
            origin, written = path, section["url"]
            break
    raise DataRemoteMissingError(
        f"The DVC remote {name!r} holding the raw data is missing: looked for {url} "
        f"(url {written!r} in {origin.relative_to(root) if origin.is_relative_to(root) else origin}"
        f"{'' if Path(written).is_absolute() else ', relative to .dvc/'}). Put the team's data store there (the project expects ../shared beside "
        f"the clone) or point DVC at your copy with `dvc remote modify --local {name} url /path/to/dvc-store`, "
        "then run `make data` again."
    )


def _main(argv: list[str]) -> int:
    if argv != ["check-remote"]:
        print("usage: python -m matdiscovery.paths check-remote", file=sys.stderr)
        return 2
    try:
        print(f"DVC remote: {check_data_remote()}")
    except DataRemoteMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
