"""Unit tests of the dataset readers. The hubs are out of reach here, so each hub reader is tested at its boundary:
the hub's load call is replaced by one that returns a few in-memory rows of the real schema."""

import io
import json
import sys
import types

import datasets
import pytest
from PIL import Image

from vlmtune import sources, world


def jpeg(colour) -> Image.Image:
    """A small image decoded from JPEG bytes, as a hub hands it over (its .format is 'JPEG')."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, format="JPEG")
    return Image.open(io.BytesIO(buffer.getvalue()))


class Rows(list):
    """The rows a hub returns, set by the test; .calls remembers how the hub was called."""

    def __init__(self):
        super().__init__()
        self.calls = []


@pytest.fixture
def modelscope_rows(monkeypatch):
    """modelscope.msdatasets as the test sets it: MsDataset.load returns the rows this fixture returns.

    The module is replaced whole, not only MsDataset.load, so the test also runs where modelscope's dataset
    dependencies (addict, ...) are not installed."""
    rows = Rows()

    class MsDataset:
        @staticmethod
        def load(dataset_id, subset_name=None, split=None):
            rows.calls.append((dataset_id, subset_name, split))
            return rows

    monkeypatch.setitem(sys.modules, "modelscope.msdatasets", types.SimpleNamespace(MsDataset=MsDataset))
    return rows


@pytest.fixture
def huggingface_rows(monkeypatch):
    """datasets.load_dataset as the test sets it: it returns the rows this fixture returns."""
    rows = Rows()

    def load_dataset(path, name=None, split=None, streaming=False):
        rows.calls.append((path, name, split, streaming))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return rows


def test_synthetic_captions_are_the_worlds_scenes():
    records = list(sources.synthetic_captions(3, seed=2, image_size=64))
    assert [r["id"] for r in records] == ["syn-2-000000", "syn-2-000001", "syn-2-000002"]
    assert [r["image_id"] for r in records] == [r["id"] for r in records]
    for index, record in enumerate(records):
        scene = world.make_scene(2, index, 64)
        assert record["caption"] == world.caption(scene)
        assert record["image"].tobytes() == scene.render().tobytes()


def test_coco_captions_give_one_record_per_caption(fixtures_dir):
    coco = fixtures_dir / "coco-mini"
    skipped = []
    records = list(sources.coco_captions(str(coco / "annotations/captions_train2017.json"), str(coco / "train2017"),
                                         skipped))
    assert len(records) == 400 and skipped == []
    assert records[0] == {"id": "125870_88366", "image_id": "125870", "image": str(coco / "train2017/000000125870.jpg"),
                          "caption": "An airport filled with large passenger jets parked next to each other."}
    assert len({r["image_id"] for r in records}) == 80


def test_coco_captions_strip_the_trailing_spaces_of_real_captions(fixtures_dir):
    coco = fixtures_dir / "coco-mini"
    captions = [r["caption"] for r in sources.coco_captions(str(coco / "annotations/captions_train2017.json"),
                                                            str(coco / "train2017"), [])]
    assert "A woman in a kitchen at the sink holding a knife." in captions
    assert all(c == c.strip() for c in captions)


def write_coco(tmp_path, annotations):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "gone.jpg"}]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return str(path)


def test_coco_captions_report_missing_images_and_unknown_image_ids(tmp_path):
    path = write_coco(tmp_path, [{"image_id": 1, "id": 10, "caption": "One."},
                                 {"image_id": 2, "id": 20, "caption": "Two."},
                                 {"image_id": 3, "id": 30, "caption": "Three."},
                                 {"image_id": 1, "id": 11, "caption": "Four."}])
    skipped = []
    records = list(sources.coco_captions(path, str(tmp_path), skipped))
    assert [r["id"] for r in records] == ["1_10", "1_11"]
    assert skipped == [("2_20", f"image file missing: {tmp_path / 'gone.jpg'}"),
                       ("3_30", "image_id 3 is not in the file's images")]


def test_coco_limit_counts_records_not_skipped_ones(tmp_path):
    path = write_coco(tmp_path, [{"image_id": 2, "id": 20, "caption": "Two."},
                                 {"image_id": 1, "id": 10, "caption": "One."},
                                 {"image_id": 1, "id": 11, "caption": "Four."}])
    skipped = []
    assert [r["id"] for r in sources.coco_captions(path, str(tmp_path), skipped, limit=1)] == ["1_10"]
    assert [s[0] for s in skipped] == ["2_20"]


def test_coco_captions_refuse_an_instances_file(fixtures_dir):
    coco = fixtures_dir / "coco-mini"
    with pytest.raises(ValueError, match="annotation 0 has no 'caption'; give a captions_"):
        list(sources.coco_captions(str(coco / "annotations/instances_train2017.json"), str(coco / "train2017"), []))


def test_modelscope_captions_load_the_tutorial_dataset(modelscope_rows):
    images = [jpeg("red"), jpeg("blue")]
    modelscope_rows += [{"image_id": "9", "caption": "A snow skier assessing the mountain before starting to sky",
                         "image": images[0]},
                        {"image_id": "9", "caption": " A skier on a slope. ", "image": images[0]},
                        {"image_id": "7", "caption": "A bus.", "image": images[1]}]
    records = list(sources.modelscope_captions(limit=2))
    assert modelscope_rows.calls == [("modelscope/coco_2014_caption", "coco_2014_caption", "train")]
    assert records == [{"id": "9_0", "image_id": "9", "image": images[0],
                        "caption": "A snow skier assessing the mountain before starting to sky"},
                       {"id": "9_1", "image_id": "9", "image": images[0], "caption": "A skier on a slope."}]


def test_modelscope_row_without_caption_is_named(modelscope_rows):
    modelscope_rows += [{"image_id": "9", "caption": "A bus.", "image": jpeg("red")},
                        {"image_id": "7", "image": jpeg("red")}]
    with pytest.raises(ValueError, match=r"modelscope/coco_2014_caption record 1 has no field 'caption'"):
        list(sources.modelscope_captions())


def test_modelscope_unreachable_names_the_hub_and_dataset(monkeypatch, modelscope_rows):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(sys.modules["modelscope.msdatasets"].MsDataset, "load", unreachable)
    with pytest.raises(ConnectionError, match="ModelScope hub for dataset 'modelscope/coco_2014_caption'.*"
                                              "MODELSCOPE_ENDPOINT"):
        list(sources.modelscope_captions())


def test_huggingface_caption_lists_give_one_record_per_caption(huggingface_rows):
    images = [jpeg("red"), jpeg("blue")]
    huggingface_rows += [{"image": images[0], "sentences": ["A red square.", "Red. "]},
                         {"image": images[1], "sentences": ["A blue square.", "Blue."]}]
    records = list(sources.huggingface_captions("user/shapes", "validation", "", "image", "sentences", limit=3))
    assert huggingface_rows.calls == [("user/shapes", None, "validation", True)]
    assert records == [{"id": "0_0", "image_id": "0", "image": images[0], "caption": "A red square."},
                       {"id": "0_1", "image_id": "0", "image": images[0], "caption": "Red."},
                       {"id": "1_0", "image_id": "1", "image": images[1], "caption": "A blue square."}]


def test_huggingface_single_captions_keep_the_row_as_id(huggingface_rows):
    image = jpeg("red")
    huggingface_rows += [{"img": image, "text": "A red square."}]
    assert list(sources.huggingface_captions("user/shapes", subset="small", image_column="img", caption_column="text")) \
        == [{"id": "0", "image_id": "0", "image": image, "caption": "A red square."}]
    assert huggingface_rows.calls == [("user/shapes", "small", "train", True)]


def test_huggingface_row_without_the_caption_column_is_named(huggingface_rows):
    huggingface_rows += [{"image": jpeg("red"), "caption": "A."}, {"image": jpeg("red"), "text": "B."}]
    with pytest.raises(ValueError, match=r"user/shapes record 1 has no field 'caption' \(its fields: \['image', 'text'\]"):
        list(sources.huggingface_captions("user/shapes"))


def test_huggingface_image_that_is_no_image_is_named(huggingface_rows):
    huggingface_rows += [{"image": "https://example.com/a.jpg", "caption": "A."}]
    with pytest.raises(ValueError, match="user/shapes record 0: the image is a str, neither a PIL image"):
        list(sources.huggingface_captions("user/shapes"))


def test_huggingface_unreachable_names_the_hub_and_mirror_variable(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'user/shapes' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(ConnectionError, match="Hugging Face hub at .* for dataset 'user/shapes'.*HF_ENDPOINT"):
        list(sources.huggingface_captions("user/shapes"))
