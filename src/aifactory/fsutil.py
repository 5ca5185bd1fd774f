"""Writing files a user or an auditor will read, without following what someone planted beside them."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write through a fresh temporary file in the same directory, then rename over the target.

    mkstemp opens with O_CREAT|O_EXCL under a random name, so a symlink planted at a predictable
    temporary name is never followed, and readers see the old file or the new one, never half.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
