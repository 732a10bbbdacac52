"""Tests of vlmtune/reporting.py: which records share a predictions.jsonl row, and so one answer."""

from vlmtune.reporting import question_rows


def messages(image, question, answer):
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def test_the_captions_of_one_image_make_one_row_holding_them_all():
    records = [{"id": f"{image}_{k}"} for image in "abc" for k in range(2)]
    conversations = [messages(f"/data/{image}.png", "Describe this image.", f"caption {k} of {image}")
                     for image in "abc" for k in range(2)]

    rows, questions = question_rows(records, conversations, [{}] * 6)

    assert rows == [{"id": f"{image}_0", "image": f"/data/{image}.png", "reference": f"caption 0 of {image}",
                     "references": [f"caption 0 of {image}", f"caption 1 of {image}"]} for image in "abc"]
    assert questions == [conversations[0][:1], conversations[2][:1], conversations[4][:1]]


def test_records_asking_other_questions_or_scored_on_other_keys_keep_rows_of_their_own():
    # Two boxes of 'person' in one image (COCO instances), and another question about the same image.
    records = [{"id": "p1"}, {"id": "p2"}, {"id": "dog"}]
    conversations = [messages("/data/a.png", "Locate person.", "[1, 2, 3, 4]"),
                     messages("/data/a.png", "Locate person.", "[5, 6, 7, 8]"),
                     messages("/data/a.png", "Locate dog.", "[0, 0, 9, 9]")]
    keys = [{"box": [1, 2, 3, 4]}, {"box": [5, 6, 7, 8]}, {"box": [0, 0, 9, 9]}]

    rows, questions = question_rows(records, conversations, keys)

    assert [(row["id"], row["references"], row["box"]) for row in rows] == [
        ("p1", ["[1, 2, 3, 4]"], [1, 2, 3, 4]), ("p2", ["[5, 6, 7, 8]"], [5, 6, 7, 8]),
        ("dog", ["[0, 0, 9, 9]"], [0, 0, 9, 9])]
    assert questions == [c[:1] for c in conversations]
