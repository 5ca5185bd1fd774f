"""Parsers on real captured outputs (tests/fixtures/gpu/SOURCES.md says where each comes from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.catalog import SKUS
from aifactory.verify.parsers import ParseError, parse_all_reduce, parse_nvidia_smi_xml, parse_nvlink_status

FIX = Path(__file__).parent / "fixtures" / "gpu"


def test_all_reduce_single_node_h100():
    res = parse_all_reduce((FIX / "all_reduce_perf.h100x8.single-node.txt").read_text())
    assert res.ranks == 8
    assert len(res.rows) == 6
    assert res.largest.size == 4294967296
    assert res.largest.oop_busbw == 473.60
    assert res.largest.ip_busbw == 476.53
    assert res.peak_busbw == 476.53
    assert res.avg_busbw == 439.369
    assert res.out_of_bounds == 0
    assert res.wrong == 0
    # The catalog's H100 threshold (Azure's 460 GB/s) is met at the largest size of this capture.
    assert max(res.largest.oop_busbw, res.largest.ip_busbw) >= SKUS["dgx-h100"].allreduce_busbw.value


def test_all_reduce_two_nodes_with_srun_labels_and_no_validation():
    res = parse_all_reduce((FIX / "all_reduce_perf.h100x16.two-nodes.srun.txt").read_text())
    assert res.ranks == 16
    assert len(res.rows) == 11
    assert res.rows[0].size == 8388608
    assert res.rows[0].oop_wrong is None
    assert res.largest.oop_busbw == 155.57
    assert res.avg_busbw == 142.735
    assert res.peak_busbw < SKUS["dgx-h100"].allreduce_busbw.value


def test_all_reduce_rejects_output_without_results():
    with pytest.raises(ParseError):
        parse_all_reduce("# nThread 1 nGpus 8\n# Avg bus bandwidth    : 0\n")


def test_nvlink_status_h100():
    status = parse_nvlink_status((FIX / "nvidia-smi-nvlink-status.h100.txt").read_text())
    assert sorted(status.links) == [0, 1]
    for gpu in (0, 1):
        assert status.active(gpu) == SKUS["dgx-h100"].nvlinks_per_gpu == 18
        assert set(status.links[gpu]) == {26.562}


def test_nvlink_inactive_link_is_counted_down():
    text = (
        (FIX / "nvidia-smi-nvlink-status.h100.txt").read_text().replace("Link 5: 26.562 GB/s", "Link 5: <inactive>", 1)
    )
    assert parse_nvlink_status(text).active(0) == 17


def test_nvidia_smi_xml_real_capture():
    report = parse_nvidia_smi_xml((FIX / "nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml").read_text())
    assert report.driver_version == "575.51.02"
    assert report.cuda_version == "12.9"
    assert report.attached_gpus == 1
    (gpu,) = report.gpus
    assert gpu.product_name == "NVIDIA GeForce RTX 4070 Laptop GPU"
    assert gpu.uuid == "GPU-529b3263-c96d-b557-bc75-697f04917eda"
    assert gpu.persistence_mode == "Enabled"
    assert gpu.ecc_current is None  # N/A on a GeForce: the ECC check must fail such a GPU
    assert not gpu.ecc_enabled
    assert gpu.remap_pending == "No" and gpu.remap_failure == "No"
    assert gpu.remapped_uncorrectable == 0
    assert gpu.memory_healthy
    assert gpu.fabric_state is None


def test_nvidia_smi_xml_sees_a_pending_remap():
    text = (
        (FIX / "nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml")
        .read_text()
        .replace("<remapped_row_pending>No</remapped_row_pending>", "<remapped_row_pending>Yes</remapped_row_pending>")
    )
    assert not parse_nvidia_smi_xml(text).gpus[0].memory_healthy


def test_nvidia_smi_xml_refuses_entities_and_garbage():
    with pytest.raises(ParseError):
        parse_nvidia_smi_xml('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    with pytest.raises(ParseError):
        parse_nvidia_smi_xml("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")


def test_ib_write_bw_average_is_read_from_its_result_line():
    from aifactory.verify.parsers import parse_ib_write_bw

    # perftest's report layout (ib_write_bw --report_gbits): header, then one line per size.
    out = (
        "---------------------------------------------------------------------------------------\n"
        " #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]\n"
        " 65536      1908000          0.00               391.42               0.746574\n"
        "---------------------------------------------------------------------------------------\n"
    )
    assert parse_ib_write_bw(out) == 391.42
    import pytest

    with pytest.raises(ValueError):
        parse_ib_write_bw("Couldn't connect to localhost:18515\n")


# NCCL_VERSION_CODE as nccl.h defines it: NCCL_VERSION(X,Y,Z) is X*1000 + Y*100 + Z up to 2.8, and
# X*10000 + Y*100 + Z from 2.9 on; the 2.21.5 redistributable's nccl.h says NCCL_VERSION_CODE 22105.
@pytest.mark.parametrize(
    ("code", "version"), [(22105, "2.21.5"), (22807, "2.28.7"), (22605, "2.26.5"), (2804, "2.8.4"), (2708, "2.7.8")]
)
def test_nccl_version_codes_decode_as_nccl_h_encodes_them(code, version):
    from aifactory.verify.probe import nccl_version

    assert nccl_version(code) == version
