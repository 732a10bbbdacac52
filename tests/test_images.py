"""Unit tier: vlmtune.images, the pictures the model gets and the warnings about pixel limits too small for them.

The pixel-limit warnings are checked on real COCO boxes (../shared/fixtures/coco-mini) against the sizes the real
Qwen2-VL processor produces.
"""

import json

import pytest
from PIL import Image

from vlmtune.images import pad_to_square, resolution_warnings, stored_size

TINY_LIMITS = {"image_factor": 28, "image_min_pixels": 3136, "image_max_pixels": 112 * 112}
TUTORIAL_LIMITS = dict(TINY_LIMITS, image_max_pixels=78400)
LLAVA = {"image_factor": None, "pad_to_square": True}


def test_pad_to_square_centres_the_picture_on_the_fill():
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    square = pad_to_square(image, (1, 2, 3))
    assert square.size == (4, 4)
    assert [square.getpixel((0, y)) for y in range(4)] == [(1, 2, 3), (255, 0, 0), (255, 0, 0), (1, 2, 3)]
    assert pad_to_square(Image.new("RGB", (3, 3)), (0, 0, 0)).size == (3, 3)


def test_stored_size_reads_a_file_header_and_an_image_in_memory(tmp_path):
    Image.new("RGB", (640, 427)).save(tmp_path / "a.jpg")
    assert stored_size(str(tmp_path / "a.jpg")) == (640, 427)
    assert stored_size(Image.new("RGB", (5, 7))) == (5, 7)


def test_the_tiny_models_limit_on_a_coco_photo_is_named_with_what_it_leaves():
    # 640x427 into 12544 pixels: 112x84, 4 x 3 tokens
    [warning] = resolution_warnings([(640, 427), (640, 480), (112, 112)], [], TINY_LIMITS)
    assert warning.startswith("--image_max_pixels 12544 shrinks 2 of 3 images to under 20% of their pixels "
                              "(e.g. 640x427 -> 112x84, 12 image tokens)")
    assert "Raise --image_max_pixels" in warning


def test_no_warning_for_the_tutorials_budget_or_images_that_are_not_shrunk():
    assert resolution_warnings([(640, 480), (640, 427)], [], TUTORIAL_LIMITS) == []  # 308x224: 22 % of 640x480
    assert resolution_warnings([(112, 112)] * 5, [(60, 60, 90, 90, 112, 112)], TINY_LIMITS) == []
    assert resolution_warnings([(640, 480)], [(0, 0, 5, 5, 640, 480)], LLAVA) == []  # no pixel limit to raise


def test_boxes_smaller_than_one_image_token_are_counted_and_the_flag_named():
    boxes = [(10, 10, 60, 80, 640, 427), (0, 0, 600, 400, 640, 427)]  # 50x70 -> 8.75x13.8 in 112x84
    warnings = resolution_warnings([], boxes, TINY_LIMITS)
    assert warnings == ["--image_max_pixels 12544: 1 of 2 boxes become smaller than one image token (28x28 pixels) "
                        "in the image the model sees (e.g. 50x70 -> 9x14): the model can hardly point at them. Raise "
                        "--image_max_pixels."]


def test_on_real_coco_boxes_the_count_follows_the_real_processors_resize(fixtures_dir):
    from vlmtune.modeling import image_settings, load_processor

    instances = json.loads((fixtures_dir / "coco-mini" / "annotations" / "instances_train2017.json").read_text())
    sizes = {image["id"]: (image["width"], image["height"]) for image in instances["images"]}
    boxes = [(x, y, x + w, y + h, *sizes[a["image_id"]])
             for a in instances["annotations"] if not a["iscrowd"] for x, y, w, h in [a["bbox"]]]
    for max_pixels in (112 * 112, 401408):
        processor = load_processor(str(fixtures_dir / "qwen2-vl-2b-instruct"), 3136, max_pixels)
        patch = processor.image_processor.patch_size
        produced = {}
        for size in set(sizes.values()):  # the real processor's frame for each image size
            _, rows, columns = processor.image_processor(images=[Image.new("RGB", size)])["image_grid_thw"][0]
            produced[size] = (int(columns) * patch, int(rows) * patch)
        small = sum(min(x2 - x1, y2 - y1) >= 28 > min((x2 - x1) * produced[(w, h)][0] / w,
                                                     (y2 - y1) * produced[(w, h)][1] / h)
                    for x1, y1, x2, y2, w, h in boxes)
        warnings = resolution_warnings([], boxes, image_settings(processor))
        if small >= 0.1 * len(boxes):
            assert warnings and f": {small} of {len(boxes)} boxes become smaller than one image token" in warnings[0]
        else:
            assert warnings == []
        if max_pixels == 112 * 112:
            assert small > 0.4 * len(boxes)  # most COCO boxes vanish at the tiny model's limit
        else:
            # 401408 pixels keep coco-mini's photos whole but for rounding to 28 (480 -> 476): one box of 28 rows
            assert small == 1 and warnings == []


@pytest.mark.parametrize("size", [(1920, 1080), (4000, 3000)])
def test_a_large_photo_under_the_tutorials_budget_is_warned_about(size):
    [warning] = resolution_warnings([size], [], TUTORIAL_LIMITS)
    assert f"1 of 1 images to under 20% of their pixels (e.g. {size[0]}x{size[1]} -> " in warning
