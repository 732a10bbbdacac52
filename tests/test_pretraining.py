"""The tiny model's pretraining (vlmtune/pretraining.py): training only the live rows of the embedding and output
layer is the same training as full fine-tuning of every row, for a family with tied embeddings and one without."""

import copy

import pytest
import torch
from transformers import Trainer

from vlmtune import pretraining
from vlmtune.collator import TrainCollator
from vlmtune.tiny import TINY_MODELS

STEPS, BATCH = 4, 4


class EveryRowTrainer(Trainer):
    """The reference: the answer-vocabulary loss with the model's own layers, all 151,936 rows trained."""

    def __init__(self, *args, vocabulary, **kwargs):
        super().__init__(*args, **kwargs)
        self.vocabulary = torch.tensor(vocabulary)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return pretraining.answer_vocabulary_loss(model, inputs, self.vocabulary)


def every_row_pretraining(model, processor, tmp_path):
    model_type = model.config.model_type
    trainer = EveryRowTrainer(
        model=model, args=pretraining.training_arguments(str(tmp_path), STEPS, BATCH, 1e-3, seed=0),
        train_dataset=pretraining.PretrainingScenes(STEPS * BATCH, model_type),
        data_collator=TrainCollator(processor, logits="suffix"),
        vocabulary=pretraining.answer_vocabulary(processor, model_type))
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("family", ["tiny-qwen2-vl", "tiny-llava-1.5"])  # tied embeddings; separate output layer
def test_live_rows_train_as_every_row_does(family, tmp_path):
    model, processor = TINY_MODELS[family]()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied == (family == "tiny-qwen2-vl")
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    reference = copy.deepcopy(model)

    live_log = [entry["loss"] for entry in pretraining.pretrain(model, processor, steps=STEPS, batch_size=BATCH)]
    every_log = every_row_pretraining(reference, processor, tmp_path)

    assert live_log == pytest.approx(every_log, rel=1e-5)
    assert model.get_input_embeddings() is model.model.get_input_embeddings()  # the model's own layer is back
    assert isinstance(model.get_input_embeddings(), torch.nn.Embedding)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    trained, expected = dict(model.named_parameters()), dict(reference.named_parameters())
    assert trained.keys() == expected.keys() == start.keys()
    for name in trained:
        assert trained[name].requires_grad, name
        torch.testing.assert_close(trained[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
    # the check sees training: every row of an answer token moved, and most of the table did not
    vocabulary = pretraining.answer_vocabulary(processor, model.config.model_type)
    output = model.get_output_embeddings().weight
    output_name = next(name for name, p in model.named_parameters() if p is output)
    moved = (output.detach() != start[output_name]).any(dim=1)
    assert moved[vocabulary].all()
    assert moved.sum() <= len(pretraining.prompt_ids(processor, model.config.model_type)) + len(vocabulary)


def test_scenes_rendered_in_a_worker_process_pretrain_the_same_model_to_the_bit(tmp_path, monkeypatch, recwarn):
    """--pretrain_workers 1 (the test suite's build): the scenes rendered and processed in a DataLoader process."""
    import os

    seen = tmp_path / "pids"
    example = pretraining.PretrainingScenes.example

    def recorded(self, index, with_image=True):  # each process that renders a scene writes its pid
        with open(seen, "a") as pids:
            pids.write(f"{os.getpid()}\n")
        return example(self, index, with_image)

    monkeypatch.setattr(pretraining.PretrainingScenes, "example", recorded)
    base, processor = TINY_MODELS["tiny-qwen2-vl"]()
    models, logs, renderers = [], [], []
    for workers in (0, 1):
        seen.write_text("")
        model = copy.deepcopy(base)
        logs.append(pretraining.pretrain(model, processor, steps=STEPS, batch_size=BATCH, workers=workers))
        models.append(dict(model.named_parameters()))
        renderers.append(set(seen.read_text().split()) - {str(os.getpid())})
    assert renderers[0] == set() and len(renderers[1]) == 1  # the scenes of the second run: in another process
    assert logs[0] == logs[1]
    assert models[0].keys() == models[1].keys()
    assert all(torch.equal(models[0][name], models[1][name]) for name in models[0])
    assert not all(torch.equal(models[0][name], p) for name, p in base.named_parameters())  # it trained
    assert not [w for w in recwarn if "pin_memory" in str(w.message)]  # no memory to pin for a GPU on this machine


def test_a_token_outside_the_live_rows_is_an_error_not_an_untrained_row():
    weight = torch.nn.Parameter(torch.randn(10, 4))
    rows = pretraining.LiveRows(weight, [2, 5, 7])
    torch.testing.assert_close(rows(torch.tensor([[5, 2]])), weight.detach()[[5, 2]].unsqueeze(0))
    with pytest.raises(ValueError, match=r"tokens \[3\] are not among pretraining's live rows"):
        rows(torch.tensor([[5, 3]]))


def test_the_rows_bench_times_two_copies_that_stay_the_same_model(capsys):
    from bench import pretraining_rows

    pretraining_rows.main(["--steps", "1", "--batch_size", "2"])
    out = capsys.readouterr().out
    assert "every row: 21,048,832 parameters trained" in out
    assert "largest weight difference after 2 steps: 0.00e+00" in out
    assert "every row / live rows: median" in out

