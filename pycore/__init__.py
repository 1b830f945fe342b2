"""pycore: estimate the peak GPU memory of training, fine-tuning and inference of transformers."""

from .api import estimate as estimate_json
from .errors import InputError
from .estimate import Estimate, estimate
from .model.hfconfig import read_hf_config
from .model.spec import ModelSpec
from .model.params import total_params
from .training.workload import Framework, Hardware, Precision, Workload

__version__ = "0.1.0"

__all__ = ["estimate", "estimate_json", "Estimate", "InputError", "ModelSpec", "read_hf_config", "total_params",
           "Workload", "Precision", "Framework", "Hardware", "__version__"]
