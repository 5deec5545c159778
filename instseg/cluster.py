"""k-means in torch (k-means++ init, runs on the data's device) and a majority vote across repeats."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def _sqdist(x: Tensor, c: Tensor, x2: Tensor | None = None) -> Tensor:
    """Squared distances [P, k]; `x2` = x.square().sum(1, keepdim=True) when the caller has it."""
    x2 = x.square().sum(1, keepdim=True) if x2 is None else x2
    return (x2 - 2 * (x @ c.t()) + c.square().sum(1)[None]).clamp_min(0)  # not (2 * x) @ c: a copy of x


def kmeans_pp(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to D^2 (no host reads)."""
    p = x.shape[0]
    x2 = x.square().sum(1, keepdim=True)
    centers = [x[torch.randint(p, (1,), generator=gen, device=x.device)]]
    d2 = _sqdist(x, centers[0], x2)[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        probs = torch.where(total > 0, d2 / total.clamp_min(torch.finfo(d2.dtype).tiny), 1 / p)
        centers.append(x[torch.multinomial(probs, 1, generator=gen)])
        d2 = torch.minimum(d2, _sqdist(x, centers[-1], x2)[:, 0])
    return torch.cat(centers)


def kmeans(x: Tensor, k: int, iters: int = 100, tol: float = 1e-4, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Cluster rows of x [P, D] -> (labels [P] long, centres [k, D]). Stops when centres move less
    than tol times the data's mean variance (scikit-learn's criterion)."""
    labels, c = kmeans_batch([x], k, iters, tol, [seed])[0]
    return labels, c


def kmeans_batch(xs: list[Tensor], k: int, iters: int = 100, tol: float = 1e-4,
                 seeds: list[int] | None = None, padded: bool | None = None) -> list[tuple[Tensor, Tensor]]:
    """k-means on several point sets [P_r, D] at once: padded to [R, P, D] and masked, so each
    Lloyd step of every set is one batched matmul. Each set stops (is frozen) on its own when
    its centres move less than tol times its mean variance (scikit-learn's criterion), so a set
    gets the same result as it would alone. `padded` defaults to off on a CPU, where padding
    costs more than batching saves and each set runs its own loop."""
    seeds = seeds if seeds is not None else [0] * len(xs)
    dev = xs[0].device
    if not (dev.type != "cpu" if padded is None else padded):
        return [_kmeans_one(x.float().contiguous(), k, iters, tol, s) for x, s in zip(xs, seeds)]
    R, P, D = len(xs), max(x.shape[0] for x in xs), xs[0].shape[1]
    if R == 1:
        X, M = xs[0].float().contiguous()[None], None
    else:
        X = torch.zeros(R, P, D, device=dev)
        M = torch.zeros(R, P, 1, device=dev)
        for r, x in enumerate(xs):
            X[r, : x.shape[0]] = x.float()
            M[r, : x.shape[0]] = 1
    C = torch.stack([kmeans_pp(x.float(), k, torch.Generator(device=dev).manual_seed(s)) for x, s in zip(xs, seeds)])
    thresh = torch.stack([tol * _mean_variance(x.float()) for x in xs])

    def nearest(c: Tensor) -> Tensor:  # argmin_k |x - c_k|^2 = argmin_k (|c_k|^2 - 2 x.c_k)
        return torch.baddbmm(c.square().sum(-1)[:, None], X, c.transpose(1, 2), alpha=-2).argmin(-1)  # [R, P]

    sizes = torch.tensor([x.shape[0] for x in xs], device=dev)
    X2 = X.square().sum(-1, keepdim=True)
    active = torch.ones(R, dtype=torch.bool, device=dev)
    ks = torch.arange(k, device=dev)
    for it in range(iters):
        onehot = (nearest(C)[..., None] == ks).to(X.dtype)  # [R, P, k]
        if M is not None:
            onehot = onehot * M
        counts = onehot.sum(1)  # [R, k]
        new = onehot.transpose(1, 2) @ X / counts.clamp_min(1)[..., None]  # [R, k, D]
        new = _reseed_empty(X, X2, M, sizes, new, counts == 0)
        shift = (new - C).square().sum((1, 2))
        C = torch.where(active[:, None, None], new, C)
        active &= ~(shift <= thresh)
        if it % CHECK_EVERY == CHECK_EVERY - 1 and not active.any():  # one host read every few steps
            break
    labels = nearest(C)
    return [(labels[r, : x.shape[0]], C[r]) for r, x in enumerate(xs)]


CHECK_EVERY = 8  # Lloyd steps between reads of "has every set converged?" (frozen sets do not change)


def _reseed_empty(X: Tensor, X2: Tensor, M: Tensor | None, sizes: Tensor, new: Tensor, empty: Tensor) -> Tensor:
    """Each set's empty clusters, in index order, take its points farthest from their nearest new
    centre, farthest first (as the per-set loop does); tensor ops only, so no host read decides."""
    R, P, _ = X.shape
    k = new.shape[1]
    d = (X2 - 2 * (X @ new.transpose(1, 2)) + new.square().sum(-1)[:, None]).clamp_min(0).min(-1).values  # [R, P]
    if M is not None:
        d = d.masked_fill(M[..., 0] == 0, -1.0)
    far = d.topk(min(k, P), dim=1).indices  # [R, k'] farthest first
    rank = empty.long().cumsum(1) - 1  # the j-th empty cluster takes the j-th farthest point
    ok = empty & (rank < min(k, P)) & (rank < sizes[:, None])
    pick = far.gather(1, rank.clamp(0, far.shape[1] - 1))  # [R, k]
    points = X.gather(1, pick[..., None].expand(R, k, X.shape[2]))
    return torch.where(ok[..., None], points, new)


def _kmeans_one(x: Tensor, k: int, iters: int, tol: float, seed: int) -> tuple[Tensor, Tensor]:
    """One point set [P, D] on a CPU: the padded loop's steps with few ops each (at toy sizes the
    time goes to per-op overhead) and index_add centre sums (3x a one-hot matmul on a CPU).
    Labels that repeat the last step's mean the centres are fixed (the padded loop's next step
    would move them by exactly 0), so it returns them without the confirming step."""
    c = kmeans_pp(x, k, torch.Generator(device=x.device).manual_seed(seed))
    thresh = float(tol * _mean_variance(x))
    labels, reseeded = None, False
    for _ in range(iters):
        step = nearest_centre(x, c)
        if labels is not None and not reseeded and torch.equal(step, labels):
            return labels, c
        labels = step
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        new = torch.zeros_like(c).index_add_(0, labels, x) / counts.clamp_min(1)[:, None]
        reseeded = bool((counts == 0).any())
        if reseeded:  # rare: re-seed empty clusters with the farthest points
            empty = (counts == 0).nonzero()[:, 0]
            far = _sqdist(x, new).min(1).values.topk(min(len(empty), x.shape[0])).indices
            new[empty[: len(far)]] = x[far]
        shift = float((new - c).square().sum())
        c = new
        if shift <= thresh:
            break
    return nearest_centre(x, c), c


def nearest_centre(x: Tensor, centers: Tensor) -> Tensor:
    """The label of each row of x [P, D]: its nearest centre of [k, D]."""
    return torch.addmm(centers.square().sum(-1)[None], x.float(), centers.t(), alpha=-2).argmin(-1)


def _mean_variance(x: Tensor) -> Tensor:
    """The mean per-dimension (unbiased) variance of x [P, D]: one pass, not a strided var(0)."""
    n = x.shape[0]
    if n < 2:
        return torch.zeros((), device=x.device)
    return (x.square().sum(0) - x.sum(0).square() / n).sum().clamp_min(0) / ((n - 1) * x.shape[1])


def kmeans_seed(image_seed: int, region: int, repeat: int) -> int:
    """The k-means seed of one (image, region, repeat): distinct for every triple (SeedSequence)."""
    return int(np.random.SeedSequence([image_seed, region, repeat, 0xC1A5]).generate_state(1)[0])


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
