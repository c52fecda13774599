"""City data: the data model, the format readers (:mod:`gpdiff.data.formats`), splits, scalers, windows and graphs."""

from gpdiff.data.catalog import load_city
from gpdiff.data.city import City
from gpdiff.data.splits import Segment, Split, source_split, target_split
from gpdiff.data.windows import CityData, WindowBatch, WindowConfig

__all__ = ["City", "CityData", "Segment", "Split", "WindowBatch", "WindowConfig", "load_city", "source_split",
           "target_split"]
