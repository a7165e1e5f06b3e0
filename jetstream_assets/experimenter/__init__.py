"""The experiment source (Experimenter v8 API or a local JSON file) and the parsed experiment model."""

from .models import (
    Branch,
    BucketConfig,
    Experiment,
    ExperimenterRecordError,
    InvalidSlugError,
    analysable,
    validate_slug,
)
from .resource import Experimenter, ExperimenterSnapshot, ExperimenterUnavailableError

__all__ = [
    "Branch",
    "BucketConfig",
    "Experiment",
    "Experimenter",
    "ExperimenterRecordError",
    "ExperimenterSnapshot",
    "ExperimenterUnavailableError",
    "InvalidSlugError",
    "analysable",
    "validate_slug",
]
