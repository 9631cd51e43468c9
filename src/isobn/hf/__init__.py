"""Attach IsoBN to Hugging Face sequence classifiers, detach it, save and load its state.

IsoBN goes on the vector that enters the classification head, as in the paper's released code
(pooled output -> IsoBN -> dropout -> linear). Like peft's LayerNorm tuner the injection is
reversible and replaces no existing module: the [`IsoBN`][isobn.layer.IsoBN] layer becomes a child
named ``isobn`` of the module whose input it normalizes (the *site*), and a forward pre-hook on the
site applies it; [`detach`][isobn.hf.inject.detach] removes the hook by its handle. Every original
parameter keeps its name, so a checkpoint of the attached model still loads into the plain
architecture, and [`detach`][isobn.hf.inject.detach] gives back exactly the model that went in (same
module objects).

Where IsoBN sits (``type(model).__name__``, site, data path):

* Bert-, Albert-, DebertaV2ForSequenceClassification (DeBERTa-v2 and -v3), site ``dropout``:
  pooled vector (B, D) -> IsoBN -> dropout -> classifier. The pooled vector is the pooler
  output (tanh(dense([CLS]))) for BERT and ALBERT, the ContextPooler output
  (act(dense([CLS]))) for DeBERTa.
* ModernBertForSequenceClassification, site ``drop``: head(cls or mean of tokens, as
  ``config.classifier_pooling`` says) (B, D) -> IsoBN -> drop -> classifier.
* DistilBertForSequenceClassification, site ``pre_classifier``:
  hidden[:, 0] (B, D) -> IsoBN -> pre_classifier -> ReLU -> dropout -> classifier.
* Roberta-, XLMRoberta-, Camembert-, MPNet-, ElectraForSequenceClassification, site
  ``classifier``: hidden[:, 0] (B, D) -> IsoBN -> head (dropout -> dense -> tanh, or gelu for
  ELECTRA -> dropout -> out_proj). The head takes the whole sequence (B, T, D) and reads only
  its first token, so it receives IsoBN's output as a one-token sequence (B, 1, D) and computes
  exactly what it would on the full sequence.
* Any other ``*ForSequenceClassification``: the general path of [`isobn.hf.sites`][isobn.hf.sites]
  finds the vector entering its ``classifier`` (or ``score``) by running the model once, and
  refuses, naming the reason, when that vector is not a pooled or first-token vector.

Persistence, two ways:

* Whole model: ``attach`` records its hyperparameters in ``model.config.isobn``, so
  ``model.save_pretrained(dir)`` writes them to config.json and the IsoBN buffers to
  model.safetensors (keys ``<site>.isobn.running_std`` ...). Reload with
  ``isobn.hf.from_pretrained(dir)``. A plain ``AutoModelForSequenceClassification
  .from_pretrained(dir)`` loads the model without IsoBN and lists those keys as unexpected.
* IsoBN only (peft style): ``save_isobn(model, dir)`` writes isobn.safetensors and
  isobn_config.json; ``load_isobn(base_model, dir)`` attaches and restores them.

Deploying without isobn: ``fold(model)`` folds IsoBN's eval-mode scale into the head's first
linear layer ([`isobn.hf.fold`][isobn.hf.fold]) and returns a plain transformers model with the
same logits; ``isobn export`` writes such a model (and optionally ONNX) from any isobn
checkpoint.

While training under ``Trainer``, [`IsotropyCallback`][isobn.hf.callback.IsotropyCallback] logs
the isotropy of the vector entering the head (before and after IsoBN) and IsoBN's scale at each
evaluation.
"""

from isobn.hf.attached import find_isobn, save_isobn
from isobn.hf.callback import IsotropyCallback
from isobn.hf.fold import NotFoldable, fold
from isobn.hf.inject import attach, detach
from isobn.hf.persist import from_pretrained, load_isobn
from isobn.hf.sites import TABLE

SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(TABLE)

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "IsotropyCallback",
    "attach",
    "detach",
    "NotFoldable",
    "find_isobn",
    "fold",
    "from_pretrained",
    "load_isobn",
    "save_isobn",
]
