"""Local inference: the model registry and manifest checks, prompts, and the llama.cpp backend."""

from appliance.inference.llama_backend import ModelClosedError
from appliance.inference.prompts import PROMPT_VERSION
from appliance.inference.registry import ModelEntry, add_model, find_model, list_models, verify_model_file
from appliance.inference.runtime import ModelRuntime

__all__ = ["PROMPT_VERSION", "ModelClosedError", "ModelEntry", "ModelRuntime", "add_model", "find_model", "list_models",
           "verify_model_file"]
