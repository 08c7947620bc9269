"""Prompt representations: final-layer embeddings of ambiguous-safe vs attack prompts, a 2-D UMAP,
and the margin 2/||w|| of a soft-margin linear SVM (C=1) separating the two (the paper: TARS 2.21,
SFT 1.03 on XSTest-safe vs GCG prompts). A wider margin = the model tells the two apart more clearly.
"""

from __future__ import annotations

import numpy as np

from tars_verl.eval.generate import render
from tars_verl.eval.prompts import EvalPrompt


def embed_prompts(
    model_path: str,
    prompts: list[EvalPrompt],
    batch_size: int = 8,
    trust_remote_code: bool = False,
    prefill_think: bool = False,
) -> np.ndarray:
    """Final-layer hidden state at each prompt's last token (the state the answer is generated from)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, trust_remote_code=trust_remote_code).to(device).eval()
    out = []
    for start in range(0, len(prompts), batch_size):
        texts = [render(tok, p, prefill_think) for p in prompts[start : start + batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            hidden = model(**enc, output_hidden_states=True).hidden_states[-1]
        out.append(hidden[:, -1, :].float().cpu().numpy())  # left padding: the last column is the last token
    return np.concatenate(out)


def umap_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, len(x) - 1)), random_state=seed)
    return reducer.fit_transform(x)


def svm_margin(points: np.ndarray, labels: np.ndarray, c: float = 1.0) -> float:
    """Geometric margin 2/||w|| of a soft-margin linear SVM."""
    from sklearn.svm import SVC

    if len(set(labels.tolist())) != 2:
        raise ValueError("svm_margin needs points of exactly two classes")
    clf = SVC(kernel="linear", C=c).fit(points, labels)
    return float(2.0 / np.linalg.norm(clf.coef_[0]))


def representation_margin(
    model_path: str, safe: list[EvalPrompt], attack: list[EvalPrompt], seed: int = 0, trust_remote_code: bool = False
) -> dict:
    x = embed_prompts(model_path, safe + attack, trust_remote_code=trust_remote_code)
    labels = np.array([0] * len(safe) + [1] * len(attack))
    pts = umap_2d(x, seed)
    return {
        "margin": svm_margin(pts, labels),
        "points": pts.tolist(),
        "labels": labels.tolist(),
        "n_safe": len(safe),
        "n_attack": len(attack),
    }
