"""Images as the model gets them: read as RGB, and padded to a square for processors that would crop them.

LLaVA-1.5's CLIP processor resizes the short side to 336 and centre-crops a 336 x 336 square: on a 640x480 photo the
80 columns at each side never reach the model, while a grounding box or a caption may be about them. LLaVA-1.5 was
trained on images padded to a square with the processor's mean colour (its `image_aspect_ratio: pad`), so that is
what it gets here too, in training and in generation alike; box targets are written in that square
(vlmtune.boxes, the `llava` convention). Qwen's processors keep the whole image at any aspect ratio and get it as is.
"""

from PIL import Image


def open_rgb(image) -> Image.Image:
    """A path or an in-memory PIL image, as RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as opened:
        return opened.convert("RGB")


def square_fill(processor) -> tuple[int, int, int] | None:
    """The colour to pad images to a square with, for a processor that centre-crops (LLaVA's CLIP processor): its
    mean pixel in whole 8-bit steps, (122, 116, 104) for CLIP's mean, as LLaVA-1.5 padded; it normalises to about
    zero. None for a processor that sees the whole image (Qwen's)."""
    image_processor = processor.image_processor
    if not image_processor.do_center_crop:  # Qwen2VLImageProcessor holds None here
        return None
    return tuple(int(255 * mean) for mean in image_processor.image_mean)


def pad_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """The image centred on a square of its longer side, the rest `fill`; a square image is returned as it is."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def stored_size(image) -> tuple[int, int]:
    """(width, height) of a path's image, from its file header alone, or of an in-memory PIL image."""
    if isinstance(image, Image.Image):
        return image.size
    with Image.open(image) as opened:
        return opened.size


def model_view(image, processor) -> Image.Image:
    """The picture the processor is given for `image` (a path or a PIL image)."""
    rgb = open_rgb(image)
    fill = square_fill(processor)
    return rgb if fill is None else pad_to_square(rgb, fill)


# Warn when the pixel limit leaves a photo with under a fifth of its pixels: the tutorial's 280 x 280 budget keeps
# 22 % of a 640x480 COCO photo (308x224), the tiny model's 112 x 112 keeps 4 %.
SHRUNK_BELOW = 0.20
# ... or when the resize makes this share of the grounding boxes narrower or lower than one image token.
SMALL_BOXES_SHARE = 0.10


def resolution_warnings(sizes: list[tuple[int, int]], boxes: list[tuple], settings: dict) -> list[str]:
    """What to tell the user when the pixel limit in force (--image_max_pixels) shrinks the images below what the
    task needs: `sizes` are images' (width, height) as stored, `boxes` (x1, y1, x2, y2, width, height) grounding
    boxes in pixels of their image, `settings` vlmtune.modeling.image_settings. A fixed-size processor (LLaVA's)
    takes no pixel limit, so nothing to say there."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    factor = settings["image_factor"]
    if factor is None:
        return []

    def resized(width, height):
        h, w = smart_resize(height, width, factor=factor, min_pixels=settings["image_min_pixels"],
                            max_pixels=settings["image_max_pixels"])
        return w, h

    limit = f"--image_max_pixels {settings['image_max_pixels']}"
    warnings = []
    shrunk = [(size, resized(*size)) for size in sizes if _area(resized(*size)) < SHRUNK_BELOW * _area(size)]
    if shrunk:
        (width, height), (w, h) = shrunk[0]
        warnings.append(
            f"{limit} shrinks {len(shrunk)} of {len(sizes)} images to under {SHRUNK_BELOW:.0%} of their pixels "
            f"(e.g. {width}x{height} -> {w}x{h}, {(w // factor) * (h // factor)} image tokens): fine detail is lost. "
            f"Raise --image_max_pixels (the presets in scripts/ use 78400 to 401408), and --max_length with it.")
    small = []  # boxes of at least one token's size in the photo that the resize makes smaller than one
    for x1, y1, x2, y2, width, height in boxes:
        w, h = resized(width, height)
        seen = ((x2 - x1) * w / width, (y2 - y1) * h / height)
        if min(x2 - x1, y2 - y1) >= factor > min(seen):
            small.append((x2 - x1, y2 - y1, *seen))
    if boxes and len(small) >= SMALL_BOXES_SHARE * len(boxes):
        bw, bh, rw, rh = small[0]
        warnings.append(
            f"{limit}: {len(small)} of {len(boxes)} boxes become smaller than one image token ({factor}x{factor} "
            f"pixels) in the image the model sees (e.g. {bw:.0f}x{bh:.0f} -> {rw:.0f}x{rh:.0f}): the model can "
            f"hardly point at them. Raise --image_max_pixels.")
    return warnings


def _area(size) -> int:
    return size[0] * size[1]
