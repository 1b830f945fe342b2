"""Qwen2-VL's resize against transformers' own smart_resize (its source, executed without the
torchvision import its module needs), over image sizes from tiny to panoramic."""

import ast
import math
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

from pycore.model.image_tokens import smart_resize, tokens_per_image  # noqa: E402


def _library_smart_resize():
    src = Path(transformers.__file__).parent / "models" / "qwen2_vl" / "image_processing_qwen2_vl.py"
    tree = ast.parse(src.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "smart_resize")
    scope = {"math": math}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(src), "exec"), scope)
    return scope["smart_resize"]


SIZES = [(10, 10), (56, 56), (224, 224), (448, 448), (480, 640), (1080, 1920), (2160, 3840), (4000, 3000),
         (100, 19000), (333, 777), (28, 5000), (1, 150)]


@pytest.mark.parametrize("h,w", SIZES)
def test_smart_resize_matches_transformers(h, w):
    lib = _library_smart_resize()
    assert smart_resize(h, w) == lib(h, w)
    rh, rw = lib(h, w)
    assert tokens_per_image("qwen2_vl", h, w) == (rh // 14) * (rw // 14) // 4     # 14-px patches merged 2 x 2
