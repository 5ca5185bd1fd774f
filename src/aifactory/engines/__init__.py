"""The real engines the program and its tests run under, built from pinned Go modules (``engines/``).

    recipes  what each engine is: its module folder, packages, version stamps, companion files
    gomod    reading an engine's go.mod (its versions) with a fully matched grammar
    build    building one engine into the machine's cache, with progress, timing, one-line errors
    locate   where each engine is (a pinned `pulumi` on PATH, the cache), and the PATH to run them

The Pulumi CLI, its Python language host, the Kubernetes provider plugin, kube-apiserver,
kube-controller-manager, etcd and helm have no Linux binaries on any registry these machines
reach; all of them are Go modules, built here once per machine and reused by every checkout.
"""
