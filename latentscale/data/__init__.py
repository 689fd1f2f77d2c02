"""Data layer: named datasets, file loaders and validation into :class:`ScoreData`."""

from latentscale.data.dataset import ScoreData
from latentscale.data.loaders import from_frame, read_scores
from latentscale.data.registry import list_datasets, load_dataset
from latentscale.data.validate import DataError

__all__ = ["ScoreData", "load_dataset", "list_datasets", "read_scores", "from_frame", "DataError"]
