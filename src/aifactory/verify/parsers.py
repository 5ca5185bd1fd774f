"""Parsers for what GPU nodes print: `nvidia-smi -q -x`, `nvidia-smi nvlink --status`, `all_reduce_perf`.

XML rather than scraped text wherever nvidia-smi offers it: its text layout changes between
driver branches, its XML schema (nvsmi_device_v*.dtd) only grows.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

NOT_AVAILABLE = {"N/A", "[N/A]", "Not Supported", "[Not Supported]", "Unknown Error", ""}


class ParseError(ValueError):
    pass


def _text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in NOT_AVAILABLE else value


@dataclass(frozen=True)
class Gpu:
    index: int
    product_name: str
    uuid: str
    pci_bus_id: str
    persistence_mode: str | None
    ecc_current: str | None
    retired_pending: str | None
    remap_pending: str | None
    remap_failure: str | None
    remapped_uncorrectable: int | None
    fabric_state: str | None
    fabric_status: str | None
    # The NVLink fabric's cluster UUID and clique of the GPU (None where not on a multi-node fabric).
    cluster_uuid: str | None = None
    clique_id: str | None = None

    @property
    def clique(self) -> str | None:
        """``<ClusterUUID>.<CliqueID>``: what GPU feature discovery labels nvidia.com/gpu.clique, and what
        the DRA driver compares (dra-driver-nvidia-gpu cmd/compute-domain-kubelet-plugin/nvlib.go)."""
        if not self.cluster_uuid or not self.clique_id:
            return None
        return f"{self.cluster_uuid}.{self.clique_id}"

    @property
    def ecc_enabled(self) -> bool:
        return self.ecc_current == "Enabled"

    @property
    def memory_healthy(self) -> bool:
        """No pending page retirement, no pending or failed row remap (N/A counts as healthy)."""
        return self.retired_pending != "Yes" and self.remap_pending != "Yes" and self.remap_failure != "Yes"


@dataclass(frozen=True)
class SmiReport:
    driver_version: str
    cuda_version: str | None
    attached_gpus: int
    gpus: list[Gpu]


def parse_nvidia_smi_xml(text: str) -> SmiReport:
    if "<!ENTITY" in text:
        raise ParseError("refusing XML with entity declarations")
    # nvidia-smi prints a DOCTYPE naming a DTD file it does not ship; drop it before parsing.
    body = re.sub(r"<!DOCTYPE[^>]*>", "", text, count=1)
    try:
        root = ET.fromstring(body)  # noqa: S314 - see the import
    except ET.ParseError as exc:
        raise ParseError(f"not nvidia-smi XML: {exc}") from None
    if root.tag != "nvidia_smi_log":
        raise ParseError(f"not nvidia-smi XML: root element is <{root.tag}>")
    driver = _text(root, "driver_version")
    if driver is None:
        raise ParseError("nvidia-smi XML without a driver version")
    gpus = []
    for i, g in enumerate(root.findall("gpu")):
        unc = _text(g, "remapped_rows/remapped_row_unc")
        gpus.append(
            Gpu(
                index=int(_text(g, "minor_number") or i),
                product_name=_text(g, "product_name") or "",
                uuid=_text(g, "uuid") or "",
                pci_bus_id=g.get("id", ""),
                persistence_mode=_text(g, "persistence_mode"),
                ecc_current=_text(g, "ecc_mode/current_ecc"),
                retired_pending=_text(g, "retired_pages/pending_retirement"),
                remap_pending=_text(g, "remapped_rows/remapped_row_pending"),
                remap_failure=_text(g, "remapped_rows/remapped_row_failure"),
                remapped_uncorrectable=int(unc) if unc and unc.isdigit() else None,
                fabric_state=_text(g, "fabric/state"),
                fabric_status=_text(g, "fabric/status"),
                cluster_uuid=_text(g, "fabric/clusterUuid"),
                clique_id=_text(g, "fabric/cliqueId"),
            )
        )
    attached = _text(root, "attached_gpus")
    return SmiReport(driver, _text(root, "cuda_version"), int(attached) if attached else len(gpus), gpus)


@dataclass(frozen=True)
class NvlinkStatus:
    """Per GPU index: the speed of each link in GB/s, None for an inactive link."""

    links: dict[int, list[float | None]] = field(default_factory=dict)

    def active(self, gpu: int) -> int:
        return sum(1 for s in self.links.get(gpu, []) if s)


_NVLINK_GPU = re.compile(r"^GPU (\d+): ")
_NVLINK_LINK = re.compile(r"^\s+Link (\d+): (.+)$")


def parse_nvlink_status(text: str) -> NvlinkStatus:
    links: dict[int, list[float | None]] = {}
    current: int | None = None
    for line in text.splitlines():
        if m := _NVLINK_GPU.match(line):
            current = int(m.group(1))
            links[current] = []
        elif (m := _NVLINK_LINK.match(line)) and current is not None:
            speed = re.match(r"([\d.]+) GB/s", m.group(2).strip())
            links[current].append(float(speed.group(1)) if speed else None)
    if not links:
        raise ParseError("no GPU lines in `nvidia-smi nvlink --status` output")
    return NvlinkStatus(links)


@dataclass(frozen=True)
class AllReduceRow:
    size: int
    count: int
    dtype: str
    redop: str
    oop_time_us: float
    oop_algbw: float
    oop_busbw: float
    oop_wrong: int | None
    ip_time_us: float
    ip_algbw: float
    ip_busbw: float
    ip_wrong: int | None


@dataclass(frozen=True)
class AllReduceResult:
    ranks: int
    rows: list[AllReduceRow]
    avg_busbw: float | None
    out_of_bounds: int | None

    @property
    def largest(self) -> AllReduceRow:
        return max(self.rows, key=lambda r: r.size)

    @property
    def peak_busbw(self) -> float:
        return max(max(r.oop_busbw, r.ip_busbw) for r in self.rows)

    @property
    def wrong(self) -> int:
        return sum((r.oop_wrong or 0) + (r.ip_wrong or 0) for r in self.rows)


_PREFIX = re.compile(r"^\s*\d+:\s?")  # srun --label / mpirun --tag-output prefixes
_RANK = re.compile(r"^#\s+Rank\s+\d+ ")


def _wrong(field_: str) -> int | None:
    return None if field_ == "N/A" else int(field_)


def parse_all_reduce(text: str) -> AllReduceResult:
    rows: list[AllReduceRow] = []
    ranks = 0
    avg: float | None = None
    oob: int | None = None
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw, count=1).strip()
        if not line:
            continue
        if _RANK.match(line):
            ranks += 1
        elif line.startswith("# Avg bus bandwidth"):
            avg = float(line.split(":")[1])
        elif line.startswith("# Out of bounds values"):
            oob = int(line.split(":")[1].split()[0])
        elif not line.startswith("#"):
            parts = line.split()
            # size count type redop root time algbw busbw wrong time algbw busbw wrong (root since 2.10)
            if len(parts) == 13 and parts[0].isdigit():
                parts = parts[:4] + parts[5:]
            if len(parts) != 12 or not parts[0].isdigit():
                continue
            rows.append(
                AllReduceRow(
                    size=int(parts[0]),
                    count=int(parts[1]),
                    dtype=parts[2],
                    redop=parts[3],
                    oop_time_us=float(parts[4]),
                    oop_algbw=float(parts[5]),
                    oop_busbw=float(parts[6]),
                    oop_wrong=_wrong(parts[7]),
                    ip_time_us=float(parts[8]),
                    ip_algbw=float(parts[9]),
                    ip_busbw=float(parts[10]),
                    ip_wrong=_wrong(parts[11]),
                )
            )
    if not rows:
        raise ParseError("no result rows in all_reduce_perf output")
    return AllReduceResult(ranks, rows, avg, oob)


def parse_ib_write_bw(text: str) -> float:
    """Average bandwidth (Gb/s with --report_gbits) of perftest's result line.

    The line follows the header "#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]".
    """
    header = False
    for line in text.splitlines():
        if "BW average" in line:
            header = True
            continue
        fields = line.split()
        if header and len(fields) >= 4 and fields[0].isdigit():
            return float(fields[3])
    raise ValueError("no ib_write_bw result line")
