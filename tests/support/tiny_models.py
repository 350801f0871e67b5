"""Tiny random transformers models with real tokenizers, written to disk and loaded through the real code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = [
    "the", "a", "an", "is", "are", "was", "be", "to", "of", "and", "in", "that", "it", "for", "on", "with", "as",
    "you", "this", "but", "not", "you're", "hello", "world", "good", "bad", "nice", "awful", "great", "terrible",
    "idiot", "friend", "kind", "stupid", "love", "hate", "model", "text", "please", "thanks", "yes", "no",
    "maybe", "very", "really", "quite", "so", "many", "much", "more", "less"
]
LABELS = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]


def write_tokenizer(directory: Path) -> Any:
    """A real WordPiece tokenizer over a small vocabulary, saved the way transformers loads it."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = specials + list(WORDS) + letters + [f"##{c}" for c in letters] + list(".,!?'-0123456789")
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(directory)
    return tokenizer


def write_tiny_bert(directory: Path, *, classifier: bool, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A BERT with the detoxify label set (classifier) or a bare encoder (embedder), random weights."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(directory)
    # num_labels follows from id2label
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=512,
                        initializer_range=0.3, id2label=dict(enumerate(LABELS)),
                        label2id={label: i for i, label in enumerate(LABELS)})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if classifier else BertModel(config)
    model.save_pretrained(directory)
    return directory


def write_tiny_ner(directory: Path) -> Path:
    """A token-classification model whose tags are set by hand, so its output is known: every word
    spelt from single letters (names, which the tiny vocabulary lacks) is B-PER, vocabulary words are O.

    No layers: a token's hidden state is its normalised word embedding, which the head reads directly.
    """
    import torch
    from transformers import BertConfig, BertForTokenClassification

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(directory)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=0, num_attention_heads=2,
                        intermediate_size=16, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    model = BertForTokenClassification(config)
    with torch.no_grad():
        embeddings = model.bert.embeddings
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        words = torch.zeros_like(embeddings.word_embeddings.weight)
        words[:, 0], words[:, 1] = -1.0, 1.0  # "O" unless a letter piece
        for piece, index in tokenizer.get_vocab().items():
            core = piece.removeprefix("##")
            if len(core) == 1 and core.isalpha():
                words[index, 0], words[index, 1] = 1.0, -1.0
        embeddings.word_embeddings.weight.copy_(words)
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.weight[0, 1] = 5.0  # O reads dimension 1
        model.classifier.weight[1, 0] = 5.0  # B-PER reads dimension 0
    model.save_pretrained(directory)
    return directory
