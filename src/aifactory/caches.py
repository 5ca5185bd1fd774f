"""The machine-wide cache root: what any checkout, run or CI job on this machine may reuse.

Under it: the test hosts' rootfs, the package proxy's and the artifact mirror's files
(``testhosts``) and the engines built from ``engines/`` (``aifactory.engines``). Nothing in it is
a secret or a user's record; deleting it costs only the time to fill it again.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("AIFACTORY_CACHE_DIR", "/var/cache/aifactory"))
