"""The engines' pins and their build: versions that match the SDKs, a cache keyed by the pins, one-line errors.

The failures are real: the real `go` against a module proxy on loopback that refuses (403), or
none listening, with an empty module cache; a `go` missing from PATH; a wrapper that does not
compile. The builds that succeed are the ones `make` runs before the suite (engines build).
"""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pulumi_kubernetes
import pytest

from aifactory import catalog
from aifactory.engines import build, gomod, locate
from aifactory.errors import ConfigError

from .conftest import ROOT

GO = shutil.which("go")
needs_go = pytest.mark.skipif(GO is None, reason="no `go` on PATH: the engines cannot be built on this machine")


def pins() -> dict[str, build.Pinned]:
    return locate.root_engines(ROOT)


def test_the_sdks_are_the_versions_of_the_engines_built():
    p = pins()
    assert importlib.metadata.version("pulumi") == p["pulumi"].version.removeprefix("v")
    plugin = json.loads((Path(pulumi_kubernetes.__file__).parent / "pulumi-plugin.json").read_text())
    assert plugin == {"resource": True, "name": "kubernetes", "version": p["pulumi-kubernetes"].version[1:]}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"pulumi=={p['pulumi'].version[1:]}" in deps
    assert f"pulumi-kubernetes=={p['pulumi-kubernetes'].version[1:]}" in deps


def test_the_cli_and_the_sdk_come_from_the_same_pulumi_release_and_kubernetes_is_one_the_schemas_cover():
    p = pins()
    cli = p["pulumi"].gomod
    assert cli.version_of("github.com/pulumi/pulumi/pkg/v3") == cli.version_of("github.com/pulumi/pulumi/sdk/v3")
    kube = p["kube"].gomod
    major_minor = kube.version_of("k8s.io/kubernetes").removeprefix("v").rsplit(".", 1)[0]
    assert f"{major_minor}.0" in catalog.KUBERNETES_VERSIONS
    # Every staging module is replaced by the published one of the same release (kubernetes#79384).
    staging = {m: v for m, (_, v) in kube.replaces.items()}
    assert staging and set(staging.values()) == {f"v0.{major_minor.split('.')[1]}.4"}


def test_a_second_checkout_finds_the_same_cache_entry_and_a_changed_pin_another(tmp_path):
    shutil.copytree(ROOT / "engines", tmp_path / "engines")
    again = locate.root_engines(tmp_path)
    assert {n: p.key for n, p in again.items()} == {n: p.key for n, p in pins().items()}
    assert again["etcd"].dir == pins()["etcd"].dir
    gosum = tmp_path / "engines" / "etcd" / "go.sum"
    gosum.write_text(gosum.read_text() + "example.com/x v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    assert locate.root_engines(tmp_path)["etcd"].key != pins()["etcd"].key


def test_a_project_without_engines_uses_those_of_the_aifactory_running_it(tmp_path):
    # Scratch projects (the rollout test's, the benchmarks') hold stacks only.
    (tmp_path / "stacks").mkdir()
    assert locate.source_root(tmp_path) == ROOT
    assert locate.root_engines(tmp_path)["kube"].key == pins()["kube"].key


def test_every_engine_is_built_on_this_machine_and_reports_its_pinned_version():
    # `make test` and `make lab` build them first (`aifactory engines build`).
    for name, p in pins().items():
        manifest = p.built()
        assert manifest is not None, f"{name} is not built: run `aifactory engines build`"
        assert manifest["version"] == p.version
        for f in p.engine.files:
            assert os.access(p.bin / f, os.X_OK), f
        if p.engine.version_args:
            exe = p.bin / p.engine.outputs[0].file
            said = subprocess.run([str(exe), *p.engine.version_args], capture_output=True, text=True, check=True)
            assert p.version.removeprefix("v") in said.stdout + said.stderr, name


def test_the_provider_serves_the_schema_it_embeds_at_the_sdk_version(tmp_path):
    # The embed files are written at build time from the module's committed schema.json, version set.
    p = pins()["pulumi-kubernetes"]
    assert not (p.source / "schema-embed.json").exists()  # never written into the checkout
    engines = locate.ensure(ROOT, ["pulumi", "pulumi-kubernetes"], build_missing=False)
    proc = subprocess.run(
        [
            engines.exe("pulumi"),
            "package",
            "get-schema",
            engines.exe("pulumi-kubernetes", "pulumi-resource-kubernetes"),
        ],
        capture_output=True,
        text=True,
        env={**engines.env(), "PULUMI_HOME": str(tmp_path), "PULUMI_SKIP_UPDATE_CHECK": "true"},
        timeout=300,
        check=True,
    )
    schema = json.loads(proc.stdout)
    assert (schema["name"], schema["version"]) == ("kubernetes", p.version[1:])
    assert "kubernetes:metal3.io/v1alpha1:BareMetalHost" not in schema["resources"]  # CRs are not in it
    assert "kubernetes:core/v1:Namespace" in schema["resources"]


def test_go_mod_lines_outside_the_grammar_are_refused_by_line(tmp_path):
    mod = tmp_path / "go.mod"
    mod.write_text("module example.com/x\n\ngo 1.26\n\nrequire example.com/y v1.0.0\nexclude example.com/z v1.0.0\n")
    with pytest.raises(ConfigError) as exc:
        gomod.parse(mod)
    assert "line 6" in str(exc.value)
    mod.write_text("module example.com/x\ngo 1.26\nrequire (\n\texample.com/y v1.2.3 // indirect\n)\n")
    assert gomod.parse(mod).requires == {"example.com/y": "v1.2.3"}


# -- one line for each way a build cannot happen ------------------------------------------------------


def _build(
    tmp_path: Path, env: dict[str, str], name: str = "etcd", root: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**env, "AIFACTORY_CACHE_DIR": str(tmp_path / "cache")}  # an empty cache: nothing built here
    return subprocess.run(
        [sys.executable, "-m", "aifactory.cli", "--root", str(root), "engines", "build", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_no_go_on_path_is_one_line_saying_how_to_install_it(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    line = _one_line(_build(tmp_path, env))
    assert "Go is not installed" in line and "https://go.dev/dl/" in line


@needs_go
def test_a_go_older_than_the_go_mod_wants_is_one_line(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "go").write_text("#!/bin/sh\necho go1.21.0\n")
    (fake / "go").chmod(0o755)
    line = _one_line(_build(tmp_path, {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}))
    assert "is Go 1.21.0, the engines' go.mod needs 1.26" in line


class _Refusing(http.server.BaseHTTPRequestHandler):
    def log_message(self, *_a: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"This module version is not available\n"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _go_env(tmp_path: Path, proxy: str) -> dict[str, str]:
    return {
        **os.environ,
        "GOPROXY": proxy,
        "GOMODCACHE": str(tmp_path / "modcache"),  # empty: every module must come from the proxy
        "GOCACHE": str(tmp_path / "gocache"),
        "GONOSUMDB": "*",
        "GOSUMDB": "off",
    }


@needs_go
def test_a_proxy_that_refuses_a_module_is_one_line_naming_it(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        line = _one_line(_build(tmp_path, _go_env(tmp_path, f"http://127.0.0.1:{server.server_port}")))
    finally:
        server.shutdown()
    assert "does not serve" in line and "go.etcd.io/etcd/server/v3@v3.6.16" in line and "GOPROXY" in line


@needs_go
def test_a_proxy_out_of_reach_is_one_line(tmp_path):
    line = _one_line(_build(tmp_path, _go_env(tmp_path, "http://127.0.0.1:9")))
    assert "cannot be reached" in line and "GOPROXY" in line


@needs_go
def test_a_wrapper_that_does_not_compile_is_one_line_with_its_log(tmp_path):
    # A project of its own (the CLI takes only a project with stacks as --root), whose engines/ is broken.
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "stacks" / "Pulumi.lab.yaml", tmp_path / "stacks" / "Pulumi.lab.yaml")
    (tmp_path / "engines").mkdir()
    shutil.copytree(ROOT / "engines" / "etcd", tmp_path / "engines" / "etcd")
    main = tmp_path / "engines" / "etcd" / "main.go"
    main.write_text(main.read_text().replace("etcdmain.Main(os.Args)", "etcdmain.Mian(os.Args)"))
    line = _one_line(_build(tmp_path, dict(os.environ), root=tmp_path))
    assert "Mian" in line and "full log:" in line


def test_a_pulumi_of_the_pinned_version_on_path_is_used_and_another_is_not(tmp_path, monkeypatch):
    version = pins()["pulumi"].version
    for said, used in ((version, True), ("v3.100.0", False)):
        fake = tmp_path / said
        fake.mkdir()
        (fake / "pulumi").write_text(f"#!/bin/sh\necho {said}\n")
        (fake / "pulumi").chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
        assert (locate.pulumi_on_path(version) == fake.resolve()) is used
        if used:
            engines = locate.ensure(ROOT, ["pulumi"], build_missing=False)
            assert engines.bin("pulumi") == fake.resolve()
