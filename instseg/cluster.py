"""k-means in torch (k-means++ init, runs on the data's device) and a majority vote across repeats."""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def _sqdist(x: Tensor, c: Tensor) -> Tensor:
    return (x.square().sum(1, keepdim=True) - 2 * x @ c.t() + c.square().sum(1)[None]).clamp_min(0)  # [P, k]


def kmeans_pp(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to D^2."""
    p = x.shape[0]
    centers = [x[torch.randint(p, (1,), generator=gen, device=x.device)]]
    d2 = _sqdist(x, centers[0])[:, 0]
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1 / p)
        centers.append(x[torch.multinomial(probs, 1, generator=gen)])
        d2 = torch.minimum(d2, _sqdist(x, centers[-1])[:, 0])
    return torch.cat(centers)


def kmeans(x: Tensor, k: int, iters: int = 100, tol: float = 1e-4, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Cluster rows of x [P, D] -> (labels [P] long, centres [k, D]). Stops when centres move less
    than tol times the data's mean variance (scikit-learn's criterion)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    x = x.float()
    c = kmeans_pp(x, k, gen)
    thresh = tol * x.var(0).mean()
    for _ in range(iters):
        labels = _sqdist(x, c).argmin(1)
        counts = torch.bincount(labels, minlength=k).float()
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        new = sums / counts.clamp_min(1)[:, None]
        if (counts == 0).any():  # re-seed empty clusters at the points farthest from their centre
            empty = (counts == 0).nonzero()[:, 0]
            far = _sqdist(x, new).min(1).values.topk(min(len(empty), x.shape[0])).indices
            new[empty[: len(far)]] = x[far]
        shift = (new - c).square().sum()
        c = new
        if shift <= thresh:
            break
    return _sqdist(x, c).argmin(1), c


def margin(x: Tensor, centers: Tensor) -> Tensor:
    """Per-pixel confidence 1 - d1/d2 (nearest vs. second-nearest centre distance), in [0, 1]: [P]."""
    d = _sqdist(x.float(), centers).sqrt().topk(2, dim=1, largest=False).values
    return 1 - d[:, 0] / d[:, 1].clamp_min(1e-12)


def align_labels(ref: Tensor, labels: Tensor, k: int) -> Tensor:
    """Relabel `labels` by the permutation that agrees best with `ref` (Hungarian matching)."""
    conf = torch.bincount(labels * k + ref, minlength=k * k).reshape(k, k)  # [labels, ref]
    rows, cols = linear_sum_assignment(conf.cpu().numpy(), maximize=True)
    perm = torch.empty(k, dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm.to(labels.device)[labels]


def majority_vote(label_sets: Tensor, k: int) -> Tensor:
    """[R, P] label maps from R repeats -> [P] per-pixel majority after aligning each to the first."""
    aligned = torch.stack([label_sets[0]] + [align_labels(label_sets[0], l, k) for l in label_sets[1:]])
    return torch.nn.functional.one_hot(aligned, k).sum(0).argmax(1)  # ties go to the lower label
