"""Test hosts: the lab site's nodes as systemd-nspawn machines, for the lab run and the tests.

Harness code only: the product (bootstrap, verify, storage) never imports it; they take the SSH
settings this package writes as a parameter. One run lives in its own network namespace:

    run        the run's id and every name derived from it (namespace, bridge, state directory)
    netns      the namespace, and how the controller reaches into it
    relay      byte relays across the namespace's edge (SSH ProxyCommand, the package proxy)
    services   the mirrors the nodes use (package proxy, artifact mirror) and the object store
    rgw        a one-node Ceph RADOS Gateway (also the tests' real S3 server)
    rootfs     the Debian rootfs, built once with mmdebstrap and cached
    hosts      one overlay and one systemd-nspawn machine per node; the SSH settings
    lifecycle  up, down, status

Caches (rootfs, packages, artifacts) live under /var/cache/aifactory and survive `down`.
"""
