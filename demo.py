"""Try a run on any picture: the base model's and the fine-tuned model's answers side by side, in the browser.

    python demo.py                                      # output/tiny-qwen2-vl-lora on http://127.0.0.1:7860
    python demo.py --run_dir output/qwen2-vl-2b-coco --port 7861

A gradio app on this machine only (127.0.0.1, never a public share link). Upload an image or pick one of the run's
validation images, ask (the task's question is filled in: the one test.py asks about test-img/), and both models
answer as test.py answers: the run loaded by the same code (vlmtune.runs), greedy generation with test.py's
--max_new_tokens, the base being the run's model with its adapter disabled. Grounding answers are drawn as boxes on
the image, classification answers read as the class test.py scores. Needs gradio: `pip install -r
requirements-demo.txt`.
"""

import copy
import os
import socket
from pathlib import Path

import config
from vlmtune import boxes, images, metrics
from vlmtune.evaluation import question_about, validation_questions
from vlmtune.formats import check_task, load_conversations
from vlmtune.generation import generate
from vlmtune.runs import load_run
from vlmtune.tasks import model_box_frame

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # gradio's usage reports: nothing leaves this machine
HOST = "127.0.0.1"
BOX_COLORS = {"reference": "#16a34a", "base": "#2563eb", "fine-tuned": "#dc2626"}


def question_text(messages: list[dict]) -> str:
    """The text of the last turn of a question: what the question box shows."""
    return "".join(part["text"] for part in messages[-1]["content"] if part["type"] == "text")


def ask(template: list[dict], image: str, question: str) -> list[dict]:
    """`template` (a question of val.json, or test.py's test-img/ question) about `image`, asking `question`: every
    image part points to `image`, and the last turn's text is `question`, left as written when it is unchanged."""
    messages = copy.deepcopy(template)
    for message in messages:
        for part in message["content"]:
            if part["type"] == "image":
                part["image"] = image
    if question != question_text(template):
        last = messages[-1]["content"]
        last[:] = [part for part in last if part["type"] != "text"] + [{"type": "text", "text": question}]
    return messages


def read_answer(task: str, answer: str, image: str, info: dict, row: dict | None) -> tuple[str, tuple | None]:
    """How test.py's scoring reads `answer` (text shown beside it) and, for grounding, its box in pixels of the
    image (None where none parses). `row` is the picked validation row (classification: its classes)."""
    if task == "classification":
        found = metrics.parse_class(answer, row["classes"], row["aliases"])
        return (f"class: {found}" if found else f"no one class of {', '.join(row['classes'])} named"), None
    if task == "grounding":
        size = images.stored_size(image)
        convention, resized = model_box_frame({"image_size": size}, info)
        box = boxes.parse_box(convention, answer, size, resized)
        if box is None:
            return "no box could be read from the answer", None
        return f"box {[round(v) for v in box]} (x1, y1, x2, y2 in pixels of the image)", box
    return "", None


def build(demo_cfg, gr):
    """(app, its allowed paths): the gradio app of the run in `demo_cfg.run_dir`, its models loaded (printing what it
    loads)."""
    loaded = load_run(demo_cfg.run_dir, "demo.py")
    task, info = loaded.task.name, loaded.info
    val_json = Path(loaded.run["data"]["data_dir"]) / "val.json"
    try:
        records = load_conversations(val_json)
    except (ValueError, FileNotFoundError) as error:  # missing, empty, malformed, or its images changed
        raise SystemExit(f"demo.py: {error}") from None
    if (problem := check_task(records, task, val_json)) is not None:
        raise SystemExit(problem)
    rows, questions = validation_questions(records, val_json.parent, loaded.task, info)
    print(f"{len(rows)} validation questions of {val_json} to pick from", flush=True)
    uploaded = question_about("", questions[0])  # test.py's question about each image of test-img/
    base_model = None if loaded.has_adapter else loaded.load_base()
    one = dict(batch_size=1, max_new_tokens=demo_cfg.max_new_tokens)

    def pick(index):
        if index is None:
            return None, question_text(uploaded), ""
        return rows[index]["image"], question_text(questions[index]), rows[index]["reference"]

    def answer(image, question, index):
        if not image:
            raise gr.Error("Upload an image or pick a validation image first.")
        if not question or not question.strip():
            raise gr.Error("Write a question (the box is filled with the task's own).")
        if (reason := images.problem(image)) is not None:  # what test.py skips in test-img/, for the same reason
            raise gr.Error(f"This image cannot be answered: {reason}")
        conversation = ask(uploaded if index is None else questions[index], image, question)
        if base_model is None:
            with loaded.model.disable_adapter():
                base = generate(loaded.model, loaded.processor, [conversation], desc="base", **one)[0]
        else:
            base = generate(base_model, loaded.processor, [conversation], desc="base", **one)[0]
        tuned = generate(loaded.model, loaded.processor, [conversation], desc="fine-tuned", **one)[0]
        row = rows[0] if index is None else rows[index]  # classification: the run's classes are in every row
        (base_read, base_box), (tuned_read, tuned_box) = (read_answer(task, text, image, info, row)
                                                          for text in (base, tuned))
        shown = [base, tuned]
        if task in ("classification", "grounding"):
            shown += [base_read, tuned_read]
        if task == "grounding":
            drawn = [(box, name) for box, name in ((None if index is None else rows[index]["box"], "reference"),
                                                    (base_box, "base"), (tuned_box, "fine-tuned")) if box is not None]
            shown.append((image, [(tuple(round(v) for v in box), name) for box, name in drawn]))
        return tuple(shown)

    with gr.Blocks(title=f"vlmtune: {loaded.run_dir.name}", analytics_enabled=False) as app:
        gr.Markdown(f"### `{loaded.run_dir}` ({task}): the base model and the fine-tuned one, side by side")
        with gr.Row():
            with gr.Column():
                picked = gr.Dropdown([(f"{row['id']}", i) for i, row in enumerate(rows)], value=None,
                                     label="Pick a validation image", info=f"{len(rows)} of {val_json}")
                # image_mode None: the file is answered as uploaded, not converted and saved again by gradio
                image = gr.Image(type="filepath", image_mode=None, sources=["upload"], label="Image", height=320)
            with gr.Column():
                question = gr.Textbox(question_text(uploaded), label="Question", lines=2)
                reference = gr.Textbox(label="Reference (of the validation image)", interactive=False)
                ask_button = gr.Button("Ask both models", variant="primary")
        with gr.Row():
            outputs = [gr.Textbox(label=f"{who} answer", interactive=False, lines=3)
                       for who in ("Base model", "Fine-tuned model")]
        if task in ("classification", "grounding"):
            with gr.Row():
                outputs += [gr.Textbox(label=f"{who}, read as test.py scores it", interactive=False)
                            for who in ("Base model", "Fine-tuned model")]
        if task == "grounding":
            outputs.append(gr.AnnotatedImage(label="Boxes", color_map=BOX_COLORS, format="png", height=420))
        # .input, not .change: a person's pick, not the upload below unpicking, which would clear the upload
        picked.input(pick, picked, [image, question, reference], api_name="pick")
        image.upload(lambda: (None, ""), None, [picked, reference], api_name=False)  # an own picture: no reference
        # one answer at a time: the base answers through the same model, its adapter disabled for the while
        ask_button.click(answer, [image, question, picked], outputs, api_name="answer", concurrency_limit=1)
    return app, [str(val_json.parent)]  # the validation images, which the page shows once picked


def taken(port: int) -> bool:
    """Whether something listens on HOST:port already (gradio would say so only once the models are loaded)."""
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def main(argv=None, block: bool = True):
    """Start the app on 127.0.0.1:--port; with `block` False, return the running app (tests close it)."""
    demo_cfg, = config.parse(argv, config.DemoConfig)
    try:
        import gradio as gr
    except ImportError:
        raise SystemExit("demo.py needs gradio, which is not installed: `pip install -r requirements-demo.txt`.") \
            from None
    if taken(demo_cfg.port):  # said before the models load, not after
        raise SystemExit(f"demo.py: port {demo_cfg.port} of {HOST} is in use (another demo?): pass a free --port.")
    app, allowed = build(demo_cfg, gr)
    try:
        app.launch(server_name=HOST, server_port=demo_cfg.port, share=False, inbrowser=False, quiet=True,
                   allowed_paths=allowed, prevent_thread_lock=True)
    except OSError as error:  # gradio's "Cannot find empty port in range"
        raise SystemExit(f"demo.py: cannot serve on {HOST}:{demo_cfg.port} ({error}): pass a free --port.") \
            from None
    print(f"demo on http://{HOST}:{demo_cfg.port} (this machine only); Ctrl-C stops it", flush=True)
    if block:
        app.block_thread()
    return app


if __name__ == "__main__":
    main()
