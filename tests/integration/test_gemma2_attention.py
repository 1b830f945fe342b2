"""The installed transformers (5.25) against the gemma2-eager-attention rule (pycore/versions.py)."""

import transformers
from transformers.models.gemma2.modeling_gemma2 import Gemma2PreTrainedModel

from pycore.versions import holds, version_tuple


def test_installed_transformers_runs_gemma2_without_sdpa_as_the_rule_says():
    tf = version_tuple(transformers.__version__)
    assert Gemma2PreTrainedModel._supports_sdpa is (not holds("gemma2-eager-attention", tf))
