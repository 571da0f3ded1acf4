"""The task suite: names, order, pairs and instructions (no simulator needed)."""

from __future__ import annotations

import pytest

from robofume.envs.layout import OBJECTS, PLACES
from robofume.tasks import (
    CORRECT_BIN,
    NOUNS,
    PHRASES,
    TASKS,
    get_task,
    prior_task_names,
    target_task_names,
    task_index,
    task_names,
)


def test_suite_has_three_target_pairs_then_twenty_priors():
    assert target_task_names() == [
        "vase_forward",
        "vase_reset",
        "bench_forward",
        "bench_reset",
        "dumbbell_forward",
        "dumbbell_reset",
    ]
    priors = prior_task_names()
    assert len(priors) == 20
    assert all(name.startswith("prior_") for name in priors)
    assert task_names() == target_task_names() + priors
    assert len(set(task_names())) == len(TASKS)


def test_task_index_is_the_position_in_the_global_order():
    for i, name in enumerate(task_names()):
        assert task_index(name) == i
    assert task_index("vase_forward") == 0
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        task_index("nope")


def test_forward_and_reset_tasks_chain_reset_free():
    for name in target_task_names():
        task = get_task(name)
        pair = get_task(task.pair)
        assert pair.pair == task.name
        assert pair.obj == task.obj
        # each task ends where its partner starts
        assert task.destination == pair.source
        assert pair.destination == task.source
    for obj, bin_name in CORRECT_BIN.items():
        assert get_task(f"{obj}_forward").destination == bin_name
        assert get_task(f"{obj}_reset").destination == "centre"


def test_instructions_are_distinct_and_name_objects_and_places():
    languages = [t.language for t in TASKS]
    assert len(set(languages)) == len(languages)
    assert get_task("vase_forward").language == "put the vase in the correct bin"
    assert get_task("vase_reset").language == "put the vase back in the centre of the table"
    for t in TASKS:
        assert t.obj in OBJECTS and t.destination in PLACES and t.source in PLACES
        assert t.source != t.destination
        if t.kind == "prior":
            assert t.obj not in CORRECT_BIN  # priors use other objects than the targets
            assert t.name == f"prior_{t.obj}_{t.destination}"
            assert NOUNS[t.obj] in t.language and PHRASES[t.destination] in t.language


def test_the_task_words_name_what_the_simulator_builds():
    assert set(NOUNS) == set(OBJECTS) and set(PHRASES) == set(PLACES)


def test_get_task_names_the_unknown_task():
    assert get_task(get_task("bench_reset")) is get_task("bench_reset")
    with pytest.raises(KeyError, match=r"unknown task 'vase'.*vase_forward"):
        get_task("vase")
