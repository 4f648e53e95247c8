"""Policies: the built-in tiny Llama with a character tokenizer, Hugging Face
folders and GGUF files, behind one small tokenizer interface.

A *policy* is ``(model, tokenizer)`` where ``model`` is a transformers causal
LM and ``tokenizer`` has ``encode(text) -> list[int]``, ``decode(ids) -> str``,
``eos_token_id``, ``pad_token_id`` and ``prompt_ids(prompt) -> list[int]``
(the ids fed to the model, chat template applied where asked).
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from pathlib import Path

import torch

from knapsack_rl.atomic import atomic_write_text

__all__ = [
    "CharTokenizer",
    "HFTokenizer",
    "ModelPathError",
    "build_builtin_model",
    "load_policy",
    "save_policy",
    "sft_warmstart",
    "count_parameters",
]

_CHAR_FILE = "char_tokenizer.json"


class ModelPathError(FileNotFoundError):
    """The model path (folder or GGUF file) does not exist or is not a model."""


class CharTokenizer:
    """One token per character, plus ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2), ``<unk>`` (3).

    The default alphabet is printable ASCII and newline (~100 tokens). Prompts
    start with ``<bos>``; completions end with ``<eos>``.
    """

    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2
    unk_token_id = 3
    chat_template = None

    def __init__(self, chars: str | None = None) -> None:
        if chars is None:
            chars = "".join(c for c in string.printable if c not in "\t\r\x0b\x0c")
        self.chars = chars
        self._id = {c: k + 4 for k, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return len(self.chars) + 4

    def encode(self, text: str) -> list[int]:
        """Characters -> ids (unknown characters -> ``<unk>``), no special tokens."""
        return [self._id.get(c, self.unk_token_id) for c in text]

    def decode(self, ids) -> str:
        """Ids -> text, stopping at ``<eos>``; special tokens dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_token_id:
                break
            if i >= 4:
                out.append(self.chars[i - 4])
        return "".join(out)

    def prompt_ids(self, prompt: str) -> list[int]:
        """``<bos>`` + the prompt's characters."""
        return [self.bos_token_id, *self.encode(prompt)]

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``char_tokenizer.json`` into ``folder``."""
        atomic_write_text(Path(folder) / _CHAR_FILE, json.dumps({"chars": self.chars}))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CharTokenizer:
        """Read ``char_tokenizer.json`` from ``folder``."""
        return cls(json.loads((Path(folder) / _CHAR_FILE).read_text())["chars"])


class HFTokenizer:
    """Adapter over a Hugging Face tokenizer with the :class:`CharTokenizer` interface."""

    def __init__(self, tok, chat_template: bool | None = None) -> None:
        self.tok = tok
        self.eos_token_id = tok.eos_token_id
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        has_template = getattr(tok, "chat_template", None) is not None
        self.use_chat = (
            has_template if chat_template is None else bool(chat_template and has_template)
        )
        self.vocab_size = len(tok)

    def encode(self, text: str) -> list[int]:
        """Text -> ids without special tokens."""
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        """Ids -> text, stopping at eos, special tokens skipped."""
        ids = [int(i) for i in ids]
        if self.eos_token_id in ids:
            ids = ids[: ids.index(self.eos_token_id)]
        return self.tok.decode(ids, skip_special_tokens=True)

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt as model input (chat template with a generation prompt when enabled)."""
        if self.use_chat:
            ids = self.tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        ids = self.tok.encode(prompt, add_special_tokens=True)
        return [int(i) for i in ids]


def build_builtin_model(
    tokenizer: CharTokenizer,
    n_layer: int = 4,
    n_embd: int = 128,
    n_head: int = 4,
    n_inner: int = 512,
    max_positions: int = 256,
    seed: int = 0,
):
    """A tiny Llama-style causal LM from a transformers config (~1M parameters at the defaults)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=n_embd,
        intermediate_size=n_inner,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_head,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.02,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def count_parameters(model) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _gguf_location(model: str, gguf_file: str | None) -> tuple[Path, str | None]:
    path = Path(model).expanduser()
    if gguf_file is None and path.suffix == ".gguf":
        return path.parent, path.name
    return path, gguf_file


def load_policy(cfg, device: str = "cpu"):
    """Build or load the policy named by ``cfg.model`` (see :class:`TrainConfig`).

    Returns ``(model, tokenizer, kind)`` with ``kind`` in ``builtin``, ``builtin-folder``,
    ``hf``, ``gguf``. Raises :class:`ModelPathError` if a path does not exist.
    """
    if cfg.model == "builtin":
        tok = CharTokenizer()
        model = build_builtin_model(
            tok, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_inner, seed=cfg.seed
        )
        return model.to(device), tok, "builtin"
    folder, gguf = _gguf_location(cfg.model, cfg.gguf_file)
    if gguf is not None:
        if not (folder / gguf).is_file():
            raise ModelPathError(f"model: GGUF file {folder / gguf} does not exist")
    elif not folder.is_dir():
        raise ModelPathError(
            f"model: {folder} does not exist (expected 'builtin', a model folder or a .gguf file)"
        )
    elif not (folder / "config.json").is_file():
        raise ModelPathError(
            f"model: {folder} has no config.json (not a Hugging Face model folder)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf} if gguf else {}
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
    if gguf is None and (folder / _CHAR_FILE).is_file():
        return model.to(device), CharTokenizer.load(folder), "builtin-folder"
    tok = AutoTokenizer.from_pretrained(str(folder), **kw)
    return model.to(device), HFTokenizer(tok, cfg.chat_template), "gguf" if gguf else "hf"


def save_policy(model, tokenizer, folder: str | os.PathLike) -> Path:
    """Save model (+ tokenizer) as a Hugging Face folder, atomically (temp folder, swap)."""
    from knapsack_rl.training.checkpoint import replace_folder

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp.", dir=folder.parent))
    try:
        model.save_pretrained(str(tmp))
        if isinstance(tokenizer, CharTokenizer):
            tokenizer.save(tmp)
        elif isinstance(tokenizer, HFTokenizer):
            tokenizer.tok.save_pretrained(str(tmp))
        replace_folder(tmp, folder)  # the old folder stays until the new one takes its place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def sft_warmstart(
    model,
    tokenizer,
    examples,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> list[float]:
    """Supervised warm-start: cross-entropy on ``answer + <eos>`` given the prompt.

    Batches are drawn with a seeded generator; AdamW with a cosine decay to 10%
    of ``lr``. Returns the loss per step.
    """
    from knapsack_rl.training.grpo import build_sequences

    if steps <= 0 or not examples:
        return []
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: 0.1 + 0.9 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * s / steps)),
    )
    prompts = [tokenizer.prompt_ids(e.prompt) for e in examples]
    targets = [tokenizer.encode(e.answer) + [tokenizer.eos_token_id] for e in examples]
    model.train()
    losses = []
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="warm-start", leave=False, disable=None)  # off when not a TTY
    for _ in it:
        idx = torch.randint(len(examples), (batch_size,), generator=gen).tolist()
        batch = build_sequences(
            [prompts[i] for i in idx], [targets[i] for i in idx], tokenizer.pad_token_id
        )
        out = model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            position_ids=batch.position_ids.to(device),
        )
        logits = out.logits[:, :-1].float()
        tgt = batch.input_ids[:, 1:].to(device)
        mask = batch.loss_mask[:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), reduction="none"
        )
        loss = (nll * mask.reshape(-1)).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
