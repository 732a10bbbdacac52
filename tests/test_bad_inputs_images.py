"""Catalogue of bad and unusual image files: each is decoded as a viewer shows it, or refused with one message that
names the file and the cause, and one bad file never stops a step.

Every file is a real one, written with PIL (or, where PIL cannot write the fault, byte by byte to the PNG spec) in
tmp_path; the expected pixels are built independently of vlmtune.images (numpy, the EXIF spec's table).
"""

import csv
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

import csv2json
import test as test_script
from vlmtune import images
from vlmtune.formats import check_row

# An upright picture of four solid blocks, none alike, so that every turn and mirror of it is told apart.
_IMG_BLOCKS = [(200, 30, 30), (30, 160, 60), (40, 80, 220), (240, 220, 40)]


def _img_upright(width=64, height=32) -> np.ndarray:
    picture = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    for k, (rows, columns) in enumerate([(slice(0, h), slice(0, w)), (slice(0, h), slice(w, None)),
                                         (slice(h, None), slice(0, w)), (slice(h, None), slice(w, None))]):
        picture[rows, columns] = _IMG_BLOCKS[k]
    return picture


# How a camera stores the upright picture for each EXIF orientation (the EXIF 2.3 spec's table: where the stored
# image's row 0 and column 0 lie in the picture a viewer shows), written with numpy, not PIL's transposes.
_IMG_STORED = {
    1: lambda up: up,
    2: lambda up: up[:, ::-1],                       # mirrored left to right
    3: lambda up: up[::-1, ::-1],                    # turned half round
    4: lambda up: up[::-1],                          # mirrored top to bottom
    5: lambda up: up.transpose(1, 0, 2),             # mirrored along the main diagonal
    6: lambda up: np.rot90(up, 1),                   # stored a quarter turn anticlockwise: shown turned clockwise
    7: lambda up: up.transpose(1, 0, 2)[::-1, ::-1],  # mirrored along the other diagonal
    8: lambda up: np.rot90(up, -1),                  # stored a quarter turn clockwise
}


def _img_save_oriented(path, orientation, upright=None, **save):
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    stored = np.ascontiguousarray(_IMG_STORED[orientation](_img_upright() if upright is None else upright))
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **save)
    return path


def _img_assert_blocks(decoded, upright, tolerance=12):
    """Equal to `upright` within JPEG's error, away from the block edges where chroma subsampling blurs."""
    array = np.asarray(decoded).astype(int)
    assert array.shape == upright.shape
    interior = np.ones(upright.shape[:2], bool)
    for axis, size in enumerate(upright.shape[:2]):
        for edge in (0, size // 2, size):
            index = [slice(None), slice(None)]
            index[axis] = slice(max(edge - 4, 0), edge + 4)
            interior[tuple(index)] = False
    assert np.abs(array - upright.astype(int))[interior].max() <= tolerance


def _img_png(chunks) -> bytes:
    """A PNG file of (type, data) chunks, each with its length and CRC, as the spec lays them out."""
    body = b"".join(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
                    for kind, data in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def _img_png_chunks(data: bytes) -> list:
    chunks, at = [], 8
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        chunks.append((kind, data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def _img_ihdr(width, height, bit_depth=8, colour_type=2) -> tuple:
    return b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)


def _img_no_decoding(monkeypatch):
    """Make any pixel decode fail the test: what follows must be judged from the header alone."""
    def load(self):
        raise AssertionError(f"pixels of {self.filename} decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def _img_tiny_processor(tiny_model_dir):
    from vlmtune.modeling import load_processor

    return load_processor(str(tiny_model_dir), 3136, 112 * 112)


# ------------------------------------------------------------------------------------------- EXIF orientation


def test_img_orientation_6_jpeg_is_upright_for_the_check_the_size_the_collator_and_the_token_count(
        tmp_path, tiny_model_dir, monkeypatch):
    """A JPEG stored sideways with EXIF orientation 6 (a phone held upright): handled right, upright everywhere."""
    from vlmtune.collator import TrainCollator, count_tokens

    upright = _img_upright(224, 56)  # 224x56 upright; stored 56 wide, 224 high
    path = str(_img_save_oriented(tmp_path / "phone.jpg", 6, upright, quality=95))
    with Image.open(path) as raw:
        assert raw.size == (56, 224)
    assert images.problem(path) is None
    _img_assert_blocks(images.open_rgb(path), upright)
    processor = _img_tiny_processor(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image", "image": path}, {"type": "text", "text": "Describe."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Four blocks."}]}]
    batch = TrainCollator(processor)([{"id": "phone", "messages": messages}])
    assert batch["image_grid_thw"].tolist() == [[1, 56 // 14, 224 // 14]]  # rows, columns of the upright picture
    tokens = batch["input_ids"].shape[1]
    with monkeypatch.context() as patched:
        _img_no_decoding(patched)
        assert images.stored_size(path) == (224, 56)  # from the header alone
        assert count_tokens(processor, messages) == tokens


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", ["jpg", "png", "webp"])
def test_img_every_exif_orientation_is_shown_upright(tmp_path, orientation, suffix):
    """Each of the 8 EXIF orientations, in JPEG, PNG (eXIf before the pixels) and WebP: handled right."""
    save = {"jpg": {"quality": 95}, "png": {}, "webp": {"lossless": True}}[suffix]
    path = _img_save_oriented(tmp_path / f"o{orientation}.{suffix}", orientation, **save)
    assert images.problem(path) is None
    assert images.stored_size(path) == (64, 32)
    _img_assert_blocks(images.open_rgb(path), _img_upright(), tolerance=12 if suffix == "jpg" else 0)


def test_img_grounding_row_sized_as_stored_before_the_turn_is_refused_naming_the_orientation(tmp_path):
    """A grounding row whose width/height are a sideways JPEG's stored ones: clear error; the upright size passes."""
    _img_save_oriented(tmp_path / "p.jpg", 6, quality=95)  # 64x32 upright, stored 32x64
    row = {"id": "p-1", "image_path": "p.jpg", "expression": "the red block", "x1": "0", "y1": "0", "x2": "10",
           "y2": "10"}
    assert check_row({**row, "width": "64", "height": "32"}, tmp_path, "grounding") is None
    assert check_row({**row, "width": "32", "height": "64"}, tmp_path, "grounding") == (
        "the image is 64x32 pixels, but the row's box is for 32x64 as stored, before its EXIF orientation turns it "
        "upright; give the box in the upright picture")


def test_img_png_orientation_after_the_pixel_data_is_refused(tmp_path):
    """A PNG whose eXIf chunk (orientation 6) comes after IDAT, out of the header's reach: clear error."""
    _img_save_oriented(tmp_path / "early.png", 6)
    chunks = _img_png_chunks((tmp_path / "early.png").read_bytes())
    exif = [chunk for chunk in chunks if chunk[0] == b"eXIf"]
    assert exif, "PIL wrote no eXIf chunk"
    rest = [chunk for chunk in chunks if chunk[0] != b"eXIf"]
    late = rest[:-1] + exif + rest[-1:]  # just before IEND
    (tmp_path / "late.png").write_bytes(_img_png(late))
    assert images.problem(tmp_path / "early.png") is None
    assert images.problem(tmp_path / "late.png") == (
        f"image orientation out of reach: {tmp_path / 'late.png'} gives its EXIF orientation (6) after the pixel data, "
        "where reading the size from the header does not see it; save the image upright and use that")


# ------------------------------------------------------------------------------------------- bit depth


def test_img_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG, a gradient 0..65535 (PIL: mode I;16): handled right, each value v shown as v/257."""
    gradient = np.linspace(0, 65535, 64 * 4).round().astype(np.uint16).reshape(4, 64)
    Image.fromarray(gradient).save(tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as raw:
        assert raw.mode == "I;16"
    decoded = np.asarray(images.open_rgb(tmp_path / "g.png"))
    expected = np.round(gradient / 257).astype(np.uint8)
    assert (decoded == expected[..., None]).all()
    assert decoded.min() == 0 and decoded.max() == 255 and (decoded == 255).mean() < 0.01  # not all white


def test_img_16_bit_grey_png_with_a_transparent_grey_level_is_white_there(tmp_path):
    """A 16-bit grey PNG with a tRNS key (grey 0 transparent): handled right, white there, scaled elsewhere."""
    grey = np.array([[0, 257 * 100], [65535, 0]], np.uint16)
    Image.fromarray(grey).save(tmp_path / "k.png", transparency=0)
    decoded = np.asarray(images.open_rgb(tmp_path / "k.png"))
    assert decoded[:, :, 0].tolist() == [[255, 100], [255, 255]]


def test_img_32_bit_integer_tiff_is_scaled_over_its_range(tmp_path):
    """Mode I TIFFs: 16-bit values scaled as 16-bit; values past 16 bits stretched darkest..brightest: handled right."""
    sixteen = np.array([[0, 257 * 50, 65535]], np.int32)
    Image.fromarray(sixteen).save(tmp_path / "i16.tiff")
    wide = np.array([[-1000, 0, 99000]], np.int32)  # (v + 1000) * 255 / 100000
    Image.fromarray(wide).save(tmp_path / "i32.tiff")
    with Image.open(tmp_path / "i32.tiff") as raw:
        assert raw.mode == "I"
    assert np.asarray(images.open_rgb(tmp_path / "i16.tiff"))[0, :, 0].tolist() == [0, 50, 255]
    assert np.asarray(images.open_rgb(tmp_path / "i32.tiff"))[0, :, 0].tolist() == [0, 3, 255]


def test_img_float_tiff_in_0_to_1_is_scaled_to_255(tmp_path):
    """A float (mode F) TIFF of values 0..1: handled right, shown as value x 255 (PIL alone makes it all black)."""
    values = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    Image.fromarray(values).save(tmp_path / "f.tiff")
    with Image.open(tmp_path / "f.tiff") as raw:
        assert raw.mode == "F"
    assert np.asarray(images.open_rgb(tmp_path / "f.tiff"))[0, :, 0].tolist() == [0, 64, 128, 255]


def test_img_16_bit_rgb_png_keeps_its_colours(tmp_path):
    """A 48-bit RGB PNG (16 bits a channel, which PIL cannot write: written to the spec): handled right, v/257."""
    values = np.array([[[65535, 0, 32896], [257 * 10, 257 * 200, 65535]]], ">u2")  # 1 row, 2 pixels
    rows = b"".join(b"\x00" + row.tobytes() for row in values)  # filter byte 0 before each row
    (tmp_path / "rgb48.png").write_bytes(_img_png([_img_ihdr(2, 1, 16, 2), (b"IDAT", zlib.compress(rows)),
                                                   (b"IEND", b"")]))
    assert images.problem(tmp_path / "rgb48.png") is None
    decoded = np.asarray(images.open_rgb(tmp_path / "rgb48.png")).astype(int)
    assert np.abs(decoded - np.round(values.astype(int) / 257)).max() <= 1


# ------------------------------------------------------------------------------------------- transparency, colour


def test_img_rgba_transparent_region_is_white_and_the_rest_keeps_its_colour(tmp_path):
    """An RGBA PNG: left half fully transparent, right half opaque red, one pixel half transparent: handled right."""
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:, 2:] = (200, 30, 30, 255)
    rgba[0, 3] = (0, 0, 200, 128)  # half-transparent blue over white: 255 - 128 * (255 - c) / 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    decoded = np.asarray(images.open_rgb(tmp_path / "t.png"))
    assert (decoded[:, :2] == 255).all()
    assert (decoded[1:, 2:] == (200, 30, 30)).all()
    assert np.abs(decoded[0, 3].astype(int) - (127, 127, 227)).max() <= 1


def test_img_grey_with_alpha_la_is_on_white(tmp_path):
    """An LA PNG, a transparent top row over grey 40: handled right, white above, grey 40 below."""
    la = np.zeros((2, 3, 2), np.uint8)
    la[..., 0], la[1, :, 1] = 40, 255
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert np.asarray(images.open_rgb(tmp_path / "la.png"))[..., 0].tolist() == [[255] * 3, [40] * 3]


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_img_palette_with_a_transparent_index_is_white_there(tmp_path, suffix):
    """A palette (P) image whose index 1 is transparent, in PNG and GIF: handled right, white there."""
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 0, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / f"p.{suffix}", transparency=1)
    assert np.asarray(images.open_rgb(tmp_path / f"p.{suffix}")).tolist() == [[[10, 20, 30], [255, 255, 255]]]


def test_img_cmyk_jpeg_is_shown_in_its_colours(tmp_path):
    """A CMYK JPEG (print workflows): handled right, RGB of the same colours."""
    Image.fromarray(_img_upright()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as raw:
        assert raw.mode == "CMYK"
    _img_assert_blocks(images.open_rgb(tmp_path / "c.jpg"), _img_upright())


def test_img_the_collator_gives_the_model_the_same_white_background(tmp_path, tiny_model_dir):
    """An RGBA image as the training collator hands it to the processor: handled right, white, not black."""
    from vlmtune.collator import open_images

    Image.new("RGBA", (28, 28), (200, 0, 0, 0)).save(tmp_path / "clear.png")
    messages = [{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "clear.png")}]}]
    [picture] = open_images(messages, _img_tiny_processor(tiny_model_dir))
    assert picture.mode == "RGB" and (np.asarray(picture) == 255).all()


# ------------------------------------------------------------------------------------------- several frames


@pytest.mark.parametrize("suffix", ["gif", "png", "tiff"])
def test_img_animation_or_pages_give_the_first_frame_and_are_counted(tmp_path, suffix):
    """An animated GIF, an APNG, a 3-page TIFF: handled right, the first frame; counted in a note naming one."""
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / f"anim.{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    Image.new("RGB", (8, 8)).save(tmp_path / "still.png")
    assert images.problem(path) is None
    assert (np.asarray(images.open_rgb(path)) == (255, 0, 0)).all()
    assert images.notes([str(path), str(tmp_path / "still.png")]) == [
        f"1 of 2 images have several frames (an animation or pages; e.g. {path}, 3 frames): the model sees the "
        "first frame of each"]
    assert images.notes([str(tmp_path / "still.png")]) == []


def test_img_csv2json_keeps_good_rows_past_bad_files_and_prints_the_frames_note(tmp_path, capsys):
    """data.csv with an empty, a cut and an animated image among good ones: bad ones skipped and named, the rest
    kept, the animation counted in the summary."""
    data_dir = tmp_path / "data"
    (data_dir / "images").mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), (200, 30, 30)).save(data_dir / "images" / f"{name}.png")
    Image.new("RGB", (8, 8)).save(data_dir / "images" / "anim.gif", save_all=True,
                                  append_images=[Image.new("RGB", (8, 8), (0, 0, 255))])
    (data_dir / "images" / "empty.jpg").write_bytes(b"")
    full = (data_dir / "images" / "a.png").read_bytes()
    (data_dir / "images" / "cut.png").write_bytes(full[:-20])  # inside the pixel data: the header is whole
    rows = [("a-1", "images/a.png", "A."), ("e-1", "images/empty.jpg", "E."), ("c-1", "images/cut.png", "C."),
            ("g-1", "images/anim.gif", "G."), ("b-1", "images/b.png", "B.")]
    with open(data_dir / "data.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("id", "image_path", "caption"), *rows])
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    out = capsys.readouterr().out
    with open(data_dir / "rejected.csv", encoding="utf-8", newline="") as f:
        rejected = list(csv.DictReader(f))
    assert rejected[0] == {"id": "e-1", "reason": f"image file is empty (0 bytes): {data_dir}/images/empty.jpg; copy "
                                                  "the image again"}
    assert rejected[1]["id"] == "c-1" and rejected[1]["reason"].startswith(
        f"image does not decode: {data_dir}/images/cut.png (")
    assert len(rejected) == 2
    assert (f"1 of 3 images have several frames (an animation or pages; e.g. {data_dir}/images/anim.gif, 2 frames): "
            "the model sees the first frame of each\n") in out
    kept = json.loads((data_dir / "train.json").read_text()) + json.loads((data_dir / "val.json").read_text())
    assert sorted(record["id"] for record in kept) == ["a-1", "b-1", "g-1"]


# ------------------------------------------------------------------------------------------- refused files


def test_img_decompression_bomb_header_is_refused_before_any_decoding(tmp_path, monkeypatch):
    """A PNG header claiming 20000x20000 pixels with no pixels behind it: clear error, from the header alone."""
    (tmp_path / "bomb.png").write_bytes(_img_png([_img_ihdr(20000, 20000), (b"IDAT", zlib.compress(b"\0" * 64)),
                                                  (b"IEND", b"")]))
    _img_no_decoding(monkeypatch)
    reason = images.problem(tmp_path / "bomb.png")
    assert reason.startswith(f"image too large: {tmp_path / 'bomb.png'} (Image size (400000000 pixels) exceeds ")
    assert reason.endswith(f"resize it to at most {images.MAX_PIXELS:,} pixels")


def test_img_image_over_the_pixel_limit_is_refused_by_its_header_with_its_size(tmp_path, monkeypatch):
    """A PNG header of 10000x9000 (90 M pixels, where PIL only warns): clear error naming the size and the limit."""
    (tmp_path / "huge.png").write_bytes(_img_png([_img_ihdr(10000, 9000), (b"IDAT", zlib.compress(b"\0" * 64)),
                                                  (b"IEND", b"")]))
    _img_no_decoding(monkeypatch)
    assert images.problem(tmp_path / "huge.png") == (
        f"image too large: {tmp_path / 'huge.png'} is 10000x9000, 90,000,000 pixels, over the limit of 89,478,485 "
        "that guards against decompression bombs; resize it (the model sees at most --image_max_pixels of it anyway)")


def test_img_aspect_ratio_the_qwen_processor_refuses_is_refused_and_tiny_images_it_takes_are_kept(
        tmp_path, tiny_model_dir):
    """1x300 and 201x1 images (the real Qwen processor raises): clear error; 1x1, 5x500, 200x1 (it takes them):
    handled right, kept."""
    image_processor = _img_tiny_processor(tiny_model_dir).image_processor
    for size in [(1, 300), (201, 1), (1, 1), (5, 500), (200, 1)]:
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        Image.new("RGB", size, (90, 90, 90)).save(path)
        try:
            image_processor(images=[images.open_rgb(path)])
            taken = True
        except ValueError:
            taken = False
        reason = images.problem(path)
        assert (reason is None) == taken == (max(size) <= 200 * min(size)), (size, reason)
    assert images.problem(tmp_path / "1x300.png") == (
        f"image too thin: {tmp_path / '1x300.png'} is 1x300, an aspect ratio of 300 to 1, and the Qwen processors "
        "refuse any above 200 to 1; crop it into parts or pad it")


def test_img_zero_byte_file_is_named_empty(tmp_path):
    """A zero-byte .png: clear error naming the file as empty."""
    (tmp_path / "zero.png").write_bytes(b"")
    assert images.problem(tmp_path / "zero.png") == (
        f"image file is empty (0 bytes): {tmp_path / 'zero.png'}; copy the image again")


def test_img_truncated_jpeg_is_refused(tmp_path):
    """A JPEG cut in half (it passes PIL's verify(); only decoding sees it): clear error naming the file."""
    Image.fromarray(_img_upright()).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    reason = images.problem(tmp_path / "cut.jpg")
    assert reason.startswith(f"image does not decode: {tmp_path / 'cut.jpg'} (OSError: ")
    assert reason.endswith("; replace it with a copy that opens")


def test_img_text_file_named_jpg_is_refused(tmp_path):
    """A text file named .jpg: clear error naming the file and what to do."""
    (tmp_path / "notes.jpg").write_text("not a picture\n")
    assert images.problem(tmp_path / "notes.jpg") == (
        f"image does not decode: {tmp_path / 'notes.jpg'} (no image PIL can open: another kind of file, or its "
        "header is damaged or cut short); replace it with a PNG or JPEG that opens")


# ------------------------------------------------------------------------------------------- test.py


def _img_caption_run(tmp_path):
    """A run folder of a random tiny Qwen2-VL with an untrained adapter and one caption image, as
    tests/test_evaluation.py makes it."""
    from peft import LoraConfig, get_peft_model

    from vlmtune.tiny import build_tiny_qwen2_vl

    model, processor = build_tiny_qwen2_vl()
    model_dir, data_dir, run_dir = tmp_path / "model", tmp_path / "data", tmp_path / "run"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["model.language_model.layers.0.self_attn.q_proj"])
    get_peft_model(model, lora).save_pretrained(run_dir)
    (data_dir / "images").mkdir(parents=True)
    Image.new("RGB", (56, 56), (200, 30, 30)).save(data_dir / "images" / "red.png")
    records = [{"id": "red", "task": "caption", "conversations": [
        {"from": "user", "value": "<|vision_start|>images/red.png<|vision_end|>Describe this image."},
        {"from": "assistant", "value": "A red square."}]}]
    (data_dir / "val.json").write_text(json.dumps(records))
    run = {"data": {"task": "caption", "data_dir": str(data_dir)},
           "model": {"model_dir": str(model_dir), "image_min_pixels": 3136, "image_max_pixels": 112 * 112,
                     "trust_remote_code": False},
           "swanlab": False}
    (run_dir / "run_config.json").write_text(json.dumps(run))
    return run_dir


def test_img_bad_files_in_test_img_are_skipped_and_named_and_the_rest_answered(tmp_path, capsys):
    """test-img/ holding a cut JPEG, a text file named .png and a 1x300 strip among good images: skipped and named,
    the good ones answered, metrics and predictions written."""
    run_dir = _img_caption_run(tmp_path)
    test_img = tmp_path / "test-img"
    test_img.mkdir()
    Image.new("RGB", (56, 56), (30, 160, 60)).save(test_img / "green.png")
    _img_save_oriented(test_img / "phone.jpg", 6, quality=95)
    data = (test_img / "phone.jpg").read_bytes()
    (test_img / "cut.jpg").write_bytes(data[:len(data) // 2])
    (test_img / "readme.png").write_text("not a picture")
    Image.new("RGB", (1, 300)).save(test_img / "strip.png")
    metrics = test_script.main(["--run_dir", str(run_dir), "--max_new_tokens", "2", "--test_img_dir", str(test_img)])
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith(f"{test_img}: skipped, ")]
    assert len(skipped) == 3
    assert skipped[0].startswith(f"{test_img}: skipped, image does not decode: {test_img / 'cut.jpg'} (OSError: ")
    assert skipped[1] == (f"{test_img}: skipped, image does not decode: {test_img / 'readme.png'} (no image PIL "
                          "can open: another kind of file, or its header is damaged or cut short); replace it with a "
                          "PNG or JPEG that opens")
    assert skipped[2].startswith(f"{test_img}: skipped, image too thin: {test_img / 'strip.png'} is 1x300")
    extra = [json.loads(line) for line in (run_dir / "test-img-predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in extra] == ["green.png", "phone.jpg"]
    assert all(isinstance(row["base"], str) and isinstance(row["prediction"], str) for row in extra)
    assert metrics["n"] == 1 and json.loads((run_dir / "metrics.json").read_text()) == metrics
