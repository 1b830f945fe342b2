"""pycore's YAML-subset reader gives what PyYAML's safe_load gives, on the projects' own example configs
(tests/data/configs) and on the reader's own test document."""

from pathlib import Path

import pytest
import yaml

from pycore.runconfig.yamltext import parse_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.iterdir() if p.suffix in (".yml", ".yaml", ".json")),
                         ids=lambda p: p.name)
def test_the_reader_agrees_with_pyyaml(path):
    text = path.read_text()
    assert parse_yaml(text, "f") == yaml.safe_load(text)


def test_the_core_tests_document_agrees_with_pyyaml():
    import importlib.util
    spec = importlib.util.spec_from_file_location("t", Path(__file__).resolve().parents[1] / "runconfig" / "test_yamltext.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert parse_yaml(module.DOC, "f") == yaml.safe_load(module.DOC)
