"""Checkpoints: atomic files, safe loading, model-state loading, named checkpointables and the one loader of
trained models."""
from .checkpointer import BEST, Checkpointable, Checkpointer, model_record, stored_threshold, threshold_record
from .inference import load_for_inference, resolve_config
from .io import FINAL, LAST, load_checkpoint, remove_stale_temps, save_checkpoint
from .state import CLASSIFIER_MARKER, config_differences, load_model_state, load_model_weights, state_mismatch
from .writer import AsyncCheckpointWriter, to_host

__all__ = ["save_checkpoint", "load_checkpoint", "remove_stale_temps", "load_model_state", "load_model_weights",
           "state_mismatch", "config_differences", "load_for_inference", "resolve_config", "Checkpointer",
           "Checkpointable", "model_record", "stored_threshold", "threshold_record", "AsyncCheckpointWriter",
           "to_host", "LAST", "FINAL", "BEST", "CLASSIFIER_MARKER"]
