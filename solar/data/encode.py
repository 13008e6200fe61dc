"""Canonical records -> token ids and labels, with the chat template and the loss mask.

SFT: the prompt (everything before an assistant turn, rendered by the chat template with the
generation prompt) is labelled -100; each assistant turn (content + EOS) is a target. Turns are
tokenized piece by piece and concatenated, so the label boundary is exact (no BPE merge across it).
CPT: every token is a target; a document is followed by EOS and split into max_length chunks.
"""

from __future__ import annotations

IGNORE = -100


def encode_chat(messages: list[dict], tokenizer, max_length: int) -> dict:
    """input_ids / labels of one conversation, truncated to ``max_length``."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("an SFT record must end with an assistant turn")
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels = [IGNORE] * len(ids)
    history: list[dict] = []
    consumed = 0  # characters of the rendered conversation already tokenized
    for turn in messages:
        if turn["role"] == "assistant":
            before = tokenizer.apply_chat_template(history, tokenize=False,
                                                   add_generation_prompt=True)
            after = tokenizer.apply_chat_template(history + [turn], tokenize=False)
            prompt = tokenizer(before[consumed:], add_special_tokens=False).input_ids
            response = tokenizer(after[len(before):], add_special_tokens=False).input_ids
            ids += prompt + response
            labels += [IGNORE] * len(prompt) + _mask_trailing(response, tokenizer)
            consumed = len(after)
        history.append(turn)
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def _mask_trailing(response: list[int], tokenizer) -> list[int]:
    """Target the content and its EOS; the blank line the template adds after EOS is not a target."""
    eos = tokenizer.eos_token_id
    if eos in response:
        cut = len(response) - response[::-1].index(eos)
        return response[:cut] + [IGNORE] * (len(response) - cut)
    return list(response)


def encode_text(text: str, tokenizer, max_length: int) -> list[dict]:
    """One document -> chunks of at most ``max_length`` tokens, all targets."""
    ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return [{"input_ids": ids[i:i + max_length], "labels": ids[i:i + max_length]}
            for i in range(0, len(ids), max_length)]
