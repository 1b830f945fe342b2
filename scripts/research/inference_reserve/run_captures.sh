#!/bin/bash
# tiny captures: template (L=3, 4 new tokens) and validation (L=4, 6 new tokens)
cd "$(dirname "$0")"
# transformers 5.17.0 (the calibration's version): pip download --no-deps --no-binary :all: transformers==5.17.0,
# unpack its src/ as tf517/; httpx into deps/ (pip install --target deps httpx)
export PYTHONPATH=$PWD/tf517:$PWD/deps
PY=../../../.venv-int/bin/python
for spec in "llama sdpa bf16" "llama eager fp16" "qwen2 sdpa bf16" "mistral sdpa bf16" "olmoe sdpa bf16" "gpt2 sdpa fp32"; do
  set -- $spec
  TINY_L=3 $PY capture.py $1 $2 4 $3 > traces/$1_$2_$3_L3_g4.txt || echo FAIL $spec
  TINY_L=4 $PY capture.py $1 $2 6 $3 > traces/$1_$2_$3_L4_g6.txt || echo FAIL $spec
done
for spec in "llama sdpa bf16" "bert sdpa fp16"; do
  set -- $spec
  TINY_L=3 $PY capture.py $1 $2 0 $3 > traces/$1_$2_$3_L3_g0.txt || echo FAIL $spec
  TINY_L=4 $PY capture.py $1 $2 0 $3 > traces/$1_$2_$3_L4_g0.txt || echo FAIL $spec
done
