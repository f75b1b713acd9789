"""The compute facts recorded with every model: plain strings, so a model file still loads with weights_only."""

import io

import torch

from sstkd.tracking import compute_facts


def test_the_facts_are_plain_strings_that_a_weights_only_load_accepts():
    facts = compute_facts()
    assert {"torch", "cpu_capability", "cpu_model", "threads", "processes"} <= set(facts)
    assert all(type(value) is str for value in facts.values()), {k: type(v) for k, v in facts.items()}
    assert facts["torch"] == torch.__version__ and facts["threads"] == str(torch.get_num_threads())
    buffer = io.BytesIO()
    torch.save({"lineage": {"compute": facts}}, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["lineage"]["compute"] == facts


def test_data_parallel_workers_record_their_own_thread_count():
    import os

    assert compute_facts(nproc=2)["threads"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert compute_facts(nproc=2)["processes"] == "2"
