"""Data: sources (digits, IDX, CIFAR batches, image folders, CSV), safe image reading, batch transforms."""
from .dataset import ImageData, Split, load_data
from .images import BadImage, BadImagesError, open_image
from .sources import SOURCES

__all__ = ["BadImage", "BadImagesError", "ImageData", "SOURCES", "Split", "load_data", "open_image"]
