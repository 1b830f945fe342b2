"""Inference and serving engines: Hugging Face generate, vLLM, SGLang, llama.cpp; quantisation formats."""
