"""Data: sources (digits, IDX, CIFAR batches, image folders, CSV), safe image reading, the decoded-image
cache, and one data-set interface (in memory or streamed) with splits saved as manifests."""
from .dataset import DATA_MODES, ImageData, Split, load_data
from .images import BadImage, BadImagesError, open_image
from .sources import SOURCES

__all__ = ["BadImage", "BadImagesError", "DATA_MODES", "ImageData", "SOURCES", "Split", "load_data", "open_image"]
