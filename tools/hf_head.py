"""A transformers model class for the quick-trial student: mean-pooled MiniLM + a linear head.

This file is self-contained (torch + transformers only): `save_pretrained` copies it into the model
folder, so `pipeline("text-classification", model=FOLDER, trust_remote_code=True)` loads the quick
trial like any sequence classifier.
"""

from __future__ import annotations

import torch
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolClassifier(BertPreTrainedModel):
    """BERT encoder, attention-masked mean pooling, L2 normalisation, then one linear layer."""

    def __init__(self, config) -> None:  # noqa: ANN001 (transformers passes its config)
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):  # noqa: ANN001, ANN201
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
        logits = self.classifier(pooled)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
