from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aifactory.cli import main as cli_main
from aifactory.plan import Plan, run_plan
from aifactory.stackfile import list_stacks, load_stack

ROOT = Path(__file__).resolve().parents[1]
SITES = list_stacks(ROOT)
COUNTRY_SITES = [s for s in SITES if s != "lab"]

_plans: dict[str, Plan] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The test-host tests first: the longest file starts at once on its own worker (make test: -n 2)."""
    items.sort(key=lambda item: item.get_closest_marker("testhosts") is None)


def plan_of(site: str) -> Plan:
    if site not in _plans:
        _plans[site] = run_plan(load_stack(ROOT, site))
    return _plans[site]


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the project's stacks that a test may break."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    def run(*args: str, root: Path = ROOT) -> tuple[int, str, str]:
        code = cli_main(["--root", str(root), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def lab(workdir: Path) -> Path:
    """A scratch project that can run the roles: the stacks copied, the inventories copied, the code linked."""
    for name in ("roles", "playbooks", "templates"):
        (workdir / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "ansible.cfg", workdir / "ansible.cfg")
    shutil.copytree(ROOT / "inventories", workdir / "inventories")
    return workdir


@pytest.fixture(scope="session")
def engines():
    """The pinned engines (`make test` builds them first; a bare `pytest` builds what is missing, with progress)."""
    import sys

    from aifactory.engines import locate

    return locate.ensure(ROOT, say=lambda m: print(m, file=sys.stderr, flush=True))


@pytest.fixture(scope="session")
def control_plane(engines, tmp_path_factory):
    """A real control plane on loopback (etcd, kube-apiserver, kube-controller-manager), one context per site."""
    from aifactory.testhosts import kube

    directory = tmp_path_factory.mktemp("kube")
    contexts = [load_stack(ROOT, s).site.kubernetes.context for s in SITES]
    cp = kube.start(directory, engines, contexts=contexts, audit=True)
    try:
        yield cp
    finally:
        kube.stop(directory)
