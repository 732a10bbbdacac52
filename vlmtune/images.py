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


def model_view(image, processor) -> Image.Image:
    """The picture the processor is given for `image` (a path or a PIL image)."""
    rgb = open_rgb(image)
    fill = square_fill(processor)
    return rgb if fill is None else pad_to_square(rgb, fill)
