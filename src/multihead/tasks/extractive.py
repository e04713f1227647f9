"""Extractive summarisation end to end: score each sentence of an article, keep the best, in article order.

An article becomes one token sequence, ``[CLS] sentence [SEP]`` after ``[CLS] sentence [SEP]``, cut at
``data.max_length`` tokens (sentences past the cut get no score and are never picked); a ``SentenceScorer``
gives each sentence a logit, trained with binary cross-entropy against "this sentence is in the reference
summary". A summary is the top ``k`` sentences by score, in article order, where ``k`` is a share of the
article's sentences (or a fixed number) chosen on the validation split after training, by ROUGE-2 F1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.atomic import write_json_atomic
from multihead.data import BucketBatchSampler, pad_batch
from multihead.data.summaries import (
    Article,
    bbc_news_summary,
    lead,
    read_summary_file,
    split_sentences,
    summary_labels,
)
from multihead.errors import CheckpointError, ConfigError
from multihead.experiment import ExperimentConfig
from multihead.model_dir import load_model_dir, write_model_files
from multihead.models import SentenceScorer, top_k_in_order
from multihead.tasks.classification import build_tokenizer
from multihead.text_metrics import rouge, rouge_n, rouge_tokens
from multihead.tokenizers import Tokenizer
from multihead.training import TrainData, Trainer

__all__ = ["EncodedArticles", "ExtractiveResult", "ExtractiveTask", "encode_articles", "evaluate_extractive",
           "selection_size", "summarize_extractive", "train_extractive"]

Batch = dict[str, Tensor]
MAX_SENTENCE_TOKENS = 64
"""Tokens kept of each sentence (``[CLS]`` and ``[SEP]`` included), so that one long sentence does not crowd
the later ones out of the ``data.max_length`` window."""
DESIGN = "hierarchical"
"""The ``SentenceScorer`` design (chosen on validation: see the recipe ``configs/summarize-bbc-extractive.yaml``)."""
SEGMENT_EMBEDDINGS = False
"""Whether a ``"flat"`` model adds BERTSum's interval segment embeddings."""
CANDIDATE_RULES: tuple[dict[str, float | int], ...] = (
    *({"k": k} for k in range(3, 11)),
    *({"ratio": round(0.30 + 0.04 * i, 2)} for i in range(11)),
)
"""The selection rules tried on validation: a fixed ``k``, or a share of the article's sentences."""


def selection_size(n_sentences: int, rule: dict[str, Any]) -> int:
    """Sentences to pick from an article of ``n_sentences``: ``rule["k"]``, or ``round(ratio * n)`` (at least 1)."""
    if "k" in rule:
        return int(rule["k"])
    return max(1, round(float(rule["ratio"]) * n_sentences))


@dataclass
class EncodedArticles:
    """Token ids of each article, the index of each scored sentence's ``[CLS]``, and the labels."""

    ids: list[list[int]]
    positions: list[list[int]]
    labels: list[list[float]]
    n_sentences: list[int]

    def collate(self, indices: Sequence[int], *, pad_id: int) -> Batch:
        """``ids``/``mask`` ``(B, T)``, ``positions``/``sentence_mask``/``labels`` ``(B, S)``, ``index`` ``(B,)``."""
        ids, mask = pad_batch([self.ids[i] for i in indices], pad_id=pad_id)
        width = max(1, *(len(self.positions[i]) for i in indices))
        positions = torch.zeros(len(indices), width, dtype=torch.long)  # (B, S)
        labels = torch.zeros(len(indices), width)  # (B, S)
        for row, i in enumerate(indices):
            positions[row, :len(self.positions[i])] = torch.tensor(self.positions[i], dtype=torch.long)
            labels[row, :len(self.labels[i])] = torch.tensor(self.labels[i])
        counts = torch.tensor([len(self.positions[i]) for i in indices])  # (B,)
        sentence_mask = torch.arange(width)[None, :] < counts[:, None]  # (B, S)
        return {"ids": ids, "mask": mask, "positions": positions, "sentence_mask": sentence_mask, "labels": labels,
                "index": torch.tensor(list(indices))}

    def batches(self, *, batch_size: int, pad_id: int) -> Iterable[Batch]:
        """Evaluation batches in length order (no shuffling)."""
        sampler = BucketBatchSampler([len(x) for x in self.ids], batch_size=batch_size, shuffle=False)
        for indices in sampler.batches(0):
            yield self.collate(indices, pad_id=pad_id)


def encode_articles(articles: Sequence[Sequence[str]], *, tokenizer: Tokenizer, max_length: int,
                    max_sentences: int | None = None, labels: Sequence[Sequence[bool]] | None = None
                    ) -> EncodedArticles:
    """Encode each article (a list of sentences) as ``[CLS] s1 [SEP] [CLS] s2 [SEP] ...``, cut at ``max_length``.

    A sentence is scored when its ``[CLS]`` and at least one more token fit, and it is among the first
    ``max_sentences`` (None: no limit); ``labels`` (one per sentence, default all False) are kept for the scored
    sentences.
    """
    if tokenizer.cls_id is None or tokenizer.sep_id is None:
        raise ConfigError("the tokenizer needs [CLS] and [SEP] tokens to mark sentences")
    if max_length < 2:
        raise ConfigError(f"max_length must be >= 2, got {max_length}")
    flat = tokenizer.encode_batch([s for article in articles for s in article], max_length=MAX_SENTENCE_TOKENS)
    encoded = EncodedArticles([], [], [], [])
    offset = 0
    for number, article in enumerate(articles):
        ids: list[int] = []
        positions: list[int] = []
        for sentence in flat[offset:offset + len(article)]:
            if len(ids) + 2 > max_length or len(positions) == (max_sentences or len(article) + 1):
                break
            positions.append(len(ids))
            ids.extend(sentence)
        offset += len(article)
        targets = [float(x) for x in labels[number]] if labels is not None else [0.0] * len(article)
        encoded.ids.append(ids[:max_length])
        encoded.positions.append(positions)
        encoded.labels.append(targets[:len(positions)])
        encoded.n_sentences.append(len(article))
    return encoded


def _logits(model: nn.Module, batch: Batch) -> Tensor:
    return model(batch["ids"], mask=batch["mask"], positions=batch["positions"],
                 sentence_mask=batch["sentence_mask"]).float()  # (B, S)


def score_articles(model: nn.Module, encoded: EncodedArticles, *, pad_id: int, batch_size: int = 16
                   ) -> list[list[float]]:
    """The logit of each scored sentence of each article, in article order."""
    scores: list[list[float]] = [[] for _ in encoded.ids]
    model.eval()
    with torch.no_grad():
        for batch in encoded.batches(batch_size=batch_size, pad_id=pad_id):
            logits = _logits(model, batch)  # (B, S)
            for row, index in enumerate(batch["index"].tolist()):
                scores[index] = logits[row, :len(encoded.positions[index])].tolist()
    return scores


class ExtractiveTask:
    """Binary cross-entropy per sentence; sentence-level precision, recall and F1 of the selection to evaluate.

    Args:
        n_sentences: sentences of each article of the evaluated split (by the batches' ``index``).
        n_positive: reference-summary sentences of each such article (scored or not).
        rule: the selection rule (see :func:`selection_size`) used by :meth:`evaluate`.
    """

    def __init__(self, *, n_sentences: Sequence[int], n_positive: Sequence[int], rule: dict[str, Any]) -> None:
        self.n_sentences, self.n_positive, self.rule = list(n_sentences), list(n_positive), dict(rule)

    def count(self, batch: Batch) -> int:
        return int(batch["sentence_mask"].sum())

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        keep = batch["sentence_mask"]
        return F.binary_cross_entropy_with_logits(_logits(model, batch)[keep], batch["labels"][keep], reduction="sum")

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        loss, units, hits, chosen, positive = 0.0, 0, 0.0, 0, 0
        for batch in batches:
            keep = batch["sentence_mask"]
            logits = _logits(model, batch)  # (B, S)
            loss += float(F.binary_cross_entropy_with_logits(logits[keep], batch["labels"][keep], reduction="sum"))
            units += int(keep.sum())
            for row, index in enumerate(batch["index"].tolist()):
                scored = int(keep[row].sum())
                picked = top_k_in_order(logits[row, :scored], selection_size(self.n_sentences[index], self.rule))
                hits += float(batch["labels"][row, picked].sum())
                chosen += len(picked)
                positive += self.n_positive[index]
        precision, recall = hits / max(chosen, 1), hits / max(positive, 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"sentence_f1": f1, "sentence_precision": precision, "sentence_recall": recall,
                "loss": loss / max(units, 1)}


@dataclass
class ExtractiveResult:
    """What :func:`train_extractive` did: the best step's sentence F1, the chosen rule, and the ROUGE reports."""

    output_dir: Path
    best_validation: float | None
    best_step: int | None
    selection: dict[str, Any]
    validation_report: dict[str, Any]
    test_report: dict[str, Any] | None
    seconds: float
    interrupted: bool = False


def load_articles(config: ExperimentConfig) -> dict[str, list[Article]]:
    """``train``, ``validation`` and (when known) ``test`` articles: the BBC set's fixed split, or JSON lines
    files in its format (``data.train``, ``data.validation``, ``data.test``)."""
    data = config.data
    if data.dataset == "bbc-news-summary":
        return bbc_news_summary()
    if data.dataset is not None or data.train is None or data.validation is None:
        raise ConfigError(f"extractive summarisation reads data.dataset 'bbc-news-summary' or data.train and "
                          f"data.validation files in its JSON lines format, got dataset {data.dataset!r:.80}, "
                          f"train {data.train!r:.80}, validation {data.validation!r:.80}")
    files = {"train": data.train, "validation": data.validation, "test": data.test}
    return {name: read_summary_file(path) for name, path in files.items() if path}


def _references(articles: Sequence[Article]) -> list[str]:
    return ["\n".join(article.summary_sentences) for article in articles]


def _pick(articles: Sequence[Article], scores: Sequence[Sequence[float]], rule: dict[str, Any]) -> list[str]:
    return ["\n".join(article.sentences[i] for i in top_k_in_order(row, selection_size(len(article.sentences), rule)))
            for article, row in zip(articles, scores, strict=True)]


def _lead(articles: Sequence[Article], rule: dict[str, Any]) -> list[str]:
    return ["\n".join(lead(article, selection_size(len(article.sentences), rule))) for article in articles]


def choose_rule(articles: Sequence[Article], scores: Sequence[Sequence[float]],
                log: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, float]]:
    """The rule of :data:`CANDIDATE_RULES` with the best ROUGE-2 F1 on ``articles``, and each rule's ROUGE-2.

    Each sentence is tokenized once (:func:`rouge_tokens`); the figures equal :func:`rouge`'s ``rouge2``.
    """
    sentence_tokens = [[rouge_tokens(s) for s in article.sentences] for article in articles]
    references = [rouge_tokens(text) for text in _references(articles)]
    report: dict[str, float] = {}
    for rule in CANDIDATE_RULES:
        total = 0.0
        for tokens, reference, row in zip(sentence_tokens, references, scores, strict=True):
            picked = top_k_in_order(row, selection_size(len(tokens), rule))
            total += rouge_n([token for i in picked for token in tokens[i]], reference, n=2)["f1"]
        report[_rule_name(rule)] = total / max(len(articles), 1)
    log("validation ROUGE-2 F1 by selection rule: " + ", ".join(f"{k} {v:.2f}" for k, v in report.items()))
    best = max(CANDIDATE_RULES, key=lambda rule: report[_rule_name(rule)])
    return dict(best), report


def _rule_name(rule: dict[str, Any]) -> str:
    return f"k={rule['k']}" if "k" in rule else f"ratio={rule['ratio']}"


def compare_with_lead(articles: Sequence[Article], scores: Sequence[Sequence[float]], rule: dict[str, Any], *,
                      reference_ratio: float | None = None) -> dict[str, Any]:
    """ROUGE-1/2/L/Lsum F1 (0-100) of the model, Lead-3 and Lead with the model's rule, side by side.

    With ``reference_ratio`` (the training summaries' mean share of sentences), also the model and Lead when both
    keep that share: summaries as long as the references, since ROUGE F1 here rewards longer ones.
    """
    references = _references(articles)
    systems = {"model": _pick(articles, scores, rule), "lead3": _lead(articles, {"k": 3}),
               "lead_same_rule": _lead(articles, rule)}
    if reference_ratio is not None:
        systems["model_reference_length"] = _pick(articles, scores, {"ratio": reference_ratio})
        systems["lead_reference_length"] = _lead(articles, {"ratio": reference_ratio})
    report: dict[str, Any] = {}
    for name, hypotheses in systems.items():
        values = rouge(hypotheses, references)
        report[name] = {key: values[key] for key in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    return {**report, "selection": rule, "reference_ratio": reference_ratio, "articles": len(articles)}


def train_extractive(config: ExperimentConfig, *, resume: bool = False, log: Callable[[str], None] = print,
                     test: bool = True, design: str = DESIGN, segment_embeddings: bool = SEGMENT_EMBEDDINGS,
                     ) -> ExtractiveResult:
    """Train on ``train``, pick the best step (sentence F1) and the selection rule (ROUGE-2) on ``validation``,
    report ``test`` once (unless ``test`` is False), save ``best/``.

    ``design`` and ``segment_embeddings`` are the ``SentenceScorer``'s (the defaults were chosen on validation).
    """
    started = time.perf_counter()
    output_dir, data = Path(config.output_dir), config.data
    splits = load_articles(config)
    log(" ".join(f"{name} {len(articles):,}" for name, articles in splits.items()) + " articles")
    if resume and (output_dir / "last" / "tokenizer.json").is_file():
        tokenizer = Tokenizer.load(output_dir / "last" / "tokenizer.json")
    else:
        tokenizer = build_tokenizer(config, [s for article in splits["train"] for s in article.sentences])
    if tokenizer.pad_id is None:
        raise ConfigError("the tokenizer has no padding token ([PAD] or <pad>)")
    model_config = config.model_config(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
    if design == "flat" and model_config.positions == "learned" and model_config.max_length < data.max_length:
        raise ConfigError(f"model.max_length ({model_config.max_length}) must be >= data.max_length "
                          f"({data.max_length}) for learned positions")
    train_ratio = sum(len(a.summary_sentences) / len(a.sentences) for a in splits["train"]) / len(splits["train"])
    settings = {"max_length": data.max_length, "max_sentences": model_config.max_length if design != "flat" else None,
                "reference_ratio": round(train_ratio, 2)}
    encoded = {name: encode_articles([a.sentences for a in articles], tokenizer=tokenizer, max_length=data.max_length,
                                     max_sentences=settings["max_sentences"],
                                     labels=[summary_labels(a) for a in articles])
               for name, articles in splits.items()}
    scored = sum(map(len, encoded["train"].positions)) / max(sum(encoded["train"].n_sentences), 1)
    log(f"{scored:.1%} of training sentences fit in {data.max_length} tokens; summaries hold {train_ratio:.1%} "
        f"of an article's sentences on average")
    torch.manual_seed(config.training.seed)
    model = SentenceScorer(model_config, design=design, segment_embeddings=segment_embeddings)  # type: ignore[arg-type]
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    pad_id, batch_size = tokenizer.pad_id, config.training.batch_size
    train = encoded["train"]
    sampler = BucketBatchSampler([len(x) for x in train.ids], batch_size=batch_size, shuffle=True,
                                 seed=config.training.seed, drop_last=len(train.ids) >= batch_size)
    validation = splits["validation"]
    task = ExtractiveTask(n_sentences=encoded["validation"].n_sentences, rule={"ratio": settings["reference_ratio"]},
                          n_positive=[sum(summary_labels(a)) for a in validation])
    extra: dict[str, Any] = {"task": "extractive-summarization", "experiment": config.to_dict(),
                             "extractive": {**settings, "selection": task.rule}}

    def save_files(directory: Path, trained: nn.Module) -> None:
        write_model_files(directory, model=trained, tokenizer=tokenizer, extra=extra)

    trainer = Trainer(model=model, task=task, config=config.training, output_dir=output_dir, save_files=save_files,
                      train=TrainData(sampler=sampler, collate=lambda indices: train.collate(indices, pad_id=pad_id)),
                      validation=lambda: encoded["validation"].batches(batch_size=2 * batch_size, pad_id=pad_id))
    result = trainer.fit(resume=resume)
    log(f"trained in {time.perf_counter() - started:.0f} s; choosing the selection rule on validation")
    best = load_model_dir(output_dir / "best")
    scores = score_articles(best.model, encoded["validation"], pad_id=pad_id, batch_size=2 * batch_size)
    rule, sweep = choose_rule(validation, scores, log=log)
    config_path = output_dir / "best" / "config.json"
    saved = json.loads(config_path.read_text())
    saved["extractive"]["selection"] = rule
    write_json_atomic(config_path, saved)
    validation_report = {**compare_with_lead(validation, scores, rule, reference_ratio=settings["reference_ratio"]),
                         "sweep": sweep}
    write_json_atomic(output_dir / "validation_metrics.json", validation_report)
    test_report = None
    if test and "test" in splits and not result.interrupted:
        test_scores = score_articles(best.model, encoded["test"], pad_id=pad_id, batch_size=2 * batch_size)
        test_report = compare_with_lead(splits["test"], test_scores, rule, reference_ratio=settings["reference_ratio"])
        write_json_atomic(output_dir / "test_metrics.json", test_report)
    return ExtractiveResult(output_dir=output_dir, best_validation=result.best_metric, best_step=result.best_step,
                            selection=rule, validation_report=validation_report, test_report=test_report,
                            seconds=time.perf_counter() - started, interrupted=result.interrupted)


def _load(model_dir: str | Path) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    loaded = load_model_dir(model_dir)
    settings = loaded.config.get("extractive")
    if not isinstance(loaded.model, SentenceScorer) or loaded.tokenizer is None or not isinstance(settings, dict):
        raise CheckpointError(f"{model_dir}: not an extractive summariser (expected a SentenceScorer with "
                              f"tokenizer.json and an \"extractive\" section in config.json, got "
                              f"{loaded.config.get('architecture')!r:.80})")
    return loaded.model, loaded.tokenizer, settings


def summarize_extractive(model_dir: str | Path, articles: Sequence[str] | Sequence[list[str]], *,
                         k: int | None = None, batch_size: int = 16) -> list[list[str]]:
    """The chosen sentences of each article, in article order.

    Args:
        model_dir: a directory written by :func:`train_extractive`.
        articles: raw texts (split with :func:`multihead.data.summaries.split_sentences`) or lists of sentences.
        k: sentences per summary; None: the rule chosen on validation (saved in ``config.json``).
    """
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ConfigError(f"k must be a positive integer or None, got {k!r:.80}")
    model, tokenizer, settings = _load(model_dir)
    rule = {"k": k} if k is not None else settings["selection"]
    sentences = [split_sentences(a) if isinstance(a, str) else [str(s) for s in a] for a in articles]
    summaries: list[list[str]] = [[] for _ in sentences]
    present = [i for i, s in enumerate(sentences) if s]
    if not present:
        return summaries
    encoded = encode_articles([sentences[i] for i in present], tokenizer=tokenizer, max_length=settings["max_length"],
                              max_sentences=settings.get("max_sentences"))
    scores = score_articles(model, encoded, pad_id=tokenizer.pad_id or 0, batch_size=batch_size)
    for i, row in zip(present, scores, strict=True):
        summaries[i] = [sentences[i][j] for j in top_k_in_order(row, selection_size(len(sentences[i]), rule))]
    return summaries


def evaluate_extractive(model_dir: str | Path, split: str = "test", *,
                        root: str | Path | None = None) -> dict[str, Any]:
    """ROUGE-1/2/L/Lsum F1 of a saved model, of Lead-3 and of Lead with the model's rule, on a BBC split."""
    model, tokenizer, settings = _load(model_dir)
    splits = bbc_news_summary(root)
    if split not in splits:
        raise ConfigError(f"split must be one of {sorted(splits)}, got {split!r:.80}")
    articles = splits[split]
    encoded = encode_articles([a.sentences for a in articles], tokenizer=tokenizer, max_length=settings["max_length"],
                              max_sentences=settings.get("max_sentences"))
    scores = score_articles(model, encoded, pad_id=tokenizer.pad_id or 0)
    return {"split": split, **compare_with_lead(articles, scores, settings["selection"],
                                                reference_ratio=settings.get("reference_ratio"))}
