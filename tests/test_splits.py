"""Unit tests of vlmtune/splits.py: split names, the per-split --num_samples cut, the parts of a run."""

import pytest

from vlmtune import splits


@pytest.mark.parametrize("name, split", [
    ("train", "train"), ("Train", "train"), ("TRAINING", "train"), ("train_data", "train"), ("train-set", "train"),
    ("val", "val"), ("valid", "val"), ("Validation", "val"), ("dev", "val"), ("eval", "val"), ("val2017", "val"),
    ("test", "test"), ("test_data", "test"), ("Testing", "test"), ("test images", "test"),
    ("cane", ""), ("train_station", ""), ("data", ""), ("trainval", ""), ("train_val", ""), ("contest", ""),
])
def test_split_of_folder_reads_the_whole_name(name, split):
    assert splits.split_of_folder(name) == split


@pytest.mark.parametrize("name, split", [
    ("captions_train2017.json", "train"), ("captions_val2017.json", "val"), ("instances_val2014.json", "val"),
    ("OpenEnded_mscoco_val2014_questions.json", "val"), ("mscoco_train2014_annotations.json", "train"),
    ("annotations/captions_val2017.json", "val"), ("val2017/annotations.json", ""),  # the folders aside
    ("validation", "val"), ("dev", "val"), ("test", "test"), ("train[:10%]", "train"),
    ("testA", ""), ("OpenEnded_mscoco_test-dev2015_questions.json", ""), ("train+validation", ""),
    ("llava_v1_5_mix665k.json", ""),
])
def test_split_of_name_reads_a_file_or_hub_split_name(name, split):
    assert splits.split_of_name(name) == split


def records(*splits_of):
    return [{"id": f"{split}-{n}", "image_id": f"{n}", "split": split} for n, split in enumerate(splits_of)]


def test_sample_takes_the_limit_of_each_split_and_counts_what_it_leaves_out():
    sample = splits.Sample(iter(records(*["train"] * 5, *["val"] * 3)), limit=2, count_rest=True)
    assert [r["id"] for r in sample] == ["train-0", "train-1", "val-5", "val-6"]
    assert (sample.taken, sample.left) == ({"train": 2, "val": 2}, {"train": 3, "val": 1})
    assert sample.notes() == [
        "only 2 of the 5 usable train records were taken (--num_samples 2). --num_samples 0 takes all.",
        "only 2 of the 3 usable val records were taken (--num_samples 2). --num_samples 0 takes all."]


def test_sample_of_a_hub_stops_at_the_first_record_left():
    pulled = []

    def hub():
        for record in records("", "", "", "", ""):
            pulled.append(record["id"])
            yield record

    sample = splits.Sample(hub(), limit=2, count_rest=False)
    assert [r["id"] for r in sample] == ["-0", "-1"]
    assert pulled == ["-0", "-1", "-2"]  # one more than taken, to know that more exist: not the whole split
    assert sample.notes() == ["only the first 2 records were taken (--num_samples 2); the hub has more, not counted, "
                              "as that would read them all. --num_samples 0 takes all."]


@pytest.mark.parametrize("limit", [0, 3, 4])
def test_sample_that_cuts_nothing_says_nothing(limit):
    sample = splits.Sample(iter(records("train", "train", "val")), limit=limit, count_rest=True)
    assert len(list(sample)) == 3 and sample.notes() == []


def test_in_split_gives_the_split_keeps_a_readers_own_and_prefixes_hub_rows():
    parts = [{"id": "0_1", "image_id": "0"}, {"id": "test_data/cane/1.jpeg", "image_id": "x", "split": "test"}]
    assert list(splits.in_split(iter(parts), "val")) == [{"split": "val", "id": "0_1", "image_id": "0"},
                                                        {"split": "test", "id": "test_data/cane/1.jpeg",
                                                         "image_id": "x"}]
    assert list(splits.in_split(iter(parts[:1]), "val", "validation")) == [
        {"split": "val", "id": "validation/0_1", "image_id": "validation-0"}]


def test_parts_of_coco_files_take_their_split_from_each_name_and_share_one_folder():
    settings = {"coco_annotations": "a/captions_train2017.json,a/captions_val2017.json", "coco_images": "images"}
    assert splits.parts("coco", settings) == [
        ("train", "", {"coco_annotations": "a/captions_train2017.json", "coco_images": "images"}),
        ("val", "", {"coco_annotations": "a/captions_val2017.json", "coco_images": "images"})]
    assert splits.parts("coco", {**settings, "coco_images": "train2017,val2017"})[1] == (
        "val", "", {"coco_annotations": "a/captions_val2017.json", "coco_images": "val2017"})


def test_parts_of_one_file_or_another_source():
    assert splits.parts("coco", {"coco_annotations": "mine.json", "coco_images": "i"}) == [
        ("", "", {"coco_annotations": "mine.json", "coco_images": "i"})]
    assert splits.parts("folder", {}) == splits.parts("synthetic", {}) == [("", "", {})]


def test_parts_of_hub_splits_prefix_their_ids_with_the_split_when_there_are_several():
    assert splits.parts("huggingface", {"dataset_split": "val"}) == [("val", "", {"dataset_split": "val"})]
    assert splits.parts("huggingface", {"dataset_split": "testA"}) == [("", "", {"dataset_split": "testA"})]
    assert splits.parts("modelscope", {"dataset_split": "validation,test"}) == [
        ("val", "validation", {"dataset_split": "validation"}), ("test", "test", {"dataset_split": "test"})]


def test_parts_of_vqa_files_pair_questions_and_annotations():
    settings = {"vqa_questions": "OpenEnded_mscoco_train2014_questions.json,OpenEnded_mscoco_val2014_questions.json",
                "vqa_annotations": "mscoco_train2014_annotations.json,mscoco_val2014_annotations.json",
                "vqa_images": "train2014,val2014"}
    assert [(split, part["vqa_questions"], part["vqa_images"]) for split, _, part in splits.parts("vqa", settings)] \
        == [("train", "OpenEnded_mscoco_train2014_questions.json", "train2014"),
            ("val", "OpenEnded_mscoco_val2014_questions.json", "val2014")]
    # annotations of no split by their name: the questions file names it
    assert splits.parts("vqa", {"vqa_questions": "OpenEnded_mscoco_val2014_questions.json",
                                "vqa_annotations": "answers.json", "vqa_images": "i"})[0][0] == "val"


@pytest.mark.parametrize("source, settings, message", [
    ("coco", {"coco_annotations": "captions_train2017.json,captions_val2017.json", "coco_images": "a,b,c"},
     "--coco_annotations lists 2, --coco_images 3: give one for each (or one folder for all)"),
    ("vqa", {"vqa_questions": "q_train.json", "vqa_annotations": "a_train.json,a_val.json", "vqa_images": "i"},
     "--vqa_annotations lists 2, --vqa_questions 1: give one for each"),
    ("coco", {"coco_annotations": "captions_train2017.json,mine.json", "coco_images": "i"},
     "--coco_annotations 'mine.json': its name says no split (train, val or test, as in captions_val2017.json), so "
     "its records could not be told from the other parts'"),
    ("huggingface", {"dataset_split": "val,testA"}, "--dataset_split 'testA': its name says no split"),
    ("huggingface", {"dataset_split": "val,val"}, "--dataset_split val,val: a part is listed twice"),
    ("vqa", {"vqa_questions": "OpenEnded_mscoco_train2014_questions.json",
             "vqa_annotations": "mscoco_val2014_annotations.json", "vqa_images": "i"},
     "--vqa_questions 'OpenEnded_mscoco_train2014_questions.json' is of the train split, but its --vqa_annotations "
     "'mscoco_val2014_annotations.json' of the val split"),
])
def test_parts_that_cannot_be_told_apart_are_refused_naming_the_flag(source, settings, message):
    with pytest.raises(ValueError) as error:
        splits.parts(source, settings)
    assert message in str(error.value)
