"""The documentation builds strictly, links every breakdown term, and its accuracy table is current."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pycore.model.breakdown import METHOD_ANCHORS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
                   cwd=ROOT, check=True)
    return out


def test_every_breakdown_term_has_a_section_on_the_method_page(site):
    html = (site / "method" / "index.html").read_text()
    ids = set(re.findall(r'id="([^"]+)"', html))
    missing = sorted(set(METHOD_ANCHORS.values()) - ids)
    assert not missing, missing


def test_docs_load_nothing_from_other_hosts(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', text), page


def test_accuracy_page_matches_the_calibration_data(tmp_path, calibrate, shared_run):
    cal, (rows, summary) = calibrate, shared_run
    page = tmp_path / "accuracy.md"
    shutil.copy(ROOT / "docs" / "accuracy.md", page)
    cal.write_markdown(page, cal.markdown(rows, summary))
    assert page.read_text() == (ROOT / "docs" / "accuracy.md").read_text(), \
        "docs/accuracy.md is stale: run scripts/calibrate.py ... --markdown docs/accuracy.md"


def test_every_docs_page_has_the_csp_and_no_inline_script(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert 'http-equiv="Content-Security-Policy"' in text and "script-src 'self'" in text, page
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), page      # every script has a src


def test_accuracy_page_matches_the_golden_references(tmp_path, golden):
    page = tmp_path / "accuracy.md"
    shutil.copy(ROOT / "docs" / "accuracy.md", page)
    rows, unsupported = golden.run([str(ROOT / "tests" / "data" / "golden_parallel.json")])
    golden.write_markdown(page, golden.markdown(rows, unsupported))
    rows, unsupported = golden.run([str(ROOT / "tests" / "data" / "golden_serving.json")])
    golden.write_markdown(page, golden.markdown(rows, unsupported), "serving")
    assert page.read_text() == (ROOT / "docs" / "accuracy.md").read_text(), \
        ("docs/accuracy.md is stale: run scripts/golden.py tests/data/golden_parallel.json --markdown docs/accuracy.md "
         "and scripts/golden.py tests/data/golden_serving.json --markdown docs/accuracy.md --section serving")


def test_method_page_lists_the_version_rules():
    from pycore.versions import RULES, rules_markdown
    page = (ROOT / "docs" / "method.md").read_text()
    assert rules_markdown() in page, "docs/method.md is stale: run python3 scripts/rules_table.py"
    assert len(RULES) >= 20


def test_the_guide_names_every_model_type_the_core_reads():
    from pycore.model.hfconfig import SUPPORTED_TYPES
    guide = (ROOT / "docs" / "guide.md").read_text()
    start = guide.index("Supported types:")
    listed = guide[start:guide.index("An unknown type", start)]
    missing = [t for t in SUPPORTED_TYPES if not re.search(rf"\b{t}\b", listed)]
    assert not missing
