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
import sys, json, time, torch
from validation import Validation
from MedFusionTraining import training
from MedFusionTraining.medfusionnet import trainable
from MedFusionLib.methods.medfusionnet import MedFusionNet
every = int(sys.argv[3]) if len(sys.argv) > 3 else 4
validation = Validation(every, every_of={"CT-MRI": int(sys.argv[4])} if len(sys.argv) > 4 else None)
A, B, score = validation.A, validation.B, validation.score
steps = int(sys.argv[1])
configs = json.loads(sys.argv[2])
train_items = training.load_items(None, "train", "pair")
val_items = training.load_items(None, "val", "pair", max_per_folder=4)
for name, weights in configs.items():
    t = time.time()
    import MedFusionLib.methods.medfusionnet as MN
    MN.MedFusionNet.residual_bound = weights.pop("_residual", 0.1)  # the class attribute weight_mix.py reads
    pair_weights = weights.pop("_pairs", None)  # None: PAIR_LOSS_WEIGHTS
    tr = trainable(weights, pair_weights)
    out = f"runs/ablation/{name}-{steps}"
    s = training.train(tr, "cpu", out, steps=steps, seed=0, train_items=train_items, val_items=val_items, log=lambda m: None)
    model = MedFusionNet(); model.load_state_dict(torch.load(out + "/last.pt", weights_only=True)["model"]); model.eval()
    with torch.inference_mode():
        f = model.fuse(A, B)
    score(f"{name} ({steps} st, {time.time()-t:.0f}s, loss {s['last_loss']:.4f})", f)
