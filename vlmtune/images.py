"""Images as a person sees them, as the model gets them, and the check that a file can be used at all.

Every step reads an image through open_rgb (csv2json's check, the training collator, generation, the galleries), so
all of them get one picture, the one an image viewer shows: turned upright by its EXIF orientation, its first frame
(an animated GIF or APNG, a multi-page TIFF), 16-bit and float pixels scaled to 8 bits over their range (PIL's own
convert clips them: a 16-bit PNG came out almost all white), transparent parts on white (not PIL's black), and
CMYK, YCbCr, 1-bit, grey and palette images in RGB. stored_size gives that picture's size from the file header.
problem() names what makes a file unusable before any step relies on it: empty, not an image, cut short, larger
than MAX_PIXELS (a decompression bomb, or a photo to resize), or thinner than MAX_ASPECT allows.

LLaVA-1.5's CLIP processor resizes the short side to 336 and centre-crops a 336 x 336 square: on a 640x480 photo the
80 columns at each side never reach the model, while a grounding box or a caption may be about them. LLaVA-1.5 was
trained on images padded to a square with the processor's mean colour (its `image_aspect_ratio: pad`), so that is
what it gets here too, in training and in generation alike; box targets are written in that square
(vlmtune.boxes, the `llava` convention). Qwen's processors keep the whole image at any aspect ratio and get it as is.
"""

import os
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError

# Larger images are refused: PIL's own decompression-bomb threshold (89,478,485 pixels, about 9459 x 9459, some
# 270 MB to decode as RGB), above which it warns, and at twice which it refuses to open the file.
MAX_PIXELS = 89_478_485
# The Qwen processors (transformers' smart_resize) raise for an image whose long side is over 200 times its short
# one; smaller images, 1x1 included, they scale up and take.
MAX_ASPECT = 200

# EXIF orientations that turn the picture by a quarter: a viewer shows it with width and height swapped.
_QUARTER_TURNS = (5, 6, 7, 8)


def open_rgb(image) -> Image.Image:
    """A path or an in-memory PIL image, as RGB, as a viewer shows it (see the module docstring)."""
    if isinstance(image, Image.Image):
        return viewed(image)
    with Image.open(image) as opened:
        return viewed(opened)


def viewed(image: Image.Image) -> Image.Image:
    """An open image's current frame (the first, just after Image.open) in RGB, upright, 8-bit, on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        return _high_bit_depth_rgb(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info:
        return _on_white(image.convert("RGBA"))
    return image.convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _high_bit_depth_rgb(image: Image.Image) -> Image.Image:
    """Grey levels of more than 8 bits (I;16*, I, F) scaled to 0..255, a transparency key honoured.

    Written by hand: PIL's convert clips these to 0..255 instead of scaling. The range scaled from is the mode's own
    where it has one: 0..65535 for I;16*, and for I when its values fit in 16 bits (PIL opens 16-bit data as I too);
    0..1 for F when its values lie there (the float-image convention). Otherwise no range is given, and the image's
    own darkest to brightest is stretched over 0..255, as scientific viewers show such images."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    darkest, brightest = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and darkest >= 0 and brightest <= 65535):
        low, high = 0.0, 65535.0
    elif image.mode == "F" and darkest >= 0 and brightest <= 1:
        low, high = 0.0, 1.0
    else:
        low, high = darkest, brightest
    grey = np.round((values - low) * 255 / ((high - low) or 1)).astype(np.uint8)
    key = image.info.get("transparency")
    if isinstance(key, int):  # a 16-bit PNG's tRNS grey level: those pixels are transparent
        alpha = np.where(np.asarray(image) == key, 0, 255).astype(np.uint8)
        return _on_white(Image.fromarray(np.stack([grey] * 3 + [alpha], axis=-1), "RGBA"))
    return Image.fromarray(grey, "L").convert("RGB")


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
    """(width, height) of the picture open_rgb gives for a path or an in-memory PIL image: the header's size, swapped
    where the EXIF orientation turns the picture by a quarter. Read from the file header alone, no pixel decoded."""
    if isinstance(image, Image.Image):
        return _upright_size(image)
    with Image.open(image) as opened:
        return _upright_size(opened)


def _upright_size(opened: Image.Image) -> tuple[int, int]:
    width, height = opened.size
    return (height, width) if _orientation(opened) in _QUARTER_TURNS else (width, height)


def _orientation(opened: Image.Image) -> int:
    """The EXIF orientation an opened image's header gives (1: upright). A PNG's eXIf chunk after the pixel data is
    not looked for: PIL would decode the whole image to reach it (problem() refuses such a file instead)."""
    if isinstance(opened, PngImagePlugin.PngImageFile) and "exif" not in opened.info:
        return 1
    return opened.getexif().get(ExifTags.Base.Orientation, 1)


def problem(path) -> str | None:
    """Why the image file at `path` cannot be used, naming it and what to do, or None when open_rgb reads it.

    The size limits are read from the header first, so a decompression bomb is refused before any pixel is decoded.
    Then the file is checked the way PIL can: verify() walks its structure (for a PNG, every chunk and its checksum)
    without decoding, which does next to nothing for a JPEG; decoding it (open_rgb's own steps) is what catches a JPEG
    cut short. PIL raises many types for a broken file (OSError, SyntaxError, struct.error, ...): any of them means
    training could not read it.
    """
    path = str(path)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return f"image file is empty (0 bytes): {path}; copy the image again"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sizes are judged just below
            with Image.open(path) as opened:
                (width, height), orientation = opened.size, _orientation(opened)
    except Image.DecompressionBombError as error:
        return f"image too large: {path} ({error}); resize it to at most {MAX_PIXELS:,} pixels"
    except UnidentifiedImageError:
        return (f"image does not decode: {path} (no image PIL can open: another kind of file, or its header is "
                "damaged or cut short); replace it with a PNG or JPEG that opens")
    except Exception as error:
        return _undecodable(path, error)
    if width * height > MAX_PIXELS:
        return (f"image too large: {path} is {width}x{height}, {width * height:,} pixels, over the limit of "
                f"{MAX_PIXELS:,} that guards against decompression bombs; resize it (the model sees at most "
                f"--image_max_pixels of it anyway)")
    if min(width, height) == 0:
        return f"image does not decode: {path} is {width}x{height}, no pixels at all; replace it"
    if max(width, height) > MAX_ASPECT * min(width, height):
        ratio = max(width, height) / min(width, height)
        return (f"image too thin: {path} is {width}x{height}, an aspect ratio of {ratio:.0f} to 1, and the Qwen "
                f"processors refuse any above {MAX_ASPECT} to 1; crop it into parts or pad it")
    try:
        with Image.open(path) as opened:
            opened.verify()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                viewed(opened)
                late = opened.getexif().get(ExifTags.Base.Orientation, 1)  # now with any eXIf after the pixels
    except Exception as error:
        return _undecodable(path, error)
    if late != orientation:
        return (f"image orientation out of reach: {path} gives its EXIF orientation ({late}) after the pixel data, "
                "where reading the size from the header does not see it; save the image upright and use that")
    return None


def _undecodable(path, error) -> str:
    return f"image does not decode: {path} ({type(error).__name__}: {error}); replace it with a copy that opens"


def frame_count(path) -> int:
    """How many frames (an animation's, a TIFF's pages) the image file holds; open_rgb uses the first. An MPO photo
    counts as one: its later pictures are the camera's previews or depth maps of the same shot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as opened:
            return 1 if opened.format == "MPO" else getattr(opened, "n_frames", 1)


def notes(paths) -> list[str]:
    """What to tell about images that are used but not whole: those of several frames, of which the model gets the
    first (`paths`: each image once; problem() found them usable)."""
    several = [(path, n) for path in paths if (n := frame_count(path)) > 1]
    if not several:
        return []
    path, n = several[0]
    return [f"{len(several)} of {len(paths)} images have several frames (an animation or pages; e.g. {path}, {n} "
            "frames): the model sees the first frame of each"]


def usable(paths) -> tuple[list, list[tuple]]:
    """(usable paths, [(path, reason)] of the others), each list in the order of `paths`."""
    kept, skipped = [], []
    for path in paths:
        reason = problem(path)
        if reason is None:
            kept.append(path)
        else:
            skipped.append((path, reason))
    return kept, skipped


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
