"""`vlm` backend: any transformers image-text-to-text model as a yes/no success classifier.

The model (a hub id or a local path in ``cfg.model``: SmolVLM/Idefics3, PaliGemma, Qwen2-VL,
LLaVA ...) is loaded with ``AutoProcessor`` + ``AutoModelForImageTextToText`` and prompted with
the question (through the processor's chat template when it has one). The score is the
next-token distribution after the prompt: with Y the set of first tokens of every
tokenisation of "yes"/"Yes"/"YES" (with and without a leading space) and N the same for "no",

    log-odds = logsumexp(log p[Y]) - logsumexp(log p[N]),   P(yes) = sigmoid(log-odds)

i.e. the softmax over the summed probabilities of the two answers. Fine-tuning trains LoRA
adapters (peft) on the language model's attention projections; a checkpoint stores only them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from reward_server.images import augment, to_float
from reward_server.model import RewardModel
from robofume.config.reward import RewardConfig

if TYPE_CHECKING:
    from reward_server.dataset import ClassifierData

log = logging.getLogger(__name__)

YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")
LORA_TARGETS = r".*(language_model|text_model).*\.(q_proj|k_proj|v_proj|o_proj|qkv_proj)$"
"""LoRA goes on the attention projections of the language model only (not the vision tower)."""
NESTED_IMAGE_PROCESSORS = ("Idefics2Processor", "Idefics3Processor", "SmolVLMProcessor")
"""Processors that want one list of images per prompt."""


def answer_token_ids(tokenizer, yes_words=YES_WORDS, no_words=NO_WORDS) -> tuple[list, list]:
    """First token ids of every tokenisation of the yes and no words (shared ids dropped)."""

    def first_ids(words) -> set[int]:
        ids = set()
        for word in words:
            for variant in (word, " " + word):
                enc = tokenizer.encode(variant, add_special_tokens=False)
                if enc and tokenizer.decode([enc[0]]).strip():
                    ids.add(int(enc[0]))
        return ids

    yes, no = first_ids(yes_words), first_ids(no_words)
    common = yes & no
    yes, no = sorted(yes - common), sorted(no - common)
    if not yes or not no:
        raise ValueError(
            f"the tokenizer has no distinct tokens for yes/no answers (yes {yes}, no {no})"
        )
    return yes, no


def _dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class VLMRewardModel(RewardModel):
    """A transformers vision-language model scored by its yes/no next-token probabilities."""

    backend = "vlm"
    score_chunk = 16

    def __init__(self, cfg: RewardConfig, device: str = "auto"):
        super().__init__(cfg, device)
        if not cfg.model:
            raise ValueError("the vlm backend needs reward.model (a hub id or a local path)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForImageTextToText, AutoProcessor

        torch.manual_seed(cfg.seed)
        self.processor = AutoProcessor.from_pretrained(cfg.model)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = _dtype(cfg.vlm_dtype, self.device)
        base = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=self.dtype)
        self.yes_ids, self.no_ids = answer_token_ids(self.tokenizer)
        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=2 * cfg.lora_rank,
            lora_dropout=0.05,
            target_modules=LORA_TARGETS,
            bias="none",
        )
        try:
            self.model = get_peft_model(base, lora)
        except ValueError as err:
            raise ValueError(
                f"{cfg.model}: no language-model attention projections for LoRA ({err})"
            ) from None
        self.model.to(self.device)
        self.model.eval()
        self._nested = type(self.processor).__name__ in NESTED_IMAGE_PROCESSORS
        self._prompts: dict[str, str] = {}
        self._rng = torch.Generator().manual_seed(cfg.seed)
        n_train = sum(p.numel() for p in self.trainable_parameters())
        log.info(
            "vlm %s: %d LoRA parameters, yes ids %s, no ids %s",
            cfg.model,
            n_train,
            self.yes_ids,
            self.no_ids,
        )

    def prompt(self, question: str) -> str:
        """The model's input text for ``question`` (chat template when the processor has one)."""
        if question not in self._prompts:
            proc = self.processor
            if getattr(proc, "chat_template", None):
                messages = [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": question}],
                    }
                ]
                text = proc.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            else:
                token = getattr(proc, "image_token", None)
                text = f"{token}{question}" if token else question
            self._prompts[question] = text
        return self._prompts[question]

    def _forward(self, images: np.ndarray, questions: list[str]) -> torch.Tensor:
        from PIL import Image

        pil = [Image.fromarray(im) for im in images]
        inputs = self.processor(
            images=[[p] for p in pil] if self._nested else pil,
            text=[self.prompt(q) for q in questions],
            return_tensors="pt",
            padding=True,
        )
        inputs = {
            k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }
        out = self.model(**inputs)
        mask = inputs["attention_mask"]
        positions = torch.arange(mask.shape[1], device=mask.device) * mask
        last = positions.argmax(dim=1)  # last real token, whatever the padding side
        logits = out.logits[torch.arange(len(last), device=last.device), last].float()
        logp = logits.log_softmax(dim=-1)
        yes = torch.logsumexp(logp[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(logp[:, self.no_ids], dim=-1)
        return yes - no

    def logits(self, images: np.ndarray, questions: list[str]) -> torch.Tensor:
        return self._forward(images, questions)

    def eval(self) -> None:
        self.model.eval()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def train_logits(self, idx: np.ndarray, data: ClassifierData, augment_: bool) -> torch.Tensor:
        self.model.train()
        images = data.images[idx]
        if augment_:
            x = to_float(images, images.shape[1], "cpu")
            x = augment(x, self._rng, self.cfg.augment_strength, self.cfg.augment_tilt)
            images = (x.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
        return self._forward(images, [data.questions[i] for i in idx])

    def state_dict(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return dict(get_peft_model_state_dict(self.model))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"LoRA weights do not fit {self.cfg.model}: {unexpected[:3]} ...")
