"""Kubernetes label keys this project puts on what it creates (one place, read by all)."""

PREFIX = "aifactory.io"
SITE = f"{PREFIX}/site"
POOL = f"{PREFIX}/pool"
SKU = f"{PREFIX}/sku"
JURISDICTION = f"{PREFIX}/jurisdiction"
FABRIC = f"{PREFIX}/fabric"
RAIL_COUNT = f"{PREFIX}/rail-count"
SCALABLE_UNIT = f"{PREFIX}/scalable-unit"
TENANT = f"{PREFIX}/tenant"
CLASSIFICATION = f"{PREFIX}/data-classification"
MANAGED_BY = "app.kubernetes.io/managed-by"

# NVIDIA's reference architecture groups DGX nodes into scalable units of 32 behind one rail leaf set.
SCALABLE_UNIT_NODES = 32
