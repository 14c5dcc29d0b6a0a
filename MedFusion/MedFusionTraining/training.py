"""Training machinery shared by MedFusion's networks (scripts/train.py is a thin command line over it).

A network plugs in with one module ``MedFusionTraining/<registry name>.py`` whose ``trainable()`` returns a
``Trainable`` (the registry's name keys the method, its weights manifest entry and its training; nothing else
lists it):

* ``make_model()``            -> a fresh ``nn.Module`` (called after seeding, so its initialisation is fixed);
* ``loss(model, batch)``      -> scalar loss tensor, or a dict {"loss": tensor, term: float, ...} whose terms are
  logged to ``terms.csv`` (e.g. a GAN's generator and discriminator losses);
* ``make_batch(patches, rng)`` -> the batch dict ``loss`` expects, from a (B, C, p, p) float tensor of crops
  (C = 1 for ``unit="image"``: single images, e.g. an autoencoder; C = 2 for ``unit="pair"``: the two
  co-registered sources of a pair cropped at the same place) and a numpy Generator for any extra randomness;
* ``validate(model, items, device)`` -> ``{"metric": name, "value": float (higher is better), ...}``;
* ``recipes``: named ``Recipe``s (hyper-parameters; the seed is a command-line option);
* ``shipped(state_dict)`` (optional) -> the part of the trained model's state that ships, e.g. a GAN's generator
  without its discriminators (default: all of it).

Everything else is generic: data (the shared Harvard pairs of every modality, PET/SPECT as BT.601 luma,
split by case with ``data_split``), patch sampling, the loop (Adam), logging (``log.csv``), validation,
resumable checkpoints (``last.pt``, ``best.pt``) and export into ``MedFusionLib/weights`` with a manifest entry.

Determinism: python, numpy and torch are seeded; the batch at step ``s`` is a pure function of
(seed, s): epoch permutations come from ``default_rng([seed, 1_000_000 + epoch])`` and the crop positions and
flips from ``default_rng([seed, s])``, so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import importlib
import io
import json
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from MedFusionLib import data_split
from MedFusionLib.methods import REGISTRY

# Every registered network has a training module here named as its registry entry.
TRAINABLES = tuple(info.name for info in REGISTRY.infos() if info.kind == "network")


@dataclass(frozen=True)
class Recipe:
    patch: Optional[int] = 64  # crop size; None = full images
    batch_size: int = 16
    steps: Optional[int] = None  # either steps ...
    epochs: Optional[int] = None  # ... or epochs over the training items
    lr: float = 1e-4  # Adam
    weight_decay: float = 0.0  # Adam's (L2) weight decay
    val_every: int = 0  # steps between validations (0: only at the end)
    val_every_epochs: Optional[int] = None  # alternative to val_every
    val_max_per_folder: Optional[int] = None  # periodic validation on at most this many pairs per folder
    log_every: int = 25
    checkpoint_every: int = 250  # 0: only at validations and at the end
    flip: bool = True  # random horizontal / vertical flips
    min_foreground: float = 0.1  # a crop should have at least this fraction of non-zero pixels (best of 8 tries)

    def total_steps(self, n_items: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return int(math.ceil(self.epochs * n_items / self.batch_size))

    def validation_interval(self, n_items: int) -> int:
        if self.val_every_epochs:
            return int(math.ceil(self.val_every_epochs * n_items / self.batch_size))
        return int(self.val_every)


@dataclass
class Trainable:
    name: str
    architecture: str
    unit: str  # "image" or "pair"
    make_model: Callable[[], torch.nn.Module]
    loss: Callable
    make_batch: Callable
    validate: Callable
    recipes: Dict[str, Recipe]
    loss_description: str = ""
    shipped: Optional[Callable[[dict], dict]] = None
    batch_meta: bool = False  # make_batch also gets meta=[the items' meta dicts] (e.g. per-folder loss weights)


def get_trainable(name: str) -> Trainable:
    if name not in TRAINABLES:
        raise KeyError(f"No trainable network '{name}'; choose one of: {', '.join(TRAINABLES)}.")
    return importlib.import_module(f"{__package__}.{name}").trainable()


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class Items:
    """Images (M, C, H, W) float32 in [0, 1] with one meta dict per item."""

    images: np.ndarray
    meta: List[dict] = field(default_factory=list)

    def __len__(self):
        return len(self.images)


def load_items(root=None, split: str = "train", unit: str = "image", max_per_folder: Optional[int] = None) -> Items:
    """The pairs of ``split`` as training items.

    ``unit="image"``: every source image of every pair, exact duplicates dropped (CT-MRI and SPECT-MRI share
    byte-identical MRI slices of case 28), shape (M, 1, H, W). ``unit="pair"``: (M, 2, H, W), a then b.
    ``max_per_folder``: at most that many pairs per folder, evenly spaced over the folder's sorted pairs.
    """
    pairs = data_split.list_pairs(root, split)
    if max_per_folder is not None:
        chosen = []
        for folder in data_split.FOLDERS:
            of_folder = [p for p in pairs if p.folder == folder]
            if len(of_folder) > max_per_folder:
                idx = np.unique(np.linspace(0, len(of_folder) - 1, max_per_folder).round().astype(int))
                of_folder = [of_folder[i] for i in idx]
            chosen.extend(of_folder)
        pairs = chosen
    images, meta, seen = [], [], set()
    for pair in pairs:
        a, b = data_split.read_y(pair.path_a), data_split.read_y(pair.path_b)
        if a.shape != b.shape:
            raise ValueError(f"The two images of {pair.key} differ in size: {a.shape} and {b.shape}.")
        base = {"folder": pair.folder, "case": pair.case, "slice": pair.slice}
        if unit == "pair":
            images.append(np.stack([a, b]))
            meta.append(dict(base, modality=f"{pair.modality_a}+{pair.modality_b}"))
            continue
        for modality, image in ((pair.modality_a, a), (pair.modality_b, b)):
            key = data_split.content_hash(image)
            if key in seen:
                continue
            seen.add(key)
            images.append(image[None])
            meta.append(dict(base, modality=modality))
    if not images:
        raise ValueError(f"No '{split}' images found under '{root or data_split.default_root()}'.")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"The '{split}' images do not all have one size: {sorted(shapes)}.")
    return Items(np.stack(images).astype(np.float32), meta)


class BatchSampler:
    """Deterministic crops: the batch of step ``s`` depends only on (seed, s) (see the module docstring)."""

    def __init__(self, items: Items, recipe: Recipe, seed: int):
        self.items, self.recipe, self.seed = items, recipe, int(seed)
        self._perm_cache: Dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: np.random.default_rng([self.seed, 1_000_000 + epoch]).permutation(len(self.items))}
        return self._perm_cache[epoch]

    def epoch_of(self, step: int) -> float:
        return step * self.recipe.batch_size / len(self.items)

    def indices(self, step: int) -> List[int]:
        """The items of the batch of ``step``, in batch order."""
        n, size = len(self.items), self.recipe.batch_size
        return [int(self._perm(g // n)[g % n]) for g in range(step * size, (step + 1) * size)]

    def batch(self, step: int):
        """(B, C, p, p) float32 tensor and the step's Generator (for ``make_batch``)."""
        recipe, rng = self.recipe, np.random.default_rng([self.seed, step])
        crops = []
        for index in self.indices(step):
            image = self.items.images[index]
            crop = self._crop(image, rng)
            if recipe.flip:
                if rng.random() < 0.5:
                    crop = crop[..., ::-1]
                if rng.random() < 0.5:
                    crop = crop[..., ::-1, :]
            crops.append(np.ascontiguousarray(crop))
        return torch.from_numpy(np.stack(crops)), rng

    def _crop(self, image: np.ndarray, rng) -> np.ndarray:
        p = self.recipe.patch
        _, h, w = image.shape
        if p is None or (p >= h and p >= w):
            return image
        p_h, p_w = min(p, h), min(p, w)
        best, best_fg = None, -1.0
        for _ in range(8):  # prefer crops that are not mostly background
            y, x = int(rng.integers(0, h - p_h + 1)), int(rng.integers(0, w - p_w + 1))
            crop = image[:, y:y + p_h, x:x + p_w]
            fg = float((crop.max(axis=0) > 1.0 / 255).mean())
            if fg > best_fg:
                best, best_fg = crop, fg
            if fg >= self.recipe.min_foreground:
                break
        return best


# -------------------------------------------------------------------------------------------- validation
def pair_batch(patches: torch.Tensor, rng=None) -> dict:
    """(B, 2, p, p) co-registered crops (the sampler's "pair" unit: a then b) -> {"a", "b"}, each (B, 1, p, p)."""
    return {"a": patches[:, :1].contiguous(), "b": patches[:, 1:].contiguous()}


def image_gradients(x: torch.Tensor):
    """Forward differences: (x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :])."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for [0, 1] images (N, C, H, W); 100 dB for a perfect match."""
    mse = (output - target).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(1.0 / mse.clamp_min(1e-10)), torch.full_like(mse, 100.0))


def reconstruction_psnr(model: torch.nn.Module, items: Items, device="cpu", batch_size: int = 4) -> dict:
    """Autoencoder validation: mean PSNR (dB) of clamp(model(x), 0, 1) against x over full images, also per
    folder/modality."""
    values = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            x = torch.from_numpy(items.images[start:start + batch_size]).to(device)
            values.extend(psnr(model(x).clamp(0, 1), x).cpu().tolist())
    groups: Dict[str, List[float]] = {}
    for value, meta in zip(values, items.meta):
        groups.setdefault(f"{meta['folder']}/{meta['modality']}", []).append(value)
    return {"metric": "reconstruction_psnr_db", "value": float(np.mean(values)), "images": len(values),
            "by_source": {k: round(float(np.mean(v)), 3) for k, v in groups.items()}}


# -------------------------------------------------------------------------------------------------- loop
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _save_atomic(obj, path: Path) -> None:
    from MedFusionLib.atomic_file import write_bytes_atomically

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomically(path, buffer.getvalue())


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class _Stop(Exception):
    pass


def train(trainable: Trainable, recipe_name: str, out_dir, data_root=None, device="cpu", seed: int = 0,
          resume: bool = False, steps: Optional[int] = None, command: str = "", log: Callable = print,
          train_items: Optional[Items] = None, val_items: Optional[Items] = None) -> dict:
    """Train (or resume) ``trainable`` with a recipe; returns a summary dict. ``steps`` overrides the recipe's
    total; ``train_items`` / ``val_items`` override the data (tests)."""
    recipe = trainable.recipes[recipe_name]
    if steps is not None:
        recipe = dataclasses.replace(recipe, steps=int(steps), epochs=None)
    out = Path(out_dir)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if last_path.exists() and not resume:
        raise FileExistsError(f"'{out}' already holds a run; pass --resume to continue it or choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    device = torch.device(device)

    t0 = time.perf_counter()
    train_items = train_items if train_items is not None else load_items(data_root, "train", trainable.unit)
    val_items = val_items if val_items is not None else load_items(
        data_root, "val", trainable.unit, max_per_folder=recipe.val_max_per_folder)
    log(f"data: {len(train_items)} training items, {len(val_items)} validation items "
        f"({time.perf_counter() - t0:.1f} s to load)")

    model = trainable.make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    total = recipe.total_steps(len(train_items))
    val_interval = recipe.validation_interval(len(train_items))
    step, best, elapsed_before = 0, None, 0.0
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location=device, weights_only=True)
        if ckpt.get("finished") and int(ckpt["step"]) >= total:
            log(f"{out} is a finished run ({ckpt['step']} steps); nothing to train")
            summary_path = out / "summary.json"
            if summary_path.exists():
                return json.loads(summary_path.read_text())
            return {"steps": ckpt["step"], "total_steps": total, "finished": True, "best": ckpt.get("best"),
                    "last_loss": None, "elapsed_s": ckpt.get("elapsed_s", 0.0)}
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, best, elapsed_before = int(ckpt["step"]), ckpt.get("best"), float(ckpt.get("elapsed_s", 0.0))
        log(f"resumed from {last_path} at step {step}")

    config = {"trainable": trainable.name, "architecture": trainable.architecture, "recipe_name": recipe_name,
              "recipe": dataclasses.asdict(recipe), "total_steps": total, "seed": seed, "device": str(device),
              "command": command, "loss": trainable.loss_description, "train_items": len(train_items),
              "val_items": len(val_items), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "started": _utc_now()}
    (out / ("config.json" if step == 0 else f"config-resume-{step}.json")).write_text(json.dumps(config, indent=2))

    log_path = out / "log.csv"
    new_log = not log_path.exists()
    log_file = open(log_path, "a", newline="")
    writer = csv.writer(log_file)
    if new_log:
        writer.writerow(["step", "epoch", "train_loss", "val_metric", "sec_per_step", "elapsed_s"])

    sampler = BatchSampler(train_items, recipe, seed)
    run_t0 = time.perf_counter()
    losses: List[float] = []
    terms: Dict[str, List[float]] = {}
    terms_path = out / "terms.csv"
    last_loss = None
    interval_t0, interval_steps = time.perf_counter(), 0

    def elapsed():
        return elapsed_before + time.perf_counter() - run_t0

    def checkpoint(finished=False):
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                      "best": best, "elapsed_s": elapsed(), "finished": finished,
                      "recipe_name": recipe_name, "seed": seed}, last_path)

    def validate():
        nonlocal best
        t = time.perf_counter()
        result = trainable.validate(model, val_items, device)
        model.train()
        improved = best is None or result["value"] > best["value"]
        if improved:
            best = {"value": result["value"], "step": step, "metric": result["metric"],
                    "by_source": result.get("by_source", {})}
            _save_atomic({"model": model.state_dict(), "step": step, "validation": result}, best_path)
        writer.writerow([step, f"{sampler.epoch_of(step):.3f}", "", f"{result['value']:.4f}", "", f"{elapsed():.1f}"])
        log_file.flush()
        log(f"validation at step {step}: {result['metric']} = {result['value']:.3f} "
            f"{'(best)' if improved else ''} {result.get('by_source', '')} [{time.perf_counter() - t:.0f} s]")
        return result

    def on_term(signum, frame):  # SIGTERM: stop after the current step and keep a checkpoint
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    interrupted = False
    try:
        model.train()
        while step < total:
            patches, rng = sampler.batch(step)
            extra = {"meta": [train_items.meta[i] for i in sampler.indices(step)]} if trainable.batch_meta else {}
            batch = {k: (v.to(device) if torch.is_tensor(v) else v)
                     for k, v in trainable.make_batch(patches, rng, **extra).items()}
            optimizer.zero_grad(set_to_none=True)
            loss = trainable.loss(model, batch)
            if isinstance(loss, dict):
                loss = dict(loss)
                for key, value in loss.items():
                    if key != "loss":
                        terms.setdefault(key, []).append(float(value))
                loss = loss["loss"]
            loss.backward()
            optimizer.step()
            step += 1
            last_loss = float(loss.detach())
            losses.append(last_loss)
            interval_steps += 1
            if not math.isfinite(last_loss):
                raise FloatingPointError(f"The training loss became {last_loss} at step {step}.")
            if recipe.log_every and (step % recipe.log_every == 0 or step == total):
                sec = (time.perf_counter() - interval_t0) / interval_steps
                writer.writerow([step, f"{sampler.epoch_of(step):.3f}", f"{np.mean(losses):.6f}", "",
                                 f"{sec:.3f}", f"{elapsed():.1f}"])
                log_file.flush()
                if terms:
                    _append_terms(terms_path, step, {k: float(np.mean(v)) for k, v in terms.items()})
                    terms = {}
                log(f"step {step}/{total} epoch {sampler.epoch_of(step):.2f} loss {np.mean(losses):.6f} "
                    f"{sec:.2f} s/step, eta {(total - step) * sec / 60:.1f} min")
                losses, interval_t0, interval_steps = [], time.perf_counter(), 0
            if val_interval and step % val_interval == 0 and step < total:
                validate()
                checkpoint()
            elif recipe.checkpoint_every and step % recipe.checkpoint_every == 0:
                checkpoint()
        if best is None or best["step"] != step:
            validate()
        checkpoint(finished=True)
    except (KeyboardInterrupt, _Stop):
        interrupted = True
        checkpoint()
        log(f"interrupted at step {step}; checkpoint saved, continue with --resume")
    finally:
        log_file.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    summary = {"steps": step, "total_steps": total, "finished": step >= total and not interrupted,
               "best": best, "last_loss": last_loss, "elapsed_s": elapsed()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _append_terms(path: Path, step: int, means: Dict[str, float]) -> None:
    """One row of ``terms.csv`` (step, then each loss term's mean since the previous row)."""
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["step"] + list(means))
        writer.writerow([step] + [f"{v:.6f}" for v in means.values()])


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ------------------------------------------------------------------------------------------------ export
def export(trainable: Trainable, run_dir, data_root=None, device="cpu", weights_dir=None, log: Callable = print,
           checkpoint: str = "best") -> dict:
    """Best checkpoint (or with ``checkpoint="last"`` the last one) -> ``<weights>/<name>.pt`` (plain state
    dict) + manifest entry, after validating it on the FULL validation set (every held-out pair, full images)."""
    from MedFusionLib.weights_store import export_state_dict

    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', not '{checkpoint}'.")
    run = Path(run_dir)
    best_path = run / "best.pt" if checkpoint == "best" and (run / "best.pt").exists() else run / "last.pt"
    if not best_path.exists():
        raise FileNotFoundError(f"'{run}' has no checkpoint to export; train first.")
    ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
    config = json.loads((run / "config.json").read_text())
    resumes = sorted(run.glob("config-resume-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    if resumes:  # the recipe and length of the last invocation; every command
        latest = json.loads(resumes[-1].read_text())
        commands = [config["command"]] + [json.loads(p.read_text())["command"] for p in resumes]
        config = dict(config, recipe=latest["recipe"], total_steps=latest["total_steps"], command=" ; ".join(commands))
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    model = trainable.make_model()
    model.load_state_dict(ckpt["model"])
    model.to(device)
    t = time.perf_counter()
    val_items = load_items(data_root, "val", trainable.unit)
    result = trainable.validate(model, val_items, device)
    log(f"full validation of {best_path.name} (step {ckpt.get('step')}): {result['metric']} = {result['value']:.3f} "
        f"on {result.get('images')} images {result.get('by_source', '')} [{time.perf_counter() - t:.0f} s]")
    state = trainable.shipped(ckpt["model"]) if trainable.shipped else ckpt["model"]
    split = data_split.split_summary(data_root)
    metadata = {
        "architecture": trainable.architecture,
        "parameters": int(sum(v.numel() for v in state.values())) if trainable.shipped
        else int(sum(p.numel() for p in model.parameters())),
        "recipe": {"name": config["recipe_name"], **config["recipe"], "optimizer": "Adam",
                   "seed": config["seed"], "total_steps": config["total_steps"], "loss": config.get("loss", ""),
                   "device": config["device"], "threads": config.get("threads"), "command": config["command"]},
        "data": {"source": "shared/data/harvard (Harvard Whole Brain Atlas pairs; not shipped)",
                 "folders": {f: list(m) for f, m in data_split.FOLDERS.items()},
                 "colour": "PET/SPECT as BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B",
                 "unit": trainable.unit, "train_items": config["train_items"],
                 "split": "by case; a case held out anywhere is excluded from training everywhere",
                 "validation_cases": {f: list(c) for f, c in data_split.VALIDATION_CASES.items()},
                 "train": split["train"], "val": split["val"]},
        "validation": {"metric": result["metric"], "value": round(result["value"], 4),
                       "images": result.get("images"), "by_source": result.get("by_source", {}),
                       "checkpoint_step": ckpt.get("step"), "checkpoint": best_path.name,
                       "selected_on": (f"{config['recipe'].get('val_max_per_folder')} pairs per folder "
                                       f"(periodic validation subset)" if best_path.name == "best.pt"
                                       else "the last checkpoint of the run (chosen with --export-checkpoint last)")},
        "training": {"steps": summary.get("steps"), "elapsed_s": round(float(summary.get("elapsed_s", 0.0)), 1),
                     "last_train_loss": summary.get("last_loss")},
        "date": _utc_now(),
    }
    entry = export_state_dict(state, trainable.name, metadata, weights_dir)
    log(f"exported {entry['file']} ({entry['bytes']} bytes, sha256 {entry['sha256'][:12]}...)")
    return entry
