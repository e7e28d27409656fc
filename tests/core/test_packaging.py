"""What an installed Vitrine needs besides its code is in the wheel."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_folder_read_at_run_time_is_packaged():
    """The translations were left out of the wheel once: an installed Vitrine answered in
    English only. Every folder whose files the code reads must be a package, and its files
    package data."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    included = config["packages"]["find"]["include"]
    data = config["package-data"]
    for folder, suffix in (("locales", ".po"), ("bot/gifts", ".json"), ("catalog", ".json"),
                           ("core", ".json")):
        assert any(fnmatch.fnmatch(folder.replace("/", "."), p) for p in included), folder
        patterns = data.get(folder.split("/")[0], []) + data.get("*", [])
        files = [f.relative_to(ROOT / folder.split("/")[0]).as_posix()
                 for f in (ROOT / folder).rglob(f"*{suffix}")]
        assert files, folder
        for name in files:
            assert any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(Path(name).name, p)
                       for p in patterns), name
