"""File and folder names of the tiny-imagenet-200 layout, shared by every reader and writer.

tiny-imagenet-200/
  wnids.txt                                  one wnid per line (the classes)
  words.txt                                  wnid<TAB>names, for many more wnids than the classes
  train/<wnid>/images/<wnid>_<i>.JPEG
  train/<wnid>/<wnid>_boxes.txt              <file><TAB>x0<TAB>y0<TAB>x1<TAB>y1
  val/images/val_<i>.JPEG
  val/val_annotations.txt                    <file><TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
  test/images/test_<i>.JPEG                  unlabeled
"""

from __future__ import annotations

ROOT_DIR_NAME = "tiny-imagenet-200"
ARCHIVE_NAME = f"{ROOT_DIR_NAME}.zip"

WNIDS_FILE = "wnids.txt"
WORDS_FILE = "words.txt"

TRAIN_DIR = "train"
VAL_DIR = "val"
TEST_DIR = "test"
IMAGES_DIR = "images"

VAL_ANNOTATIONS = "val_annotations.txt"
BOXES_SUFFIX = "_boxes.txt"

IMAGE_EXT = ".JPEG"
VAL_IMAGE_PREFIX = "val_"
TEST_IMAGE_PREFIX = "test_"

IMAGE_SIZE = 64
"""Width and height of every image, in pixels."""


def train_image_name(wnid: str, index: int) -> str:
    """``<wnid>_<index>.JPEG``, the name of a training image inside ``train/<wnid>/images/``."""
    return f"{wnid}_{index}{IMAGE_EXT}"


def boxes_file_name(wnid: str) -> str:
    """``<wnid>_boxes.txt``, the box file inside ``train/<wnid>/``."""
    return f"{wnid}{BOXES_SUFFIX}"


def val_image_name(index: int) -> str:
    """``val_<index>.JPEG``, the name of a validation image inside ``val/images/``."""
    return f"{VAL_IMAGE_PREFIX}{index}{IMAGE_EXT}"


def test_image_name(index: int) -> str:
    """``test_<index>.JPEG``, the name of a test image inside ``test/images/``."""
    return f"{TEST_IMAGE_PREFIX}{index}{IMAGE_EXT}"


def box_line(image: str, box) -> str:
    """One line of a ``<wnid>_boxes.txt``: ``<file><TAB>x0<TAB>y0<TAB>x1<TAB>y1``."""
    return "\t".join([image, *(str(int(v)) for v in box)]) + "\n"


def val_annotation_line(image: str, wnid: str, box) -> str:
    """One line of ``val_annotations.txt``: ``<file><TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1``."""
    return "\t".join([image, wnid, *(str(int(v)) for v in box)]) + "\n"


test_image_name.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported
