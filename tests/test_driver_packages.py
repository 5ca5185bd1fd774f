"""The NVSwitch, NVLink5 and IMEX package names the roles install, against NVIDIA's driver container.

NVIDIA's driver container (NVIDIA/gpu-driver-container ubuntu22.04/install.sh, vendored at commit
1ae29e79) installs Fabric Manager, NSCQ, NVSDM, the NVLink subnet manager and IMEX by driver
branch and CPU architecture. tests/driver_container.py evaluates that script; this compares what
it installs with the tables the roles (and verify) read, for every branch the roles could meet.
"""

from __future__ import annotations

import pytest
import yaml

from aifactory.verify.expectations import for_branch

from .conftest import ROOT
from .driver_container import FIXTURE, FUNCTIONS, installs

BRANCHES = (525, 535, 550, 560, 570, 575, 580, 590)
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}  # Debian/TARGETARCH -> ansible_architecture


def role_vars(role: str, distro: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "vars" / f"{distro}.yml").read_text())


def upstream(function: str, branch: int, arch: str) -> list[tuple[str, bool]]:
    return [(i.name, i.pinned) for i in installs(function, branch, arch)]


@pytest.mark.parametrize("branch", BRANCHES)
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_role_tables_name_what_the_driver_container_installs(branch, arch):
    ubu = role_vars("nvidia_driver", "Ubuntu")
    machine = ARCHES[arch]
    fm = for_branch(ubu["nvidia_driver_fabric_manager_packages"], branch)
    assert [(n, True) for n in fm] == upstream("fabricmanager_install", branch, arch) + upstream(
        "nscq_install", branch, arch
    )
    nvsdm = for_branch(ubu["nvidia_driver_nvsdm_packages"], branch)
    nvsdm = nvsdm if machine in ubu["nvidia_driver_nvsdm_architectures"] else []
    assert [(n, True) for n in nvsdm] == upstream("nvsdm_install", branch, arch)
    # The subnet manager and the diagnostics carry their own versions: installed, not pinned.
    nvlsm = for_branch(ubu["nvidia_driver_nvlink5_packages"], branch)
    assert [(n, False) for n in nvlsm] == upstream("nvlink5_pkgs_install", branch, arch)
    imex = for_branch(role_vars("nvidia_imex", "Ubuntu")["nvidia_imex_packages"], branch)
    assert [(n, True) for n in imex] == upstream("imex_install", branch, arch)


def test_the_reader_understands_every_line_it_is_given():
    """A line the evaluator does not know is an error, so an upstream change cannot be misread quietly."""
    text = FIXTURE.read_text()
    for function in FUNCTIONS:
        for arch in ARCHES:
            installs(function, 580, arch, text)
    changed = text.replace('  if [ "$TARGETARCH" = "amd64" ]; then', "  if uname -m | grep -q x86; then")
    with pytest.raises(ValueError, match="does not understand"):
        installs("nvsdm_install", 580, "amd64", changed)


def test_a_planted_wrong_name_is_caught():
    """The comparison fails when a role table names a package the driver container does not install."""
    ubu = role_vars("nvidia_driver", "Ubuntu")
    wrong = [
        {"from_branch": 580, "names": ["nvidia-fabricmanager-580", "libnvidia-nscq"]},
        *ubu["nvidia_driver_fabric_manager_packages"][1:],
    ]
    got = [(n, True) for n in for_branch(wrong, 580)]
    assert got != upstream("fabricmanager_install", 580, "amd64") + upstream("nscq_install", 580, "amd64")


def test_debian_names_none_of_them():
    deb = role_vars("nvidia_driver", "Debian")
    for key in (
        "nvidia_driver_fabric_manager_packages",
        "nvidia_driver_nvsdm_packages",
        "nvidia_driver_nvlink5_packages",
    ):
        assert deb[key] == []
    assert role_vars("nvidia_imex", "Debian")["nvidia_imex_packages"] == []
