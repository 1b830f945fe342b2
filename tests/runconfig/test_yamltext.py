"""The YAML subset reader (pycore/runconfig/yamltext.py): what training configs use, read as PyYAML's SafeLoader
reads it (tests/integration/test_configs_pyyaml.py compares the two on the projects' own configs)."""

import pytest

from pycore.errors import InputError
from pycore.runconfig.yamltext import MAX_YAML_CHARS, MAX_YAML_DEPTH, parse_yaml

DOC = """\
# a comment
base_model: NousResearch/Meta-Llama-3-8B   # trailing comment
lora_r: 32
lr: 2e-5
lr2: 1.0e-4
ratio: .5
hex: 0x1F
octal: 017
big: 1_000
flag: yes
off_flag: off
quoted_flag: 'no'
empty:
tilde: ~
text: it's fine # not part of it
hash: a#b
single: 'it''s'
double: "tab\\there \\u00e9"
flow: ['q_proj', v_proj, {k: 1}]
multi: [
  a,
  b
]
nested:
  inner:
    deep: 1
list:
  - path: x
    type: alpaca
  - plain
  - - 1
    - 2
same_indent:
- 1
- 2
literal: |
  line one
    kept indent
folded: >-
  one
  two
"""


def test_a_config_reads_as_safe_loader_reads_it():
    got = parse_yaml(DOC, "from")
    # each value as PyYAML 6 resolves it (YAML 1.1): 2e-5 has no dot so it stays text, yes/off are booleans,
    # 017 is octal (15), a quoted 'no' is text
    assert got == {
        "base_model": "NousResearch/Meta-Llama-3-8B", "lora_r": 32, "lr": "2e-5", "lr2": 1.0e-4, "ratio": 0.5,
        "hex": 31, "octal": 15, "big": 1000, "flag": True, "off_flag": False, "quoted_flag": "no", "empty": None,
        "tilde": None, "text": "it's fine", "hash": "a#b", "single": "it's", "double": "tab\there \u00e9",
        "flow": ["q_proj", "v_proj", {"k": 1}], "multi": ["a", "b"], "nested": {"inner": {"deep": 1}},
        "list": [{"path": "x", "type": "alpaca"}, "plain", [1, 2]], "same_indent": [1, 2],
        "literal": "line one\n  kept indent\n", "folded": "one two"}


def test_json_is_read_as_a_flow_mapping():
    assert parse_yaml('{"a": [1, 2], "b": {"c": true}}', "f") == {"a": [1, 2], "b": {"c": True}}


@pytest.mark.parametrize("text, words", [
    ("a: &x 1\nb: *x\n", "anchors"),
    ("a: *x\n", "aliases"),
    ("a: !!str 1\n", "tags"),
    ("a: 1\n---\nb: 2\n", "several YAML documents"),
    ("? a\n: 1\n", "complex keys"),
    ("a:\n\tb: 1\n", "tab"),
    ("a: 1\na: 2\n", "given twice"),
    ("a: [1, 2\n", "not closed"),
    ("a: 'open\n", "not closed"),
    ("a: b\n  c\n", "continued on the next line"),
    ("a: 1\n   b: 2\n", "unexpected indentation"),
])
def test_what_it_does_not_read_is_refused_naming_the_line(text, words):
    with pytest.raises(InputError) as exc:
        parse_yaml(text, "from")
    assert exc.value.field == "from" and words in exc.value.message and "line " in exc.value.message


def test_size_and_depth_are_bounded():
    with pytest.raises(InputError, match="longer than"):
        parse_yaml("a: 1\n" * (MAX_YAML_CHARS // 5 + 1), "from")
    deep = "".join(" " * i + f"k{i}:\n" for i in range(MAX_YAML_DEPTH + 2)) + " " * (MAX_YAML_DEPTH + 2) + "x: 1\n"
    with pytest.raises(InputError, match="nested too deeply"):
        parse_yaml(deep, "from")
    with pytest.raises(InputError, match="nested too deeply"):
        parse_yaml("a: " + "[" * (MAX_YAML_DEPTH + 2) + "]" * (MAX_YAML_DEPTH + 2), "from")


def test_an_empty_document_is_none_and_non_text_is_refused():
    assert parse_yaml("# only a comment\n", "f") is None
    with pytest.raises(InputError):
        parse_yaml(b"a: 1", "f")


def test_any_text_is_read_or_refused_never_a_crash():
    from hypothesis import given, settings, strategies as st
    from pycore.runconfig import read_run_config
    alphabet = st.sampled_from(list("ab: -#'\"[]{},|>&*!?\\\n\t0.e+~") + ["  ", "- ", ": ", "\n  ", "---"])

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.lists(alphabet, max_size=60).map("".join))
    def check(text):
        try:
            parse_yaml(text, "from")
        except InputError:
            pass
        try:
            read_run_config(text)
        except InputError:
            pass
    check()


def test_the_largest_texts_are_read_in_linear_time():
    import time
    flow = "a: [\n" + "  1234,\n" * (MAX_YAML_CHARS // 8 - 2) + "  0]\n"          # 124,998 lines of one list
    block = "".join(f"k{i}: {i}\n" for i in range(70_000))                          # 70,000 keys
    for text in (flow, block):
        assert len(text) <= MAX_YAML_CHARS
        start = time.perf_counter()
        parse_yaml(text, "f")
        assert time.perf_counter() - start < 10
