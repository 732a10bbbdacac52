"""bench/train_floor.py end to end on its smallest settings: every variant is in the report, measured or skipped with
its reason, and the figures are sane. No timing threshold: the bench measures, the test checks what it reports."""

import json
import subprocess
import sys

import pytest

from bench import train_floor
from tests.conftest import ROOT

ITEMS = ["floor", "train.py", "1 threads", "2 frozen_in_graph", "3 logits", "4 train_sampling_strategy",
         "5 dataloader_num_workers"]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-bench")
    # --cores 1: the test's runs take one thread each (on a shared machine two threads spin against other work);
    # the bench itself compares 1 thread with every core.
    done = subprocess.run([sys.executable, "-m", "bench.train_floor", "--quick", "--vocab", "small", "--cores", "1",
                           "--json", str(folder / "report.json"), "--work_dir", str(folder / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((folder / "report.json").read_text()), done.stdout


def test_every_variant_is_listed_measured_or_skipped_with_its_reason(quick_report):
    report, console = quick_report
    rows = report["vocabularies"]["small"]["rows"]
    settings = report["settings"]
    expected = train_floor.variants(settings["threads"], settings["cores"], settings["workers"])
    assert [(r["item"], r["variant"]) for r in rows] == [(v.item, v.name) for v in expected]
    assert sorted({r["item"] for r in rows}, key=ITEMS.index) == ITEMS
    for row in rows:
        if row["skipped"]:  # a flag of issue 13 not in this code yet: said, not measured
            assert not row["measured"] and "does not exist in this code yet" in row["skipped"], row
            assert f"skipped {row['variant']}: {row['skipped']}" in console
        else:
            assert row["measured"], row
    # the variants that exist on every branch are measured
    for name in ("floor", "defaults", "threads=1", "train_sampling_strategy=random",
                 "train_sampling_strategy=group_by_length", "dataloader_num_workers=0"):
        assert next(r for r in rows if r["variant"] == name)["measured"], name


def test_the_figures_are_sane_and_the_runs_did_what_their_flags_say(quick_report):
    report, console = quick_report
    vocabulary = report["vocabularies"]["small"]
    assert vocabulary["vocab_size"] == vocabulary["lm_head_rows"] == train_floor.SMALL_VOCABULARY
    rows = {r["variant"]: r for r in vocabulary["rows"] if r["measured"]}
    for name, row in rows.items():
        assert row["seconds_per_step"] > 0 and row["ratio_to_floor"] > 0, row
        assert 0 <= row["pad_fraction"] < 1, row
        assert 0 <= row["data_share"] <= 1, row
        assert row["peak_rss_mib"] > 100, row  # a process that imported torch and trained a model
        assert row["threads"] == row["threads_asked"], row  # as train.py printed it: "1 process on cpu, T CPU threads"
        assert row["steps"] == report["settings"]["steps"], row
    floor, defaults = rows["floor"], rows["defaults"]
    assert floor["ratio_to_floor"] == 1 and floor["data_share"] == 0
    # the floor trains on the very micro-batches train.py sees: the same tokens, positions and losses
    assert (floor["tokens"], floor["positions"]) == (defaults["tokens"], defaults["positions"])
    assert floor["mean_loss"] == pytest.approx(defaults["mean_loss"], rel=1e-5)
    assert rows["train_sampling_strategy=group_by_length"]["sampler"] == "EpochLengthGroupedSampler"
    assert rows["train_sampling_strategy=random"]["sampler"] == "RandomSampler"
    assert rows[f"dataloader_num_workers={report['settings']['workers']}"]["workers"] == report["settings"]["workers"]
    assert "### vocabulary 1,024 (small)" in console and "| floor | floor |" in console
