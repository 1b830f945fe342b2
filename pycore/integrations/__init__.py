"""Pre-flight checks inside the tools people already run: the HF Trainer (transformers.py), accelerate
(accelerate.py) and Lightning (lightning.py). Each imports its library; the core and the page never import
this package."""
