"""Evaluation (and training) data for the accuracy gate, calibration, fine-tuning and distillation.

Two formats:

* `.npz` (numpy.savez). Arrays named after the model's inputs (a single-input model may use
  `inputs`), with the batch as the first axis. Optional:
    - `labels`: integer class per row. With labels the metric is top-1 accuracy of the first
      output; without them it is fidelity: the mean cosine similarity between the optimized and
      the original model's first output on the same rows (1.0 = identical).
    - `train_<input>` (or `train_inputs`) and `train_labels`: a training split, used to fine-tune
      after pruning and to distill. Never used for the reported metric.
    - `calib_<input>` (or `calib_inputs`): calibration rows for int8 static; by default the
      training split, else the evaluation rows.
* `.txt`: one sentence per line, for text encoders that come with a tokenizer.json (e.g. a
  sentence-transformers folder). The metric is fidelity (cosine), as above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class EvalDataError(ValueError):
    pass


@dataclass
class EvalData:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    train_inputs: dict[str, np.ndarray] | None = None
    train_labels: np.ndarray | None = None
    calib_inputs: dict[str, np.ndarray] | None = None

    @property
    def metric(self) -> str:
        return "accuracy" if self.labels is not None else "cosine"

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batch(self, size: int) -> dict[str, np.ndarray]:
        """The first `size` rows, repeated when there are fewer."""
        idx = np.arange(size) % self.rows
        return {k: v[idx] for k, v in self.inputs.items()}

    def calibration(self, limit: int) -> dict[str, np.ndarray]:
        source = self.calib_inputs or self.train_inputs or self.inputs
        return {k: v[:limit] for k, v in source.items()}


def load_eval_data(path: Path, input_names: list[str], tokenizer: Path | None = None) -> EvalData:
    if path.suffix == ".npz":
        return _load_npz(path, input_names)
    if path.suffix == ".txt":
        return _load_sentences(path, input_names, tokenizer)
    raise EvalDataError(f"eval data {path.name}: unknown format; use .npz (arrays named after the model inputs, optional labels) or .txt (one sentence a line)")


def _split(arrays: dict[str, np.ndarray], prefix: str, input_names: list[str]) -> dict[str, np.ndarray] | None:
    named = {n: arrays[prefix + n] for n in input_names if prefix + n in arrays}
    if not named and len(input_names) == 1 and prefix + "inputs" in arrays:
        named = {input_names[0]: arrays[prefix + "inputs"]}
    if not named:
        return None
    missing = [n for n in input_names if n not in named]
    if missing:
        raise EvalDataError(f"eval data has {', '.join(prefix + n for n in named)} but lacks {', '.join(prefix + n for n in missing)}")
    return named


def _load_npz(path: Path, input_names: list[str]) -> EvalData:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise EvalDataError(f"eval data {path.name} is not a readable .npz: {exc}") from None
    inputs = _split(arrays, "", input_names)
    if inputs is None:
        raise EvalDataError(f"eval data {path.name} has arrays {sorted(arrays)}; it needs one named after each model input {input_names} (or 'inputs')")
    data = EvalData(
        inputs=inputs,
        labels=arrays.get("labels"),
        train_inputs=_split(arrays, "train_", input_names),
        train_labels=arrays.get("train_labels"),
        calib_inputs=_split(arrays, "calib_", input_names),
    )
    if data.labels is not None and len(data.labels) != data.rows:
        raise EvalDataError(f"eval data: {len(data.labels)} labels for {data.rows} rows")
    return data


def tokenize(sentences: list[str], tokenizer: Path, input_names: list[str], max_length: int = 256) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0)
    enc = tok.encode_batch(sentences)
    arrays = {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
    }
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise EvalDataError(f"sentences can feed inputs input_ids/attention_mask/token_type_ids, but the model wants {missing}")
    return {n: arrays[n] for n in input_names}


def _load_sentences(path: Path, input_names: list[str], tokenizer: Path | None) -> EvalData:
    if tokenizer is None:
        raise EvalDataError("sentence eval data (.txt) needs a model folder that ships tokenizer.json")
    sentences = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
        raise EvalDataError(f"eval data {path.name} has no sentences")
    return EvalData(inputs=tokenize(sentences, tokenizer, input_names))
