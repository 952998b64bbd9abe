"""CLIP image preprocessing without torchvision: loading, inference and training transforms.

Inference matches OpenCLIP's ``image_transform(size, is_train=False)`` to the bit on Pillow +
torch alone, so clipforge does not depend on torchvision. Submodules: ``loading``
(:func:`load_image`) and ``pipelines`` (the image operations, the transforms and their
:class:`PreprocessConfig`).
"""

from clipforge.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from clipforge.transforms.loading import ImageDecodeError, load_image
from clipforge.transforms.pipelines import (
    InferenceTransform,
    PreprocessConfig,
    TrainTransform,
    image_transform,
    to_tensor,
)

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "ImageDecodeError",
    "InferenceTransform",
    "PreprocessConfig",
    "TrainTransform",
    "image_transform",
    "load_image",
    "to_tensor",
]
