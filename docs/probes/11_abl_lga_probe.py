"""Probe before notebook 11's cpu run (issue 23): does LGA engage within the isolation epochs at
the rescaled profile, and does the padded ConvNet-BN reach the 80% floor in 8 epochs? Prints the
per-epoch batch-loss quantiles and ascent steps of the isolation phase (BadNets 10%, all 50,000
images), then a plain 8-epoch victim's clean accuracy and time."""
import json, platform, time
import numpy as np, torch
from poisonrepro import evaluation as EV, models as M, train as T
from poisonrepro.attacks import badnets
from poisonrepro.defenses import abl
from poisonrepro.papers.abl import experiments as E

torch.set_num_threads(2)
x, y = EV.cifar10_training_set(5000)
test_x, test_y = EV.cifar10_test_set(10000)
s = badnets.craft_poisons(x, y, rate=0.1, target_class=0, size=3, seed=100)
sched = E.schedule(recipe_name="fast", isolation="victim", isolation_epochs=5, finetune_epochs=5, unlearning_lr=5e-4,
                   gamma=0.5, isolation_ratio=0.01, isolation_batch=64, isolated=500, unlearning_steps=32)
lga = abl.lga_loss(0.5)
losses = []
def counted(logits, labels):
    loss = lga(logits, labels)
    losses.append(float(loss.detach()))
    return loss
model = M.build_model("convnet_bn_padded").to(T.default_device())
t0 = time.perf_counter()
T.train_victim(model, s.images, s.labels, sched.isolation, seed=100, desc="LGA probe", loss_fn=counted)
iso_s = time.perf_counter() - t0
steps = len(losses) // 5
out = {"cpu": platform.processor(), "isolation_seconds": round(iso_s, 1), "steps_per_epoch": steps}
for e in range(5):
    l = np.abs(np.array(losses[e * steps:(e + 1) * steps]))
    out[f"epoch{e+1}"] = {"ascent_steps": int((np.array(losses[e * steps:(e + 1) * steps]) < 0).sum()),
                          "batch_loss_q10_50_90": [round(float(q), 3) for q in np.quantile(l, [0.1, 0.5, 0.9])]}
out["isolation_clean_accuracy"] = T.victim_accuracy(model, test_x, test_y, flip_tta=False)
print(json.dumps(out, indent=1), flush=True)
model = M.build_model("convnet_bn_padded").to(T.default_device())
t0 = time.perf_counter()
T.train_victim(model, x, y, T.VictimRecipe(epochs=8), seed=150, desc="plain probe")
out2 = {"plain_8ep_seconds": round(time.perf_counter() - t0, 1),
        "plain_8ep_clean_accuracy": T.victim_accuracy(model, test_x, test_y, flip_tta=False)}
print(json.dumps(out2, indent=1), flush=True)
