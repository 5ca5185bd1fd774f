"""The house rules of issue 11 that need no test host: run names, one --limit, verify's expectations file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aifactory.stackfile import load_stack
from aifactory.testhosts.run import Run, run_id_for
from aifactory.verify import runner
from aifactory.verify.expectations import NodeExpectations, expectations

from .conftest import ROOT, SITES

SRC = ROOT / "src" / "aifactory"


def test_every_run_name_comes_from_its_id_and_two_checkouts_never_share_one(tmp_path):
    a, b = Run.of(tmp_path / "one", "lab"), Run.of(tmp_path / "two", "lab")
    assert a.id != b.id
    assert Run.of(tmp_path / "one", "lab", purpose="test").id not in (a.id, b.id)
    for run in (a, b):
        assert run.id in run.netns and run.id in run.bridge and run.dir.name == run.id
        assert len(run.bridge) <= 15  # IFNAMSIZ
    assert {a.netns, a.bridge, str(a.dir)}.isdisjoint({b.netns, b.bridge, str(b.dir)})
    assert run_id_for(tmp_path / "one", "lab") == a.id  # stable: `down` after a crash finds the same run


@pytest.mark.parametrize("run_id", ["../../etc", "ABCDEF12", "1234567", "123456789", "12345678; rm -rf /"])
def test_a_run_id_is_eight_hex_digits_before_it_names_anything(run_id, cli):
    code, out, err = cli("testhosts", "down", "--run", run_id)
    assert code == 2 and out == ""
    assert err.startswith("error: --run: ") and "8 hexadecimal digits" in err


def test_the_product_imports_nothing_from_the_test_host_harness():
    allowed = {SRC / "cli" / "testhosts.py", SRC / "cli" / "lab.py", SRC / "cli" / "lab_pulumi.py"}
    allowed.add(SRC / "cli" / "__init__.py")
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "testhosts") or path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}", *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any("testhosts" in n or n in ("rgw", "testvm") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_limit_is_an_ansible_host_pattern_in_verify_too():
    stack = load_stack(ROOT, "lab")
    names = [n.hostname for n in stack.site.nodes]
    assert [n.hostname for n in runner.select(stack, ROOT, "lab-gpu-0*:!lab-gpu-02")] == ["lab-gpu-01"]
    assert [n.hostname for n in runner.select(stack, ROOT, "pool_gpu")] == names
    assert [n.hostname for n in runner.select(stack, ROOT, "lab-gpu-02,lab-gpu-01")] == names  # site order
    assert [n.hostname for n in runner.select(stack, ROOT, None)] == names


def test_a_limit_that_selects_no_host_is_bad_input(cli):
    for command in ("verify", "bootstrap"):
        code, out, err = cli(command, "lab", "--limit", "nosuchhost*")
        assert code == 2, (command, out, err)
        assert "error: --limit: " in err and "matches no host of lab" in err


@pytest.mark.parametrize("site", SITES)
def test_verify_hands_each_node_its_expectations_as_a_file_that_reads_back_whole(site):
    stack = load_stack(ROOT, site)
    for node in stack.site.nodes[:2]:
        want = expectations(ROOT, stack.site, node)
        text = want.to_json()
        assert NodeExpectations.from_json(text) == want
        assert node.hostname in text


def test_the_node_suite_reads_no_stack_and_takes_no_names_from_the_environment():
    suite = SRC / "verify" / "suite"
    text = "\n".join(p.read_text() for p in suite.glob("*.py"))
    assert "load_stack" not in text and "stackfile" not in text
    assert "AIFACTORY_VERIFY_" not in text
    assert "--expectations" in (suite / "conftest.py").read_text()
    assert Path(runner.__file__).read_text().count("--expectations=") == 1


def test_a_node_gets_the_cuda_components_its_site_declares():
    lab, za = load_stack(ROOT, "lab").site, load_stack(ROOT, "za").site
    assert lab.gpu_stack.cuda_components == "runtime" and za.gpu_stack.cuda_components == "toolkit"
    runtime, toolkit = expectations(ROOT, lab, lab.nodes[0]), expectations(ROOT, za, za.nodes[0])
    assert runtime.cuda_packages == {"debian": ["libcudart11.0"], "ubuntu": ["cuda-libraries-11-8"]}
    assert toolkit.cuda_packages["ubuntu"] == ["cuda-toolkit-13-0"]
    assert "nvidia-cuda-toolkit" in toolkit.cuda_packages["debian"]
    # The inventory hands the roles the same choice.
    assert "cuda_toolkit_components: !unsafe 'runtime'" in (ROOT / "inventories/lab/group_vars/all.yml").read_text()


def test_stacks_are_read_with_libyaml_and_the_same_refusals_on_the_same_lines():
    import yaml

    from aifactory import stackfile as sf
    from aifactory.errors import ConfigError

    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML was built without libyaml: the pure-Python loader is the only one")
    assert sf._StackLoader is sf._CStackLoader
    for site in SITES:
        text = (ROOT / "stacks" / f"Pulumi.{site}.yaml").read_text()
        assert yaml.load(text, Loader=sf._StackLoader) == yaml.load(text, Loader=sf._PyStackLoader)
    bad = {
        "a: 1\na: 2\n": ("line 2,", "duplicate key"),
        "a: 1\nb: &x 1\nc: *x\n": ("line 2,", "anchors and aliases"),
        "a:\n  b: [1\n": ("line 3,", "YAML syntax error"),
        "a: 1\n? [1]\n: 2\n": ("line 2,", "not a string"),
        "a: " + "[" * 2000 + "]" * 2000 + "\n": ("line 1,", "nested deeper than 32 levels"),
    }
    for text, (line, words) in bad.items():
        messages = []
        for loader in (sf._StackLoader, sf._PyStackLoader):
            sf._StackLoader, saved = loader, sf._StackLoader
            try:
                with pytest.raises(ConfigError) as caught:
                    sf.parse_yaml(text, "stacks/Pulumi.x.yaml")
            finally:
                sf._StackLoader = saved
            messages.append(str(caught.value.problems[0]))
        for message in messages:
            assert line in message and words in message, messages


def test_bootstrap_runs_under_mitogen_unless_told_not_to(monkeypatch):
    from aifactory.bootstrap import strategy_env

    monkeypatch.delenv("AIFACTORY_MITOGEN", raising=False)
    env = strategy_env()
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    monkeypatch.setenv("AIFACTORY_MITOGEN", "0")
    assert strategy_env() == {}
