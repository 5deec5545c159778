"""The toy GAN's training recipe as data (no torch): TrainConfig, whose defaults are the recipe `toy-textured`
trains with (`toy-flat`'s, plus the cheaper iteration of BENCHMARKS.md's train-cost), and which options make a
recipe. The CLI reads its defaults from here, so `instseg toy train-gan --help` needs no torch."""
from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "bf16")


def r1_heuristic(resolution: int, batch: int) -> float:
    """StyleGAN2-ADA's rule of thumb for R1's gamma: 0.0002 * res^2 / batch."""
    return 0.0002 * resolution**2 / batch


@dataclass
class TrainConfig:
    out: str = "toy-train"  # folder for the training state, snapshots and the exported generator
    world: str = "flat"  # renderer world (config.WORLDS)
    labels: bool = True  # also draw one label channel per class
    label_noise: float = 0.05  # std of Gaussian noise added to real and fake label channels
    resolution: int = 32
    channel_base: int = 2048
    channel_max: int = 128
    d_channel_base: int = 2048  # the discriminators' channel_base: as wide as G
    split_d: bool = True  # image-only D plus a joint D that sees a detached image (False: one joint D)
    mbstd_group: int = 4  # D's minibatch-stddev group (the largest divisor of the batch up to this; ADA's cifar: 32)
    blur_d: bool = False  # binomial-filtered downsampling in D (False: 2x2 box; 1.7x slower per iteration on a CPU)
    pool_first: bool = True  # D's conv1 after the downsampling, at a quarter of the cost (trainkit.DBlock)
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    dataset_size: int = 0  # 0: fresh scenes every batch; N: a fixed set of N scenes
    batch: int = 32
    iters: int = 20000
    lr: float = 0.002
    r1_gamma: float | None = 1.0  # None: ADA's heuristic, 0.0002 * resolution^2 / batch (collapsed here: toy-ab)
    r1_gamma_joint: float | None = None  # the joint D's R1 weight; None: the same as r1_gamma
    mismatch: bool = True  # matching-aware joint D: real images with class-shifted real labels count as fake too
    mismatch_weight: float = 0.5  # with mismatch: the share of the joint D's fake term taken by those pairs
    joint_weight: float = 0.2  # the joint D's weight in G's loss (the image D's is 1)
    r1_every: int = 16  # lazy R1 interval (StyleGAN2's)
    mix_prob: float = 0.9
    ema_kimg: float = 10.0  # EMA half-life in thousands of images, ramped up by ema_rampup
    ema_rampup: float = 0.05
    checkpoint_every: int = 250
    snapshot_every: int = 0  # also keep snapshots/generator-<iter>.pt every N iterations (0: none)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    device: str = "cpu"
    precision: str = "fp32"  # fp32, or bf16: the loss passes under bf16 autocast (R1 and the weights stay fp32)
    seed: int = 0
    minutes: float = 0.0  # stop (with a checkpoint) after this much wall clock; 0: no limit
    workers: int = 0  # processes rendering scenes; 0: one per CPU core, 1: in the trainer
    reuse_fake: bool = True  # D's step judges G's step's batch (detached) instead of drawing a second one
    channels_last: bool = True  # networks and batches in channels-last memory format

    @property
    def gamma(self) -> float:
        return r1_heuristic(self.resolution, self.batch) if self.r1_gamma is None else self.r1_gamma


# The options that make a recipe (what a resumed state must keep to continue the same run).
RECIPE = ("world", "labels", "resolution", "channel_base", "d_channel_base", "split_d", "mbstd_group", "blur_d",
          "pool_first", "dataset_size", "batch", "lr", "r1_gamma", "r1_gamma_joint", "r1_every", "mismatch",
          "mismatch_weight", "joint_weight", "ema_kimg", "reuse_fake", "channels_last")
# What a state that predates an option was trained with (its key absent from state.json).
LEGACY = {"pool_first": False, "r1_every": 4, "reuse_fake": False, "channels_last": False, "mismatch": False,
          "joint_weight": 1.0}


# The toy detectors' training (instseg toy train-detector): renderer scenes only, YOLOv8n-seg from its yaml.
DETECTOR_RECIPE = {"scenes": 4000, "epochs": 30, "imgsz": 64, "size": 32, "batch": 64}
