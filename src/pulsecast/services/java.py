"""Java and the JVM artifacts that jvm/pom.xml declares.

Each Maven profile of the pom is one runtime classpath (``kafka``, ``spark``,
``hadoop``). They are resolved once from Maven Central into a per-user cache
keyed by the pom's content, so every checkout and every test run reuses them,
and a changed pom resolves again. ``pulsecast setup`` resolves them all;
launchers resolve what they need on first use.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from pulsecast.config import Settings
from pulsecast.services.errors import ArtifactsError, JavaNotFoundError

__all__ = ["PROFILES", "artifacts_dir", "classpath", "find_java", "java_version", "resolve"]

log = logging.getLogger(__name__)

#: Classpaths declared as profiles in jvm/pom.xml.
PROFILES = ("kafka", "spark", "hadoop")
MIN_JAVA = 17
_INSTALL_HINT = "install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"


def find_java(settings: Settings) -> Path:
    """The java executable to run servers with.

    Uses ``jvm.java_home`` (or ``JAVA_HOME``, folded into it by load_settings),
    else ``java`` on PATH, and checks its version.

    Raises:
        JavaNotFoundError: None found, or older than Java 17.
    """
    home = settings.jvm.java_home
    if home is not None:
        java = home / "bin" / "java"
        if not java.is_file():
            msg = f"Java not found at {java} (jvm.java_home / JAVA_HOME): {_INSTALL_HINT}"
            raise JavaNotFoundError(msg)
    else:
        found = shutil.which("java")
        if found is None:
            msg = f"Java not found on PATH: {_INSTALL_HINT}, or set JAVA_HOME"
            raise JavaNotFoundError(msg)
        java = Path(found)
    major = int(java_version(java).split(".")[0])
    if major < MIN_JAVA:
        msg = f"Java {major} at {java} is too old: {_INSTALL_HINT}"
        raise JavaNotFoundError(msg)
    return java


@functools.cache
def java_version(java: Path) -> str:
    """The version string ``java -version`` reports (``17.0.15``)."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=True
        ).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        msg = f"cannot run {java} -version: {exc}"
        raise JavaNotFoundError(msg) from exc
    match = re.search(r'version "([^"]+)"', out)
    if match is None:
        msg = f"cannot read the version of {java}: {out.strip()[:200]!r}"
        raise JavaNotFoundError(msg)
    version = match.group(1)
    return version.removeprefix("1.") if version.startswith("1.") else version


def pom_path(settings: Settings) -> Path:
    """The pom.xml to resolve: configured, the checkout's, or the packaged copy."""
    if settings.jvm.pom is not None:
        return settings.jvm.pom
    checkout = Path(__file__).resolve().parents[3] / "jvm" / "pom.xml"
    if checkout.is_file():
        return checkout
    return Path(str(resources.files("pulsecast.services").joinpath("jvm/pom.xml")))


def artifacts_dir(settings: Settings, profile: str) -> Path:
    """Where the jars of ``profile`` live (resolved or not)."""
    pom = pom_path(settings)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    base = settings.jvm.lib_dir or Path("~/.cache/pulsecast/jvm").expanduser()
    return base / f"{profile}-{digest}"


def resolve(settings: Settings, profile: str, *, force: bool = False) -> Path:
    """Resolve one profile's jars with Maven; a no-op when already resolved.

    Returns:
        The folder holding the jars.

    Raises:
        ArtifactsError: Maven is missing or the resolution failed.
    """
    if profile not in PROFILES:
        msg = f"unknown JVM profile {profile!r}; known: {', '.join(PROFILES)}"
        raise ArtifactsError(msg)
    target = artifacts_dir(settings, profile)
    if (target / ".complete").exists() and not force:
        return target
    mvn = shutil.which(settings.jvm.maven)
    if mvn is None:
        msg = (
            f"Maven ({settings.jvm.maven}) not found; it resolves the JVM artifacts: "
            "install it (Debian: apt-get install maven) or set jvm.maven"
        )
        raise ArtifactsError(msg)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log.info("resolving JVM artifacts for %s into %s", profile, target)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom_path(settings)),
        "-P",
        profile,
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        msg = f"Maven could not resolve the {profile} artifacts: {tail[:400]}"
        raise ArtifactsError(msg)
    if not any(staging.glob("*.jar")):
        msg = f"Maven resolved no jars for profile {profile}"
        raise ArtifactsError(msg)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    (target / ".complete").touch()
    return target


def classpath(settings: Settings, profile: str) -> str:
    """A JVM classpath with every jar of ``profile``, resolving it first if needed."""
    return str(resolve(settings, profile) / "*")
