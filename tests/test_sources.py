"""Unit tests of the dataset readers. The hubs are out of reach here, so each hub reader is tested at its boundary:
the hub's load call is replaced by one that returns a few in-memory rows of the real schema."""

import io
import json
import re
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
    with pytest.raises(ValueError, match="instances_train2017.json: no annotation has a 'caption'; give a captions_"):
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


# ---------------------------------------------------------------- synthetic world, every task


@pytest.mark.parametrize("read, make", [
    (sources.synthetic_classification, world.classification_records),
    (sources.synthetic_grounding, world.grounding_records),
    (sources.synthetic_vqa, world.vqa_records),
])
def test_synthetic_readers_are_the_worlds_records_with_their_image_id(read, make):
    records, expected = list(read(3, 5, 64)), list(make(3, 5, 64))
    assert len(records) == 3
    for record, truth in zip(records, expected):
        assert record["image"].tobytes() == truth["image"].tobytes()
        assert {k: v for k, v in record.items() if k != "image"} == \
            {**{k: v for k, v in truth.items() if k != "image"}, "image_id": truth["id"]}


# ---------------------------------------------------------------- class folders


def make_folders(root, layout):
    """layout: {"cane": ["1.jpeg", "notes.txt"], ...}; image names get a tiny image, others some text."""
    for folder, names in layout.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            if name.endswith("/"):
                (root / folder / name).mkdir()
            elif name.endswith((".jpeg", ".jpg", ".png")):
                Image.new("RGB", (4, 4)).save(root / folder / name)
            else:
                (root / folder / name).write_text("not an image")
    return root


def test_folder_classification_reads_animals10_in_english_taking_classes_in_turn(tmp_path):
    root = make_folders(tmp_path / "raw-img", {"cane": ["OIP-a.jpeg", "OIP-b.jpeg", "OIP-c.jpeg"],
                                               "gatto": ["1.jpeg"], "ragno": ["x.png", "y.png"]})
    skipped = []
    records = list(sources.folder_classification(str(root), sources.read_label_map("animals10"), skipped))
    assert skipped == []
    assert [(r["id"], r["label"]) for r in records] == [
        ("cane/OIP-a.jpeg", "dog"), ("gatto/1.jpeg", "cat"), ("ragno/x.png", "spider"),
        ("cane/OIP-b.jpeg", "dog"), ("ragno/y.png", "spider"), ("cane/OIP-c.jpeg", "dog")]
    assert records[0] == {"id": "cane/OIP-a.jpeg", "image_id": "cane-OIP-a-0a020087",
                          "image": str(root / "cane/OIP-a.jpeg"),
                          "label": "dog"}


def test_folder_classification_limit_takes_every_class_alike(tmp_path):
    root = make_folders(tmp_path, {"a": ["1.png", "2.png", "3.png"], "b": ["1.png", "2.png", "3.png"]})
    records = list(sources.folder_classification(str(root), {}, [], limit=4))
    assert [r["id"] for r in records] == ["a/1.png", "b/1.png", "a/2.png", "b/2.png"]
    assert [r["label"] for r in records] == ["a", "b", "a", "b"]


def test_folder_classification_reports_unknown_folders_and_files_that_are_no_images(tmp_path):
    root = make_folders(tmp_path, {"cane": ["1.jpeg", "notes.txt", ".DS_Store", "more/"], "lupo": ["1.jpeg", "2.jpg"]})
    (root / "README.md").write_text("Animals-10")
    skipped = []
    records = list(sources.folder_classification(str(root), {"cane": "dog"}, skipped))
    assert [r["id"] for r in records] == ["cane/1.jpeg"]
    assert skipped == [
        ("README.md", "a file beside the class folders, not in one"),
        ("lupo/1.jpeg", "unknown class folder 'lupo': name it in --label_map to read it"),
        ("lupo/2.jpg", "unknown class folder 'lupo': name it in --label_map to read it"),
        ("cane/.DS_Store", "not an image: its extension is missing"),
        ("cane/more", "a folder inside a class folder: images must sit in the class folder"),
        ("cane/notes.txt", "not an image: its extension is .txt"),
    ]


def test_folder_classification_without_class_folders_says_what_it_wants(tmp_path):
    (tmp_path / "1.jpeg").write_text("x")
    with pytest.raises(ValueError, match="holds no class folder: --folder_dir needs one folder of images per class"):
        list(sources.folder_classification(str(tmp_path), {}, []))


def test_folder_classification_reads_split_folders_as_animals10s_tutorial_lays_them_out(tmp_path):
    root = make_folders(tmp_path / "animals", {"test_data/cane": ["1.jpeg"], "train_data/cane": ["1.jpeg", "2.jpeg"],
                                               "train_data/gatto": ["1.jpeg"], "train_data/lupo": ["1.jpeg"],
                                               "cane": ["9.jpeg"]})
    (root / "README.md").write_text("Animals-10, split")
    (root / "test_data/loose.jpeg").write_text("an image in no class folder")
    skipped = []
    records = list(sources.folder_classification(str(root), sources.read_label_map("animals10"), skipped))
    assert [(r["id"], r["label"], r["split"]) for r in records] == [
        ("train_data/cane/1.jpeg", "dog", "train"), ("train_data/gatto/1.jpeg", "cat", "train"),
        ("train_data/cane/2.jpeg", "dog", "train"), ("test_data/cane/1.jpeg", "dog", "test")]
    assert records[-1] == {"id": "test_data/cane/1.jpeg", "image_id": "test_data-cane-1-d73f44e9",
                           "image": str(root / "test_data/cane/1.jpeg"), "label": "dog", "split": "test"}
    beside = "beside the split folders train_data, test_data: not read (class folders go in them)"
    assert skipped == [
        ("README.md", beside), ("cane", beside),
        ("train_data/lupo/1.jpeg", "unknown class folder 'lupo': name it in --label_map to read it"),
        ("test_data/loose.jpeg", "a file beside the class folders, not in one")]


def test_folder_classification_finds_imagefolders_splits_in_any_case_and_limits_each(tmp_path):
    root = make_folders(tmp_path, {"Train/a": ["1.png", "2.png", "3.png"], "Validation/a": ["1.png", "2.png"]})
    records = list(sources.folder_classification(str(root), {}, [], limit=2))
    assert [(r["id"], r["split"]) for r in records] == [("Train/a/1.png", "train"), ("Train/a/2.png", "train"),
                                                        ("Validation/a/1.png", "val"), ("Validation/a/2.png", "val")]


def test_folder_classification_takes_a_folder_the_label_map_names_for_a_class_not_a_split(tmp_path):
    root = make_folders(tmp_path, {"test": ["1.png"], "cane": ["1.png"]})
    records = list(sources.folder_classification(str(root), {"test": "exam", "cane": "dog"}, []))
    assert [(r["id"], r["label"], "split" in r) for r in records] == [("cane/1.png", "dog", False),
                                                                      ("test/1.png", "exam", False)]


def test_folder_classification_with_split_folders_but_no_class_folder_says_what_it_wants(tmp_path):
    make_folders(tmp_path, {"train": ["1.png"], "val": ["2.png"]})
    with pytest.raises(ValueError, match=r"holds no class folder: .*or split folders holding them \(train/cane/"):
        list(sources.folder_classification(str(tmp_path), {}, []))


def test_read_label_map_takes_a_name_inline_json_or_a_file(tmp_path):
    assert sources.read_label_map("") == {}
    assert sources.read_label_map("animals10") == sources.ANIMALS10_LABELS
    assert sources.ANIMALS10_LABELS == {
        "cane": "dog", "cavallo": "horse", "elefante": "elephant", "farfalla": "butterfly", "gallina": "chicken",
        "gatto": "cat", "mucca": "cow", "pecora": "sheep", "ragno": "spider", "scoiattolo": "squirrel"}
    assert sources.read_label_map('{"cane": " dog "}') == {"cane": "dog"}
    (tmp_path / "labels.json").write_text('{"gatto": "cat"}')
    assert sources.read_label_map(str(tmp_path / "labels.json")) == {"gatto": "cat"}


@pytest.mark.parametrize("spec, message", [
    ("animals-10", "--label_map 'animals-10' is neither animals10, nor inline JSON, nor a file"),
    ('{"cane": dog}', "--label_map: not valid JSON"),
    ('{"cane": ""}', "--label_map: expected a JSON object of folder name -> label"),
    ('{"cane": 1}', "--label_map: expected a JSON object of folder name -> label"),
])
def test_read_label_map_names_a_bad_map(spec, message):
    with pytest.raises(ValueError, match=message):
        sources.read_label_map(spec)


# ---------------------------------------------------------------- COCO instances (grounding)


def test_coco_grounding_gives_a_record_per_object_its_category_picks_out(fixtures_dir):
    coco = fixtures_dir / "coco-mini"
    skipped = []
    records = list(sources.coco_grounding(str(coco / "annotations/instances_train2017.json"), str(coco / "train2017"),
                                          skipped))
    assert records[0] == {"id": "535506_441444", "image_id": "535506",
                          "image": str(coco / "train2017/000000535506.jpg"), "expression": "person",
                          "box": (120.46, 133.32, 332.77, 631.9), "width": 480, "height": 640}
    # Worked out from the file alone: an object is kept when no other annotation, crowd or not, of its image has its
    # category.
    coco_json = json.loads((coco / "annotations/instances_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in coco_json["categories"]}
    per_image = {}
    for a in coco_json["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a["category_id"])
    crowd = [f"{a['image_id']}_{a['id']}" for a in coco_json["annotations"] if a["iscrowd"]]
    alone = [f"{a['image_id']}_{a['id']}" for a in coco_json["annotations"]
             if not a["iscrowd"] and per_image[a["image_id"]].count(a["category_id"]) == 1]
    not_alone = [f"{a['image_id']}_{a['id']}" for a in coco_json["annotations"]
                 if not a["iscrowd"] and per_image[a["image_id"]].count(a["category_id"]) > 1]
    assert (len(alone), len(not_alone), len(crowd)) == (171, 560, 8)
    assert [r["id"] for r in records] == alone
    assert sorted(i for i, reason in skipped if reason == sources.NOT_PICKED_OUT) == sorted(not_alone)
    assert sorted(i for i, reason in skipped if reason.startswith("a crowd annotation (iscrowd 1)")) == sorted(crowd)
    assert len(skipped) == 560 + 8
    for record in records:
        categories = [names[c] for c in per_image[int(record["image_id"])]]
        assert categories.count(record["expression"]) == 1


def test_coco_grounding_counts_a_crowd_of_the_category_as_other_objects(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "a.jpg")
    person = {"image_id": 1, "category_id": 1, "iscrowd": 0}
    annotations = [{**person, "id": 10, "bbox": [1, 1, 2, 2]},
                   {**person, "id": 11, "bbox": [0, 0, 8, 6], "iscrowd": 1},
                   {**person, "id": 12, "bbox": [4, 1, 2, 2], "category_id": 18},
                   {**person, "id": 13, "bbox": [1, 3, 2, 2], "category_id": 3},
                   {**person, "id": 14, "bbox": [5, 3, 2, 2], "category_id": 3}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
                                "annotations": annotations,
                                "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                                               {"id": 18, "name": "dog"}]}))
    skipped = []
    assert [(r["id"], r["expression"]) for r in sources.coco_grounding(str(path), str(tmp_path), skipped)] == \
        [("1_12", "dog")]
    assert skipped == [("1_10", sources.NOT_PICKED_OUT),
                       ("1_11", "a crowd annotation (iscrowd 1): its box covers a group, not one object"),
                       ("1_13", sources.NOT_PICKED_OUT), ("1_14", sources.NOT_PICKED_OUT)]


def test_coco_grounding_reports_bad_boxes_missing_images_and_unknown_ids(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "a.jpg")
    images = [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6},
              {"id": 2, "file_name": "gone.jpg", "width": 8, "height": 6}]
    annotation = {"image_id": 1, "category_id": 18, "iscrowd": 0}
    annotations = [{**annotation, "id": 10, "bbox": [1, 1, 2.5, 3]},
                   {**annotation, "id": 11, "bbox": [6, 1, 4, 3], "category_id": 17},
                   {**annotation, "id": 12, "bbox": [1, 1, 0, 3], "category_id": 16},
                   {**annotation, "id": 13, "bbox": [1, 1, 2, 2], "image_id": 2},
                   {**annotation, "id": 14, "bbox": [1, 1, 2, 2], "image_id": 3},
                   {**annotation, "id": 15, "bbox": [1, 1, 2, 2], "category_id": 99}]
    path = tmp_path / "instances.json"
    categories = [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 17, "name": "cat"},
                  {"id": 16, "name": "bird"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    skipped = []
    assert list(sources.coco_grounding(str(path), str(tmp_path), skipped)) == [
        {"id": "1_10", "image_id": "1", "image": str(tmp_path / "a.jpg"), "expression": "dog", "box": (1, 1, 3.5, 4),
         "width": 8, "height": 6}]
    assert skipped == [
        ("1_11", "bad box (COCO bbox [6, 1, 4, 3]): outside the 8x6 image: (6, 1, 10, 4)"),
        ("1_12", "bad box (COCO bbox [1, 1, 0, 3]): zero or negative area: (1, 1, 1, 4) "
                 "(x2 must exceed x1 and y2 exceed y1)"),
        ("2_13", f"image file missing: {tmp_path / 'gone.jpg'}"),
        ("3_14", "image_id 3 is not in the file's images"),
        ("1_15", "category_id 99 is not in the file's categories"),
    ]


def test_coco_grounding_refuses_a_captions_file(fixtures_dir):
    coco = fixtures_dir / "coco-mini"
    with pytest.raises(ValueError, match=r"captions_train2017\.json has no 'categories': it is not a COCO instances "
                                         r"file \(instances_\*\.json; a captions_\*\.json is for --task caption\)"):
        list(sources.coco_grounding(str(coco / "annotations/captions_train2017.json"), str(coco / "train2017"), []))


# ---------------------------------------------------------------- Hugging Face RefCOCO (grounding)


def test_huggingface_grounding_reads_lmms_lab_refcocog_one_record_per_sentence(huggingface_rows):
    images = [jpeg("red"), jpeg("blue")]
    huggingface_rows += [
        {"question_id": "1", "image": images[0], "question": "Please carefully observe the area circled in the image "
         "and come up with a caption for the area.", "answer": ["the red square on the left ", "a red square"],
         "bbox": [2.0, 3.0, 10.5, 20.25], "iscrowd": 0, "file_name": "COCO_train2014_000000000001_1.jpg"},
        {"question_id": "2", "image": images[1], "answer": ["the blue one"], "bbox": [0.0, 0.0, 32.0, 24.0]}]
    skipped = []
    records = list(sources.huggingface_grounding("lmms-lab/RefCOCOg", skipped, split="val"))
    assert huggingface_rows.calls == [("lmms-lab/RefCOCOg", None, "val", True)]
    assert skipped == []
    assert [{k: v for k, v in r.items() if k != "image_id"} for r in records] == [
        {"id": "0_0", "image": images[0], "expression": "the red square on the left", "box": (2.0, 3.0, 12.5, 23.25),
         "width": 32, "height": 24},
        {"id": "0_1", "image": images[0], "expression": "a red square", "box": (2.0, 3.0, 12.5, 23.25),
         "width": 32, "height": 24},
        {"id": "1_0", "image": images[1], "expression": "the blue one", "box": (0.0, 0.0, 32.0, 24.0),
         "width": 32, "height": 24}]
    assert records[0]["image_id"] == records[1]["image_id"] != records[2]["image_id"]
    assert len(records[0]["image_id"]) == 16


def test_huggingface_grounding_names_one_image_of_two_rows_alike(huggingface_rows):
    huggingface_rows += [{"image": jpeg("red"), "answer": ["the left one"], "bbox": [0, 0, 4, 4]},
                         {"image": jpeg("red"), "answer": ["the right one"], "bbox": [8, 0, 4, 4]}]
    first, second = sources.huggingface_grounding("lmms-lab/RefCOCOg", [])
    assert first["image_id"] == second["image_id"]


def test_huggingface_grounding_reads_jxu124_refcocog_paths_and_xyxy_boxes(huggingface_rows, tmp_path):
    (tmp_path / "coco/train2014").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "coco/train2014/COCO_train2014_000000000009.jpg")
    huggingface_rows += [{"image_id": 9, "sentences": [{"raw": "A bowl.", "sent": "a bowl"}],
                          "captions": ["a bowl of broccoli"], "bbox": [1.0, 2.0, 30.0, 25.5],
                          "image_path": "coco/train2014/COCO_train2014_000000000009.jpg"}]
    records = list(sources.huggingface_grounding("jxu124/refcocog", [], image_column="image_path",
                                                 expression_column="captions", bbox_format="xyxy",
                                                 images_dir=str(tmp_path)))
    assert [{k: v for k, v in r.items() if k != "image_id"} for r in records] == [
        {"id": "0_0", "image": str(tmp_path / "coco/train2014/COCO_train2014_000000000009.jpg"),
         "expression": "a bowl of broccoli", "box": (1.0, 2.0, 30.0, 25.5), "width": 40, "height": 30}]


def test_huggingface_grounding_reports_bad_boxes_and_empty_sentences(huggingface_rows):
    huggingface_rows += [{"image": jpeg("red"), "answer": ["too wide", "also"], "bbox": [20, 0, 20, 10]},
                         {"image": jpeg("red"), "answer": " ", "bbox": [0, 0, 4, 4]},
                         {"image": jpeg("red"), "answer": "fine", "bbox": [0, 0, 4, 4]}]
    skipped = []
    assert [r["id"] for r in sources.huggingface_grounding("lmms-lab/RefCOCOg", skipped)] == ["2"]
    assert skipped == [("0_0", "bad box (xywh [20, 0, 20, 10]): outside the 32x24 image: (20.0, 0.0, 40.0, 10.0)"),
                       ("0_1", "bad box (xywh [20, 0, 20, 10]): outside the 32x24 image: (20.0, 0.0, 40.0, 10.0)"),
                       ("1", "empty expression")]


def test_huggingface_grounding_names_a_column_of_the_wrong_kind(huggingface_rows):
    huggingface_rows += [{"image": jpeg("red"), "sentences": [{"raw": "A bowl.", "sent": "a bowl"}],
                          "bbox": [0, 0, 4, 4]}]
    with pytest.raises(ValueError, match=r"user/refs record 0: --expression_column 'sentences' holds \[\{'raw'"):
        list(sources.huggingface_grounding("user/refs", [], expression_column="sentences"))
    huggingface_rows[0] = {"image": jpeg("red"), "answer": ["a bowl"], "bbox": [0, 0, 4]}
    with pytest.raises(ValueError, match=r"user/refs record 0: --bbox_column 'bbox' holds \[0, 0, 4\], not the 4"):
        list(sources.huggingface_grounding("user/refs", []))


# ---------------------------------------------------------------- VQA v2 / OK-VQA (vqa)


def write_vqa(tmp_path, questions, annotations, image_ids=(9,)):
    (tmp_path / "train2014").mkdir()
    for image_id in image_ids:
        Image.new("RGB", (8, 8)).save(tmp_path / f"train2014/COCO_train2014_{image_id:012d}.jpg")
    (tmp_path / "q.json").write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
                                                 "data_subtype": "train2014", "questions": questions}))
    (tmp_path / "a.json").write_text(json.dumps({"info": {}, "data_type": "mscoco", "data_subtype": "train2014",
                                                 "annotations": annotations}))
    return str(tmp_path / "q.json"), str(tmp_path / "a.json"), str(tmp_path / "train2014")


def answers(*texts):
    return [{"answer": text, "answer_confidence": "yes", "answer_id": n} for n, text in enumerate(texts, start=1)]


def annotation(question_id, image_id, *texts):
    return {"question_id": question_id, "image_id": image_id, "question_type": "what", "answer_type": "other",
            "multiple_choice_answer": texts[0], "answers": answers(*texts)}


def test_vqa_questions_read_the_official_files_one_record_per_question(tmp_path):
    ten = ["broccoli", "broccoli", "broccoli ", "broccoli", "vegetables", "broccoli", "broccoli", "broccoli",
           "broccoli", "green"]
    files = write_vqa(tmp_path, [{"image_id": 9, "question": "What is in the bowl? ", "question_id": 9000},
                                 {"image_id": 9, "question": "How many bowls?", "question_id": 9001}],
                      [annotation(9001, 9, "2", "3"), annotation(9000, 9, *ten)])
    skipped = []
    records = list(sources.vqa_questions(*files, skipped))
    image = str(tmp_path / "train2014/COCO_train2014_000000000009.jpg")
    assert records == [
        {"id": "9000", "image_id": "9", "image": image, "question": "What is in the bowl?",
         "answers": [answer.strip() for answer in ten]},
        {"id": "9001", "image_id": "9", "image": image, "question": "How many bowls?", "answers": ["2", "3"]}]
    assert skipped == []
    assert [r["id"] for r in sources.vqa_questions(*files, [], limit=1)] == ["9000"]


def test_vqa_questions_report_empty_questions_missing_annotations_and_images(tmp_path):
    files = write_vqa(tmp_path, [{"image_id": 9, "question": " ", "question_id": 1},
                                 {"image_id": 9, "question": "Why?", "question_id": 2},
                                 {"image_id": 25, "question": "Who?", "question_id": 3},
                                 {"image_id": 9, "question": "What?", "question_id": 4},
                                 {"image_id": 9, "question": "Where?", "question_id": 5}],
                      [annotation(1, 9, "a"), annotation(3, 25, "a"), annotation(4, 9, "yes"),
                       {**annotation(5, 9, "x"), "answers": []}])
    skipped = []
    assert [r["id"] for r in sources.vqa_questions(*files, skipped)] == ["4"]
    assert skipped == [("1", "empty question"),
                       ("2", f"no annotation in {files[1]} answers this question_id"),
                       ("3", f"no image of image_id 25 in {files[2]} (a file whose name ends in 000000000025.jpg)"),
                       ("5", "its annotation has no answers")]


def test_vqa_questions_refuse_files_swapped(tmp_path):
    questions, annotations, images = write_vqa(tmp_path, [], [])
    with pytest.raises(ValueError, match=r"a\.json has no 'questions': it is not a VQA questions file"):
        list(sources.vqa_questions(annotations, questions, images, []))


def test_vqa_questions_name_a_file_that_is_not_json(tmp_path):
    questions, annotations, images = write_vqa(tmp_path, [], [])
    (tmp_path / "a.json").write_text('{"annotations": [{"question_id": 1,}]}')
    with pytest.raises(ValueError, match=rf"^{re.escape(annotations)}: not valid JSON \(Expecting property name "
                                         r"enclosed in double quotes: line 1 column 36 \(char 35\)\)$"):
        list(sources.vqa_questions(questions, annotations, images, []))


# ---------------------------------------------------------------- LXMERT-style soft scores (vqa)


def lxmert_entry(question_id, img_id, sent, label):
    """An entry of LXMERT's data/vqa/*.json, as its VQADataset docstring shows one."""
    entry = {"answer_type": "other", "img_id": img_id, "question_id": question_id, "question_type": "what is this",
             "sent": sent}
    return entry if label is None else {**entry, "label": label}


def test_lxmert_vqa_reads_soft_scores_one_record_per_question(tmp_path):
    (tmp_path / "val2014").mkdir()
    for name in ("COCO_val2014_000000393225.jpg", "COCO_val2014_000000000042.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "val2014" / name)
    path = tmp_path / "minival.json"
    path.write_text(json.dumps([
        lxmert_entry(393225000, "COCO_val2014_000000393225", "What is the man holding? ",
                     {"kite": 1, "string": 0.3, " kites": 0.6}),
        lxmert_entry(393225001, "COCO_val2014_000000393225", "Is it windy?", {}),
        lxmert_entry(393225002, "COCO_val2014_000000393225", "How many?", None),
        lxmert_entry(42000, "COCO_val2014_000000000042", " ", {"yes": 1}),
        lxmert_entry(42001, "COCO_val2014_000000000042", "Why?", {"no": 1.5}),
        lxmert_entry(77000, "COCO_val2014_000000000077", "Where?", {"park": 1}),
        lxmert_entry(42002, "COCO_val2014_000000000042", "What colour?", {"red": 0.9}),
    ]))
    skipped = []
    records = list(sources.lxmert_vqa(str(path), str(tmp_path / "val2014"), skipped))
    assert records == [
        {"id": "393225000", "image_id": "393225", "image": str(tmp_path / "val2014/COCO_val2014_000000393225.jpg"),
         "question": "What is the man holding?", "answers": ["kite", "string", "kites"],
         "answer_scores": {"kite": 1, "string": 0.3, "kites": 0.6}},
        {"id": "42002", "image_id": "42", "image": str(tmp_path / "val2014/COCO_val2014_000000000042.jpg"),
         "question": "What colour?", "answers": ["red"], "answer_scores": {"red": 0.9}}]
    assert skipped == [
        ("393225001", "an empty 'label': none of its answers is in the file's answer vocabulary"),
        ("393225002", "no 'label': no answers to learn (LXMERT's test files have none)"),
        ("42000", "empty question"),
        ("42001", "a 'label' score that is not a number 0 < score <= 1: {'no': 1.5}"),
        ("77000", f"no image of img_id COCO_val2014_000000000077 in {tmp_path / 'val2014'} (a file whose name ends "
                  "in its 12 digits and .jpg)")]
    assert [r["id"] for r in sources.lxmert_vqa(str(path), str(tmp_path / "val2014"), [], limit=1)] == ["393225000"]


def test_lxmert_vqa_names_a_file_that_is_not_lxmerts(tmp_path):
    (tmp_path / "images").mkdir()
    path = tmp_path / "okvqa_val.json"
    first = '[{"question_id": 1, "img_id": "COCO_val2014_000000000042", "sent": "Why?", "label": {"no": 1}}'
    path.write_text(f'{first}\n {{"question_id": 2}}]')  # no comma before the second entry
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not valid JSON \(Expecting ',' delimiter: "
                                         rf"line 2 column 2 \(char {len(first) + 2}\)\)$"):
        list(sources.lxmert_vqa(str(path), str(tmp_path / "images"), []))
    path.write_text(json.dumps([lxmert_entry(1, "COCO_val2014_000000000042", "Why?", {"no": 1}),
                                {"question_id": 2, "image_id": 42, "question": "Why?"}]))
    skipped = []
    assert list(sources.lxmert_vqa(str(path), str(tmp_path / "images"), skipped)) == []
    assert skipped[1] == ("2", "no 'img_id' (its fields: image_id, question, question_id)")  # one entry: skipped
    path.write_text(json.dumps([{"question_id": 2, "image_id": 42, "question": "Why?"}]))
    with pytest.raises(ValueError, match=r"okvqa_val\.json: no entry holds question_id, img_id and sent; an "
                                         r"LXMERT-style file holds"):  # none: a file of another kind
        list(sources.lxmert_vqa(str(path), str(tmp_path / "images"), []))
    path.write_text(json.dumps({"questions": []}))
    with pytest.raises(ValueError, match=r"okvqa_val\.json: expected an LXMERT-style file, a list of questions, "
                                         r"found a dict"):
        list(sources.lxmert_vqa(str(path), str(tmp_path / "images"), []))


# ---------------------------------------------------------------- plain rows, JSON or JSON Lines (vqa)


def write_images(folder, *names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(folder / name)


def test_rows_vqa_reads_json_lines_keeping_the_rows_after_a_broken_line(tmp_path):
    write_images(tmp_path, "val2014/COCO_val2014_000000393225.jpg", "val2014/b.jpg")
    path = tmp_path / "okvqa.jsonl"
    unclosed = '{"image": "val2014/b.jpg", "question": "What sport?", "answers": ["surfing", "surf"]'
    path.write_text(
        '{"image": "val2014/COCO_val2014_000000393225.jpg", "question": "What is the man holding? ", '
        '"answers": "a kite"}\n'
        f'{unclosed}\n'
        '\n'
        '{"image": "val2014/b.jpg", "question": "What sport?", "answers": ["surfing", "surfing "], '
        '"split": "validation"}\n'
        '{"image": "val2014/b.jpg", "question": " ", "answers": "x"}\n'
        '{"image": "val2014/b.jpg", "question": "Why?", "answers": []}\n'
        '{"image": "val2014/gone.jpg", "question": "Why?", "answers": "x"}\n'
        '{"img": "val2014/b.jpg", "question": "Why?", "answers": "x"}\n'
        '["val2014/b.jpg", "Why?", "x"]\n'
        '{"image": "val2014/b.jpg", "question": "Why?", "answers": "x", "split": "minival"}\n'
        '{"image": "val2014/b.jpg", "question": "Who?", "answers": ["me"]}\n', encoding="utf-8")
    skipped = []
    records = list(sources.rows_vqa(str(path), str(tmp_path), skipped))
    assert records == [
        {"id": "1", "image_id": "val2014-COCO_val2014_000000393225-91145567",
         "image": str(tmp_path / "val2014/COCO_val2014_000000393225.jpg"), "question": "What is the man holding?",
         "answers": ["a kite"]},
        {"id": "4", "image_id": "val2014-b-5ba4b0f9", "image": str(tmp_path / "val2014/b.jpg"),
         "question": "What sport?",
         "answers": ["surfing", "surfing"], "split": "val"},
        {"id": "11", "image_id": "val2014-b-5ba4b0f9", "image": str(tmp_path / "val2014/b.jpg"), "question": "Who?",
         "answers": ["me"]}]
    assert skipped == [
        ("2", f"line 2 of {path} is not JSON: Expecting ',' delimiter at column {len(unclosed) + 1}"),  # its end
        ("5", "empty question (question: ' ')"),
        ("6", "answers must be an answer or a list of them, got []"),
        ("7", f"image file missing: {tmp_path / 'val2014/gone.jpg'}"),
        ("8", "no 'image' column (its fields: ['answers', 'img', 'question'])"),
        ("9", "no 'image' column (it is a list)"),
        ("10", "split 'minival' names none of train, val, test")]
    assert [r["id"] for r in sources.rows_vqa(str(path), str(tmp_path), [], limit=2)] == ["1", "4"]


def test_rows_vqa_reads_a_json_list_with_the_columns_given(tmp_path):
    write_images(tmp_path, "a.png")
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"file": str(tmp_path / "a.png"), "q": "Colour?", "direct_answers": ["red"] * 10},
                                {"file": "a.png", "q": "Shape?", "direct_answers": "round"}]))
    skipped = []
    records = list(sources.rows_vqa(str(path), "", skipped, image_column="file", question_column="q",
                                    answers_column="direct_answers"))
    assert [(r["id"], r["image"], r["question"], r["answers"]) for r in records] == [
        ("1", str(tmp_path / "a.png"), "Colour?", ["red"] * 10)]
    readable = str(tmp_path / "a").strip("/").replace("/", "-")  # an absolute path, made readable, and its digest
    assert re.fullmatch(rf"{re.escape(readable)}-[0-9a-f]{{8}}", records[0]["image_id"])
    assert skipped == [("2", "image file missing: a.png")]


def test_rows_vqa_names_a_json_file_that_is_not_json_or_no_list(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('{"image": "a.png", "question": "Why?", "answers": "x"}\n'
                    '{"image": "b.png", "question": "Who?", "answers": "y"}\n')
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not valid JSON \(Extra data: line 2 column 1 "
                                         r"\(char 55\)\)$"):
        list(sources.rows_vqa(str(path), "", []))
    path.write_text('{"rows": []}')
    with pytest.raises(ValueError, match=r"rows\.json: expected a list of rows, found a dict \(a file of one row a "
                                         r"line is JSON Lines, read from a \.jsonl\)"):
        list(sources.rows_vqa(str(path), "", []))
    with pytest.raises(ValueError, match=r"rows\.csv: give a \.json file \(a list of rows\) or a \.jsonl file"):
        list(sources.rows_vqa(str(tmp_path / "rows.csv"), "", []))


# ---------------------------------------------------------------- class aliases


def test_read_class_aliases_takes_inline_json_or_a_file(tmp_path):
    assert sources.read_class_aliases("") == {}
    assert sources.read_class_aliases('{" formica ": " ants", "蚂蚁": "ants"}') == {"formica": "ants", "蚂蚁": "ants"}
    (tmp_path / "aliases.json").write_text('{"ape": "bees"}')
    assert sources.read_class_aliases(str(tmp_path / "aliases.json")) == {"ape": "bees"}


@pytest.mark.parametrize("spec, message", [
    ("aliases.json", "--class_aliases 'aliases.json' is neither inline JSON nor a file"),
    ('{"formica": ants}', "--class_aliases: not valid JSON (Expecting value: line 1 column 13 (char 12))"),
    ('{"formica": ""}', '--class_aliases: expected a JSON object of name -> class, e.g. {"formica": "ants"}'),
    ('{" ": "ants"}', '--class_aliases: expected a JSON object of name -> class'),
    ('{"formica": ["ants"]}', '--class_aliases: expected a JSON object of name -> class'),
])
def test_read_class_aliases_names_a_bad_map(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sources.read_class_aliases(spec)


# ---------------------------------------------------------------- LLaVA conversations (vqa)


LLAVA_RECORD = {"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": [
    {"from": "human", "value": "What are the colors of the bus in the image?\n<image>"},
    {"from": "gpt", "value": "The bus in the image is white and red."},
    {"from": "human", "value": "What feature can be seen on the back of the bus?"},
    {"from": "gpt", "value": "The back of the bus features an advertisement."}]}


def write_llava(tmp_path, records):
    (tmp_path / "coco/train2017").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "coco/train2017/000000033471.jpg")
    (tmp_path / "llava.json").write_text(json.dumps(records))
    return str(tmp_path / "llava.json")


def test_llava_conversations_keep_the_first_question_and_every_turn(tmp_path):
    skipped = []
    records = list(sources.llava_conversations(write_llava(tmp_path, [LLAVA_RECORD]), str(tmp_path), skipped))
    assert skipped == []
    assert records == [{
        "id": "000000033471", "image_id": "coco-train2017-000000033471-7457cc30",
        "image": str(tmp_path / "coco/train2017/000000033471.jpg"),
        "question": "What are the colors of the bus in the image?",
        "answers": ["The bus in the image is white and red."],
        "turns": [{"from": "human", "value": "What are the colors of the bus in the image?"},
                  {"from": "gpt", "value": "The bus in the image is white and red."},
                  {"from": "human", "value": "What feature can be seen on the back of the bus?"},
                  {"from": "gpt", "value": "The back of the bus features an advertisement."}]}]


def test_llava_conversations_report_what_cannot_be_trained(tmp_path):
    turns = LLAVA_RECORD["conversations"]
    path = write_llava(tmp_path, [
        {"id": "text-only", "conversations": turns[:2]},
        {**LLAVA_RECORD, "id": "gone", "image": "coco/train2017/000000000001.jpg"},
        {**LLAVA_RECORD, "id": "unanswered", "conversations": turns[:3]},
        {**LLAVA_RECORD, "id": "gpt-first", "conversations": [turns[1], turns[0]]},
        {**LLAVA_RECORD, "id": "blank", "conversations": [{"from": "human", "value": "<image>"}, turns[1]]},
        LLAVA_RECORD,
        {**LLAVA_RECORD, "conversations": turns[:2]},
    ])
    skipped = []
    assert [r["id"] for r in sources.llava_conversations(path, str(tmp_path), skipped)] == ["000000033471"]
    assert skipped == [
        ("text-only", "no image: a text-only conversation"),
        ("gone", f"image file missing: {tmp_path / 'coco/train2017/000000000001.jpg'}"),
        ("unanswered", "turns must alternate human, gpt and end with gpt; found human, gpt, human"),
        ("gpt-first", "turns must alternate human, gpt and end with gpt; found gpt, human"),
        ("blank", "an empty turn"),
        ("000000033471", "the id is used again (record 7 of the file)"),
    ]
