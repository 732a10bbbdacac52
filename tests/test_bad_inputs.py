"""The catalogue of bad input (issue 10): one test a case, across the five steps, each asserting what a user should
get. Each docstring names the input and its outcome class:

- "skipped and named": left out, named with the reason, and the good records after it kept;
- "clear error": one message naming the file, record, line or flag and the fix, exit status 1, no traceback;
- "handled right": the input is what a person sees in it (an image as a viewer shows it, text as text), or the fault
  leaves nothing that a later step would read.

Real files and faults are the oracles: images written with PIL (or byte by byte to the PNG spec) in tmp_path, the
expected pixels built without vlmtune.images; the real tokenizers and processors of ../shared/fixtures for what a
control token is; /dev/full for a full disk; the real reference configs for model folders.
"""

import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from transformers import AutoTokenizer

import csv2json
import data2csv
import load_model
import merge
import test as test_script
import train
from vlmtune import formats, images, metrics, modeling, saving, sources, text
from vlmtune.collator import IGNORE_INDEX, TrainCollator, UnreadableImage
from vlmtune.formats import answer_count_notes, check_row
from vlmtune.generation import generate
from vlmtune.modeling import load_processor


# ---------------------------------------------------------------------------------------------- Images

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


# ------------------------------------------------------------------------------------ Records and text

FAMILIES = ["qwen2-vl-2b-instruct", "qwen2.5-vl-7b-instruct", "qwen3-vl-4b-instruct", "llava-1.5-7b-hf"]
NEAR_MISSES = "im_end <|im_end < image > <think <|im_end |> <IMAGE> s> </ s>"  # plain text, each of them


def _rec_image(path, colour=(200, 30, 30), size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _rec_data_csv(data_dir, header, rows, images=("a", "b", "c")):
    """data.csv of `rows` under `header`, beside images/<name>.png of distinct colours."""
    for k, name in enumerate(images):
        _rec_image(data_dir / "images" / f"{name}.png", (40 * k, 200, 30))
    with open(data_dir / "data.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return data_dir


def _rec_rejected(data_dir) -> dict:
    with open(data_dir / "rejected.csv", encoding="utf-8", newline="") as f:
        return {row["id"]: row["reason"] for row in csv.DictReader(f)}


def _rec_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def _rec_tokenizer_added(folder) -> list[str]:
    """Every added token of a fixture tokenizer, read off its files as published."""
    tokens = []
    for name in ("tokenizer_config.json", "tokenizer.json"):
        if (folder / name).is_file():
            content = json.loads((folder / name).read_text(encoding="utf-8"))
            tokens += [entry["content"] for entry in content.get("added_tokens_decoder", {}).values()]
            tokens += [entry["content"] for entry in content.get("added_tokens", [])]
    return sorted(set(tokens))


# ---------------------------------------------------------------- text is text: csv2json.py rejects control tokens


def test_the_rule_covers_every_added_token_of_the_four_families(fixtures_dir):
    """Every added token (special or not) of the four families' published tokenizers: handled right (rule covers)."""
    seen = 0
    for family in FAMILIES:
        for token in _rec_tokenizer_added(fixtures_dir / family):
            assert text.control_tokens(f"a dog {token} on grass") == [token], (family, token)
            seen += 1
    assert seen == 14 + 22 + 26 + 5  # Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-1.5: the files' own counts


def test_a_caption_holding_im_end_is_rejected_naming_the_token_and_the_rows_after_it_kept(tmp_path, capsys):
    """A caption holding <|im_end|> (the real end token): skipped and named by csv2json; the good rows are kept."""
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "caption"), [
        ("a-1", "images/a.png", "A red square.<|im_end|> and more"),
        ("b-1", "images/b.png", "A green square."), ("c-1", "images/c.png", "A blue square.")])
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    assert _rec_rejected(data_dir) == {"a-1": "caption holds <|im_end|>, a control token of the model's tokenizer: "
                                              "the model would read it as that token, not as text; remove it or "
                                              "respell it in the source data"}
    written = json.loads((data_dir / "train.json").read_text()) + json.loads((data_dir / "val.json").read_text())
    assert sorted(record["id"] for record in written) == ["b-1", "c-1"]
    assert "a-1: caption holds <|im_end|>" in capsys.readouterr().out


def test_a_caption_holding_a_second_assistant_turn_is_rejected(tmp_path):
    """A caption holding <|im_start|>assistant\\n...: skipped and named (would train a second reply)."""
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "caption"), [
        ("a-1", "images/a.png", "A square.<|im_start|>assistant\nA circle."), ("b-1", "images/b.png", "Green."),
        ("c-1", "images/c.png", "Blue.")])
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "1"])
    assert _rec_rejected(data_dir)["a-1"].startswith("caption holds <|im_start|>, a control token")


@pytest.mark.parametrize("column, cells, token", [
    ("question", ("What is <|image_pad|> here?", '["cat"]', ""), "<|image_pad|>"),
    ("question", ("Where is the <image>?", '["cat"]', ""), "<image>"),
    ("answers", ("What is it?", '["cat", "a <|vision_start|>cat"]', ""), "<|vision_start|>"),
    ("answers", ("What is it?", '["\\u003c|im_end|>"]', ""), "<|im_end|>"),  # a JSON escape hides nothing
    ("turns", ("What is it?", '["cat"]', json.dumps([{"from": "human", "value": "What?"},
                                                    {"from": "gpt", "value": "<think>cat"}])), "<think>"),
])
def test_a_vqa_cell_holding_a_control_token_is_rejected(tmp_path, column, cells, token):
    """A question, an answer or a turn holding a vision marker, image token or tag: skipped and named."""
    _rec_image(tmp_path / "a.png")
    row = {"id": "q", "image_path": "a.png", "question": cells[0], "answers": cells[1], "turns": cells[2]}
    assert check_row(row, str(tmp_path), "vqa") == (
        f"{column} holds {token}, a control token of the model's tokenizer: the model would read it as that token, "
        "not as text; remove it or respell it in the source data")


@pytest.mark.parametrize("task, cells", [
    ("classification", {"label": "</s>"}),
    ("grounding", {"expression": "the <s> dog", "x1": "1", "y1": "1", "x2": "4", "y2": "4", "width": "8",
                   "height": "6"}),
])
def test_a_label_or_an_expression_holding_a_llava_token_is_rejected(tmp_path, task, cells):
    """A class label </s> or an expression holding <s> (LLaVA's end and start tokens): skipped and named."""
    _rec_image(tmp_path / "a.png")
    reason = check_row({"id": "x", "image_path": "a.png", **cells}, str(tmp_path), task)
    assert reason.startswith(f"{'label' if task == 'classification' else 'expression'} holds "
                             f"{'</s>' if task == 'classification' else '<s>'}, a control token")


def test_near_misses_of_control_tokens_are_plain_text_to_csv2json(tmp_path):
    """Text that only looks like a token ("im_end", "<|im_end", "< image >", "<think"): handled right (accepted)."""
    _rec_image(tmp_path / "a.png")
    assert text.control_tokens(NEAR_MISSES) == []
    assert check_row({"id": "x", "image_path": "a.png", "caption": NEAR_MISSES}, str(tmp_path), "caption") is None


@pytest.mark.parametrize("family", ["qwen2-vl-2b-instruct", "llava-1.5-7b-hf"])
def test_near_misses_train_as_their_plain_text_tokens_on_the_real_processors(fixtures_dir, family):
    """A reply of near misses, on the real Qwen2-VL and LLaVA processors: handled right: the labels are the reply's
    own text and one closing token, and the image tokens are those of a plain reply."""
    processor = load_processor(str(fixtures_dir / family), 3136, 78400)
    tokenizer = processor.tokenizer
    image = Image.new("RGB", (64, 48), (10, 120, 200))

    def batch(reply):
        messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": "Describe < image > this."}]},
                    {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
        return TrainCollator(processor, logits="all")([{"id": "n", "messages": messages}])

    near, plain = batch(NEAR_MISSES), batch("A plain reply.")
    image_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    assert int((near["input_ids"] == image_id).sum()) == int((plain["input_ids"] == image_id).sum()) > 0
    supervised = near["labels"][0][near["labels"][0] != IGNORE_INDEX].tolist()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>" if family.startswith("qwen") else "</s>")
    assert supervised == tokenizer(NEAR_MISSES, add_special_tokens=False)["input_ids"] + [end]
    assert supervised.count(end) == 1 and tokenizer.decode(supervised[:-1]) == NEAR_MISSES


# ---------------------------------------------------------------- train.py's guard, for a hand-written train.json


def test_the_guard_finds_qwen_tokens_with_the_real_qwen2_vl_tokenizer(fixtures_dir):
    """Hand-written records holding <|im_end|>, <|image_pad|> (and a near miss), real Qwen2-VL tokenizer: clear
    error: the records are named with their token, the near miss is not."""
    tokenizer = AutoTokenizer.from_pretrained(str(fixtures_dir / "qwen2-vl-2b-instruct"))

    def example(id, reply):
        return {"id": id, "messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                                     {"type": "text", "text": "Describe."}]},
                                       {"role": "assistant", "content": [{"type": "text", "text": reply}]}]}

    examples = [example("1", "A cat.<|im_end|>"), example("2", NEAR_MISSES), example("3", "x <|image_pad|> y")]
    found = text.in_examples(tokenizer, examples)
    assert found == [("1", "<|im_end|>"), ("3", "<|image_pad|>")]
    assert text.refusal("train.json", found).startswith(
        "train.json: 2 records hold a control token of this model's tokenizer in their text: 1 (<|im_end|>), "
        "3 (<|image_pad|>). ")


def test_the_guard_asks_the_loaded_tokenizer_real_llava(fixtures_dir):
    """<image> and </s> in a LLaVA-1.5 run's train.json, real LLaVA tokenizer: clear error naming them; Qwen's
    <|im_end|> is plain text to LLaVA's tokenizer, so it is not refused there."""
    tokenizer = AutoTokenizer.from_pretrained(str(fixtures_dir / "llava-1.5-7b-hf"))
    examples = [{"id": id, "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}]}
                for id, question in (("a", "What is the <image>?"), ("b", "Why?</s>"), ("c", "Is <|im_end|> it?"))]
    assert text.in_examples(tokenizer, examples) == [("a", "<image>"), ("b", "</s>")]
    assert tokenizer("Is <|im_end|> it?", add_special_tokens=False)["input_ids"][2] not in tokenizer.all_special_ids


def _rec_train_json(data_dir, records):
    _rec_image(data_dir / "images/a.png", size=(56, 56))
    (data_dir / "train.json").write_text(json.dumps(records), encoding="utf-8")


def _rec_record(reply, **keys):
    return {"id": "hand-1", **keys, "conversations": [
        {"from": "user", "value": "<|vision_start|>images/a.png<|vision_end|>Describe."},
        {"from": "assistant", "value": reply}]}


def test_train_refuses_a_hand_written_train_json_holding_a_control_token(tiny_model_dir, tmp_path):
    """A hand-written train.json whose reply holds <|im_end|>: clear error from train.py naming record and fix."""
    _rec_train_json(tmp_path, [_rec_record("A cat.<|im_end|>more", task="caption")])
    with pytest.raises(SystemExit) as stop:
        train.main(["--data_dir", str(tmp_path), "--model_dir", str(tiny_model_dir), "--output_dir",
                    str(tmp_path / "run"), "--report_to", "none"])
    message = str(stop.value.code)
    assert message.startswith(f"{tmp_path / 'train.json'}: 1 records hold a control token of this model's tokenizer "
                              "in their text: hand-1 (<|im_end|>).")
    assert "remove or respell it in the source data and run data2csv.py and csv2json.py again" in message
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_train_json_without_task_keys(tiny_model_dir, tmp_path):
    """A grounding train.json whose records lack "task": clear error (run csv2json.py again, or add the key), not
    trained as captions."""
    _rec_train_json(tmp_path, [_rec_record('[{"bbox_2d": [1, 1, 9, 9], "label": "cat"}]')])
    with pytest.raises(SystemExit) as stop:
        train.main(["--task", "grounding", "--data_dir", str(tmp_path), "--model_dir", str(tiny_model_dir),
                    "--output_dir", str(tmp_path / "run"), "--report_to", "none"])
    assert str(stop.value.code) == (
        f"{tmp_path / 'train.json'}: 1 of its 1 records have no \"task\" key (hand-1), so what they train is "
        "unknown: run csv2json.py again (it writes the key in every record), or add \"task\": \"grounding\" to each "
        "record")


# ---------------------------------------------------------------- VQA answers other than ten


def test_vqa_rows_with_other_than_ten_answers_are_counted_with_what_they_score(tmp_path, capsys):
    """VQA rows of 1 and 3 answers (and ten, and soft scores): handled right and named: csv2json counts them and says
    what a correct answer scores; the numbers are metrics.vqa_accuracy's own."""
    ten = json.dumps(["cat"] * 10)
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "question", "answers", "answer_scores"), [
        ("1", "images/a.png", "What?", '["cat"]', ""), ("2", "images/a.png", "Who?", '["me"]', ""),
        ("3", "images/b.png", "Why?", '["x", "x", "x"]', ""), ("4", "images/c.png", "How?", ten, ""),
        ("5", "images/c.png", "Which?", '["red"]', '{"red": 0.9}')])
    csv2json.main(["--task", "vqa", "--data_dir", str(data_dir), "--val_size", "1"])
    out = capsys.readouterr().out
    assert "vqa answers: 2 rows have 1 answer, 1 have 3 answers, not VQA's 10 human answers a question:\n" in out
    assert ("  1 answer: scored by exact match (after VQA's answer normalisation): a correct answer scores 1.00\n"
            in out)
    assert ("  3 answers: scored by VQA accuracy over those 3 (min(matches / 3, 1), averaged over leaving each out): "
            "an answer all 3 give scores 0.67, one given by only one of them 0.22 (with 10 answers: 1.00 and 0.30)\n"
            in out)
    for n in (2, 3, 4, 5):  # the note's numbers are what scoring really gives
        (line,) = [line for line in answer_count_notes([{"answers": json.dumps(["cat"] * n)}])
                   if line.startswith(f"  {n} answers")]
        assert f"scores {metrics.vqa_accuracy('cat', ['cat'] * n):.2f}," in line
        assert f"them {metrics.vqa_accuracy('cat', ['cat'] + ['dog'] * (n - 1)):.2f} " in line
    assert (metrics.vqa_accuracy("cat", ["cat"] * 10), round(metrics.vqa_accuracy("cat", ["cat"] + ["dog"] * 9), 2)) \
        == (1.0, 0.3)
    assert answer_count_notes([{"answers": ten}]) == []


# ---------------------------------------------------------------- one bad record never stops a reader


def test_coco_captions_skip_malformed_annotations_and_keep_the_good_ones_after(tmp_path):
    """COCO captions: annotations without caption, image_id or id, a caption that is a number: skipped and named
    (by id, or "record N of <file>"); the good annotation after them is kept."""
    _rec_image(tmp_path / "1.jpg")
    path = _rec_json(tmp_path / "captions.json", {"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [
        {"image_id": 1, "id": 10}, {"id": 11, "caption": "No image."}, {"image_id": 1, "id": 12, "caption": 7},
        "a string", {"image_id": 1, "id": 13, "caption": "A dog. "}]})
    skipped = []
    assert [(r["id"], r["caption"]) for r in sources.coco_captions(path, str(tmp_path), skipped)] == [
        ("1_13", "A dog.")]
    assert skipped == [("1_10", "no 'caption' (its fields: id, image_id)"),
                       (f"record 2 of {path}", "no 'image_id' (its fields: caption, id)"),
                       ("1_12", "its caption is a int, not a text"),
                       (f"record 4 of {path}", "it is a str, not an object")]


def test_coco_images_entry_without_file_name_names_its_annotations(tmp_path):
    """A COCO "images" entry without file_name: skipped and named; its annotations are skipped as of an unknown
    image, the others kept."""
    _rec_image(tmp_path / "2.jpg")
    path = _rec_json(tmp_path / "captions.json", {"images": [{"id": 1}, {"id": 2, "file_name": "2.jpg"}],
                                                  "annotations": [{"image_id": 1, "id": 10, "caption": "One."},
                                                                  {"image_id": 2, "id": 20, "caption": "Two."}]})
    skipped = []
    assert [r["id"] for r in sources.coco_captions(path, str(tmp_path), skipped)] == ["2_20"]
    assert skipped == [(f"image 1 of {path}", "no 'file_name' (its fields: id): the annotations of this image are "
                                              "skipped"), ("1_10", "image_id 1 is not in the file's images")]


def test_coco_instances_skip_annotations_without_bbox_or_with_a_bad_one(tmp_path):
    """COCO instances: an annotation without bbox, without category_id, with a bbox of 3 numbers or of texts:
    skipped and named; the good one after them kept."""
    _rec_image(tmp_path / "1.jpg")
    good = {"image_id": 1, "id": 15, "category_id": 2, "iscrowd": 0, "bbox": [1, 1, 3, 2]}
    path = _rec_json(tmp_path / "instances.json", {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 8, "height": 6}],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3}],
        "annotations": [{**good, "id": 11, "category_id": 1, "bbox": None} | {"bbox": [1, 1, 2]},
                        {k: v for k, v in good.items() if k != "bbox"} | {"id": 12, "category_id": 1},
                        {k: v for k, v in good.items() if k != "category_id"} | {"id": 13},
                        {**good, "id": 14, "category_id": 1, "bbox": ["1", "1", "2", "2"]}, good]})
    skipped = []
    records = list(sources.coco_grounding(path, str(tmp_path), skipped))
    assert [(r["id"], r["expression"], r["box"]) for r in records] == [("1_15", "cat", (1, 1, 4, 3))]
    assert skipped == [(f"category 3 of {path}", "no 'name' (its fields: id)"),
                       ("1_11", "its bbox is [1, 1, 2], not COCO's [x, y, width, height]"),
                       ("1_12", "no 'bbox' (its fields: category_id, id, image_id, iscrowd)"),
                       ("1_13", "no 'category_id' (its fields: bbox, id, image_id, iscrowd)"),
                       ("1_14", "its bbox is ['1', '1', '2', '2'], not COCO's [x, y, width, height]")]


def test_a_captions_file_given_for_grounding_is_still_a_clear_error(tmp_path):
    """A captions file (no annotation has a bbox) given for grounding: clear error naming the file and the fix."""
    path = _rec_json(tmp_path / "captions.json", {"images": [], "categories": [], "annotations": [
        {"image_id": 1, "id": 1, "caption": "A dog."}]})
    with pytest.raises(ValueError, match=r"captions\.json: no annotation has a 'bbox'; give an instances_\*\.json"):
        list(sources.coco_grounding(path, str(tmp_path), []))


def test_llava_records_without_id_conversations_or_a_turns_value_are_skipped(tmp_path):
    """LLaVA entries without "conversations" or "id", a turn without "value", an image that is no path: skipped and
    named; the good conversation after them is kept."""
    _rec_image(tmp_path / "coco/1.jpg")
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A bus."}]
    path = _rec_json(tmp_path / "llava.json", [
        {"id": "a", "image": "coco/1.jpg"}, {"image": "coco/1.jpg", "conversations": turns},
        {"id": "c", "image": "coco/1.jpg", "conversations": [turns[0], {"from": "gpt"}]},
        {"id": "d", "image": 5, "conversations": turns}, {"id": "e", "image": "coco/1.jpg", "conversations": turns}])
    skipped = []
    assert [r["id"] for r in sources.llava_conversations(path, str(tmp_path), skipped)] == ["e"]
    assert skipped == [("a", "no 'conversations' (its fields: id, image)"),
                       (f"record 2 of {path}", "no 'id' (its fields: conversations, image)"),
                       ("c", "turn 2 is {'from': 'gpt'}, not {\"from\": \"human\" or \"gpt\", \"value\": text}"),
                       ("d", "its image is 5, not the path of an image file")]


def test_vqa_questions_without_question_id_or_with_answers_not_a_list_are_skipped(tmp_path):
    """VQA: a question without question_id, an annotation whose answers are not a list, an annotation without
    question_id: skipped and named; the good question after them kept."""
    _rec_image(tmp_path / "COCO_train2014_000000000009.jpg")
    questions = _rec_json(tmp_path / "q.json", {"questions": [
        {"image_id": 9, "question": "Why?"}, {"image_id": 9, "question": "What?", "question_id": 2},
        {"image_id": 9, "question": "Who?", "question_id": 3}]})
    annotations = _rec_json(tmp_path / "a.json", {"annotations": [
        {"question_id": 2, "answers": "net"}, {"answers": []},
        {"question_id": 3, "answers": [{"answer": "me", "answer_id": 1}]}]})
    skipped = []
    records = list(sources.vqa_questions(questions, annotations, str(tmp_path), skipped))
    assert [(r["id"], r["answers"]) for r in records] == [("3", ["me"])]
    assert skipped == [
        (f"record 2 of {annotations}", "no 'question_id' (its fields: answers)"),
        (f"record 1 of {questions}", "no 'question_id' (its fields: image_id, question)"),
        ("2", f"its annotation (record 1 of {annotations}) is malformed: its answers are 'net', not a list of "
              "{\"answer\": text, ...}")]


def test_lxmert_entries_without_sent_or_with_a_label_list_are_skipped(tmp_path):
    """LXMERT: an entry without "sent", one whose label is a list: skipped and named; the good one after kept."""
    _rec_image(tmp_path / "COCO_val2014_000000000042.jpg")
    entry = {"question_id": 3, "img_id": "COCO_val2014_000000000042", "sent": "Why?", "label": {"no": 1}}
    path = _rec_json(tmp_path / "minival.json", [{**entry, "question_id": 1, "sent": None} | {"sent": 4},
                                                 {k: v for k, v in entry.items() if k != "sent"} | {"question_id": 2},
                                                 {**entry, "question_id": 4, "label": ["no"]}, entry])
    skipped = []
    assert [r["id"] for r in sources.lxmert_vqa(path, str(tmp_path), skipped)] == ["3"]
    assert skipped == [("1", "its sent (the question) is a int, not a text"),
                       ("2", "no 'sent' (its fields: img_id, label, question_id)"),
                       ("4", "its 'label' is ['no'], not an object of answer: score")]


def test_a_llava_reader_given_a_file_of_rows_is_a_clear_error(tmp_path):
    """A rows file given to --source llava (no record holds conversations): clear error naming the file."""
    path = _rec_json(tmp_path / "rows.json", [{"image": "a.jpg", "question": "Why?", "answers": "x"}])
    with pytest.raises(ValueError, match=r"rows\.json: no record holds \"conversations\"; a LLaVA conversation file"):
        list(sources.llava_conversations(path, str(tmp_path), []))


# ---------------------------------------------------------------- one image file per image


def _rec_folder_run(tmp_path, files, *extra):
    """data2csv.py --source folder over class folders holding `files` (path -> colour); (rows, summary)."""
    for path, colour in files.items():
        _rec_image(tmp_path / "raw" / path, colour)
    data2csv.main(["--task", "classification", "--source", "folder", "--folder_dir", str(tmp_path / "raw"),
                   "--num_samples", "0", "--data_dir", str(tmp_path / "out"), *extra])
    with open(tmp_path / "out/data.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _rec_pixel(path):
    with Image.open(path) as image:
        return image.convert("RGB").getpixel((0, 0))


@pytest.mark.parametrize("first, second", [("cat/dup.jpg", "cat/dup.JPG"), ("sea-lion/1.png", "sea/lion-1.png")])
def test_paths_that_read_alike_get_two_image_files_each_holding_its_own_pixels(tmp_path, capsys, first, second):
    """Two class-folder images whose old ids collided (dup.jpg / dup.JPG, sea-lion/1.png / sea/lion-1.png): handled
    right: two image files, each row pointing at its own, with its own pixels and label."""
    rows = _rec_folder_run(tmp_path, {first: (250, 0, 0), second: (0, 0, 250)})
    by_id = {row["id"]: row for row in rows}
    assert sorted(by_id) == sorted([first, second])
    assert by_id[first]["image_path"] != by_id[second]["image_path"]
    assert _rec_pixel(tmp_path / "out" / by_id[first]["image_path"])[0] > 200  # red, as written
    assert _rec_pixel(tmp_path / "out" / by_id[second]["image_path"])[2] > 200  # blue
    assert {by_id[first]["label"], by_id[second]["label"]} == {first.split("/")[0], second.split("/")[0]}
    assert len(list((tmp_path / "out/images").iterdir())) == 2


def test_llava_and_rows_image_ids_of_paths_that_read_alike_differ(tmp_path):
    """LLaVA and rows images a/b.jpg and a_b.jpg (the old "/" -> "_" ids collided): handled right: two image ids;
    one image spelled a/./b.jpg keeps one id."""
    for name in ("a/b.jpg", "a_b.jpg"):
        _rec_image(tmp_path / name)
    turns = [{"from": "human", "value": "What?"}, {"from": "gpt", "value": "A bus."}]
    llava = _rec_json(tmp_path / "llava.json", [{"id": str(k), "image": name, "conversations": turns}
                                                for k, name in enumerate(("a/b.jpg", "a_b.jpg", "a/./b.jpg"))])
    ids = [r["image_id"] for r in sources.llava_conversations(llava, str(tmp_path), [])]
    rows = _rec_json(tmp_path / "rows.json", [{"image": name, "question": "Why?", "answers": "x"}
                                              for name in ("a/b.jpg", "a_b.jpg", "a/./b.jpg")])
    assert [r["image_id"] for r in sources.rows_vqa(rows, str(tmp_path), [])] == ids
    assert ids[0] != ids[1] and ids[0] == ids[2]


def test_resuming_keeps_the_image_path_an_earlier_data_csv_gave_its_rows(tmp_path, capsys):
    """A data.csv written before ids held a digest (images/cat-a.png), re-run: handled right: its rows keep their
    image_path, and only the new record is written, under the new name."""
    _rec_image(tmp_path / "raw/cat/a.png")
    data2csv.main(["--task", "classification", "--source", "folder", "--folder_dir", str(tmp_path / "raw"),
                   "--num_samples", "0", "--data_dir", str(tmp_path / "out")])
    (tmp_path / "out/images").joinpath(next((tmp_path / "out/images").iterdir()).name).rename(
        tmp_path / "out/images/cat-a.png")  # as the earlier naming wrote it
    (tmp_path / "out/data.csv").write_text("id,image_path,label\ncat/a.png,images/cat-a.png,cat\n")
    rows = _rec_folder_run(tmp_path, {"cat/b.png": (0, 0, 250)})
    assert rows[0] == {"id": "cat/a.png", "image_path": "images/cat-a.png", "label": "cat"}
    assert rows[1]["image_path"] == f"images/{sources.path_image_id('cat/b.png')}.png"
    assert "Written now: 1, already present: 1" in capsys.readouterr().out


# ---------------------------------------------------------------- what data2csv.py reports


def test_an_empty_class_folder_is_named_its_class_absent(tmp_path, capsys):
    """An empty class folder (and one holding no image file): skipped and named, the summary saying its class is
    absent; the other classes are read."""
    (tmp_path / "raw/lion").mkdir(parents=True)
    (tmp_path / "raw/owl").mkdir(parents=True)
    (tmp_path / "raw/owl/notes.txt").write_text("no image")
    rows = _rec_folder_run(tmp_path, {"cat/1.png": (250, 0, 0)})
    assert [row["label"] for row in rows] == ["cat"]
    out = capsys.readouterr().out
    assert "  skipped lion/: no image in this class folder: its class 'lion' is absent\n" in out
    assert "  skipped owl/: no image in this class folder: its class 'owl' is absent\n" in out
    assert ("  2 class folders hold no image, so their classes are absent from data.csv (and from the classification "
            "question): lion/, owl/; put images in them, or remove them\n") in out


def test_every_skipped_record_is_listed_in_skipped_csv(tmp_path, capsys):
    """Seven files that are no images: skipped and named: the summary shows five, skipped.csv lists all seven."""
    for k in range(7):
        (tmp_path / f"raw/cat/{k}.txt").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"raw/cat/{k}.txt").write_text("text")
    _rec_folder_run(tmp_path, {"cat/ok.png": (250, 0, 0)})
    out = capsys.readouterr().out
    assert "... and 2 more skipped." in out
    assert f"  all 7 skipped listed with their reasons in {tmp_path / 'out/skipped.csv'}\n" in out
    with open(tmp_path / "out/skipped.csv", encoding="utf-8", newline="") as f:
        listed = list(csv.DictReader(f))
    assert listed == [{"id": f"cat/{k}.txt", "reason": "not an image: its extension is .txt"} for k in range(7)]


def test_a_prompt_holding_a_control_token_is_refused_by_csv2json(tmp_path):
    """--prompt "<image> Describe." (LLaVA's image token, in every record's question): clear error naming the flag."""
    data_dir = _rec_data_csv(tmp_path, ("id", "image_path", "caption"), [("a-1", "images/a.png", "A square.")])
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--data_dir", str(data_dir), "--prompt", "<image> Describe."])
    assert str(stop.value.code) == ("csv2json.py: --prompt holds <image>, which the model would read as a control "
                                    "token, not as text: remove or respell it")
    assert not (data_dir / "train.json").exists()


# ----------------------------------------------------------------------------------- Errors and faults

ROOT = Path(__file__).resolve().parents[1]
FULL = "/dev/full"  # every write there fails with ENOSPC, as on a full disk


def _err_dataset(folder: Path, n: int = 6) -> Path:
    """A small synthetic caption dataset with train.json and val.json (csv2json.py's real output)."""
    data2csv.main(["--data_dir", str(folder), "--num_samples", str(n), "--synthetic_image_size", "56"])
    csv2json.main(["--data_dir", str(folder), "--val_size", "2"])
    return folder


def _err_run(args: list[str], code: str | None = None) -> subprocess.CompletedProcess:
    """A script run as a user runs it, stdout and stderr together."""
    command = [sys.executable, *args] if code is None else [sys.executable, "-c", code]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))


def _err_train_args(data_dir, model_dir, out_dir, *more) -> list[str]:
    return ["--data_dir", str(data_dir), "--model_dir", str(model_dir), "--output_dir", str(out_dir),
            "--max_steps", "1", "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "true",
            "--max_length", "4096", *more]


def _err_model_folder(tmp_path, fixture: Path, config_edit=None, files=("config.json",)) -> Path:
    """A model folder holding some real files of a fixture folder, the config edited by `config_edit`."""
    folder = tmp_path / f"model-{fixture.name}"
    folder.mkdir()
    for name in files:
        shutil.copyfile(fixture / name, folder / name)
    if config_edit:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config_edit(config)))
    return folder


# ---------------------------------------------------------------- flags and --config


@pytest.mark.parametrize(("module", "argv", "flag"), [
    (csv2json, ["--val_sise", "3"], "--val_sise (did you mean --val_size?)"),
    (test_script, ["--eval_batchsize", "2"], "--eval_batchsize (did you mean --eval_batch_size?)"),
    (load_model, ["--basemodel", "x"], "--basemodel (did you mean --base_model?)"),
])
def test_unknown_flag_is_named_with_the_closest_known_one(module, argv, flag):
    """An unknown flag in csv2json.py, test.py, load_model.py: clear error naming the flag and --help.
    Outcome: clear error."""
    script = Path(module.__file__).name
    with pytest.raises(SystemExit) as stop:
        module.main(argv)
    assert str(stop.value.code).startswith(f"{script}: unknown flag {flag}")
    assert f"`python {script} --help`" in str(stop.value.code)


def test_unknown_flag_in_train_py_is_named(tiny_model_dir):
    """An unknown flag in train.py (parsed with the TrainingArguments): clear error naming it.
    Outcome: clear error."""
    with pytest.raises(SystemExit, match=r"^train\.py: unknown flag --learnig_rate \(did you mean --learning_rate\?\)"):
        train.main(["--model_dir", str(tiny_model_dir), "--learnig_rate", "1e-4"])


def test_unknown_flag_in_merge_py_is_named():
    """An unknown flag in merge.py (argparse): clear error `merge.py: ...`, not argparse's usage and exit 2.
    Outcome: clear error."""
    with pytest.raises(SystemExit, match=r"^merge\.py: unrecognized arguments: --run-dir x$"):
        merge.main(["--run-dir", "x"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--val_size", "0"], "csv2json.py: --val_size must be a fraction (0 < x < 1) or a count (>= 1), got 0.0"),
    (["--val_size", "a third"], "csv2json.py: argument --val_size/--val-size: invalid float value: 'a third'"),
    (["--task", "captions"], "csv2json.py: --task must be one of caption, classification, grounding, vqa, got "
                             "'captions'"),
    (["--task", "grounding", "--source", "folder"], "csv2json.py: --source folder has no data for --task grounding"),
])
def test_invalid_flag_value_is_one_message_naming_the_flag(argv, message):
    """An invalid --val_size, --task or --source (a dataclass's ValueError, argparse's type error): clear error.
    Outcome: clear error."""
    with pytest.raises(SystemExit) as stop:
        csv2json.main(argv)
    assert str(stop.value.code).startswith(message)


def test_negative_pretrain_workers_is_one_message_naming_the_flag(tmp_path):
    """load_model.py --pretrain_workers -1: clear error before any model is built, not torch's DataLoader error.
    Outcome: clear error."""
    with pytest.raises(SystemExit) as stop:
        load_model.main(["--model_dir", str(tmp_path / "tiny"), "--pretrain_workers", "-1"])
    assert str(stop.value.code) == "load_model.py: --pretrain_workers must be 0 or more, got -1"
    assert not (tmp_path / "tiny").exists()


def test_invalid_projector_mode_stops_train_py_naming_the_flag(tiny_model_dir):
    """--projector lora (TuneConfig's __post_init__ ValueError) in train.py: clear error naming the flag.
    Outcome: clear error."""
    with pytest.raises(SystemExit, match=r"^train\.py: --projector 'lora': choose one of frozen, full$"):
        train.main(["--model_dir", str(tiny_model_dir), "--projector", "lora"])


def test_yaml_syntax_error_in_config_names_the_file_and_line(tmp_path):
    """A --config file with a YAML syntax error on line 3: clear error naming the file and the line.
    Outcome: clear error."""
    preset = tmp_path / "preset.yaml"
    preset.write_text("task: caption\nval_size: 4\nprompt: [Describe this image.\nsplit_seed: 1\n")
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--config", str(preset)])
    message = str(stop.value.code)
    assert message.startswith(f"csv2json.py: --config {preset}, line 4, column 11: not valid YAML")
    assert "fix the file" in message


def test_config_file_that_is_a_list_is_refused_naming_the_file(tmp_path):
    """A --config file whose top level is a list, not a mapping: clear error naming the file and the form.
    Outcome: clear error."""
    preset = tmp_path / "preset.yaml"
    preset.write_text("- task: caption\n- val_size: 4\n")
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--config", str(preset)])
    assert str(stop.value.code) == (f"csv2json.py: --config {preset} holds a YAML list, not a mapping of settings: "
                                    "write one `key: value` line per setting (see the presets in scripts/)")


def test_bad_flag_from_the_shell_prints_one_line_and_exits_1(tmp_path):
    """`python csv2json.py --val_size 1.5` and `python merge.py --bogus` from a shell: the message on stderr, exit
    status 1, no traceback, no usage screen.
    Outcome: clear error."""
    for args, expected in ((["csv2json.py", "--data_dir", str(tmp_path), "--val_size", "1.5", "--bogus"],
                            "csv2json.py: unknown flag --bogus"),
                           (["merge.py", "--bogus"], "merge.py: unrecognized arguments: --bogus")):
        result = _err_run(args)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().startswith(expected)
        assert "Traceback" not in result.stderr and "usage:" not in result.stderr


def test_failing_train_sh_ends_with_train_py_message_and_no_accelerate_traceback():
    """`sh train.sh --no_such_flag`: train.py's one message, exit status 1, and no accelerate traceback after it.
    Outcome: clear error."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["sh", "train.sh", "--no_such_flag", "1"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    output = result.stdout + result.stderr
    (ROOT / output.rsplit("console output saved to ", 1)[1].split()[0]).unlink()  # this run's console log only
    assert result.returncode == 1, output
    assert "train.py: unknown flag --no_such_flag" in output
    assert "Traceback" not in output and "CalledProcessError" not in output


# ---------------------------------------------------------------- data.csv and the conversation files


def test_non_utf8_byte_in_data_csv_names_file_line_and_byte(tmp_path):
    """data.csv saved in Latin-1 (a caption with é on line 3): clear error naming the file, the line, the byte's
    offset and to save it as UTF-8, not advice to use another --task.
    Outcome: clear error."""
    (tmp_path / "data.csv").write_bytes("id,image_path,caption\na,a.png,A dog.\nb,b.png,A café.\n".encode("latin-1"))
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--data_dir", str(tmp_path)])
    offset = len(b"id,image_path,caption\na,a.png,A dog.\nb,b.png,A caf")
    assert str(stop.value.code) == (f"csv2json.py: {tmp_path / 'data.csv'}, line 3 (byte {offset}): byte 0xe9 is not "
                                    "UTF-8 (invalid continuation byte): save the file as UTF-8 (in Excel: CSV UTF-8) "
                                    "and run again")


def test_image_deleted_after_csv2json_stops_train_py_naming_record_and_fix(tmp_path, tiny_model_dir):
    """An image deleted after csv2json.py: train.py stops naming the record, the file, how many more, and to run
    csv2json.py again (not a FileNotFoundError traceback).
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data")
    records = json.loads((data_dir / "train.json").read_text())
    image = data_dir / formats._segments(records[0]["conversations"][0]["value"])[1][1]
    image.unlink()
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, tmp_path / "run"))
    message = str(stop.value.code)
    assert message.startswith(f"train.py: {data_dir / 'train.json'}: record {records[0]['id']!r}: image not found: "
                              f"{image}")
    assert "run `python csv2json.py` again" in message
    assert not (tmp_path / "run" / "run_config.json").exists()


def test_image_overwritten_with_garbage_stops_train_py_naming_the_record(tmp_path, tiny_model_dir):
    """An image overwritten with text after csv2json.py: train.py stops before training, naming the record and the
    file, and to run csv2json.py again.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data")
    record = json.loads((data_dir / "train.json").read_text())[1]
    image = data_dir / formats._segments(record["conversations"][0]["value"])[1][1]
    image.write_text("not an image any more")
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, tmp_path / "run"))
    message = str(stop.value.code)
    assert message.startswith(f"train.py: record {record['id']!r}: image {image} does not open "
                              "(UnidentifiedImageError")
    assert "run `python csv2json.py` again" in message


def _err_truncated_png(path: Path) -> Path:
    """A PNG whose header reads (stored_size works) but whose pixels are cut off: it fails at decode only."""
    Image.new("RGB", (56, 56), (200, 30, 30)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


def test_image_broken_at_its_batch_raises_naming_the_record_in_the_collator(tmp_path, tiny_model_dir):
    """An image whose header reads but whose pixels are cut off, met at its batch: the collator raises
    UnreadableImage naming the record id and the file, not PIL's error deep inside a library.
    Outcome: clear error."""
    from vlmtune.modeling import load_processor

    processor = load_processor(str(tiny_model_dir), 3136, 112 * 112)
    good = tmp_path / "good.png"
    Image.new("RGB", (56, 56), (0, 90, 200)).save(good)
    broken = _err_truncated_png(tmp_path / "broken.png")

    def example(name, path):
        return {"id": name, "messages": [
            {"role": "user", "content": [{"type": "image", "image": str(path)}, {"type": "text", "text": "Hi."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A square."}]}]}

    collate = TrainCollator(processor)
    assert collate([example("fine", good)])["labels"].shape[0] == 1
    with pytest.raises(UnreadableImage, match=rf"^record 'syn-7': image {broken} does not open \(OSError: .*"
                                              r"run `python csv2json.py` again"):
        collate([example("fine", good), example("syn-7", broken)])
    with pytest.raises(UnreadableImage, match=rf"^record 'val-3': image {broken} does not open"):
        generate(types.SimpleNamespace(eval=lambda: None), processor,  # the images open before the model runs
                  [example("val-3", broken)["messages"][:1]], ids=["val-3"])


@pytest.mark.parametrize(("content", "message"), [
    ("[]\n", "holds no conversation records: run `python csv2json.py` again"),
    ('[{"id": "a", "conversations": [', ": not valid JSON (Expecting value: line 1 column 32 (char 31)): run "
                                       "`python csv2json.py` again"),
])
def test_empty_or_malformed_val_json_stops_test_py_naming_the_file_and_the_fix(tmp_path, tiny_model_dir, content,
                                                                               message):
    """An empty val.json ([]), or one cut short (not valid JSON): test.py stops naming the file (and where json
    stopped) and the fix, not an IndexError or a JSONDecodeError.
    Outcome: clear error."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "val.json").write_text(content)
    run_dir = _err_full_run_dir(tmp_path, tiny_model_dir, data_dir)
    with pytest.raises(SystemExit) as stop:
        test_script.main(["--run_dir", str(run_dir)])
    separator = "" if message.startswith(":") else " "
    assert str(stop.value.code).startswith(f"test.py: {data_dir / 'val.json'}{separator}{message}")


def _err_full_run_dir(tmp_path, model_dir: Path, data_dir: Path) -> Path:
    """A fully fine-tuned run's folder (the tiny model's files, linked) with a run_config.json for `data_dir`."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for path in model_dir.iterdir():
        (run_dir / path.name).symlink_to(path.resolve())
    run = {"data": {"task": "caption", "data_dir": str(data_dir)}, "swanlab": False,
           "model": {"model_dir": str(model_dir), "trust_remote_code": False, "image_min_pixels": 3136,
                     "image_max_pixels": 12544}}
    (run_dir / "run_config.json").write_text(json.dumps(run))
    return run_dir


def test_kill_between_the_renames_of_csv2json_is_refused_then_repaired(tmp_path, monkeypatch):
    """csv2json.py killed after renaming train.json but before val.json (a new split beside the old val.json):
    load_conversations (train.py, test.py) refuses the folder with the fix, and the next csv2json.py repairs it.
    Outcome: handled right."""
    data_dir = _err_dataset(tmp_path / "data", n=8)
    old_val = (data_dir / "val.json").read_text()
    real_replace = os.replace
    calls = []

    def killed_after_the_first(source, target):
        calls.extend([target] if str(target).endswith(".json") else [])  # rejected.csv is renamed before the set
        if len(calls) > 1:
            raise KeyboardInterrupt  # what a kill looks like from inside: the process stops here
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        csv2json.main(["--data_dir", str(data_dir), "--val_size", "3", "--split_seed", "7"])
    monkeypatch.setattr(os, "replace", real_replace)
    assert (data_dir / "val.json").read_text() == old_val  # the old split's val.json beside the new train.json
    for name in ("train.json", "val.json"):
        with pytest.raises(ValueError, match=rf"{name}: csv2json.py did not finish writing .* run `python csv2json.py` "
                                             "again"):
            formats.load_conversations(data_dir / name)
    assert not list(data_dir.glob("*.tmp"))
    csv2json.main(["--data_dir", str(data_dir), "--val_size", "3", "--split_seed", "7"])
    train_ids = {r["id"] for r in formats.load_conversations(data_dir / "train.json")}
    val_ids = {r["id"] for r in formats.load_conversations(data_dir / "val.json")}
    assert (len(train_ids), len(val_ids), train_ids & val_ids) == (5, 3, set())
    assert not (data_dir / formats.INCOMPLETE_MARKER).exists()


# ---------------------------------------------------------------- model folders


def test_model_folder_with_a_config_but_no_weights_is_named(tmp_path, fixtures_dir):
    """A folder holding Qwen2-VL-2B's real config.json and processor config but no weights: train.py stops saying
    what it holds and to run load_model.py, not a traceback of from_pretrained.
    Outcome: clear error."""
    folder = _err_model_folder(tmp_path, fixtures_dir / "qwen2-vl-2b-instruct",
                               files=("config.json", "preprocessor_config.json"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.json").write_text("[]\n")  # train.py checks its data is there before the model
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_dir", str(folder), "--learning_rate", "1e-4", "--image_max_pixels", "12544",
                    "--output_dir", str(tmp_path / "run"), "--data_dir", str(tmp_path / "data")])
    assert str(stop.value.code).startswith(
        f"{folder} holds the config of a qwen2_vl model (Qwen2VLForConditionalGeneration) but no weights (no "
        "model.safetensors or pytorch_model.bin, nor a sharded index): the download was cut short")
    assert "run `python load_model.py` again" in str(stop.value.code)


def test_model_folder_whose_index_names_absent_shards_is_named(tmp_path, fixtures_dir):
    """LLaVA-1.5-7B's real model.safetensors.index.json without its shards: clear error counting the missing ones.
    Outcome: clear error."""
    fixture = fixtures_dir / "llava-1.5-7b-hf"
    folder = _err_model_folder(tmp_path, fixture, files=("config.json", "model.safetensors.index.json",
                                                         "preprocessor_config.json"))
    shards = set(json.loads((fixture / "model.safetensors.index.json").read_text())["weight_map"].values())
    with pytest.raises(SystemExit) as stop:
        modeling.check_model_dir(str(folder))
    assert f"but {len(shards)} of the {len(shards)} weight files its model.safetensors.index.json names are missing " \
           f"(such as {sorted(shards)[0]})" in str(stop.value.code)


def test_model_folder_of_a_text_only_qwen2_is_named(tmp_path, fixtures_dir):
    """A folder of a text-only Qwen2 language model (the real Qwen2-VL config made a Qwen2ForCausalLM one): clear
    error that it reads no images and what to give, not "can't load image processor ... huggingface.co".
    Outcome: clear error."""
    def text_only(config):
        for key in ("vision_config", "vision_start_token_id", "vision_end_token_id", "vision_token_id",
                    "image_token_id", "video_token_id", "rope_scaling"):
            config.pop(key, None)
        return config | {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}

    folder = _err_model_folder(tmp_path, fixtures_dir / "qwen2-vl-2b-instruct", text_only)
    with pytest.raises(SystemExit) as stop:
        test_script.main(["--run_dir", str(_err_full_run_dir(tmp_path, folder, tmp_path))])
    assert str(stop.value.code).startswith(
        f"{folder} holds a qwen2 model (Qwen2ForCausalLM), a text-only language model: it reads no images. give "
        "--model_dir a folder of a vision-language model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL or LLaVA-1.5), or run "
        "`python load_model.py`")


def test_model_folder_of_another_architecture_is_named(tmp_path):
    """A folder of a BERT model (its config saved by transformers): clear error naming what it holds.
    Outcome: clear error."""
    from transformers import BertConfig

    BertConfig().save_pretrained(tmp_path / "bert")
    with pytest.raises(SystemExit) as stop:
        merge.main(["--run_dir", str(_err_adapter_run(tmp_path, tmp_path / "bert"))])
    assert str(stop.value.code).startswith(f"{tmp_path / 'bert'} holds a bert model (no architectures listed), a "
                                           "text-only language model: it reads no images.")


def _err_adapter_run(tmp_path, model_dir: Path) -> Path:
    """A run folder that merge.py takes for a LoRA run on `model_dir` (its adapter is never read: the check of the
    base comes first)."""
    run_dir = tmp_path / "lora-run"
    run_dir.mkdir()
    (run_dir / "adapter_config.json").write_text("{}")
    (run_dir / "run_config.json").write_text(json.dumps({"model": {"model_dir": str(model_dir),
                                                                   "trust_remote_code": False}}))
    return run_dir


# ---------------------------------------------------------------- a full disk


def test_write_atomically_to_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path):
    """Writing a file on a full disk (its temporary a link to /dev/full): OSError ENOSPC, the old file kept, no
    temporary left behind.
    Outcome: handled right."""
    target = tmp_path / "val.json"
    target.write_text("[old]")
    (tmp_path / "val.json.tmp").symlink_to(FULL)
    with pytest.raises(OSError) as error:
        formats.write_atomically(target, "[new]" * 10000)
    assert error.value.errno == 28
    assert target.read_text() == "[old]"
    assert os.listdir(tmp_path) == ["val.json"]


def test_full_disk_in_csv2json_is_named_and_keeps_the_old_pair(tmp_path):
    """csv2json.py on a full disk (val.json's temporary on /dev/full): clear error "no space left on device while
    writing <folder>", train.json and val.json of the earlier run kept whole, no temporary left.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data")
    before = {name: (data_dir / name).read_text() for name in ("train.json", "val.json")}
    (data_dir / "val.json.tmp").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        csv2json.main(["--data_dir", str(data_dir), "--val_size", "3"])
    assert str(stop.value.code) == f"no space left on device while writing {data_dir}: free space and rerun"
    assert {name: (data_dir / name).read_text() for name in before} == before
    assert not list(data_dir.glob("*.tmp")) and not (data_dir / formats.INCOMPLETE_MARKER).exists()
    assert len(formats.load_conversations(data_dir / "val.json")) == 2


def test_full_disk_at_train_py_final_save_leaves_no_half_run(tmp_path, tiny_model_dir):
    """train.py's final save on a full disk (<run>/tokenizer.json on /dev/full): clear error naming the run folder,
    no run_config.json and no adapter left that test.py or merge.py would read.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data", n=4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tokenizer.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, run_dir))
    assert str(stop.value.code) == f"no space left on device while writing {run_dir}: free space and rerun"
    assert sorted(os.listdir(run_dir)) == ["tokenizer.json"]  # only the link the test made
    with pytest.raises(SystemExit, match="No run_config.json"):
        merge.main(["--run_dir", str(run_dir)])


def test_full_disk_at_a_checkpoint_removes_the_partial_checkpoint(tmp_path, tiny_model_dir):
    """A checkpoint save on a full disk (checkpoint-1/trainer_state.json on /dev/full): clear error naming
    checkpoint-1, and no checkpoint-1 folder left for --resume_from_checkpoint to load.
    Outcome: clear error."""
    data_dir = _err_dataset(tmp_path / "data", n=4)
    checkpoint = tmp_path / "run" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        train.main(_err_train_args(data_dir, tiny_model_dir, tmp_path / "run", "--save_strategy", "steps",
                                   "--save_steps", "1"))
    assert str(stop.value.code) == f"no space left on device while writing {checkpoint}: free space and rerun"
    assert not checkpoint.exists()
    assert not (tmp_path / "run" / "run_config.json").exists()


def test_full_disk_saving_a_model_folder_leaves_no_temporary_folder(tmp_path, tiny_model_dir):
    """The model folder of load_model.py and merge.py saved on a full disk (tokenizer.json of its temporary folder on
    /dev/full): clear error naming the folder, no temporary folder and no model folder left.
    Outcome: clear error."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    out = tmp_path / "merged"
    staging = tmp_path / f"merged.tmp-{os.getpid()}"
    staging.mkdir()
    (staging / "tokenizer.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop, saving.stop_on_write_error(out):
        modeling.save_pretrained_atomically(model, processor, str(out))
    assert str(stop.value.code) == f"no space left on device while writing {out}: free space and rerun"
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- temporaries after a failure


def test_ctrl_c_in_data2csv_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C while data2csv.py writes its third image: no image .tmp and no data.csv.tmp left, and data.csv holds
    the two images finished before.
    Outcome: handled right."""
    real_save = Image.Image.save
    saved = []

    def interrupted(self, fp, *args, **kwargs):
        saved.append(fp)
        if len(saved) == 3:
            Path(fp).write_bytes(b"\x89PNG half an image")  # the write under way when Ctrl-C comes
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data2csv.main(["--data_dir", str(tmp_path), "--num_samples", "5", "--synthetic_image_size", "32"])
    leftovers = [path.name for path in tmp_path.rglob("*") if path.name.endswith(".tmp")]
    assert leftovers == []
    assert len(formats.read_csv(tmp_path / "data.csv", "caption")) == 2
    assert len(list((tmp_path / "images").iterdir())) == 2


def test_failed_download_leaves_no_model_folder(tmp_path, monkeypatch):
    """A download cut off after config.json arrived (the connection drops): clear error naming the model and the hub,
    and neither the model folder nor its download folder is left (a later run would take config.json for a model).
    Outcome: clear error."""
    import modelscope

    def cut_off(model_id, local_dir):
        Path(local_dir, "config.json").write_text("{}")
        Path(local_dir, "model-00001-of-00002.safetensors").write_bytes(b"\0" * 100)
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(modelscope, "snapshot_download", cut_off)
    with pytest.raises(SystemExit) as stop:
        load_model.main(["--base_model", "Qwen/Qwen2-VL-2B-Instruct", "--model_dir", str(tmp_path / "m")])
    assert str(stop.value.code).startswith("Could not download Qwen/Qwen2-VL-2B-Instruct from modelscope")
    assert "Connection reset by peer" in str(stop.value.code)
    assert os.listdir(tmp_path) == []


def test_full_disk_while_load_model_saves_the_tiny_model_is_named(tmp_path):
    """load_model.py building the tiny model on a full disk: clear error naming the folder, and no folder left.
    Outcome: clear error."""
    out = tmp_path / "tiny"
    staging = tmp_path / f"tiny.tmp-{os.getpid()}"
    staging.mkdir()
    (staging / "tokenizer.json").symlink_to(FULL)
    with pytest.raises(SystemExit) as stop:
        load_model.main(["--model_dir", str(out), "--pretrain_steps", "0"])
    assert str(stop.value.code) == f"no space left on device while writing {out}: free space and rerun"
    assert os.listdir(tmp_path) == []


def test_full_disk_in_data2csv_is_named_and_leaves_no_temporary(tmp_path):
    """data2csv.py on a full disk (the second image's temporary a link to /dev/full): clear error "no space left on
    device while writing <data_dir>", data.csv and the first image whole, no .tmp left.
    Outcome: clear error."""
    (tmp_path / "images").mkdir()
    os.symlink(FULL, tmp_path / "images" / "syn-0-000001.png.tmp")
    with pytest.raises(SystemExit) as stop:
        data2csv.main(["--data_dir", str(tmp_path), "--num_samples", "4", "--synthetic_image_size", "32"])
    assert f"no space left on device while writing {tmp_path}" in str(stop.value)
    assert [path.name for path in tmp_path.rglob("*") if path.name.endswith(".tmp")] == []
    assert [row["id"] for row in formats.read_csv(tmp_path / "data.csv", "caption")] == ["syn-0-000000"]


def test_non_utf8_earlier_data_csv_in_data2csv_names_the_byte_not_another_data_dir(tmp_path):
    """data2csv.py into a folder whose data.csv was saved as Latin-1: clear error naming the file, line and byte,
    without the advice for a CSV of another task.
    Outcome: clear error."""
    (tmp_path / "data.csv").write_bytes("id,image_path,caption\nsyn-1,images/a.png,Un caf\xe9\n".encode("latin-1"))
    with pytest.raises(SystemExit) as stop:
        data2csv.main(["--data_dir", str(tmp_path), "--num_samples", "1"])
    message = str(stop.value)
    assert "data.csv" in message and "line 2" in message and "UTF-8" in message
    assert "another --data_dir" not in message
