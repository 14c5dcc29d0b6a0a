"""Short MedFusion-Net training runs (loss weights, residual bound), each scored in the CDDFuse protocol on
every 4th validation pair. Runs go to runs/ablation/ (relative to the working directory).

As run (reports/flagship/README.md quotes its output), e.g.
    CDDFUSE_SCORER=<MedFusion folder> python ablate.py 300 '{"C_i1_g4": {"structure": 0}}'
A config maps a name to loss-weight overrides of MedFusionTraining.medfusionnet.LOSS_WEIGHTS; "_residual" sets
medfusionnet.RESIDUAL for that run (the runs before the switch to 0.05 used the then default 0.1); "_pairs"
replaces PAIR_LOSS_WEIGHTS (per-folder overrides; {} = one loss for all pairs, as runs A-P were trained).
Optional third and fourth arguments: score every n-th validation pair (default 4), and every n-th CT-MRI pair
(default the same; CT-MRI has only 20).
"""
import sys, json, time, numpy as np, torch
import os, pathlib; REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts")); sys.path.insert(0, str(REPO / "MedFusion"))
import cddfuse_table as T
from MedFusionLib import data_split
from MedFusionTraining import training
from MedFusionTraining.medfusionnet import trainable
from MedFusionLib.methods.medfusionnet import MedFusionNet
torch.set_num_threads(1)
sc = T.load_scorer(os.environ.get("CDDFUSE_SCORER"))  # a MedFusion folder with metrics/cddfuse.py; unset once merged
pairs = []
every = int(sys.argv[3]) if len(sys.argv) > 3 else 4
ct_every = int(sys.argv[4]) if len(sys.argv) > 4 else every
for folder in data_split.FOLDERS:
    pairs += data_split.list_pairs(None, "val", folders=[folder])[::ct_every if folder == "CT-MRI" else every]
src = [(T.read_grey(p.path_a, sc), T.read_grey(p.path_b, sc)) for p in pairs]
A = torch.from_numpy(np.stack([data_split.read_y(p.path_a) for p in pairs])[:, None])
B = torch.from_numpy(np.stack([data_split.read_y(p.path_b) for p in pairs])[:, None])
MAX_MEANS = {}  # pixel-max's means on the same pairs (scored first) for the "> max" count
def score(name, f):
    f = np.round(f.clamp(0, 1)[:, 0].numpy() * 255).astype(np.float64)
    res = {}
    for p, (a, b), x in zip(pairs, src, f):
        res.setdefault(p.folder, []).append([sc.score(a, b, x)[m] for m in T.METRICS])
    out = [name]
    for folder, v in res.items():
        m = np.nanmean(np.array(v), 0)
        w = sum(x > c for x, c in zip(m, T.CDDFUSE[folder]))
        over_max = sum(x > c for x, c in zip(m, MAX_MEANS.setdefault(folder, m)))
        out.append(f"{folder[:5]} {w}/8 >max {over_max} " + " ".join(f"{x:.2f}" for x in m))
    print(" | ".join(out), flush=True)
score("max", torch.maximum(A, B))
steps = int(sys.argv[1])
configs = json.loads(sys.argv[2])
train_items = training.load_items(None, "train", "pair")
val_items = training.load_items(None, "val", "pair", max_per_folder=4)
for name, weights in configs.items():
    t = time.time()
    import MedFusionLib.methods.medfusionnet as MN
    MN.RESIDUAL = weights.pop("_residual", 0.1)
    pair_weights = weights.pop("_pairs", None)  # None: PAIR_LOSS_WEIGHTS
    tr = trainable(weights, pair_weights)
    out = f"runs/ablation/{name}-{steps}"
    s = training.train(tr, "cpu", out, steps=steps, seed=0, train_items=train_items, val_items=val_items, log=lambda m: None)
    model = MedFusionNet(); model.load_state_dict(torch.load(out + "/last.pt", weights_only=True)["model"]); model.eval()
    with torch.inference_mode():
        f = model.fuse(A, B)
    score(f"{name} ({steps} st, {time.time()-t:.0f}s, loss {s['last_loss']:.4f})", f)
