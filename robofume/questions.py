"""Task names become the yes/no questions the reward model answers.

``question_for("vase_forward", cfg.reward)`` gives, in order of precedence:

1. ``cfg.question_overrides[task]`` when present;
2. a question phrased by a text-generation model (``cfg.question_model``, or a hook installed
   with :func:`set_question_generator`) from the task's instruction;
3. ``cfg.question_template`` filled with ``{instruction}`` (the task's language) and ``{task}``.

The instruction comes from the simulated task registry (``robofume.tasks``) unless it is
passed in (episodes carry their own ``language``) or found in ``known`` (a checkpoint's map of
task -> question, so a server answers for every task its model was trained on).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping

from robofume.config.reward import RewardConfig

log = logging.getLogger(__name__)

QuestionGenerator = Callable[[str, str], str]
"""(task name, instruction) -> yes/no question."""

_hook: QuestionGenerator | None = None
_lock = threading.Lock()


class UnknownTaskError(KeyError):
    """A task name that neither the overrides, the known map nor the task registry knows."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown task"


def set_question_generator(fn: QuestionGenerator | None) -> None:
    """Install (or with None remove) a process-wide hook that phrases questions."""
    global _hook
    with _lock:
        _hook = fn


def instruction_for(task: str) -> str:
    """The task's instruction from the simulated task registry (UnknownTaskError if absent)."""
    try:
        from robofume.tasks import get_task
    except ImportError as err:
        raise UnknownTaskError(
            f"unknown task {task!r}: the task registry is unavailable ({err})"
        ) from None
    try:
        return str(get_task(task).language)
    except (KeyError, ValueError):
        raise UnknownTaskError(f"unknown task {task!r}") from None


def question_for(
    task: str,
    cfg: RewardConfig,
    instruction: str | None = None,
    known: Mapping[str, str] | None = None,
    generator: QuestionGenerator | None = None,
) -> str:
    """The yes/no question the reward model is asked for ``task``."""
    if not task:
        raise UnknownTaskError("empty task name")
    if task in cfg.question_overrides:
        return cfg.question_overrides[task]
    if instruction is None and known and task in known:
        return known[task]
    if instruction is None:
        instruction = instruction_for(task)
    gen = generator or _hook
    if gen is None and cfg.question_model:
        gen = make_llm_question_generator(cfg.question_model)
    if gen is not None:
        question = gen(task, instruction).strip()
        if question:
            return question
        log.warning("question generator gave nothing for %s; using the template", task)
    try:
        return cfg.question_template.format(instruction=instruction, task=task)
    except (KeyError, IndexError) as err:
        raise ValueError(
            f"reward.question_template {cfg.question_template!r} has an unknown placeholder "
            f"{err}; use {{instruction}} and {{task}}"
        ) from None


PROMPT = (
    "Rewrite the robot instruction as a short yes/no question asking whether it has been "
    "completed.\nInstruction: {instruction}\nQuestion:"
)


@functools.lru_cache(maxsize=4)
def make_llm_question_generator(
    model: str, device: str = "cpu", max_new_tokens: int = 32
) -> QuestionGenerator:
    """A generator backed by a transformers causal LM (hub id or local path), greedy decoding.

    Answers are cached per instruction, so a task always gets the same question.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model).to(device).eval()
    cache: dict[str, str] = {}

    def generate(task: str, instruction: str) -> str:
        if instruction in cache:
            return cache[instruction]
        prompt = PROMPT.format(instruction=instruction)
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        with torch.inference_mode():
            out = lm.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        line = text.strip().splitlines()[0].strip() if text.strip() else ""
        if line and not line.endswith("?"):
            line = line + "?"
        cache[instruction] = line
        log.info("question for %s: %r", task, line)
        return line

    return generate
