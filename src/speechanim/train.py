"""Train the temporal GAN (paper, section 3.3) or one of its ablations.

    python -m speechanim.train --dataset grid --variant full \\
        --train data/packed/grid/train.h5 --val data/packed/grid/val.h5 \\
        --out results/grid/models/full --model '{"width": 0.5}' --training '{"batch_size": 8}'

    torchrun --nproc_per_node 2 -m speechanim.train ...      # the same, data-parallel

Variants (``--variant``; paper Table 2 and section 4.4):

``l1``         the generator alone, L1 loss on the entire frame only (no discriminator; Fig. 4a)
``l1_advimg``  lower-half L1 + the frame discriminator's adversarial loss
``full``       lower-half L1 + frame + sequence discriminators: the proposed model
``static``     the static baseline: ``ModelConfig.static`` (each frame from its own audio window and
               the still, no GRU state), lower-half L1 + frame adversarial loss
``full_sync``  beyond the paper: ``full`` + the synchronisation discriminator of the authors' journal
               version (IJCV 2020; speechanim.losses)

One step: the generator makes a video from each clip's still and audio window; the discriminators
take one Adam step on ``BCE(D(real), 1) + BCE(D(fake), 0)``; then the generator takes one on
``L_adv + lambda * L_L1`` against the updated discriminators (speechanim.losses). After every epoch
the generator is evaluated on the whole validation clips (PSNR and L1; the early-stopping metric is
``TrainConfig.val_metric``) and the state is checkpointed.

Files under ``--out``:

``work/last.pt``   everything needed to resume (speechanim.checkpoint keys), rewritten atomically each epoch
``work/best.pt``   the same, at the best validation epoch so far (staged as ``work/best.next.pt`` and
                   renamed only after last.pt records it: :func:`write_epoch`; a rerun completes or
                   rebuilds it, :func:`settle_best`, so it always holds the epoch last.pt names)
``generator.pt``   a copy of ``work/best.pt`` when training ends, after checking it holds the epoch the log
                   names (``load_generator`` reads it; it also records the training clips' frame rate,
                   ``fps``, which ``Animator`` makes videos at)
``history.csv``    one row per epoch: losses, discriminator outputs, validation metrics, learning rates, seconds
``losses.png``     the curves of history.csv (refreshed at most once a minute, and at the end)
``epochs/epoch<k>.pt``  with ``keep_epochs``: each epoch's checkpoint, for learning curves (benchmarks/learning_curves.py);
                   hard-linked into ``work/epochs`` once last.pt commits the epoch, from where a rerun
                   restores those an earlier run trained (Snakemake removes a failed or stopped job's ``epochs/``)

Rerunning the same command resumes from ``work/last.pt`` when its model and training settings,
variant and dataset are the same (``num_workers`` and ``max_epochs`` may change), and starts over
otherwise. Each epoch of a resumed run sees the same batches, crops and noise as it would have
without the interruption (given the same number of processes): every process's python, numpy,
torch (and CUDA) random states are part of the checkpoint. A NaN or infinite loss stops training with an error naming the epoch and step;
the last checkpoint, written at the end of the previous epoch, is left as it was. A failed write (a full
disk) stops training with an error naming the file and leaves the checkpoints as they were; temporary
files a killed run left are removed when the next one starts.

Under ``torchrun`` every process trains on its share of each epoch (DistributedSampler) with its
own networks wrapped in DistributedDataParallel (NCCL on CUDA, gloo on the CPU); ``batch_size`` is
the global batch, split evenly; validation is split across the processes and its sums reduced;
rank 0 alone writes files.

A job with a wall-clock limit (a cluster's ``runtime``: ``--time-limit MINUTES``) stops between two epochs
when the next one, taken to last as long as the longest this process has trained, would end less than
``--stop-margin`` seconds before the limit; the epoch before is committed to ``work/last.pt`` as always, no
``generator.pt`` is written, and the command exits with status 75 (:data:`EXIT_RESUME`, sysexits.h's
EX_TEMPFAIL): rerun it to resume. Each run trains at least one epoch. The stops change nothing that is
learnt: a training stopped any number of times ends with the weights of an uninterrupted one, bit for bit.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from .fileio import atomic_open, atomic_path, refuse_clashing_paths, remove_stale_temporaries
from .options import parse_overrides
from .checkpoint import CheckpointError, load_checkpoint, model_config_dict, save_checkpoint
from .audio import samples_per_frame
from .losses import VARIANT_TERMS, Batch, GANLoss, min_snippet_steps
from .models import (FrameDiscriminator, Generator, ModelConfig, SequenceDiscriminator, SyncDiscriminator,
                     count_parameters, device)
from .packing import TrainingWindows, WholeClips, clip_keys, unit_range, worker_init

VARIANTS = tuple(VARIANT_TERMS)
VAL_METRICS = {"psnr": "max", "l1": "min"}  # metric -> which way is better
PRECISIONS = ("fp32", "bf16")  # TrainConfig.precision
#: Training settings that may change without starting over (they do not change what is learnt).
RESUME_MAY_CHANGE = ("num_workers", "max_epochs", "keep_epochs")
#: The exit status of a run that stopped for its time limit with epochs left to train: rerun to resume
#: (sysexits.h EX_TEMPFAIL, "try again later"; the SLURM profile resubmits such a job, docs/cluster.md).
EXIT_RESUME = 75


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why (and names the file if one is at fault)."""


@dataclass
class TrainConfig:
    """Training settings. Defaults are the paper's where it gives them (section 3.3), ours otherwise."""

    # "The lambda hyperparameter ... was set to 400" (3.3, eq. 3).
    lambda_l1: float = 400.0
    # "Adam ... with a learning rate of 0.0002 for the Generator and 0.001 Frame Discriminator" (3.3).
    lr_generator: float = 2e-4
    lr_frame_disc: float = 1e-3
    # "The Sequence Discriminator uses a smaller fixed learning rate of 5 * 10^-5" (3.3): never decayed.
    lr_seq_disc: float = 5e-5
    # "... which decay after epoch 20 with a rate of 10%" (3.3). Our reading: epochs 1-20 run at the
    # base rate and every later epoch at 90% of the one before, i.e. epoch e uses
    # base * (1 - lr_decay) ** max(0, e - lr_decay_start) (epoch 21: x0.9, epoch 22: x0.81, ...).
    lr_decay_start: int = 20
    lr_decay: float = 0.1
    # The paper says only "We used Adam [13] for all the networks". Betas (0.5, 0.999) are our choice:
    # the DCGAN setting (Radford et al. 2016), the usual one for GANs; used for every network.
    betas: tuple[float, float] = (0.5, 0.999)
    # "trained until no improvement is observed on the reconstruction metrics on the validation set
    # for 10 epochs" (3.3): stop after `patience` epochs without a better `val_metric` on the
    # validation clips; the best epoch's weights are kept. "psnr" (higher is better) or "l1" (mean
    # absolute error of the whole frame on [-1, 1], lower is better).
    patience: int = 10
    val_metric: str = "psnr"
    # A cap on the number of epochs; the paper stops on patience alone.
    max_epochs: int = 500
    # Clips per step (global, split over processes). Not given in the paper; ours.
    batch_size: int = 8
    # Frames per training window. The sequence discriminator "classifies based on the entire
    # sequence" (3.3): a GRID clip is 75 frames (3 s), so the paper setting trains on whole clips.
    n_frames: int = 75
    # Steps per epoch; None = one pass over the training clips (one window per clip).
    steps_per_epoch: int | None = None
    # Validation clips evaluated per epoch (spread evenly over the file); None = all.
    val_clips: int | None = None
    val_batch_size: int = 8
    num_workers: int = 4
    seed: int = 0
    # Keep every epoch's checkpoint under epochs/ (learning curves score them afterwards); ours.
    keep_epochs: bool = False
    # Weight of a matching-aware term for the sequence discriminator: it also judges each real video
    # with another clip's audio as fake (speechanim.losses). The paper: 0 (equation 1 has no such term).
    seq_disc_mismatch: float = 0.0
    # The synchronisation discriminator (the full_sync variant; not the paper's: its journal version, IJCV 2020):
    # its weight in the generator's loss, the journal's lambda_sync = 0.8 (speechanim.losses.LAMBDA_SYNC), and
    # its learning rate, the journal's 1e-5 (a tenth of its generator's 1e-4), fixed like the sequence
    # discriminator's (the journal gives the two the same rate).
    lambda_sync: float = 0.8
    lr_sync_disc: float = 1e-5
    # Arithmetic of the training steps: "fp32", or "bf16" (torch.autocast: convolutions and matrix
    # products in bfloat16, weights, optimiser state and losses in fp32), 1.3-1.45x faster on CPUs with
    # AMX / AVX-512 BF16 (docs/configuration.md, training.precision). Validation always runs in fp32. Ours; the paper: fp32.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))  # JSON gives a list
        checks = [
            (self.lambda_l1 >= 0, "lambda_l1 must be >= 0"),
            (min(self.lr_generator, self.lr_frame_disc, self.lr_seq_disc, self.lr_sync_disc) > 0,
             "learning rates must be > 0"),
            (self.lambda_sync >= 0, "lambda_sync must be >= 0"),
            (0 <= self.lr_decay < 1, "lr_decay must lie in [0, 1)"),
            (all(0 <= b < 1 for b in self.betas), "betas must lie in [0, 1)"),
            (self.patience >= 1, "patience must be >= 1"),
            (self.val_metric in VAL_METRICS, f"val_metric must be one of {', '.join(VAL_METRICS)}"),
            (self.max_epochs >= 1, "max_epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.n_frames >= 1, "n_frames must be >= 1"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch must be >= 1 or null"),
            (self.val_clips is None or self.val_clips >= 1, "val_clips must be >= 1 or null"),
            (self.val_batch_size >= 1, "val_batch_size must be >= 1"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.seq_disc_mismatch >= 0, "seq_disc_mismatch must be >= 0"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.seq_disc_mismatch == 0 or self.batch_size >= 2,
             "seq_disc_mismatch needs batch_size >= 2 (each clip is paired with another clip's audio)"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError("; ".join(bad))


def lr_factor(epoch: int, start: int, decay: float) -> float:
    """Learning-rate multiplier during ``epoch`` (1-based): 1 up to ``start``, then ``(1 - decay)`` per epoch."""
    return (1.0 - decay) ** max(0, epoch - start)


def train_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["betas"] = list(cfg.betas)
    return d


def config_from_json(cls, text: str | None, option: str):
    """A dataclass from a JSON object of overrides; unknown keys and bad values are refused by name."""
    return parse_overrides(text, cls, TrainingError, option)


# ----------------------------------------------------------------------------------------------
# Processes, networks, data


@dataclass
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the torchrun process group if there is one (NCCL on CUDA, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, device())
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dev = torch.device("cpu")
        dist.init_process_group("gloo")
    return Dist(rank, world, dev)


# Networks whose weights are kept channels-last: their convolutions then run in that layout, which
# trains them ~30% faster on the CPU (benchmarks/bench_train.py; the frame discriminator, on 8
# frames a step, is faster as it is). A layout, not a change of the model: same parameters.
CHANNELS_LAST = ("generator", "sequence_discriminator")


def build_networks(variant: str, model_cfg: ModelConfig) -> dict[str, nn.Module]:
    """The networks a variant trains: always ``generator``, plus ``frame_discriminator`` and
    ``sequence_discriminator`` as its adversarial terms need (the static variant's generator has
    ``static=True``)."""
    if variant not in VARIANTS:
        raise TrainingError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    if (variant == "static") != model_cfg.static:
        raise TrainingError(f"variant {variant!r} needs ModelConfig.static={variant == 'static'}")
    nets: dict[str, nn.Module] = {"generator": Generator(model_cfg)}
    if "img" in VARIANT_TERMS[variant]:
        nets["frame_discriminator"] = FrameDiscriminator(model_cfg)
    if "seq" in VARIANT_TERMS[variant]:
        nets["sequence_discriminator"] = SequenceDiscriminator(model_cfg)
    if "sync" in VARIANT_TERMS[variant]:
        nets["sync_discriminator"] = SyncDiscriminator(model_cfg)
    for name in CHANNELS_LAST:
        if name in nets:
            nets[name].to(memory_format=torch.channels_last)
    return nets


def variant_model_config(variant: str, model_cfg: ModelConfig) -> ModelConfig:
    """``model_cfg`` with ``static=True`` for the static variant; a static generator for another
    variant is refused (the variant, not the model settings, picks the baseline)."""
    if model_cfg.static and variant != "static":
        raise TrainingError(f"--model static=true is the static baseline: use --variant static, not {variant!r}")
    if variant == "static" and not model_cfg.static:
        model_cfg = ModelConfig(**{**asdict(model_cfg), "static": True})
    return model_cfg


def differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the entries in which two nested dicts differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def build_optimisers(nets: dict[str, nn.Module], cfg: TrainConfig):
    """Adam for each network (3.3); LambdaLR schedules: generator and frame discriminator decay
    after ``lr_decay_start`` epochs, the sequence (and synchronisation) discriminator stays fixed."""
    rates = {"generator": cfg.lr_generator, "frame_discriminator": cfg.lr_frame_disc,
             "sequence_discriminator": cfg.lr_seq_disc, "sync_discriminator": cfg.lr_sync_disc}
    opts = {name: torch.optim.Adam(net.parameters(), lr=rates[name], betas=cfg.betas) for name, net in nets.items()}

    def decaying(i: int) -> float:  # LambdaLR's counter i = epochs finished, so this is epoch i + 1
        return lr_factor(i + 1, cfg.lr_decay_start, cfg.lr_decay)

    fixed = ("sequence_discriminator", "sync_discriminator")
    scheds = {name: torch.optim.lr_scheduler.LambdaLR(opt, decaying if name not in fixed else (lambda i: 1.0))
              for name, opt in opts.items()}
    return opts, scheds


def check_packed(path: Path, model_cfg: ModelConfig, role: str) -> float:
    """Refuse a packed file that is missing, empty, or made for another image size or sample rate; its frame rate."""
    if not path.is_file():
        raise TrainingError(f"{path}: no such file ({role} set)")
    try:
        with h5py.File(path, "r") as h5:
            keys = clip_keys(h5)
            if not keys:
                raise TrainingError(f"{path}: holds no clips ({role} set)")
            g = h5[keys[0]]
            size, rate, fps = tuple(g["frames"].shape[2:]), int(g.attrs["sample_rate"]), float(g.attrs["fps"])
    except (OSError, KeyError) as e:
        raise TrainingError(f"{path}: not a packed clip file ({type(e).__name__}: {e})") from e
    if size != tuple(model_cfg.image_size):
        raise TrainingError(f"{path}: frames are {size[0]}x{size[1]} (HxW) but the model is configured for "
                            f"{model_cfg.image_size[0]}x{model_cfg.image_size[1]} (--model image_size)")
    if rate != model_cfg.sample_rate:
        raise TrainingError(f"{path}: audio is at {rate} Hz but the model is configured for "
                            f"{model_cfg.sample_rate} Hz (--model sample_rate)")
    return fps


def pad_clips(items: list[dict]) -> dict[str, Any]:
    """Collate whole clips of different lengths: zero-pad frames and audio to the longest, keep ``lengths``."""
    lengths = torch.tensor([len(it["frames"]) for it in items])
    t = int(lengths.max())

    def pad(x: Tensor) -> Tensor:
        return torch.cat([x, x.new_zeros(t - len(x), *x.shape[1:])]) if len(x) < t else x

    return {"still": torch.stack([it["still"] for it in items]),
            "frames": torch.stack([pad(it["frames"]) for it in items]),
            "audio": torch.stack([pad(it["audio"]) for it in items]),
            "lengths": lengths, "key": [it["key"] for it in items]}


def cycle(loader: DataLoader, sampler: DistributedSampler | None, epoch: int) -> Iterator[dict]:
    """Batches of ``loader`` without end: a new pass (new shuffle, new windows) each time one ends."""
    n = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch * 1000 + n)
        yield from loader
        n += 1


# ----------------------------------------------------------------------------------------------
# Random states, replicas, history


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (the tensors may come back mapped to a GPU; RNG states live on the CPU)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def gather(obj: Any, d: Dist) -> list[Any]:
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def reduce_sum(t: Tensor, d: Dist) -> Tensor:
    if d.world > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


def unwrap(net: nn.Module | None) -> nn.Module | None:
    return net.module if isinstance(net, DistributedDataParallel) else net


def check_replicas(nets: dict[str, nn.Module], d: Dist) -> None:
    """Under DDP, every process must hold the same weights; a mismatch is a bug, not bad luck."""
    if d.world == 1:
        return
    sums = [float(sum(p.detach().double().sum() for p in unwrap(n).parameters())) for n in nets.values()]
    everyone = gather(sums, d)
    if any(not np.allclose(s, everyone[0], rtol=1e-6, atol=1e-6) for s in everyone):
        raise TrainingError(f"the processes' weights differ after synchronisation: {everyone}")


HISTORY_COLUMNS = ["epoch", "steps", "g_total", "g_l1", "g_adv_img", "g_adv_seq", "g_adv_sync", "d_img", "d_seq",
                   "d_sync", "d_img_real", "d_img_fake", "d_seq_real", "d_seq_fake", "d_seq_mismatched",
                   "d_sync_real", "d_sync_shifted", "d_sync_fake", "val_psnr", "val_l1", "val_l1_lower",
                   "lr_generator", "lr_frame_discriminator", "lr_sequence_discriminator", "lr_sync_discriminator",
                   "best", "seconds"]


def write_history(history: list[dict], out: Path) -> None:
    with atomic_open(out / "history.csv") as f:
        w = csv.DictWriter(f, HISTORY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def plot_history(history: list[dict], out: Path, title: str) -> None:
    """losses.png: generator losses, discriminator losses and outputs, validation metrics per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [(axes[0], ["g_l1"], "generator L1 (lower half)"),
              (axes[0].twinx(), ["g_adv_img", "g_adv_seq", "g_adv_sync"], "generator adversarial"),
              (axes[1], ["d_img", "d_seq", "d_sync"], "discriminator loss"),
              (axes[2], ["val_psnr"], "validation PSNR (dB)"),
              (axes[2].twinx(), ["val_l1", "val_l1_lower"], "validation L1")]
    styles = iter([f"C{i}" for i in range(10)])
    for ax, keys, label in panels:
        for k in keys:
            ys = [r.get(k) for r in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], "o-", ms=3, color=next(styles), label=k)
        ax.set_ylabel(label)
    best = [r["epoch"] for r in history if r.get("best")]
    if best:
        axes[2].axvline(best[-1], color="grey", ls="--", lw=1, label=f"best (epoch {best[-1]})")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.legend(loc="upper center", ncol=8, fontsize="small")
    fig.suptitle(title, y=0.02, fontsize="small")
    fig.tight_layout(rect=(0, 0.04, 1, 0.9))
    with atomic_path(out / "losses.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def link_atomic(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy where links cannot be made), replacing it in one rename.
    Checkpoints are only ever replaced by a rename, so a link never sees its file change."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


# ----------------------------------------------------------------------------------------------
# Checkpoint files: work/last.pt commits an epoch, and the best epoch's weights always match it

#: A new best epoch's checkpoint before ``work/last.pt`` records it (see :func:`write_epoch`).
STAGED_BEST = "best.next.pt"


def write_epoch(work: Path, state: dict[str, Any], improved: bool) -> None:
    """Write an epoch's checkpoints so that a kill or a failed write at any point leaves ``work/last.pt``
    and ``work/best.pt`` agreeing on the best epoch.

    A new best goes first to ``best.next.pt`` (read only when last.pt names its epoch), then ``last.pt``
    (the commit: a rerun resumes from it), then the staged file is renamed to ``best.pt``; so best.pt is
    replaced only once last.pt records its epoch as the best, and the best weights are never lost. A
    failed write (a full disk) leaves both files as they were. :func:`settle_best` finishes a sequence a
    kill interrupted.
    """
    staged = work / STAGED_BEST
    if improved:
        save_checkpoint(staged, state)
    try:
        save_checkpoint(work / "last.pt", state)
    except CheckpointError:
        staged.unlink(missing_ok=True)
        raise
    if improved:
        os.replace(staged, work / "best.pt")


def restore_kept_epochs(work: Path, epochs: Path, epoch: int, keep: bool) -> None:
    """At the start of a run that goes on from ``epoch`` (0: starts over): bring back into ``epochs`` the kept
    checkpoints (``keep_epochs``) that ``work/epochs`` holds of the epochs trained so far. Starting over, those of
    the former training are removed. A run stopped between last.pt's commit and the link of its epoch left that
    one only in ``epochs``, which Snakemake may have removed: it is last.pt itself."""
    kept = work / "epochs"
    if epoch == 0:
        for path in kept.glob("epoch*.pt"):
            path.unlink()
        return
    if not keep:
        return
    own = kept / f"epoch{epoch:03d}.pt"
    if not own.is_file() and (kept.is_dir() or (epochs / own.name).is_file()):  # it was keeping epochs then
        link_atomic(epochs / own.name if (epochs / own.name).is_file() else work / "last.pt", own)
    for path in sorted(kept.glob("epoch*.pt")):
        if not (epochs / path.name).is_file():
            link_atomic(path, epochs / path.name)


def epoch_of(path: Path) -> int | None:
    """The epoch a checkpoint file records; None when it is missing or unreadable."""
    try:
        return int(load_checkpoint(path)["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def settle_best(work: Path, saved: dict[str, Any], log) -> bool:
    """Make ``work/best.pt`` hold the best epoch that ``saved`` (last.pt's contents) names; False when the
    best weights are gone (the run must start over), True otherwise.

    A ``best.next.pt`` left by a kill inside :func:`write_epoch` is renamed to best.pt when last.pt names
    its epoch (only the rename was missing) and removed otherwise (last.pt never committed it). A best.pt
    that is missing, unreadable or of another epoch (a file removed or damaged by hand) is rebuilt from
    last.pt when the best epoch is last.pt's own.
    """
    best_epoch, best_path, staged = int(saved["best"]["epoch"]), work / "best.pt", work / STAGED_BEST
    if staged.is_file():
        if epoch_of(staged) == best_epoch:
            os.replace(staged, best_path)
            log(f"{best_path}: completed from {staged.name} (epoch {best_epoch}), which a stopped run had staged")
        else:
            staged.unlink()
    if best_epoch == 0 or epoch_of(best_path) == best_epoch:
        return True
    if best_epoch == int(saved["epoch"]):
        save_checkpoint(best_path, saved)
        log(f"{best_path}: rebuilt from {work / 'last.pt'} (the best epoch, {best_epoch}, is its own)")
        return True
    log(f"{best_path}: missing, unreadable or not the best epoch {best_epoch} that {work / 'last.pt'} records, "
        "and that epoch's weights are nowhere else: starting over")
    return False


def verified_best(best_path: Path, best_epoch: int) -> Path:
    """``best_path``, after checking it holds ``best_epoch`` (what generator.pt's log line will name)."""
    written = epoch_of(best_path)
    if written != best_epoch:
        found = "missing or unreadable" if written is None else f"holds epoch {written}"
        raise TrainingError(f"{best_path}: {found}, not the best epoch {best_epoch}; rerun the same command to "
                            "rebuild it")
    return best_path


DISCRIMINATORS = ("frame_discriminator", "sequence_discriminator", "sync_discriminator")


def train_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], criterion: GANLoss, batch: Batch,
               check=None) -> dict[str, Tensor]:
    """One training step (section 3.3); returns the detached loss parts (see :class:`GANLoss`).

    The generator makes the batch's videos; the discriminators (if the variant has any) take one
    step on real vs the detached videos; then the generator takes one step on ``L_adv + lambda * L1``
    against the updated discriminators, whose own parameters are frozen for it and which are called
    unwrapped (under DDP their gradients would otherwise be reduced for nothing). ``check(parts)`` is
    called on each set of losses before its backward pass (the trainer stops on a non-finite one).
    """
    fake = nets["generator"](batch.still, batch.audio)
    parts: dict[str, Tensor] = {}
    discs = [n for n in DISCRIMINATORS if n in nets]
    if discs:
        loss_d, parts = criterion.discriminator(batch, fake.detach())
        if check:
            check(parts)
        for n in discs:
            opts[n].zero_grad(set_to_none=True)
        loss_d.backward()
        for n in discs:
            opts[n].step()
    frozen = [p for n in discs for p in nets[n].parameters()]
    for p in frozen:
        p.requires_grad_(False)
    try:
        loss_g, g_parts = criterion.generator(batch, fake, frame_disc=unwrap(nets.get("frame_discriminator")),
                                              seq_disc=unwrap(nets.get("sequence_discriminator")),
                                              sync_disc=unwrap(nets.get("sync_discriminator")))
        if check:
            check(g_parts)
        opts["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        opts["generator"].step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return {**parts, **g_parts}


def train_epoch(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], criterion: GANLoss,
                batches: Iterator[dict], steps: int, d: Dist, *, check, progress: bool, desc: str,
                precision: str = "fp32") -> dict[str, float]:
    """``steps`` training steps on ``batches`` (the loader's, with uint8 frames); the mean of each loss over the
    steps (and the processes). ``precision`` "bf16": each step under bfloat16 autocast (TrainConfig.precision)."""
    for net in nets.values():
        net.train()
    sums: dict[str, Tensor] = {}
    bar = tqdm(range(steps), desc=desc, disable=None if (progress and d.main) else True, leave=False, dynamic_ncols=True)
    for step in bar:
        b = next(batches)  # uint8 frames: a quarter of the bytes to load and move, made [-1, 1] on the device
        still, frames = (unit_range(b[k].to(d.device, non_blocking=True)) for k in ("still", "frames"))
        batch = Batch(still, frames, b["audio"].to(d.device, non_blocking=True))
        with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            parts = train_step(nets, opts, criterion, batch, check=partial(check, step=step))
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v.double()
        if step % 10 == 0:
            bar.set_postfix({k: f"{v.item():.3g}" for k, v in parts.items() if k in ("g_l1", "d_img", "d_seq")})
    bar.close()
    batches.close()  # ends the loader's pass (and its worker processes)
    names = sorted(sums)
    means = (reduce_sum(torch.stack([sums[k] for k in names]), d) / (steps * d.world)).tolist()
    return dict(zip(names, means))


# ----------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def validate(generator: Generator, loader: DataLoader, d: Dist, seed: int) -> dict[str, float]:
    """Reconstruction metrics of the generator on whole clips, frame-averaged over every process's clips.

    ``val_psnr``: PSNR (dB) of each frame on a [0, 1] scale; ``val_l1`` / ``val_l1_lower``: mean
    absolute error on [-1, 1] of the whole frame / its lower half (the training loss). The noise is
    drawn from a generator seeded with ``seed``, so the numbers do not depend on the training RNG.
    """
    generator.eval()
    rng = torch.Generator(d.device).manual_seed(seed + d.rank)
    sums = torch.zeros(4, dtype=torch.float64, device=d.device)
    for batch in loader:
        still, real, audio = (batch[k].to(d.device, non_blocking=True) for k in ("still", "frames", "audio"))
        fake = generator(still, audio, generator=rng)
        valid = (torch.arange(real.shape[1], device=d.device)[None] < batch["lengths"].to(d.device)[:, None]).double()
        err = fake - real
        h = err.shape[-2]
        mse = (err / 2).square().mean((2, 3, 4)).double()  # on [0, 1]
        psnr = 10 * torch.log10(1 / mse.clamp_min(1e-10))
        l1 = err.abs().mean((2, 3, 4)).double()
        l1_lower = err[..., h // 2:, :].abs().mean((2, 3, 4)).double()
        sums += torch.stack([(psnr * valid).sum(), (l1 * valid).sum(), (l1_lower * valid).sum(), valid.sum()])
    sums = reduce_sum(sums, d)
    n = sums[3].item()
    return {"val_psnr": sums[0].item() / n, "val_l1": sums[1].item() / n, "val_l1_lower": sums[2].item() / n}


# ----------------------------------------------------------------------------------------------
# A wall-clock limit


@dataclass(frozen=True)
class TimeLimit:
    """A job's wall-clock limit: ``limit_s`` seconds from ``start`` (a :func:`time.monotonic` reading taken
    when the process started), of which the last ``margin_s`` are kept free (for the job's own start before
    the process, an epoch slower than the longest so far, and the exit)."""

    limit_s: float
    margin_s: float
    start: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.limit_s) and self.limit_s > 0):
            raise TrainingError(f"the time limit must be > 0 minutes, got {self.limit_s / 60:g}")
        if not (math.isfinite(self.margin_s) and self.margin_s >= 0):
            raise TrainingError(f"the stop margin must be >= 0 seconds, got {self.margin_s:g}")

    @property
    def deadline(self) -> float:
        """The :func:`time.monotonic` reading by which an epoch must end."""
        return self.start + self.limit_s - self.margin_s

    def next_epoch_fits(self, now: float, longest_epoch: float | None) -> bool:
        """Whether an epoch started at ``now`` and as long as ``longest_epoch`` (seconds; None before the
        process's first epoch) ends by :attr:`deadline`. Always True before the first epoch, so that every
        run makes progress."""
        return longest_epoch is None or now + longest_epoch <= self.deadline


# ----------------------------------------------------------------------------------------------
# The loop


def train(*, dataset: str, variant: str, train_path: str | os.PathLike, val_path: str | os.PathLike,
          out_dir: str | os.PathLike, model_cfg: ModelConfig, train_cfg: TrainConfig,
          progress: bool = True, time_limit: TimeLimit | None = None) -> dict[str, Any]:
    """Train one variant; returns ``{"epochs", "best_epoch", "best", "generator", "finished"}`` (see the module
    doc). With ``time_limit``, training may stop between two epochs (``finished`` False, ``generator`` None):
    call again to resume."""
    d = setup_distributed()
    try:
        return _train(d, dataset, variant, Path(train_path), Path(val_path), Path(out_dir), model_cfg, train_cfg,
                      progress, time_limit)
    finally:
        if d.world > 1:
            dist.destroy_process_group()


def make_loaders(d: Dist, train_path: Path, val_path: Path, mcfg: ModelConfig, tcfg: TrainConfig, per_rank: int):
    """Training windows (shuffled; split over the processes; uint8 frames, which :func:`train_epoch` makes
    [-1, 1] on the device) and the validation clips (``val_clips`` spread evenly over the file):
    ``(train_ds, sampler, loader, val_loader, n_val)``."""
    train_ds = TrainingWindows(train_path, tcfg.n_frames, window_s=mcfg.audio_window_s, uint8=True)
    if len(train_ds) < tcfg.batch_size:
        raise TrainingError(f"{train_path}: {len(train_ds)} clips of at least {tcfg.n_frames} frames, fewer than "
                            f"one batch of {tcfg.batch_size}")
    val_ds = WholeClips(val_path, window_s=mcfg.audio_window_s)
    n_val = len(val_ds) if tcfg.val_clips is None else min(tcfg.val_clips, len(val_ds))
    val_idx = np.unique(np.linspace(0, len(val_ds) - 1, n_val).round().astype(int))[d.rank::d.world].tolist()
    cuda = d.device.type == "cuda"
    sampler = DistributedSampler(train_ds, d.world, d.rank, shuffle=True, seed=tcfg.seed, drop_last=True) \
        if d.world > 1 else None
    loader = DataLoader(train_ds, per_rank, shuffle=sampler is None, sampler=sampler, drop_last=True,
                        num_workers=tcfg.num_workers, worker_init_fn=worker_init, pin_memory=cuda)
    val_loader = DataLoader(Subset(val_ds, val_idx), tcfg.val_batch_size, collate_fn=pad_clips,
                            num_workers=min(tcfg.num_workers, 2), pin_memory=cuda)
    return train_ds, sampler, loader, val_loader, n_val


def resume(last_path: Path, best_path: Path, identity: dict, nets: dict, opts: dict, scheds: dict, d: Dist,
           tcfg: TrainConfig, log) -> tuple[int, list[dict], dict]:
    """Load ``last_path`` into the networks, optimisers, schedulers and random streams when it was written
    with the same settings (``identity``); ``(epoch, history, best)`` to go on from (a fresh start otherwise)."""
    fresh = 0, [], {"metric": tcfg.val_metric, "value": None, "epoch": 0}
    if not last_path.is_file():
        return fresh
    try:
        saved = load_checkpoint(last_path, d.device)
    except CheckpointError as e:
        log(f"cannot read {last_path} ({e}); starting over")
        return fresh
    theirs = {"model_config": saved.get("model_config"), "variant": saved.get("variant"), "dataset": saved.get("dataset"),
              "train_config": {k: v for k, v in (saved.get("train_config") or {}).items() if k not in RESUME_MAY_CHANGE}}
    if theirs != identity:
        log(f"{last_path} was written with other settings ({', '.join(differences(identity, theirs))} differ): "
            "starting over")
        if d.main:
            best_path.unlink(missing_ok=True)
            (best_path.parent / STAGED_BEST).unlink(missing_ok=True)
        return fresh
    if not gather(settle_best(best_path.parent, saved, log) if d.main else None, d)[0]:  # rank 0 decides for all
        return fresh
    for name, net in nets.items():
        net.load_state_dict(saved[name])
    for name in opts:
        opts[name].load_state_dict(saved["optimisers"][name])
        scheds[name].load_state_dict(saved["schedulers"][name])
    epoch, history, best = saved["epoch"], saved["history"], saved["best"]
    if len(saved["rng"]) == d.world:
        set_rng_state(saved["rng"][d.rank])
    else:
        seed_everything(tcfg.seed + 1_000_003 * d.rank + epoch)
        log(f"the checkpoint was written by {len(saved['rng'])} processes, this run has {d.world}: "
            "random streams reseeded")
    log(f"resumed at epoch {epoch} from {last_path} (best {best['metric']} {best['value']} at epoch {best['epoch']})")
    return epoch, history, best


def _train(d: Dist, dataset: str, variant: str, train_path: Path, val_path: Path, out: Path,
           mcfg: ModelConfig, tcfg: TrainConfig, progress: bool, time_limit: TimeLimit | None) -> dict[str, Any]:
    def log(msg: str) -> None:
        if d.main:
            tqdm.write(f"[train {dataset}/{variant}] {msg}", file=sys.stderr)

    mcfg = variant_model_config(variant, mcfg)
    work, last_path, best_path = out / "work", out / "work" / "last.pt", out / "work" / "best.pt"
    if d.main:  # a killed run's half-written files
        for folder in (out, work, out / "epochs", work / "epochs"):
            for stale in remove_stale_temporaries(folder):
                log(f"removed {stale}, a temporary file a stopped run left")
    fps = check_packed(train_path, mcfg, "training")  # stored in the checkpoints (the authors' video_rate)
    check_packed(val_path, mcfg, "validation")
    if tcfg.batch_size % d.world:
        raise TrainingError(f"batch_size {tcfg.batch_size} does not split evenly over {d.world} processes")
    per_rank = tcfg.batch_size // d.world

    # --- data
    train_ds, sampler, loader, val_loader, n_val = make_loaders(d, train_path, val_path, mcfg, tcfg, per_rank)
    steps = tcfg.steps_per_epoch or len(loader)
    cuda = d.device.type == "cuda"

    # --- networks, optimisers, and a checkpoint to resume from
    seed_everything(tcfg.seed + 1_000_003 * d.rank)
    nets = {n: m.to(d.device) for n, m in build_networks(variant, mcfg).items()}  # before the optimisers:
    opts, scheds = build_optimisers(nets, tcfg)  # a loaded optimiser state follows its parameters' device
    identity = {"model_config": model_config_dict(mcfg), "variant": variant, "dataset": dataset,
                "train_config": {k: v for k, v in train_config_dict(tcfg).items() if k not in RESUME_MAY_CHANGE}}
    epoch, history, best = resume(last_path, best_path, identity, nets, opts, scheds, d, tcfg, log)
    if d.main:
        restore_kept_epochs(work, out / "epochs", epoch, tcfg.keep_epochs)
    if epoch == 0:
        log("parameters: " + ", ".join(f"{n} {count_parameters(m):,}" for n, m in nets.items())
            + f"; {len(train_ds)} training clips, {n_val} validation clips, {steps} steps of {tcfg.batch_size} "
              f"clips x {tcfg.n_frames} frames per epoch on {d.device}"
            + (f" x {d.world} processes" if d.world > 1 else ""))
    if time_limit is not None:
        log(f"time limit {time_limit.limit_s / 60:g} min: an epoch starts only if it can end {time_limit.margin_s:g} s "
            "before it")
    if d.world > 1:
        # The frame discriminator runs twice (real, then generated) before one backward; DDP's buffer
        # broadcast at the second forward would overwrite batch-norm statistics the first one saved
        # for its backward. The discriminators only run in training mode (batch statistics), so their running
        # statistics need no synchronising; the generator's (used at validation) are broadcast.
        nets = {n: DistributedDataParallel(m, device_ids=[d.device.index] if cuda else None,
                                           broadcast_buffers=n == "generator") for n, m in nets.items()}
    G = nets["generator"]
    if "sync_discriminator" in nets and tcfg.n_frames < min_snippet_steps(mcfg.sync_disc_frames):
        raise TrainingError(f"the sync discriminator's out-of-sync audio comes from the same window, at least "
                            f"{mcfg.sync_disc_frames} frames away: n_frames must be >= "
                            f"{min_snippet_steps(mcfg.sync_disc_frames)}, got {tcfg.n_frames}")
    criterion = GANLoss(variant, nets.get("frame_discriminator"), nets.get("sequence_discriminator"), tcfg.lambda_l1,
                        tcfg.seq_disc_mismatch, nets.get("sync_discriminator"), tcfg.lambda_sync,
                        samples_per_frame(mcfg.sample_rate, fps) if "sync_discriminator" in nets else None)
    better = (lambda a, b: a > b) if VAL_METRICS[tcfg.val_metric] == "max" else (lambda a, b: a < b)

    def payload(rngs: list[dict]) -> dict[str, Any]:
        return {**identity, "fps": fps, "train_config": train_config_dict(tcfg), "epoch": epoch,
                **{n: unwrap(m).state_dict() for n, m in nets.items()},
                "optimisers": {n: o.state_dict() for n, o in opts.items()},
                "schedulers": {n: s.state_dict() for n, s in scheds.items()},
                "rng": rngs, "best": best, "history": history}

    def finite_or_stop(parts: dict[str, Tensor], step: int) -> None:
        names = list(parts)
        values = reduce_sum(torch.stack([parts[n].float() for n in names]), d)
        if not torch.isfinite(values).all():
            bad = ", ".join(f"{n}={v:g}" for n, v in zip(names, values.tolist()) if not math.isfinite(v))
            kept = f"the last good checkpoint {last_path} (epoch {epoch}) is kept" if last_path.is_file() and epoch \
                else "no checkpoint was written"
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {step + 1}/{steps}: {bad}"
                                f"{' (summed over processes)' if d.world > 1 else ''}; training stopped, {kept}")

    # --- epochs
    plotted = time.time()
    longest = None  # seconds of this process's longest epoch, checkpoint writing included (the time limit's guess)
    while epoch < tcfg.max_epochs and epoch - best["epoch"] < tcfg.patience:
        # rank 0's clock decides for every process
        if time_limit is not None and not gather(time_limit.next_epoch_fits(time.monotonic(), longest), d)[0]:
            left = time_limit.deadline + time_limit.margin_s - time.monotonic()
            log(f"time limit: stopped after epoch {epoch}: the next (~{longest:.0f} s) would not end "
                f"{time_limit.margin_s:g} s before the limit ({left:.0f} s left of {time_limit.limit_s / 60:g} min); "
                f"rerun to resume from {last_path} (exit status {EXIT_RESUME})")
            if d.main:
                plot_history(history, out, f"{dataset} / {variant}")
            return {"epochs": epoch, "best_epoch": best["epoch"], "best": best["value"], "generator": None,
                    "finished": False}
        started = time.monotonic()
        t0 = time.time()
        lrs = {f"lr_{n}": o.param_groups[0]["lr"] for n, o in opts.items()}
        means = train_epoch(nets, opts, criterion, cycle(loader, sampler, epoch), steps, d,
                            check=finite_or_stop, progress=progress, desc=f"epoch {epoch + 1}",
                            precision=tcfg.precision)
        row: dict[str, Any] = {"epoch": epoch + 1, "steps": steps, **means}
        check_replicas(nets, d)

        row.update(validate(unwrap(G), val_loader, d, tcfg.seed))
        for s in scheds.values():
            s.step()
        epoch += 1
        score = row[f"val_{tcfg.val_metric}"]
        row["best"] = improved = best["value"] is None or better(score, best["value"])
        if improved:
            best = {"metric": tcfg.val_metric, "value": score, "epoch": epoch}
        row.update(lrs)
        row["seconds"] = round(time.time() - t0, 2)
        history = history + [row]
        rngs = gather(rng_state(), d)
        if d.main:
            state = payload(rngs)
            kept = f"epoch{epoch:03d}.pt"
            if tcfg.keep_epochs:  # before the commit: a failed write here is redone by the rerun
                save_checkpoint(out / "epochs" / kept, state)
            write_epoch(work, state, improved)
            if tcfg.keep_epochs:  # after it: work/ changes only with a commit
                link_atomic(out / "epochs" / kept, work / "epochs" / kept)
            write_history(history, out)
            if time.time() - plotted > 60:  # a plot takes a second or two: refreshed at most once a minute
                plot_history(history, out, f"{dataset} / {variant}")
                plotted = time.time()
        log(f"epoch {epoch}: L1 {row['g_l1']:.4f}"
            + "".join(f", {k} {row[k]:.3f}" for k in ("d_img", "d_seq", "d_sync", "g_adv_img", "g_adv_seq", "g_adv_sync") if k in row)
            + f"; val PSNR {row['val_psnr']:.2f} dB, L1 {row['val_l1']:.4f}"
            + (" (best)" if improved else f" (best {best['value']:.4g} at epoch {best['epoch']})")
            + f"; {row['seconds']:.0f} s")
        longest = max(longest or 0.0, time.monotonic() - started)

    if epoch - best["epoch"] >= tcfg.patience:
        log(f"stopped: no better validation {tcfg.val_metric} for {tcfg.patience} epochs (best: epoch {best['epoch']})")
    elif epoch >= tcfg.max_epochs:
        log(f"stopped at max_epochs={tcfg.max_epochs} (best: epoch {best['epoch']})")
    final = out / "generator.pt"
    if d.main:
        copy_atomic(verified_best(best_path, best["epoch"]), final)
        write_history(history, out)
        plot_history(history, out, f"{dataset} / {variant}")
        log(f"wrote {final} (epoch {best['epoch']}, val {tcfg.val_metric} {best['value']:.4g})")
    return {"epochs": epoch, "best_epoch": best["epoch"], "best": best["value"], "generator": final, "finished": True}


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    ap = argparse.ArgumentParser(prog="python -m speechanim.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, help="dataset name (recorded in the checkpoints)")
    ap.add_argument("--variant", required=True, choices=VARIANTS)
    ap.add_argument("--train", required=True, type=Path, help="packed training clips (HDF5)")
    ap.add_argument("--val", required=True, type=Path, help="packed validation clips (HDF5)")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--model", default="{}", help="JSON object of ModelConfig overrides")
    ap.add_argument("--training", default="{}", help="JSON object of TrainConfig overrides")
    ap.add_argument("--num-workers", type=int, default=None,
                    help="data-loader processes (overrides --training's num_workers; does not change the result)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--time-limit", type=float, metavar="MINUTES",
                    help="this job's wall-clock limit: stop between two epochs when the next would end less than "
                         f"--stop-margin before it, and exit with status {EXIT_RESUME} (rerun to resume)")
    ap.add_argument("--stop-margin", type=float, default=600.0, metavar="SECONDS",
                    help="seconds before --time-limit kept free (default: 600)")
    args = ap.parse_args(argv)
    refuse_clashing_paths(ap, {"--train": args.train, "--val": args.val}, {"--out": args.out})
    try:
        model_cfg = config_from_json(ModelConfig, args.model, "--model")
        train_cfg = config_from_json(TrainConfig, args.training, "--training")
        if args.num_workers is not None:
            if args.num_workers < 0:
                raise TrainingError(f"--num-workers must be >= 0, got {args.num_workers}")
            train_cfg.num_workers = args.num_workers
        limit = None if args.time_limit is None else TimeLimit(args.time_limit * 60, args.stop_margin, started)
        result = train(dataset=args.dataset, variant=args.variant, train_path=args.train, val_path=args.val,
                       out_dir=args.out, model_cfg=model_cfg, train_cfg=train_cfg, progress=not args.no_progress,
                       time_limit=limit)
    except (TrainingError, CheckpointError, OSError) as e:  # OSError: a file it writes (a full disk)
        print(f"speechanim.train: error: {e}", file=sys.stderr)
        return 1
    return 0 if result["finished"] else EXIT_RESUME


if __name__ == "__main__":
    sys.exit(main())
